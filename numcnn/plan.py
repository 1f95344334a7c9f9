"""The passes of a model's layers, planned for a backend: fused steps where they are faster.

Layers are written one at a time, to be read. Some work is cheaper done
another way, or together with a neighbour: a BatchNorm and the ReLU after it
make one pass over the data instead of two each way (and, with a 2x2 max
pool after them, never write the ReLU's full-size output); a 3x3 convolution with
stride 1 runs the direct kernels, which need no column matrix; any other
convolution adds its bias while it reorders its output, and computes its
weight gradient as the transpose of a product that BLAS does faster.
:func:`build_plan` turns a list of layers
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
import numpy as np

from .backend import get_backend, kernels
from .layers import BatchNorm, BatchNorm2D, Conv2D, MaxPool2D, ReLU
from .layers.columns import ColumnWorkspace

__all__ = ["build_plan", "Plan", "Step", "LayerStep", "ConvolutionStep",
           "DirectConvolutionStep", "BatchNormReLUStep", "BatchNormReLUMaxPoolStep",
           "runs_direct", "pools_2x2"]


class Step:
    """One step of a plan: one layer, or a group of neighbours computed together.

    ``layers`` lists the layers it stands for, in order.
    """

    layers = ()
    #: The attributes in which ``forward`` keeps arrays for ``backward``.
    saved = ()

    def forward(self, x, training):
        """The output of the step's last layer for the input ``x`` of its first."""
        raise NotImplementedError

    def backward(self, dy, input_grad):
        """Gradient w.r.t. the step's input; fills its layers' ``grads``.

        ``input_grad=False`` (the first step of a model) may skip it and return None.
        """
        raise NotImplementedError

    def release(self):
        """Let go of what ``forward`` kept for ``backward`` (see :meth:`Layer.release`)."""
        for name in self.saved:
            setattr(self, name, None)


class LayerStep(Step):
    """One layer, as it is: its own ``forward`` and ``backward``."""

    def __init__(self, layer):
        self.layers = [layer]

    def forward(self, x, training):
        return self.layers[0].forward(x, training, checked=True)

    def backward(self, dy, input_grad):
        return self.layers[0].backward(dy, input_grad=input_grad)

    def release(self):
        self.layers[0].release()


class ConvolutionStep(Step):
    """A Conv2D computed as the layer does (im2col, one matrix multiply), done faster.

    The same products as ``Conv2D._forward`` / ``_backward``, with two changes
    that only BLAS and memory notice: the bias is added while the result is
    reordered into NCHW (one pass, not two), and the weight gradient
    ``dY @ cols.T`` is computed as the transpose of ``cols @ dY.T``, which
    OpenBLAS runs about a fifth faster for these shapes (a reordered sum:
    equal to float32 rounding).
    """

    saved = ("_x",)

    def __init__(self, conv):
        self.layers = [conv]
        self.conv = conv
        self.columns = ColumnWorkspace(conv.KH, conv.KW, conv.stride, conv.padding)

    def forward(self, x, training):
        conv = self.conv
        N = len(x)
        F, OH, OW = conv.output_shape(x.shape[1:])
        Wm = conv.params["W"].astype(x.dtype, copy=False).reshape(F, -1)
        b = conv.params["b"].astype(x.dtype, copy=False)
        y = np.empty((N, F, OH * OW), dtype=x.dtype)
        for images, cols in self.columns.chunks(x, forward=True):
            rows = self.columns.rows(F, cols.shape[1], x.dtype)
            np.matmul(Wm, cols, out=rows)
            kernels().nchw_from_rows(rows, len(y[images]), out=y[images], bias=b)
        self._x = x
        return y.reshape(N, F, OH, OW)

    def backward(self, dy, input_grad):
        x = self._x
        N, F = dy.shape[:2]
        dy = np.ascontiguousarray(dy).reshape(N, F, -1)

        def gradient_rows(images, cols):
            dY = self.columns.rows(F, cols.shape[1], x.dtype)
            return kernels().rows_from_nchw(dy[images], out=dY)

        dx = self.gradients_from_rows(gradient_rows, input_grad)
        self.conv.grads["b"] = kernels().channel_sums(dy).astype(x.dtype)
        return dx

    def gradients_from_rows(self, gradient_rows, input_grad):
        """The weight gradient (into ``conv.grads["W"]``) and the input gradient (returned).

        ``gradient_rows(images, cols)`` gives the gradient of the convolution's
        output for one chunk of images in the GEMM's layout, shape ``(F, chunk * P)``.
        """
        conv, x = self.conv, self._x
        W = conv.params["W"].astype(x.dtype, copy=False)
        WmT = np.ascontiguousarray(W.reshape(len(W), -1).T)           # (C*KH*KW, F)
        dWT = np.zeros(WmT.shape, dtype=x.dtype)
        dx = np.empty(x.shape, dtype=x.dtype) if input_grad else None
        for images, cols in self.columns.chunks(x):
            dY = gradient_rows(images, cols)
            dWT += cols @ dY.T                                       # (dY @ cols.T).T
            if input_grad:
                dcols = np.matmul(WmT, dY, out=cols)
                kernels().col2im(dcols, x[images].shape, conv.KH, conv.KW, conv.stride,
                                 conv.padding, out=dx[images])
        conv.grads["W"] = np.ascontiguousarray(dWT.T).reshape(W.shape)
        return dx


