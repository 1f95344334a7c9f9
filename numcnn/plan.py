"""The passes of a model's layers, planned for a backend: fused steps where they are faster.

Layers are written one at a time, to be read. Some neighbours are cheaper
together: a BatchNorm and the ReLU after it make one pass over the data
instead of two each way. :func:`build_plan` turns a list of layers
into a list of steps, each one layer or a fused group; training (``fit``,
``train_step``), ``evaluate`` and ``predict`` run the plan, while everything
that needs one layer's activations (``Sequential.forward``, ``model.profile``,
Grad-CAM) runs the layers one by one. The plan belongs to the backend: the
NumPy reference backend plans every layer on its own, so a student can
compare the two on any model.

A fused step computes what its layers compute, to float32 rounding, and
keeps their state as they would: the BatchNorm's running statistics, every
layer's ``grads``. The tests hold the two paths to that.
"""
from .backend import get_backend, kernels
from .layers import BatchNorm, ReLU

__all__ = ["build_plan", "Plan", "Step", "LayerStep", "BatchNormReLUStep"]


class Step:
    """One step of a plan: one layer, or a group of neighbours computed together.

    ``layers`` lists the layers it stands for, in order.
    """

    layers = ()

    def forward(self, x, training):
        """The output of the step's last layer for the input ``x`` of its first."""
        raise NotImplementedError

    def backward(self, dy, input_grad):
        """Gradient w.r.t. the step's input; fills its layers' ``grads``.

        ``input_grad=False`` (the first step of a model) may skip it and return None.
        """
        raise NotImplementedError


class LayerStep(Step):
    """One layer, as it is: its own ``forward`` and ``backward``."""

    def __init__(self, layer):
        self.layers = [layer]

    def forward(self, x, training):
        return self.layers[0].forward(x, training, checked=True)

    def backward(self, dy, input_grad):
        return self.layers[0].backward(dy, input_grad=input_grad)


class BatchNormReLUStep(Step):
    """A BatchNorm and the ReLU after it, in one pass each way."""

    def __init__(self, norm, relu):
        self.layers = [norm, relu]

    def forward(self, x, training):
        norm = self.layers[0]
        x4 = x if x.ndim == 4 else x.reshape(x.shape + (1, 1))
        gamma = norm.params["gamma"].astype(x.dtype, copy=False)
        beta = norm.params["beta"].astype(x.dtype, copy=False)
        self._training = training
        if training:
            y, self._mean, self._var = kernels().batchnorm_relu_forward(x4, gamma, beta, norm.eps)
            norm.update_running_statistics(self._mean, self._var,
                                           x4.shape[0] * x4.shape[2] * x4.shape[3])
            self._x, self._y = x4, y
        else:
            mean = norm.buffers["running_mean"].astype(x.dtype)
            var = norm.buffers["running_var"].astype(x.dtype)
            y = kernels().batchnorm_relu_inference(x4, gamma, beta, mean, var, norm.eps)
        return y.reshape(x.shape)

    def backward(self, dy, input_grad):
        if not self._training:
            raise RuntimeError("the fused BatchNorm-ReLU step goes backward only after a "
                               "training pass (run the layers one by one for gradients in "
                               "evaluation mode)")
        norm = self.layers[0]
        gamma = norm.params["gamma"].astype(self._x.dtype, copy=False)
        dx, dgamma, dbeta = kernels().batchnorm_relu_backward(
            dy.reshape(self._x.shape), self._y, self._x, gamma, self._mean, self._var, norm.eps)
        norm.grads["gamma"], norm.grads["beta"] = dgamma, dbeta
        return dx.reshape(dy.shape)


class Plan:
    """The steps of a model, run forward and backward like its list of layers."""

    def __init__(self, steps):
        self.steps = steps

    def forward(self, x, training):
        """The model's output for ``x`` (already checked)."""
        for step in self.steps:
            x = step.forward(x, training)
        return x

    def backward(self, dy):
        """Backpropagate ``dy`` through every step; fills every layer's ``grads``."""
        for k in range(len(self.steps) - 1, -1, -1):
            dy = self.steps[k].backward(dy, input_grad=k > 0)

    def describe(self):
        """One line per step: its kind and its layers' names."""
        return "\n".join(f"{type(step).__name__}: {', '.join(layer.name for layer in step.layers)}"
                         for step in self.steps)


def build_plan(layers, fuse=None):
    """The steps for ``layers`` on the current backend (``fuse``: override whether to fuse)."""
    if fuse is None:
        fuse = get_backend() == "numba"
    steps, k = [], 0
    while k < len(layers):
        layer, after = layers[k], layers[k + 1] if k + 1 < len(layers) else None
        if fuse and isinstance(layer, BatchNorm) and isinstance(after, ReLU):
            steps.append(BatchNormReLUStep(layer, after))
            k += 2
            continue
        steps.append(LayerStep(layer))
        k += 1
    return Plan(steps)
