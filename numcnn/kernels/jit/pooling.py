"""Max pooling: the numba twins of the pooling section of :mod:`numcnn.kernels.reference`.

``prange`` runs over (image, channel) planes: each iteration owns its plane of
the output, so the backward pass is race-free. 2x2 windows with stride 2 have
kernels of their own (the four values compared pairwise, without a branch on
the data: :func:`_window_maximum`). A NaN in a window is its maximum, as in
the reference.
"""
import numpy as np
from numba import njit, prange

from ..reference import conv_output_size
from .compiling import kernel

__all__ = ["maxpool_forward", "maxpool_backward"]


@njit(inline="always")
def _bigger(v, best):
    """Whether ``v`` takes the window's maximum from ``best``: larger, or the first NaN
    (a NaN is the maximum, as in PyTorch, so that it reaches the output).

    ``|`` and ``&``, not ``or`` and ``and``: no branch to mispredict (on a
    ReLU's output, which value wins a window is a coin toss).
    """
    return (v > best) | ((v != v) & (best == best))


@njit(inline="always")
def _window_maximum_in_order(v0, v1, v2, v3):
    """The largest of a 2x2 window's four values and its position 0..3: each value
    compared in turn with the best so far (``_bigger``)."""
    best, where = v0, 0
    if _bigger(v1, best):
        best, where = v1, 1
    if _bigger(v2, best):
        best, where = v2, 2
    if _bigger(v3, best):
        best, where = v3, 3
    return best, where


@njit(inline="always")
def _window_maximum(v0, v1, v2, v3):
    """What :func:`_window_maximum_in_order` gives, without a branch on the data.

    Which value wins a window of a ReLU's output is a coin toss that no branch
    predictor guesses: on rows of 8 to 20 windows, where the compiler's vector
    loop does not start, branches made the kernel four to five times slower.
    So: each row's larger value, then the larger of the two, the position
    counted in float arithmetic (kept free of branches by the compiler; exact
    for 0..3). Strict comparisons keep the first maximum on ties, as the
    chain does. A window holding a NaN (rare: one well-predicted branch)
    takes the chain, which makes the first NaN the maximum.
    """
    total = v0 + v1 + v2 + v3
    if total != total:      # a NaN among them (or +inf with -inf): the chain decides
        return _window_maximum_in_order(v0, v1, v2, v3)
    top = v1 if v1 > v0 else v0
    bottom = v3 if v3 > v2 else v2
    best = bottom if bottom > top else top
    right_on_top = np.float32(v1 > v0)
    right_below = np.float32(v3 > v2)
    below = np.float32(bottom > top)
    where = right_on_top + below * (2 + right_below - right_on_top)
    return best, np.int32(where)


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
                out[ow], at[ow] = _window_maximum(top[2 * ow], top[2 * ow + 1],
                                                  bottom[2 * ow], bottom[2 * ow + 1])


@kernel(parallel=True)
def _maxpool2_backward(dy, argmax, zero, dx):
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
                top[2 * ow] = v if a == 0 else zero    # zero: of dx's type (a literal 0
                top[2 * ow + 1] = v if a == 1 else zero   # would make each select float64)
                bottom[2 * ow] = v if a == 2 else zero
                bottom[2 * ow + 1] = v if a == 3 else zero


def maxpool_forward(x, K, stride):
    """Max pooling; see :func:`numcnn.kernels.reference.maxpool_forward`.

    2x2 windows with stride 2, the usual case, have a kernel of their own
    (the four values compared pairwise, without a branch on the data).
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
        _maxpool2_backward(np.ascontiguousarray(dy), np.ascontiguousarray(argmax),
                           dx.dtype.type(0), dx)
    else:
        _maxpool_backward(np.ascontiguousarray(dy), argmax, K, stride, dx)
    return dx