class DirectConvolutionStep(Step):
    """A 3x3 Conv2D with stride 1, by the direct kernels: no column matrix.

    The layer's im2col route writes a column matrix nine times the size of
    its input and reads it back for each product (and, for three input
    channels, hands BLAS a product too thin to run well). The direct kernels
    (``conv2d_direct``, ``conv2d_direct_backward``) read a padded stack of
    images nine times from cache instead. On the blood-cell network a
    training step is fastest with all three of its convolutions run this way
    (each forward pass, and the whole step, measured in docs/performance.md;
    the last convolution's backward pass alone is a little slower than
    im2col's). Same values as the im2col route to float32 rounding. A
    BatchNorm and ReLU after it (and a 2x2 max pool after them) are the next
    step of the plan.
    """

    saved = ("_x",)

    def __init__(self, conv):
        self.layers = [conv]
        self.conv = conv

    def forward(self, x, training):
        conv = self.conv
        conv.output_shape(x.shape[1:])            # the layer's own check of the input's shape
        self._x = x
        return kernels().conv2d_direct(x, conv.params["W"].astype(x.dtype, copy=False),
                                       conv.params["b"].astype(x.dtype, copy=False),
                                       conv.stride, conv.padding)

    def backward(self, dy, input_grad):
        conv, x = self.conv, self._x
        dx, conv.grads["W"], conv.grads["b"] = kernels().conv2d_direct_backward(
            dy, x, conv.params["W"].astype(x.dtype, copy=False), conv.stride, conv.padding,
            input_grad=input_grad)
        return dx


def runs_direct(conv):
    """Whether the plan computes ``conv`` with :class:`DirectConvolutionStep`.

    The kernels answer (:func:`numcnn.kernels.jit.conv3x3.takes`): 3x3
    kernels, stride 1, padding at most 2, on the vectors route
    (:func:`numcnn.route`). The portable route runs every convolution as
    im2col and one matrix multiply.
    """
    from .kernels.jit.conv3x3 import takes
    return takes(conv.params["W"].shape, conv.stride, conv.padding)


class BatchNormReLUStep(Step):
    """A BatchNorm and the ReLU after it, in one pass each way."""

    saved = ("_x", "_y", "_mean", "_var")
    #: What the step is called in its errors.
    kind = "BatchNorm-ReLU"

    def __init__(self, norm, relu):
        self.layers = [norm, relu]

    def forward(self, x, training):
        x4 = x if x.ndim == 4 else x.reshape(x.shape + (1, 1))
        gamma, beta = self._gamma_beta(x.dtype)
        self._training = training
        if training:
            y, mean, var = kernels().batchnorm_relu_forward(x4, gamma, beta, self.layers[0].eps)
            self._keep_batch_statistics(mean, var, x4)
            self._x, self._y = x4, y
        else:
            y = kernels().batchnorm_relu_inference(x4, gamma, beta,
                                                   *self._running_statistics(x.dtype),
                                                   self.layers[0].eps)
        return y.reshape(x.shape)

    def backward(self, dy, input_grad):
        self._check_trained()
        norm = self.layers[0]
        dx, norm.grads["gamma"], norm.grads["beta"] = kernels().batchnorm_relu_backward(
            dy.reshape(self._x.shape), self._y, self._x, self._gamma_beta(self._x.dtype)[0],
            self._mean, self._var, norm.eps)
        return dx.reshape(dy.shape)

    # What the fused BatchNorm steps share: the layer's parameters and statistics.
    def _gamma_beta(self, dtype):
        norm = self.layers[0]
        return (norm.params["gamma"].astype(dtype, copy=False),
                norm.params["beta"].astype(dtype, copy=False))

    def _running_statistics(self, dtype):
        norm = self.layers[0]
        return norm.buffers["running_mean"].astype(dtype), norm.buffers["running_var"].astype(dtype)

    def _keep_batch_statistics(self, mean, var, x4):
        """Keep the batch's statistics for backward and update the layer's running ones."""
        self._mean, self._var = mean, var
        self.layers[0].update_running_statistics(mean, var, x4.shape[0] * x4.shape[2] * x4.shape[3])

    def _check_trained(self):
        if not self._training:
            raise RuntimeError(f"the fused {self.kind} step goes backward only after a training "
                               f"pass (run the layers one by one for gradients in evaluation mode)")


