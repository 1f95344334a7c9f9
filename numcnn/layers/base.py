"""The layer interface every numcnn layer follows.

A layer is a pair of functions and two dicts:

- ``forward(x, training=False) -> y`` computes the output and keeps what the
  backward pass will need (``layer(x)`` is the same call, in evaluation mode);
- ``backward(dy) -> dx`` takes the gradient of the loss with respect to the
  output and returns the gradient with respect to the input, storing the
  gradients of the parameters in ``grads``;
- ``params`` and ``grads`` are dicts with the same keys (empty for layers
  without parameters). ``backward`` only *computes* gradients; an optimizer
  applies them.

``buffers`` holds state that is saved with a model but not trained (the running
statistics of BatchNorm).
"""
import weakref

import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)


class Layer:
    """Base class: input checks, bookkeeping, and the public forward/backward.

    Subclasses implement ``_forward(x, training)`` and ``_backward(dy, input_grad)``
    with the maths only, ``output_shape(input_shape)`` and ``config()``.
    """

    #: Number of dimensions of one input *sample* (without the batch axis),
    #: or None when any rank is accepted.
    sample_ndim = None
    #: Printable layout of the expected input, used in error messages.
    layout = "(N, ...)"
    #: The attributes in which ``forward`` keeps arrays for ``backward`` (small
    #: things, a shape or a seed, stay); :meth:`release` lets them go.
    saved = ()

    def __init__(self):
        self.params = {}
        self.grads = {}
        self.buffers = {}
        self.name = type(self).__name__.lower()
        self._out_shape = None

    # -- public interface -------------------------------------------------
    def forward(self, x, training=False, *, checked=False):
        """The layer's output for the batch ``x``.

        Parameters
        ----------
        x : ndarray
            A batch in the layout of :attr:`layout`, float32 (float64 in
            gradient checks).
        training : bool
            Training mode (batch statistics, dropout) or evaluation mode.
        checked : bool
            The caller has already checked ``x`` (a model checks its input once,
            up front): skip the checks of type, shape and finite values.
        """
        if not checked:
            self.check_input(x)
            if not np.isfinite(x).all():
                raise ValueError(f"{self.describe()} received NaN or infinite values "
                                 f"in its input of shape {x.shape}")
        y = self._forward(x, training)
        self._out_shape = y.shape
        return y

    def __call__(self, x, training=False):
        """``layer(x)``: :meth:`forward` in evaluation mode unless ``training=True``."""
        return self.forward(x, training)

    def backward(self, dy, input_grad=True):
        """Gradient of the loss w.r.t. the input; fills ``self.grads``.

        ``input_grad=False`` lets a first layer skip the input gradient that
        nobody needs (it then returns None).
        """
        if self._out_shape is None:
            raise RuntimeError(f"{self.describe()}: call forward before backward")
        if not isinstance(dy, np.ndarray) or dy.shape != self._out_shape:
            got = dy.shape if isinstance(dy, np.ndarray) else type(dy).__name__
            raise ValueError(f"{self.describe()}.backward expects a gradient of shape "
                             f"{self._out_shape} (the shape of its output); got {got}")
        return self._backward(dy, input_grad)

    def release(self):
        """Let go of what the last ``forward`` kept for ``backward``.

        Training calls it on each layer as soon as the layer's gradients are
        made, so that the activations of the layers already done are freed
        while the backward pass goes on (PyTorch's autograd frees them the same
        way). A later ``backward`` without a new ``forward`` is refused.
        """
        for name in self.saved:
            setattr(self, name, None)
        self._out_shape = None

    def build(self, rng):
        """(Re-)initialise parameters and random state from a Generator."""

    def output_shape(self, input_shape):
        """Shape of one output sample for one input sample (no batch axis)."""
        self.check_sample_shape(input_shape)
        return tuple(input_shape)

    def config(self):
        """Constructor arguments, enough to rebuild the layer (for save/load)."""
        return {}

    @classmethod
    def array_shapes(cls, config):
        """``{"param/<name>" or "buffer/<name>": shape}`` of a layer made from ``config``,
        worked out without making it: a model file's header is checked against the
        arrays it holds before any layer allocates its weights."""
        return {}

    def num_params(self):
        """Number of trainable values (the sizes of ``params``)."""
        return int(sum(p.size for p in self.params.values()))

    def describe(self):
        """``"<Class> layer '<name>'"``, as error messages name the layer."""
        return f"{type(self).__name__} layer '{self.name}'"

    # -- input checks -----------------------------------------------------
    def check_input(self, x):
        """Raise TypeError/ValueError naming the layer, expected and received input."""
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{self.describe()} expects a NumPy array of shape "
                            f"{self.layout}; got {type(x).__name__}")
        if x.dtype.type not in FLOAT_DTYPES:
            raise TypeError(f"{self.describe()} expects float32 (or float64) input of "
                            f"shape {self.layout}; got dtype {x.dtype}")
        if x.ndim < 1:
            raise ValueError(f"{self.describe()} expects input of shape {self.layout}; "
                             f"got a scalar")
        self.output_shape(x.shape[1:])

    def check_sample_shape(self, sample_shape):
        """Raise ValueError unless one sample has the rank this layer takes."""
        if self.sample_ndim is not None and len(sample_shape) != self.sample_ndim:
            raise ValueError(
                f"{self.describe()} expects input of shape {self.layout} "
                f"({self.sample_ndim + 1}-D with the batch axis); got one sample of "
                f"shape {tuple(sample_shape)} ({len(sample_shape) + 1}-D with the batch axis)")

    def check_channels(self, sample_shape, expected, what="channels"):
        """Raise ValueError unless the first axis of one sample has ``expected`` entries."""
        if sample_shape[0] != expected:
            raise ValueError(f"{self.describe()} expects {expected} input {what}, shape "
                             f"{self.layout}; got {sample_shape[0]} (sample shape "
                             f"{tuple(sample_shape)})")

    # -- to be provided by subclasses ---------------------------------------
    def _forward(self, x, training):
        raise NotImplementedError

    def _backward(self, dy, input_grad):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    # -- the model that holds it ---------------------------------------------
    def owner(self):
        """The model this layer is a step of, or None (a layer belongs to one model)."""
        owner = self.__dict__.get("_owner")
        return None if owner is None else owner()

    def set_owner(self, model):
        """Record ``model`` as the layer's one owner (weakly: a model that is gone frees it)."""
        self._owner = weakref.ref(model)

    def __getstate__(self):
        """A copy of a layer (``copy.deepcopy``, pickle) belongs to no model yet."""
        state = dict(self.__dict__)
        state.pop("_owner", None)
        return state


def as_generator(rng):
    """Accept a Generator, an int seed or None; return a Generator."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)
