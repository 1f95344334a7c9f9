"""im2col and col2im, and the layout and bias kernels around a convolution's matrix multiply.

The numba twins of the same section of :mod:`numcnn.kernels.reference`. The
matrix multiply itself stays in BLAS; these build its column matrix, fold the
gradient back, and move its result between the GEMM's layout ``(F, N * P)``
and NCHW. ``prange`` runs over images: each owns its part of the output, so
col2im is race-free.
"""
import numpy as np
from numba import njit, prange

from ..reference import conv_output_size
from .compiling import kernel

__all__ = ["im2col", "col2im", "nchw_from_rows", "rows_from_nchw", "add_channel_bias",
           "channel_sums"]


@njit(inline="always")
def _valid_range(offset, stride, pad, size, out_size):
    """The outputs ``o`` whose input ``o * stride + offset - pad`` lies in [0, size)."""
    lo = max(0, (pad - offset + stride - 1) // stride)
    hi = min(out_size, (size - 1 - offset + pad) // stride + 1)
    return lo, hi


@kernel(parallel=True)
def _im2col(x, KH, KW, stride, pad, OH, OW, cols):
    N, C, H, W = x.shape
    P = OH * OW
    for n in prange(N):
        for c in range(C):
            for i in range(KH):
                for j in range(KW):
                    k = (c * KH + i) * KW + j
                    left, right = _valid_range(j, stride, pad, W, OW)   # columns inside the image
                    right = max(left, right)
                    start = left * stride + j - pad
                    for oh in range(OH):
                        ih = oh * stride + i - pad
                        row = cols[k, n * P + oh * OW:n * P + (oh + 1) * OW]
                        if ih < 0 or ih >= H:
                            row[:] = 0
                            continue
                        row[:left] = 0
                        row[right:] = 0
                        source = x[n, c, ih]
                        if stride == 1:   # a contiguous copy (vectorised)
                            for ow in range(right - left):
                                row[left + ow] = source[start + ow]
                        else:
                            for ow in range(right - left):
                                row[left + ow] = source[start + ow * stride]


def im2col(x, KH, KW, stride, pad, out=None):
    """Unfold patches into columns; see :func:`numcnn.kernels.reference.im2col`."""
    N, C, H, W = x.shape
    OH = conv_output_size(H, KH, stride, pad)
    OW = conv_output_size(W, KW, stride, pad)
    if out is None:
        out = np.empty((C * KH * KW, N * OH * OW), dtype=x.dtype)
    _im2col(np.ascontiguousarray(x), KH, KW, stride, pad, OH, OW, out)
    return out


@kernel(parallel=True)
def _col2im(cols, KH, KW, stride, pad, OH, OW, dx):
    N, C, H, W = dx.shape
    P = OH * OW
    for n in prange(N):  # each image owns dx[n]: no two iterations collide
        dx[n] = 0
        for c in range(C):
            for i in range(KH):
                for j in range(KW):
                    k = (c * KH + i) * KW + j
                    left, right = _valid_range(j, stride, pad, W, OW)
                    start = left * stride + j - pad
                    for oh in range(OH):
                        ih = oh * stride + i - pad
                        if ih < 0 or ih >= H:
                            continue
                        row = cols[k, n * P + oh * OW:n * P + (oh + 1) * OW]
                        target = dx[n, c, ih]
                        if stride == 1:   # contiguous: vectorised
                            for ow in range(right - left):
                                target[start + ow] += row[left + ow]
                        else:
                            for ow in range(right - left):
                                target[start + ow * stride] += row[left + ow]


def col2im(cols, x_shape, KH, KW, stride, pad, out=None):
    """Fold columns into an image; see :func:`numcnn.kernels.reference.col2im`."""
    N, C, H, W = x_shape
    OH = conv_output_size(H, KH, stride, pad)
    OW = conv_output_size(W, KW, stride, pad)
    if out is None:
        out = np.empty(x_shape, dtype=cols.dtype)
    _col2im(np.ascontiguousarray(cols), KH, KW, stride, pad, OH, OW, out)
    return out


@kernel(parallel=True)
def _nchw_from_rows(y_rows, bias, out):
    N, F, P = out.shape
    for n in prange(N):
        for f in range(F):
            target = out[n, f]
            source = y_rows[f, n * P:(n + 1) * P]
            b = bias[f]
            for p in range(P):
                target[p] = source[p] + b


def nchw_from_rows(y_rows, N, out=None, bias=None):
    """(F, N * P) -> (N, F, P), plus ``bias[f]`` if given; see the reference twin."""
    F = y_rows.shape[0]
    P = y_rows.shape[1] // N
    if out is None:
        out = np.empty((N, F, P), dtype=y_rows.dtype)
    _nchw_from_rows(y_rows, np.zeros(F, y_rows.dtype) if bias is None else bias, out)
    return out


@kernel(parallel=True)
def _rows_from_nchw(y, out):
    N, F, P = y.shape
    for n in prange(N):
        for f in range(F):
            out[f, n * P:(n + 1) * P] = y[n, f, :]


def rows_from_nchw(y, out=None):
    """(N, F, P) -> (F, N * P); see the reference twin."""
    N, F, P = y.shape
    if out is None:
        out = np.empty((F, N * P), dtype=y.dtype)
    _rows_from_nchw(np.ascontiguousarray(y), out)
    return out


@kernel(parallel=True)
def _add_channel_bias(y, b):
    N, F, P = y.shape
    for n in prange(N):
        for f in range(F):
            y[n, f, :] += b[f]


def add_channel_bias(y, b):
    """In place ``y[n, f, :] += b[f]`` for y of shape (N, F, P)."""
    _add_channel_bias(y, b)
    return y


@kernel(parallel=True, reassociate=True)
def _channel_sums(y, sums):
    N, F, P = y.shape
    for f in prange(F):  # each channel owns sums[f]
        total = 0.0
        for n in range(N):
            for p in range(P):
                total += y[n, f, p]
        sums[f] = total


def channel_sums(y):
    """Per-channel sums in float64; see :func:`numcnn.kernels.reference.channel_sums`."""
    sums = np.empty(y.shape[1], dtype=np.float64)
    _channel_sums(np.ascontiguousarray(y), sums)
    return sums