class BatchNormReLUMaxPoolStep(BatchNormReLUStep):
    """A BatchNorm2D, the ReLU after it and a 2x2 max pool with stride 2 after that, fused.

    The full-size output of the ReLU is never written, nor its gradient: the
    forward pass writes the pooled output and where each window's maximum
    was; the backward pass needs BatchNorm's sums over the windows' positive
    maxima only (the only inputs whose gradient is not zero), then writes the
    input gradient in one pass. About half the memory traffic of the three
    layers one by one (docs/performance.md, "BatchNorm, ReLU and max pooling
    as one step", measures the time).
    """

    saved = ("_x", "_y", "_argmax", "_mean", "_var")
    kind = "BatchNorm-ReLU-MaxPool"

    def __init__(self, norm, relu, pool):
        self.layers = [norm, relu, pool]

    def forward(self, x, training):
        norm, _, pool = self.layers
        pool.output_shape(norm.output_shape(x.shape[1:]))   # the layers' own checks of the input
        gamma, beta = self._gamma_beta(x.dtype)
        self._training = training
        if not training:
            return kernels().batchnorm_relu_maxpool2_inference(
                x, gamma, beta, *self._running_statistics(x.dtype), norm.eps)
        y, self._argmax, mean, var = kernels().batchnorm_relu_maxpool2_forward(x, gamma, beta,
                                                                                norm.eps)
        self._keep_batch_statistics(mean, var, x)
        self._x, self._y = x, y
        return y

    def backward(self, dy, input_grad):
        self._check_trained()
        norm = self.layers[0]
        dx, norm.grads["gamma"], norm.grads["beta"] = kernels().batchnorm_relu_maxpool2_backward(
            dy, self._argmax, self._y, self._x, self._gamma_beta(self._x.dtype)[0], self._mean,
            self._var, norm.eps)
        return dx


def pools_2x2(layer):
    """Whether ``layer`` is a max pool over 2x2 windows with stride 2 (the fused step's kind)."""
    return isinstance(layer, MaxPool2D) and layer.K == layer.stride == 2


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
        """Backpropagate ``dy`` through every step; fills every layer's ``grads``.

        Each step lets go of its activations once its gradients are made: the
        memory of the steps done serves the ones still to go (docs/performance.md,
        "Memory", measures what that saves).
        """
        for k in range(len(self.steps) - 1, -1, -1):
            dy = self.steps[k].backward(dy, input_grad=k > 0)
            self.steps[k].release()

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
        if fuse and isinstance(layer, Conv2D) and runs_direct(layer):
            steps.append(DirectConvolutionStep(layer))  # a BatchNorm-ReLU(-MaxPool) step may follow
            k += 1
            continue
        if (fuse and isinstance(layer, BatchNorm2D) and isinstance(after, ReLU)
                and k + 2 < len(layers) and pools_2x2(layers[k + 2])):
            steps.append(BatchNormReLUMaxPoolStep(layer, after, layers[k + 2]))
            k += 3
            continue
        if fuse and isinstance(layer, BatchNorm) and isinstance(after, ReLU):
            steps.append(BatchNormReLUStep(layer, after))
            k += 2
            continue
        steps.append(ConvolutionStep(layer) if fuse and isinstance(layer, Conv2D)
                     else LayerStep(layer))
        k += 1
    return Plan(steps)
