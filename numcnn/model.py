"""Sequential: a stack of layers, applied one after the other.

This module holds the stack itself: building it, calling it, its weights.
Training (``compile``, ``fit``, ``evaluate``, ``predict``) comes from
:class:`numcnn.training.Trainer`, the summary table from
:mod:`numcnn.summary`, saving and loading from :mod:`numcnn.saving`.
"""
import numpy as np

from . import validation
from .errors import NonFiniteModelError
from .layers.activation import Softmax
from .layers.base import Layer
from .training import Trainer

__all__ = ["Sequential"]


class Sequential(Trainer):
    """Layers applied one after the other, trained by backpropagation.

    Parameters
    ----------
    layers : list of Layer
        The last layer gives the logits: a numcnn model never ends in a
        :class:`numcnn.layers.Softmax` (``predict`` returns probabilities, and
        the loss takes logits).
    seed : int, optional
        Seeds the one ``numpy.random.Generator`` behind the initial weights,
        dropout masks, shuffling and (through ``fit(augment=...)``) augmentation.
    input_shape : tuple, optional
        Shape of one sample, e.g. ``(3, 64, 64)``; checked against the layers at
        once and used by :meth:`summary`. Otherwise taken from the first batch.

    Examples
    --------
    >>> from numcnn.layers import Conv2D, ReLU, Flatten, Dense
    >>> model = Sequential([Conv2D(3, 4, 3), ReLU(), Flatten(), Dense(4 * 6 * 6, 2)], seed=0)
    >>> model(np.zeros((1, 3, 8, 8), np.float32)).shape     # logits
    (1, 2)
    """

    def __init__(self, layers, seed=None, input_shape=None):
        super().__init__()
        layers = list(layers)
        if not layers:
            raise ValueError("Sequential needs at least one layer")
        counts = {}
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {i} is a {type(layer).__name__}, not a "
                                "numcnn layer")
            if any(other is layer for other in layers[:i]):
                raise ValueError(f"Sequential: item {i} is the same layer object as an earlier "
                                 f"item; a layer is one step of one model: make another "
                                 f"({type(layer).__name__}(...)) or copy it (copy.deepcopy)")
            owner = layer.owner()
            if owner is not None:
                raise ValueError(
                    f"Sequential: item {i}, {layer.describe()}, already belongs to another "
                    f"model, whose weights it holds; a second model would re-initialise "
                    f"them. Make a new layer, or copy this one with its weights: "
                    f"copy.deepcopy(layer), or copy.deepcopy(model) for the whole model")
            kind = type(layer).__name__.lower()
            counts[kind] = counts.get(kind, 0) + 1
            layer.name = f"{kind}_{counts[kind]}"
        if isinstance(layers[-1], Softmax):
            raise ValueError("Sequential: the last layer is a Softmax, but a numcnn model ends in "
                             "logits: predict() returns the probabilities and the loss takes the "
                             "logits. Remove the final Softmax()")
        if seed is not None:
            validation.non_negative_int(seed, "seed", "Sequential")
        self.layers = layers
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        for layer in self.layers:
            layer.build(self.rng)
            layer.set_owner(self)
        self.input_shape = None
        self.output_shapes = None
        if input_shape is not None:
            self.build(input_shape)

    def __setstate__(self, state):
        """A copy (``copy.deepcopy``, pickle) owns its own copies of the layers."""
        self.__dict__.update(state)
        for layer in self.layers:
            layer.set_owner(self)

    # -- structure -------------------------------------------------------------
    def build(self, input_shape):
        """Check that the layers fit together for samples of ``input_shape``.

        Returns the list of output shapes (one per layer, without the batch axis).
        """
        shapes = self.shapes_for(input_shape)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.output_shapes = shapes
        return shapes

    def shapes_for(self, input_shape):
        """The output shape of every layer for samples of ``input_shape``, checked, without
        building the model for them (ValueError naming the layer that cannot take them)."""
        shape = validation.sample_shape(input_shape, "input_shape", "Sequential.build")
        shapes = []
        for layer in self.layers:
            shape = layer.output_shape(shape)
            shapes.append(shape)
        return shapes

    @property
    def num_classes(self):
        """Number of outputs (logits) per sample; None before the model is built."""
        return None if self.output_shapes is None else self.output_shapes[-1][0]

    def check_input(self, x, where="model", build=True, adopt=False):
        """Check type, dtype, shape and values of a batch; return it as float32.

        Builds the model for ``x``'s sample shape if it is not built yet, or
        if ``adopt`` (training data: ``fit``); otherwise a batch of another
        shape must pass through every layer, and the model's ``input_shape``
        stays what it was built for. ``build=False`` checks only what does not
        depend on the image size (an augmentation may still crop it).
        """
        first = self.layers[0]
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{where}: x must be a NumPy array of shape {first.layout}; "
                            f"got {type(x).__name__}")
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"{where}: x must be float32 images in NCHW layout; got dtype "
                            f"{x.dtype} (convert with x.astype(np.float32) / 255)")
        if x.ndim < 1:
            raise ValueError(f"{where}: x must be a batch of shape {first.layout}; got a scalar")
        if build:
            first.check_input(x)
        else:
            first.check_sample_shape(x.shape[1:])  # the rank; sizes are checked after augmenting
        x = validation.image_batch(x, "x", where)
        if build and self.input_shape != x.shape[1:]:
            if self.input_shape is None or adopt:
                self.build(x.shape[1:])
            else:
                self.shapes_for(x.shape[1:])
        return x

    # -- passes --------------------------------------------------------------------
    def forward(self, x, training=False, *, checked=False):
        """The model's output (logits) for the batch ``x``.

        ``checked=True``: the caller has checked ``x`` (see :meth:`check_input`).
        """
        if not checked:
            x = self.check_input(x, "forward")
        for layer in self.layers:
            x = layer.forward(x, training, checked=True)
        return x

    def __call__(self, x, training=False):
        """``model(x)``: the logits, in evaluation mode unless ``training=True``."""
        return self.forward(x, training)

    def backward(self, dy):
        """Backpropagate ``dy`` (the gradient of the loss w.r.t. the logits) through every layer.

        Fills every layer's ``grads``; the first layer skips the input
        gradient that nobody needs.
        """
        for i in range(len(self.layers) - 1, -1, -1):
            dy = self.layers[i].backward(dy, input_grad=i > 0)

    # -- weights ---------------------------------------------------------------------
    def param_slots(self):
        """``(key, param, grad)`` for every parameter, keys like ``"3.W"`` (layer index, name)."""
        return [(f"{i}.{name}", layer.params[name], layer.grads[name])
                for i, layer in enumerate(self.layers) for name in layer.params]

    def num_params(self):
        """Number of trainable values."""
        return sum(layer.num_params() for layer in self.layers)

    def state_dict(self):
        """``{"<layer index>.<name>": array}`` of every parameter and buffer (copies)."""
        return {f"{i}.{name}": value.copy() for i, layer in enumerate(self.layers)
                for store in (layer.params, layer.buffers) for name, value in store.items()}

    def load_state_dict(self, state):
        """Set every parameter and buffer from a :meth:`state_dict` (shapes must match, values
        finite once cast to the model's dtype: :class:`numcnn.errors.NonFiniteModelError`)."""
        expected = self.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ValueError(f"load_state_dict: missing keys {missing}, unexpected keys "
                             f"{unexpected}")
        for i, layer in enumerate(self.layers):
            for store in (layer.params, layer.buffers):
                for name, current in store.items():
                    value = np.asarray(state[f"{i}.{name}"])
                    if value.shape != current.shape:
                        raise ValueError(f"load_state_dict: {i}.{name} of {layer.describe()} "
                                         f"has shape {value.shape}; expected {current.shape}")
                    with np.errstate(over="ignore", invalid="ignore"):
                        cast = value.astype(current.dtype, copy=True)
                    if not np.isfinite(cast).all():
                        raise NonFiniteModelError(
                            f"load_state_dict: {i}.{name} of {layer.describe()} holds NaN or "
                            f"infinite values"
                            + (f" once cast to {current.dtype} (beyond its range)"
                               if np.isfinite(value).all() else "")
                            + ": a model cannot use them")
                    store[name] = cast

    def get_weights(self):
        """The parameters and buffers as a list of arrays, layer by layer (Keras' order)."""
        return list(self.state_dict().values())

    def set_weights(self, weights):
        """Set the parameters and buffers from a list as :meth:`get_weights` returns it."""
        keys = list(self.state_dict())
        weights = list(weights)
        if len(weights) != len(keys):
            raise ValueError(f"set_weights: expected {len(keys)} arrays; got {len(weights)}")
        self.load_state_dict(dict(zip(keys, weights)))

    # -- reporting and files, each in its own module ------------------------------------
    def summary(self, input_shape=None, print_fn=print):
        """Print (and return) a table of layers, output shapes and parameter counts."""
        from .summary import summary_text
        if input_shape is not None:
            self.build(input_shape)
        text = summary_text(self)
        if print_fn is not None:
            print_fn(text)
        return text

    def profile(self, x, y, print_fn=print):
        """Time one training forward/backward per layer and measure its memory.

        Prints a table and returns it as data; see :func:`numcnn.profiler.profile`.
        """
        from .profiler import profile
        return profile(self, x, y, print_fn=print_fn)

    def save(self, path):
        """Write the whole model (architecture, weights, optimizer, random state); see :func:`numcnn.saving.save_model`."""
        from .saving import save_model
        return save_model(self, path)

    def save_weights(self, path):
        """Write the parameters and buffers only; see :func:`numcnn.saving.save_weights`."""
        from .saving import save_weights
        return save_weights(self, path)

    def load_weights(self, path):
        """Read weights written by :meth:`save_weights` into this model (same architecture)."""
        from .saving import load_weights
        load_weights(self, path)
        return self
