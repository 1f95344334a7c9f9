"""Optimizers: they own the update rule; layers only compute gradients.

An optimizer's ``step(slots)`` takes ``(key, param, grad)`` triples, where
``key`` is a stable name such as ``"3.W"`` (layer index, parameter name), and
updates each ``param`` in place. Per-parameter state (momentum, Adam's moments)
is kept under the same key, so it can be saved and restored with a model.
"""
import numpy as np


class Optimizer:
    """Base class: learning rate, step counter, state save/restore."""

    def __init__(self, lr):
        if not lr > 0:
            raise ValueError(f"{type(self).__name__}: lr must be positive; got {lr!r}")
        self.lr = float(lr)
        self.iterations = 0
        self.state = {}  # key -> dict of arrays

    def step(self, slots):
        self.iterations += 1
        for key, param, grad in slots:
            if param.shape != grad.shape:
                raise ValueError(f"{type(self).__name__}: gradient of {key} has shape "
                                 f"{grad.shape}, parameter has {param.shape}")
            self._update(key, param, grad.astype(param.dtype, copy=False))

    def _update(self, key, param, grad):
        raise NotImplementedError

    def config(self):
        raise NotImplementedError

    def state_arrays(self):
        """Flat ``{"<key>/<name>": array}`` of the state, plus the step counter."""
        arrays = {f"{key}/{name}": value.copy() for key, slot in self.state.items()
                  for name, value in slot.items()}
        arrays["iterations"] = np.array(self.iterations)
        return arrays

    def load_state_arrays(self, arrays):
        self.state = {}
        self.iterations = int(arrays.get("iterations", 0))
        for flat, value in arrays.items():
            if flat == "iterations":
                continue
            key, name = flat.rsplit("/", 1)
            self.state.setdefault(key, {})[name] = np.array(value)


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    ``g = grad + weight_decay * param`` (L2 penalty), ``v = momentum * v + g``,
    then ``param -= lr * v``, or with Nesterov ``param -= lr * (g + momentum * v)``
    (the formulation PyTorch uses).
    """

    def __init__(self, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(lr)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1); got {momentum!r}")
        if nesterov and momentum == 0.0:
            raise ValueError("SGD: nesterov=True needs a momentum > 0")
        if weight_decay < 0:
            raise ValueError(f"SGD: weight_decay must be >= 0; got {weight_decay!r}")
        self.momentum, self.nesterov, self.weight_decay = float(momentum), bool(nesterov), float(weight_decay)

    def config(self):
        return dict(lr=self.lr, momentum=self.momentum, nesterov=self.nesterov,
                    weight_decay=self.weight_decay)

    def _update(self, key, param, grad):
        if self.weight_decay:
            grad = grad + self.weight_decay * param
        if self.momentum:
            slot = self.state.setdefault(key, {"velocity": np.zeros_like(param)})
            v = slot["velocity"]
            v *= self.momentum
            v += grad
            grad = grad + self.momentum * v if self.nesterov else v
        param -= self.lr * grad


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015) with decoupled weight decay (AdamW, Loshchilov and Hutter, 2019).

    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g**2``,
    ``mhat = m / (1 - b1**t)``, ``vhat = v / (1 - b2**t)``,
    ``param -= lr * (mhat / (sqrt(vhat) + eps) + weight_decay * param)``.
    The decay acts on the weights directly, not through the gradient, so it is
    not rescaled by Adam's per-parameter step size.
    """

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(lr)
        b1, b2 = betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"Adam: betas must be in [0, 1); got {betas!r}")
        if weight_decay < 0:
            raise ValueError(f"Adam: weight_decay must be >= 0; got {weight_decay!r}")
        self.betas, self.eps, self.weight_decay = (float(b1), float(b2)), float(eps), float(weight_decay)

    def config(self):
        return dict(lr=self.lr, betas=list(self.betas), eps=self.eps,
                    weight_decay=self.weight_decay)

    def _update(self, key, param, grad):
        b1, b2 = self.betas
        t = self.iterations
        slot = self.state.setdefault(key, {"m": np.zeros_like(param), "v": np.zeros_like(param)})
        m, v = slot["m"], slot["v"]
        m *= b1
        m += (1 - b1) * grad
        v *= b2
        v += (1 - b2) * grad * grad
        step_size = self.lr / (1 - b1 ** t)
        denom = np.sqrt(v / (1 - b2 ** t)) + self.eps
        if self.weight_decay:
            param -= self.lr * self.weight_decay * param
        param -= step_size * m / denom


OPTIMIZERS = {"SGD": SGD, "Adam": Adam}
