"""Element-wise and per-sample activations: ReLU and Softmax."""
import numpy as np

from ..backend import kernels
from .base import Layer


class ReLU(Layer):
    """Rectified linear unit, any shape.

    Notes
    -----
    Forward ``y = max(x, 0)``; backward ``dx = dy * [y > 0]`` (the gradient at
    exactly 0 is taken as 0). A NaN stays NaN, as in PyTorch, so that a broken
    value reaches the output's check instead of becoming a zero.

    Which code runs it: :func:`numcnn.kernels.reference.relu_forward` and
    ``relu_backward``, or their twins in :mod:`numcnn.kernels.jit.elementwise`
    on the ``"numba"`` backend; in ``fit``, ``evaluate`` and ``predict`` on
    ``"numba"`` a ReLU right after a BatchNorm runs inside the BatchNorm's
    fused kernel (see :class:`numcnn.layers.BatchNorm`).
    """

    saved = ("_y",)

    def _forward(self, x, training):
        self._y = kernels().relu_forward(x)
        return self._y

    def _backward(self, dy, input_grad=True):
        return kernels().relu_backward(dy, self._y)


def softmax(logits, axis=1):
    """Numerically stable softmax: subtract the row maximum before ``exp``."""
    shifted = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


class Softmax(Layer):
    """Softmax over the class axis: (N, K) scores -> (N, K) probabilities.

    Notes
    -----
    Forward ``y_k = exp(x_k - max x) / sum_j exp(x_j - max x)``.
    Backward (the Jacobian ``dy_k/dx_j = y_k (delta_kj - y_j)`` applied to
    ``dy``): ``dx = y * (dy - sum_k dy_k y_k)``.

    A numcnn model ends in logits (``Sequential`` refuses a final Softmax):
    the fused :class:`numcnn.losses.SoftmaxCrossEntropy` takes the logits, and
    ``Sequential.predict`` returns the probabilities. Use this layer on its
    own, e.g. to turn saved logits into probabilities.
    """

    sample_ndim = 1
    layout = "(N, K)"
    saved = ("_y",)

    def _forward(self, x, training):
        self._y = softmax(x, axis=1)
        return self._y

    def _backward(self, dy, input_grad=True):
        y = self._y
        return y * (dy - (dy * y).sum(axis=1, keepdims=True))
