"""Max pooling: the numba twins of the pooling section of :mod:`numcnn.kernels.reference`.

``prange`` runs over (image, channel) planes: each iteration owns its plane of
the output, so the backward pass is race-free. 2x2 windows with stride 2 have
kernels of their own (the same comparisons, written out). A NaN in a window
is its maximum, as in the reference.
"""
import numpy as np
from numba import njit, prange

from ..reference import conv_output_size
from .compiling import kernel

__all__ = ["maxpool_forward", "maxpool_backward"]


@njit(inline="always")
def _bigger(v, best):
    """Whether ``v`` takes the window's maximum from ``best``: larger, or the first NaN
    (a NaN is the maximum, as in PyTorch, so that it reaches the output)."""
    return v > best or (v != v and best == best)


@kernel(parallel=True)
def _maxpool_forward(x, K, stride, y, argmax):
    N, C, OH, OW = y.shape
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        for oh in range(OH):
            for ow in range(OW):
                h0 = oh * stride
                w0 = ow * stride
                best = x[n, c, h0, w0]
                best_at = 0
                for i in range(K):
                    for j in range(K):
                        v = x[n, c, h0 + i, w0 + j]
                        if _bigger(v, best):  # strict: the first maximum wins ties
                            best = v
                            best_at = i * K + j
                y[n, c, oh, ow] = best
                argmax[n, c, oh, ow] = best_at


@kernel(parallel=True)
def _maxpool2_forward(x, y, argmax):
    N, C, OH, OW = y.shape
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        for oh in range(OH):
            top = x[n, c, 2 * oh]
            bottom = x[n, c, 2 * oh + 1]
            out = y[n, c, oh]
            at = argmax[n, c, oh]
            for ow in range(OW):  # the four values of a 2x2 window, in the general order
                best = top[2 * ow]
                where = 0
                v = top[2 * ow + 1]
                if _bigger(v, best):
                    best, where = v, 1
                v = bottom[2 * ow]
                if _bigger(v, best):
                    best, where = v, 2
                v = bottom[2 * ow + 1]
                if _bigger(v, best):
                    best, where = v, 3
                out[ow] = best
                at[ow] = where


@kernel(parallel=True)
def _maxpool2_backward(dy, argmax, dx):
    N, C, OH, OW = dy.shape
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        dx[n, c, 2 * OH:, :] = 0  # rows and columns no window covers
        dx[n, c, :, 2 * OW:] = 0
        for oh in range(OH):
            top = dx[n, c, 2 * oh]
            bottom = dx[n, c, 2 * oh + 1]
            g = dy[n, c, oh]
            at = argmax[n, c, oh]
            for ow in range(OW):
                a = at[ow]
                v = g[ow]
                top[2 * ow] = v if a == 0 else 0
                top[2 * ow + 1] = v if a == 1 else 0
                bottom[2 * ow] = v if a == 2 else 0
                bottom[2 * ow + 1] = v if a == 3 else 0


def maxpool_forward(x, K, stride):
    """Max pooling; see :func:`numcnn.kernels.reference.maxpool_forward`.

    2x2 windows with stride 2, the usual case, have a kernel of their own
    (the same comparisons, written out: about eight times faster).
    """
    N, C, H, W = x.shape
    OH = conv_output_size(H, K, stride, 0)
    OW = conv_output_size(W, K, stride, 0)
    y = np.empty((N, C, OH, OW), dtype=x.dtype)
    argmax = np.empty((N, C, OH, OW), dtype=np.int32)
    if K == stride == 2:
        _maxpool2_forward(np.ascontiguousarray(x), y, argmax)
    else:
        _maxpool_forward(np.ascontiguousarray(x), K, stride, y, argmax)
    return y, argmax


@kernel(parallel=True)
def _maxpool_backward(dy, argmax, K, stride, dx):
    N, C, OH, OW = dy.shape
    H, W = dx.shape[2:]
    tiled = stride == K  # windows tile the image: every input is written exactly once
    for nc in prange(N * C):  # each (image, channel) plane is written by one iteration
        n = nc // C
        c = nc % C
        if tiled:
            dx[n, c, OH * K:, :] = 0  # rows and columns no window covers
            dx[n, c, :, OW * K:] = 0
            for oh in range(OH):
                for ow in range(OW):
                    a = argmax[n, c, oh, ow]
                    g = dy[n, c, oh, ow]
                    for i in range(K):
                        for j in range(K):
                            dx[n, c, oh * K + i, ow * K + j] = g if i * K + j == a else 0
        else:  # overlapping windows add up: clear the plane, then accumulate
            dx[n, c] = 0
            for oh in range(OH):
                for ow in range(OW):
                    a = argmax[n, c, oh, ow]
                    dx[n, c, oh * stride + a // K, ow * stride + a % K] += dy[n, c, oh, ow]


def maxpool_backward(dy, argmax, x_shape, K, stride):
    """Route gradients to the maxima; see the reference twin."""
    dx = np.empty(x_shape, dtype=dy.dtype)
    if K == stride == 2:
        _maxpool2_backward(np.ascontiguousarray(dy), np.ascontiguousarray(argmax), dx)
    else:
        _maxpool_backward(np.ascontiguousarray(dy), argmax, K, stride, dx)
    return dx


