"""Convolution by its definition: the numba twins of ``conv2d_direct`` and its backward pass.

On the vectors route (:mod:`numcnn.routes`) a 3x3 convolution with stride 1
runs the register-blocked kernels of :mod:`numcnn.kernels.jit.conv3x3`; every
other shape, and every shape on the portable route, runs the loops here: over
output rows, the innermost over an output row's columns, so that each weight
multiplies a contiguous run of pixels.
"""
import numpy as np
from numba import njit, prange

from ..reference import conv_output_size
from . import conv3x3
from .columns import channel_sums, valid_range
from .compiling import kernel

__all__ = ["conv2d_direct", "conv2d_direct_backward"]


@njit(inline="always")
def _axpy(target, w, source):
    """``target += w * source`` for two 2-D views of one shape (rows, then columns)."""
    for r in range(target.shape[0]):
        for k in range(target.shape[1]):  # indices from 0 on a row: vectorised
            target[r, k] += w * source[r, k]


@njit(inline="always")
def _dot(a, b, start):
    """``start + sum(a * b)`` for two 2-D views of one shape."""
    total = start
    for r in range(a.shape[0]):
        for k in range(a.shape[1]):
            total += a[r, k] * b[r, k]
    return total


@kernel(parallel=True)
def _conv2d_direct(x, W, b, stride, pad, y):
    N, C, H, Wd = x.shape
    F, _, KH, KW = W.shape
    OH, OW = y.shape[2:]
    for nf in prange(N * F):  # each (image, filter) plane is written by one iteration
        n = nf // F
        f = nf % F
        out = y[n, f]
        out[:, :] = b[f]
        for c in range(C):
            for i in range(KH):
                top, bottom = valid_range(i, stride, pad, H, OH)
                if bottom <= top:
                    continue
                rows = slice(top * stride + i - pad, (bottom - 1) * stride + i - pad + 1, stride)
                for j in range(KW):
                    left, right = valid_range(j, stride, pad, Wd, OW)
                    if right <= left:
                        continue
                    start, stop = left * stride + j - pad, (right - 1) * stride + j - pad + 1
                    # out[oh, ow] += W[f, c, i, j] * x[n, c, oh*s + i - p, ow*s + j - p]
                    if stride == 1:  # contiguous rows: a vectorised multiply-add
                        _axpy(out[top:bottom, left:right], W[f, c, i, j],
                              x[n, c, rows.start:rows.stop, start:stop])
                    else:
                        _axpy(out[top:bottom, left:right], W[f, c, i, j],
                              x[n, c, rows, start:stop:stride])


def conv2d_direct(x, W, b, stride, pad):
    """Convolution by its definition; see :func:`numcnn.kernels.reference.conv2d_direct`.

    On the vectors route, 3x3 kernels with stride 1 and padding up to 2 run
    :func:`numcnn.kernels.jit.conv3x3.forward` (a block of filters' outputs at
    a vector of columns kept in registers while every channel's nine taps add
    to it). Other shapes, and the portable route, run loops over output rows;
    each output element sums its products in the order (c, i, j).
    """
    x = np.ascontiguousarray(x)
    b = np.ascontiguousarray(b, dtype=x.dtype)
    if conv3x3.takes(W.shape, stride, pad):
        y = conv3x3.forward(x, np.ascontiguousarray(W, dtype=x.dtype), b, pad)
        if y is not None:                 # None: it did not compile, the loops below do it
            return y
    N, C, H, Wd = x.shape
    F, _, KH, KW = W.shape
    y = np.empty((N, F, conv_output_size(H, KH, stride, pad),
                  conv_output_size(Wd, KW, stride, pad)), dtype=x.dtype)
    _conv2d_direct(x, np.ascontiguousarray(W, dtype=x.dtype), b, stride, pad, y)
    return y


@kernel(parallel=True)
def _conv2d_direct_dx(dy, W, stride, pad, dx):
    N, C, H, Wd = dx.shape
    F, _, KH, KW = W.shape
    OH, OW = dy.shape[2:]
    for n in prange(N):  # each image owns dx[n]
        dx[n] = 0
        for f in range(F):
            for c in range(C):
                for i in range(KH):
                    top, bottom = valid_range(i, stride, pad, H, OH)
                    if bottom <= top:
                        continue
                    rows = slice(top * stride + i - pad, (bottom - 1) * stride + i - pad + 1,
                                 stride)
                    for j in range(KW):
                        left, right = valid_range(j, stride, pad, Wd, OW)
                        if right <= left:
                            continue
                        start, stop = left * stride + j - pad, (right - 1) * stride + j - pad + 1
                        if stride == 1:
                            _axpy(dx[n, c, rows.start:rows.stop, start:stop], W[f, c, i, j],
                                  dy[n, f, top:bottom, left:right])
                        else:
                            _axpy(dx[n, c, rows, start:stop:stride], W[f, c, i, j],
                                  dy[n, f, top:bottom, left:right])


@kernel(parallel=True, reassociate=True)
def _conv2d_direct_dw(dy, x, stride, pad, dW):
    N, C, H, Wd = x.shape
    F, _, KH, KW = dW.shape
    OH, OW = dy.shape[2:]
    for f in prange(F):  # each filter owns dW[f]
        total = np.zeros((C, KH, KW), dtype=np.float64)
        for n in range(N):
            g = dy[n, f]
            zero = g[0, 0] * 0  # one image's products summed in x's dtype (vectorised),
            for c in range(C):  # the images added up in float64
                for i in range(KH):
                    top, bottom = valid_range(i, stride, pad, H, OH)
                    if bottom <= top:
                        continue
                    rows = slice(top * stride + i - pad, (bottom - 1) * stride + i - pad + 1,
                                 stride)
                    for j in range(KW):
                        left, right = valid_range(j, stride, pad, Wd, OW)
                        if right <= left:
                            continue
                        start, stop = left * stride + j - pad, (right - 1) * stride + j - pad + 1
                        if stride == 1:
                            total[c, i, j] += _dot(g[top:bottom, left:right],
                                                   x[n, c, rows.start:rows.stop, start:stop], zero)
                        else:
                            total[c, i, j] += _dot(g[top:bottom, left:right],
                                                   x[n, c, rows, start:stop:stride], zero)
        for c in range(C):
            for i in range(KH):
                for j in range(KW):
                    dW[f, c, i, j] = total[c, i, j]


def conv2d_direct_backward(dy, x, W, stride, pad, input_grad=True):
    """Gradients of :func:`conv2d_direct`; see the reference twin.

    ``dW`` sums each image's products (vectorised) and adds the images in
    float64, so that it stays accurate over hundreds of thousands of terms.
    """
    x = np.ascontiguousarray(x)
    dy = np.ascontiguousarray(dy, dtype=x.dtype)
    W = np.ascontiguousarray(W, dtype=x.dtype)
    if conv3x3.takes(W.shape, stride, pad):
        gradients = conv3x3.backward(dy, x, W, pad, input_grad)
        if gradients is not None:         # None: it did not compile, the loops below do it
            return gradients
    dW = np.empty_like(W)
    _conv2d_direct_dw(dy, x, stride, pad, dW)
    dx = None
    if input_grad:
        dx = np.empty_like(x)
        _conv2d_direct_dx(dy, W, stride, pad, dx)
    N, F, OH, OW = dy.shape
    return dx, dW, channel_sums(dy.reshape(N, F, OH * OW)).astype(x.dtype)

