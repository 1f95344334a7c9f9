"""Optimizers: they own the update rule; layers only compute gradients.

An optimizer's ``step(slots)`` takes ``(key, param, grad)`` triples, where
``key`` is a stable name such as ``"3.W"`` (layer index, parameter name), and
updates each ``param`` in place. Per-parameter state (momentum, Adam's moments)
is kept under the same key, so it can be saved and restored with a model.

The three update rules and their weight decay follow PyTorch's ``torch.optim``
exactly (the tests compare them step by step): ``SGD`` and ``Adam`` add the
decay to the gradient (an L2 penalty), ``AdamW`` shrinks the weights directly.
"""
import math

import numpy as np

from .backend import kernels
from .validation import fraction, non_negative_float, positive_float

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "OPTIMIZERS"]


class Optimizer:
    """Base class: learning rate, step counter, state save/restore.

    ``lr`` must be finite and positive when the optimizer is made; a schedule
    may later set it to 0, never to a negative or non-finite value (assigning
    one raises ValueError).
    """

    #: The arrays of one parameter's state (each of the parameter's shape).
    state_names = ()

    def __init__(self, lr):
        self._lr = positive_float(lr, "lr", type(self).__name__)
        self.iterations = 0
        self.state = {}  # key -> dict of arrays

    @property
    def lr(self):
        """The learning rate used by the next :meth:`step`."""
        return self._lr

    @lr.setter
    def lr(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                or not math.isfinite(value) or value < 0:
            raise ValueError(f"{type(self).__name__}: lr must be a finite number >= 0; "
                             f"got {value!r}")
        self._lr = float(value)

    def step(self, slots):
        """Update every ``param`` of ``(key, param, grad)`` in place, from its ``grad``."""
        self.iterations += 1
        for key, param, grad in slots:
            if param.shape != grad.shape:
                raise ValueError(f"{type(self).__name__}: gradient of {key} has shape "
                                 f"{grad.shape}, parameter has {param.shape}")
            self._update(key, param, grad.astype(param.dtype, copy=False))

    def _update(self, key, param, grad):
        raise NotImplementedError

    def config(self):
        """Constructor arguments, enough to rebuild the optimizer (for save/load)."""
        raise NotImplementedError

    def state_arrays(self):
        """Flat ``{"<key>/<name>": array}`` of the state, plus the step counter."""
        arrays = {f"{key}/{name}": value.copy() for key, slot in self.state.items()
                  for name, value in slot.items()}
        arrays["iterations"] = np.array(self.iterations)
        return arrays

    def load_state_arrays(self, arrays):
        """Restore what :meth:`state_arrays` returned."""
        self.state = {}
        self.iterations = int(arrays.get("iterations", 0))
        for flat, value in arrays.items():
            if flat == "iterations":
                continue
            key, name = flat.rsplit("/", 1)
            self.state.setdefault(key, {})[name] = np.array(value)


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``.

    ``g = grad + weight_decay * param`` (L2 penalty), ``v = momentum * v + g``,
    then ``param -= lr * v``, or with Nesterov ``param -= lr * (g + momentum * v)``.
    """

    state_names = ("velocity",)

    def __init__(self, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(lr)
        self.momentum = fraction(momentum, "momentum", "SGD")
        if nesterov and self.momentum == 0.0:
            raise ValueError("SGD: nesterov=True needs a momentum > 0")
        self.nesterov = bool(nesterov)
        self.weight_decay = non_negative_float(weight_decay, "weight_decay", "SGD")

    def config(self):
        return dict(lr=self.lr, momentum=self.momentum, nesterov=self.nesterov,
                    weight_decay=self.weight_decay)

    def _update(self, key, param, grad):
        if self.weight_decay:
            grad = grad + self.weight_decay * param
        if self.momentum:
            if key not in self.state:    # the first step: no velocity yet
                self.state[key] = {"velocity": np.zeros_like(param)}
            v = self.state[key]["velocity"]
            v *= self.momentum
            v += grad
            grad = grad + self.momentum * v if self.nesterov else v
        param -= self.lr * grad


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015), as ``torch.optim.Adam``: weight decay is an L2 penalty.

    ``g = grad + weight_decay * param``, ``m = b1 m + (1 - b1) g``,
    ``v = b2 v + (1 - b2) g**2``, ``mhat = m / (1 - b1**t)``, ``vhat = v / (1 - b2**t)``,
    ``param -= lr * mhat / (sqrt(vhat) + eps)``.

    The decay goes through the gradient, so Adam rescales it by each weight's
    step size: weights with large gradients are hardly decayed. For decay that
    acts on the weights directly, use :class:`AdamW`.
    """

    state_names = ("m", "v")

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(lr)
        where = type(self).__name__
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise TypeError(f"{where}: betas must be a pair (b1, b2); got {betas!r}") from None
        self.betas = (fraction(b1, "betas[0]", where), fraction(b2, "betas[1]", where))
        self.eps = positive_float(eps, "eps", where)
        self.weight_decay = non_negative_float(weight_decay, "weight_decay", where)

    def config(self):
        return dict(lr=self.lr, betas=list(self.betas), eps=self.eps,
                    weight_decay=self.weight_decay)

    def _update(self, key, param, grad):
        if self.weight_decay:
            grad = grad + self.weight_decay * param                  # coupled: an L2 penalty
        self._adam_step(key, param, grad)

    def _adam_step(self, key, param, grad, decay=0.0):
        """``param -= decay * param``, update the moments of ``key``, then ``param -= lr *
        mhat / (sqrt(vhat) + eps)`` (the backend's ``adam_update``: the reference's NumPy
        lines, or one pass of numba over the arrays)."""
        slot = self.state.get(key)
        if slot is None:                 # the first step: moments of zero
            slot = self.state[key] = {"m": np.zeros_like(param), "v": np.zeros_like(param)}
        kernels().adam_update(param, grad, slot["m"], slot["v"], self.lr, self.betas, self.eps,
                              self.iterations, decay)


class AdamW(Adam):
    """AdamW (Loshchilov and Hutter, 2019), as ``torch.optim.AdamW``: decoupled weight decay.

    ``param -= lr * weight_decay * param`` first, then Adam's step on the plain
    gradient: ``param -= lr * mhat / (sqrt(vhat) + eps)``. The decay acts on
    the weights directly, not through the gradient, so it is not rescaled by
    Adam's per-parameter step size. PyTorch's default ``weight_decay=0.01``.
    """

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(lr, betas, eps, weight_decay)

    def _update(self, key, param, grad):
        self._adam_step(key, param, grad, decay=self.lr * self.weight_decay)   # decoupled


OPTIMIZERS = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}
"""The optimizer classes by name, as model files store them."""
