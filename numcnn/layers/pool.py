"""Max pooling."""
from ..backend import kernels
from ..kernels.reference import conv_output_size
from .base import Layer


class MaxPool2D(Layer):
    """Max pooling over ``K x K`` windows (no padding).

    Parameters
    ----------
    kernel_size : int
        ``K``, the window side.
    stride : int, optional
        Step between windows; defaults to ``kernel_size`` (non-overlapping).

    Shapes
    ------
    x : (N, C, H, W) -> y : (N, C, OH, OW), ``OH = (H - K) // stride + 1``.

    Notes
    -----
    Forward: ``y[n, c, oh, ow] = max_{i, j < K} x[n, c, s*oh + i, s*ow + j]``;
    the position of the maximum (the first one on ties) is kept.
    Backward: each ``dy`` goes, whole, to the input that won its window; every
    other input of the window gets zero (the max is locally the identity on the
    winner and constant in the others). Overlapping windows add up.

    A NaN is the maximum of its window (as in PyTorch), so that it reaches the
    output.

    Which code runs it: :func:`numcnn.kernels.reference.maxpool_forward` and
    ``maxpool_backward``, or their twins in :mod:`numcnn.kernels.jit.pooling`
    on the ``"numba"`` backend (2x2 windows with stride 2 have a kernel of
    their own there). In ``fit``, ``evaluate`` and ``predict`` on ``"numba"``,
    a 2x2 pool with stride 2 after a BatchNorm2D and a ReLU runs fused with
    them (:class:`numcnn.plan.BatchNormReLUMaxPoolStep`).
    """

    sample_ndim = 3
    layout = "(N, C, H, W)"
    saved = ("_argmax",)

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        stride = kernel_size if stride is None else stride
        for label, value in [("kernel_size", kernel_size), ("stride", stride)]:
            if int(value) != value or value < 1:
                raise ValueError(f"MaxPool2D: {label} must be a positive integer; got {value!r}")
        self.K, self.stride = int(kernel_size), int(stride)

    def config(self):
        return dict(kernel_size=self.K, stride=self.stride)

    def output_shape(self, input_shape):
        self.check_sample_shape(input_shape)
        C, H, W = input_shape
        if H < self.K or W < self.K:
            raise ValueError(f"{self.describe()}: input {H}x{W} is smaller than the "
                             f"{self.K}x{self.K} window")
        return (C, conv_output_size(H, self.K, self.stride, 0),
                conv_output_size(W, self.K, self.stride, 0))

    def _forward(self, x, training):
        y, self._argmax = kernels().maxpool_forward(x, self.K, self.stride)
        self._x_shape = x.shape
        return y

    def _backward(self, dy, input_grad=True):
        return kernels().maxpool_backward(dy, self._argmax, self._x_shape, self.K, self.stride)
