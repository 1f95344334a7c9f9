"""Convolution by its definition: the numba twins of ``conv2d_direct`` and its backward pass.

On the vectors route (:mod:`numcnn.routes`) a 3x3 convolution with stride 1
(padding up to 2) runs the register-blocked kernels of
:mod:`numcnn.kernels.jit.conv3x3`, which read each input from cache nine
times instead of building a column matrix. Every other shape, and every shape
on the portable route, is computed as the layer computes it: im2col and one
matrix multiply (:mod:`numcnn.kernels.jit.columns`, BLAS), the same sums as
the definition's loops in another order.
"""
import numpy as np

from ..reference import conv_output_size
from . import conv3x3
from .columns import channel_sums, col2im, im2col, nchw_from_rows, rows_from_nchw

__all__ = ["conv2d_direct", "conv2d_direct_backward"]


def conv2d_direct(x, W, b, stride, pad):
    """Convolution by its definition; see :func:`numcnn.kernels.reference.conv2d_direct`.

    On the vectors route, 3x3 kernels with stride 1 and padding up to 2 run
    :func:`numcnn.kernels.jit.conv3x3.forward` (a block of filters' outputs at
    a vector of columns kept in registers while every channel's nine taps add
    to it). Other shapes, the portable route, and a 3x3 kernel that could not
    be compiled here, run im2col and one matrix multiply.
    """
    x = np.ascontiguousarray(x)
    W = np.ascontiguousarray(W, dtype=x.dtype)
    b = np.ascontiguousarray(b, dtype=x.dtype)
    if conv3x3.takes(W.shape, stride, pad):
        y = conv3x3.forward(x, W, b, pad)
        if y is not None:                 # None: it did not compile; the product below does it
            return y
    N, C, H, Wd = x.shape
    F, _, KH, KW = W.shape
    OH, OW = conv_output_size(H, KH, stride, pad), conv_output_size(Wd, KW, stride, pad)
    if N == 0:
        return np.empty((0, F, OH, OW), dtype=x.dtype)
    rows = W.reshape(F, -1) @ im2col(x, KH, KW, stride, pad)            # (F, N*OH*OW)
    return nchw_from_rows(rows, N, bias=b).reshape(N, F, OH, OW)


def conv2d_direct_backward(dy, x, W, stride, pad, input_grad=True):
    """Gradients of :func:`conv2d_direct`; see the reference twin.

    On the vectors route the 3x3 kernels' own gradients (``dW`` summed over
    fixed image shares in float64, whatever the thread count); otherwise the
    layer's products: ``dW = dY @ cols.T``, ``dx = col2im(W.T @ dY)``.
    """
    x = np.ascontiguousarray(x)
    dy = np.ascontiguousarray(dy, dtype=x.dtype)
    W = np.ascontiguousarray(W, dtype=x.dtype)
    if conv3x3.takes(W.shape, stride, pad):
        gradients = conv3x3.backward(dy, x, W, pad, input_grad)
        if gradients is not None:         # None: it did not compile; the products below do it
            return gradients
    N, F, OH, OW = dy.shape
    KH, KW = W.shape[2:]
    db = channel_sums(dy.reshape(N, F, OH * OW)).astype(x.dtype)
    if N == 0:
        return (np.zeros_like(x) if input_grad else None), np.zeros_like(W), db
    dY = rows_from_nchw(dy.reshape(N, F, OH * OW))                       # (F, N*OH*OW)
    cols = im2col(x, KH, KW, stride, pad)
    dW = (dY @ cols.T).reshape(W.shape)
    dx = col2im(W.reshape(F, -1).T @ dY, x.shape, KH, KW, stride, pad) if input_grad else None
    return dx, dW, db
