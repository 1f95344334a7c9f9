"""Batch normalisation, alone, followed by a ReLU, or by a ReLU and a 2x2 max pool.

The numba twins of the normalisation sections of :mod:`numcnn.kernels.reference`.
Statistics are summed in float64, one channel an iteration of ``prange``. The
BatchNorm-ReLU kernels make one pass fewer over the data each way than the
layers one by one, with the same sums in the same order; the BatchNorm-ReLU-
MaxPool kernels never write the ReLU's full-size output or its gradient, and
their backward sums run over the windows' maxima only (the same terms, in
another order: equal to rounding).
"""
import numpy as np
from numba import njit, prange

from .compiling import kernel
from .pooling import _window_maximum
from .vectors import VECTOR_BYTES

__all__ = ["batchnorm_forward", "batchnorm_inference", "batchnorm_backward",
           "batchnorm_relu_forward", "batchnorm_relu_inference", "batchnorm_relu_backward",
           "batchnorm_relu_maxpool2_forward", "batchnorm_relu_maxpool2_inference",
           "batchnorm_relu_maxpool2_backward"]


@kernel(parallel=True, reassociate=True)
def _channel_mean_var(x, mean, var):
    N, C, L = x.shape  # L = H * W
    M = N * L
    for c in prange(C):
        total = 0.0  # float64 accumulators
        for n in range(N):
            for i in range(L):
                total += x[n, c, i]
        mu = total / M
        sq = 0.0
        for n in range(N):
            for i in range(L):
                d = x[n, c, i] - mu
                sq += d * d
        mean[c] = mu
        var[c] = sq / M


@njit(inline="always")
def _affine_relu(v, s, t, zero):
    """``max(0, v * s + t)``, a NaN kept (``zero``: 0 of ``v``'s type, so that the select
    stays in float32)."""
    v = v * s + t
    return zero if v <= 0 else v


@kernel(parallel=True)
def _channel_affine(x, scale, shift, relu, zero, y):
    N, C, L = x.shape
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        s = scale[c]
        t = shift[c]
        for i in range(L):
            v = x[n, c, i] * s + t
            y[n, c, i] = (zero if v <= 0 else v) if relu else v   # relu: the ReLU after it, fused


def _affine_from_stats(gamma, beta, mean, var, eps, dtype):
    inv_std = 1.0 / np.sqrt(var.astype(np.float64) + eps)
    scale = (gamma * inv_std).astype(dtype)
    shift = (beta - mean * gamma * inv_std).astype(dtype)
    return scale, shift


def _batchnorm(x, gamma, beta, eps, relu):
    """Batch statistics, then the affine map (and the ReLU): y, mean, var."""
    x = np.ascontiguousarray(x)
    N, C = x.shape[:2]
    x3 = x.reshape(N, C, -1)
    mean = np.empty(C, dtype=np.float64)
    var = np.empty(C, dtype=np.float64)
    _channel_mean_var(x3, mean, var)
    scale, shift = _affine_from_stats(gamma, beta, mean, var, eps, x.dtype)
    y = np.empty_like(x)
    _channel_affine(x3, scale, shift, relu, x.dtype.type(0), y.reshape(N, C, -1))
    return y, mean.astype(x.dtype), var.astype(x.dtype)


def _batchnorm_fixed(x, gamma, beta, mean, var, eps, relu):
    """The affine map of fixed statistics (and the ReLU)."""
    x = np.ascontiguousarray(x)
    N, C = x.shape[:2]
    scale, shift = _affine_from_stats(gamma, beta, mean, var, eps, x.dtype)
    y = np.empty_like(x)
    _channel_affine(x.reshape(N, C, -1), scale, shift, relu, x.dtype.type(0),
                    y.reshape(N, C, -1))
    return y


def batchnorm_forward(x, gamma, beta, eps):
    """Batch-statistics normalisation; see the reference twin."""
    return _batchnorm(x, gamma, beta, eps, False)


def batchnorm_inference(x, gamma, beta, mean, var, eps):
    """Running-statistics normalisation; see the reference twin."""
    return _batchnorm_fixed(x, gamma, beta, mean, var, eps, False)


@kernel(parallel=True, reassociate=True)
def _batchnorm_backward(dy, y, x, gamma, mean, inv_std, dx, dgamma, dbeta):
    N, C, L = x.shape  # L = H * W
    M = N * L
    relu = y.shape[0] > 0  # y: the ReLU's output, when the ReLU after BatchNorm is fused
    for c in prange(C):
        mu = mean[c]
        s = inv_std[c]
        sum_dy = 0.0
        sum_dy_xc = 0.0  # sum of dy * (x - mu); times s it is sum(dy * xhat)
        for n in range(N):
            for i in range(L):
                g = (dy[n, c, i] if y[n, c, i] > 0 else 0) if relu else dy[n, c, i]
                sum_dy += g
                sum_dy_xc += g * (x[n, c, i] - mu)
        sum_dy_xhat = sum_dy_xc * s
        dbeta[c] = sum_dy
        dgamma[c] = sum_dy_xhat
        k = gamma[c] * s / M
        for n in range(N):
            for i in range(L):
                g = (dy[n, c, i] if y[n, c, i] > 0 else 0) if relu else dy[n, c, i]
                xhat = (x[n, c, i] - mu) * s
                dx[n, c, i] = k * (M * g - sum_dy - xhat * sum_dy_xhat)


def _batchnorm_gradients(dy, y, x, gamma, mean, var, eps):
    """dx, dgamma, dbeta of BatchNorm (and of the ReLU after it, given its output ``y``)."""
    x = np.ascontiguousarray(x)
    N, C = x.shape[:2]
    inv_std = 1.0 / np.sqrt(var.astype(np.float64) + eps)
    dx = np.empty_like(x)
    dgamma = np.empty(C, dtype=np.float64)
    dbeta = np.empty(C, dtype=np.float64)
    relu_out = (np.empty((0, 0, 0), dtype=x.dtype) if y is None
                else np.ascontiguousarray(y).reshape(N, C, -1))
    _batchnorm_backward(np.ascontiguousarray(dy).reshape(N, C, -1), relu_out,
                        x.reshape(N, C, -1), gamma.astype(np.float64), mean.astype(np.float64),
                        inv_std, dx.reshape(N, C, -1), dgamma, dbeta)
    return dx, dgamma.astype(x.dtype), dbeta.astype(x.dtype)


def batchnorm_backward(dy, x, gamma, mean, var, eps):
    """Training-mode BatchNorm gradients; see the reference twin."""
    return _batchnorm_gradients(dy, None, x, gamma, mean, var, eps)


# ---------------------------------------------------------------------------
# BatchNorm followed by ReLU, fused: one pass fewer each way
# ---------------------------------------------------------------------------
def batchnorm_relu_forward(x, gamma, beta, eps):
    """``max(0, BN(x))`` with batch statistics, in the same pass; see the reference twin."""
    return _batchnorm(x, gamma, beta, eps, True)


def batchnorm_relu_inference(x, gamma, beta, mean, var, eps):
    """``max(0, BN(x))`` with fixed statistics; see the reference twin."""
    return _batchnorm_fixed(x, gamma, beta, mean, var, eps, True)


def batchnorm_relu_backward(dy, y, x, gamma, mean, var, eps):
    """Gradients of ``max(0, BN(x))`` in training mode (the ReLU's mask read from ``y``)."""
    return _batchnorm_gradients(dy, y, x, gamma, mean, var, eps)


# ---------------------------------------------------------------------------
# BatchNorm, ReLU and a 2x2 max pool with stride 2, fused: the full-size
# output of the ReLU is never written, nor its gradient
# ---------------------------------------------------------------------------
@kernel(parallel=True)
def _affine_relu_maxpool2(x, scale, shift, zero, y, argmax):
    N, C, OH, OW = y.shape
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        s = scale[c]
        t = shift[c]
        for oh in range(OH):
            top = x[n, c, 2 * oh]
            bottom = x[n, c, 2 * oh + 1]
            out = y[n, c, oh]
            at = argmax[n, c, oh]
            for ow in range(OW):  # the window's four values after BatchNorm and ReLU
                out[ow], at[ow] = _window_maximum(_affine_relu(top[2 * ow], s, t, zero),
                                                  _affine_relu(top[2 * ow + 1], s, t, zero),
                                                  _affine_relu(bottom[2 * ow], s, t, zero),
                                                  _affine_relu(bottom[2 * ow + 1], s, t, zero))


@njit(inline="always")
def _at(where, v0, v1, v2, v3):
    """The value at position ``where`` (0..3) of a 2x2 window.

    A sum of the four values, each times 1 or 0, not a choice: the position of
    a window's maximum is a coin toss, and a choice compiled into branches
    mispredicts half the time. (An infinite or NaN value would spoil the sum;
    it has already made the channel's statistics, and all its gradients,
    infinite or NaN.)
    """
    return (v0 * np.float32(where == 0) + v1 * np.float32(where == 1)
            + v2 * np.float32(where == 2) + v3 * np.float32(where == 3))


@kernel(parallel=True, reassociate=True)
def _winner_sums(dy, argmax, y, x, mean, sum_dy, sum_dy_xc):
    """BatchNorm's two sums over the only inputs whose gradient is not zero: the windows'
    positive maxima (``sum_dy_xc``: of ``dy * (x - mean)``)."""
    N, C, OH, OW = dy.shape
    for c in prange(C):
        mu = mean[c]
        total = 0.0           # float64 accumulators
        total_xc = 0.0
        for n in range(N):
            for oh in range(OH):
                top = x[n, c, 2 * oh]
                bottom = x[n, c, 2 * oh + 1]
                for ow in range(OW):
                    g = dy[n, c, oh, ow] if y[n, c, oh, ow] > 0 else 0.0
                    winner = _at(argmax[n, c, oh, ow], top[2 * ow], top[2 * ow + 1],
                                 bottom[2 * ow], bottom[2 * ow + 1])
                    total += g
                    total_xc += g * (winner - mu)
        sum_dy[c] = total
        sum_dy_xc[c] = total_xc


#: Rows of at least this many windows get their input gradient one row at a
#: time (:func:`_gradient_row_by_row`), shorter ones a plane at a time
#: (:func:`_gradient_plane_then_winners`): four float32 vectors of windows. The
#: compiler vectorises the row loop, but starts its vector code only on rows of
#: about four vectors or more; on shorter rows the plane's straight line first,
#: then the winners' terms, took a third to a half of the time (AMD EPYC Zen 3,
#: AVX2: planes of 32x32 and 16x16), and on rows of 32 windows twice as long.
LONG_ROWS = 4 * (VECTOR_BYTES // 4)


@njit(inline="always")
def _gradient_plane_then_winners(dy, argmax, y, x, mu, a1, a0, k, zero, dx):
    """One plane (H, W) of the input gradient: the straight line everywhere, then each
    window's winner its own term, while the plane is still in cache."""
    OH, OW = dy.shape
    H, W = x.shape
    for h in range(H):
        for w in range(W):
            dx[h, w] = a1 * (x[h, w] - mu) + a0
    for oh in range(OH):
        for ow in range(OW):
            g = k * dy[oh, ow] if y[oh, ow] > 0 else zero
            a = argmax[oh, ow]
            dx[2 * oh + a // 2, 2 * ow + a % 2] += g


@njit(inline="always")
def _gradient_row_by_row(dy, argmax, y, x, mu, a1, a0, k, zero, dx):
    """The same plane, one row at a time: each input its line, plus its term if it won."""
    OH, OW = dy.shape
    H, W = x.shape
    for h in range(H):
        row = x[h]
        out = dx[h]
        if h >= 2 * OH:               # a last row no window covers
            for w in range(W):
                out[w] = a1 * (row[w] - mu) + a0
            continue
        oh = h // 2
        i = 2 * (h % 2)               # the window positions of this row: i and i + 1
        for ow in range(OW):
            g = k * dy[oh, ow] if y[oh, ow] > 0 else zero
            a = argmax[oh, ow]
            out[2 * ow] = a1 * (row[2 * ow] - mu) + a0 + (g if a == i else zero)
            out[2 * ow + 1] = a1 * (row[2 * ow + 1] - mu) + a0 + (g if a == i + 1 else zero)
        for w in range(2 * OW, W):    # a last column no window covers
            out[w] = a1 * (row[w] - mu) + a0


@kernel(parallel=True)
def _pooled_batchnorm_input_grad(dy, argmax, y, x, mean, slope, offset, gain, zero, dx):
    """``dx = slope (x - mean) + offset`` everywhere, plus ``gain dy`` at the positive maxima."""
    N, C, OH, OW = dy.shape
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        if OW < LONG_ROWS:
            _gradient_plane_then_winners(dy[n, c], argmax[n, c], y[n, c], x[n, c], mean[c],
                                         slope[c], offset[c], gain[c], zero, dx[n, c])
        else:
            _gradient_row_by_row(dy[n, c], argmax[n, c], y[n, c], x[n, c], mean[c], slope[c],
                                 offset[c], gain[c], zero, dx[n, c])


def _pooled_shape(x):
    N, C, H, W = x.shape
    if H < 2 or W < 2:
        raise ValueError(f"a 2x2 max pool needs an input of at least 2x2; got {H}x{W}")
    return N, C, H // 2, W // 2


def _affine_relu_pooled(x, scale, shift):
    y = np.empty(_pooled_shape(x), dtype=x.dtype)
    argmax = np.empty(y.shape, dtype=np.int32)
    _affine_relu_maxpool2(x, scale, shift, x.dtype.type(0), y, argmax)
    return y, argmax


def batchnorm_relu_maxpool2_forward(x, gamma, beta, eps):
    """A 2x2 max pool (stride 2) of ``max(0, BN(x))``, batch statistics; see the reference twin."""
    x = np.ascontiguousarray(x)
    N, C = x.shape[:2]
    _pooled_shape(x)
    mean = np.empty(C, dtype=np.float64)
    var = np.empty(C, dtype=np.float64)
    _channel_mean_var(x.reshape(N, C, -1), mean, var)
    scale, shift = _affine_from_stats(gamma, beta, mean, var, eps, x.dtype)
    y, argmax = _affine_relu_pooled(x, scale, shift)
    return y, argmax, mean.astype(x.dtype), var.astype(x.dtype)


def batchnorm_relu_maxpool2_inference(x, gamma, beta, mean, var, eps):
    """The same with fixed statistics (no argmax); see the reference twin."""
    x = np.ascontiguousarray(x)
    scale, shift = _affine_from_stats(gamma, beta, mean, var, eps, x.dtype)
    return _affine_relu_pooled(x, scale, shift)[0]


def batchnorm_relu_maxpool2_backward(dy, argmax, y, x, gamma, mean, var, eps):
    """Gradients of :func:`batchnorm_relu_maxpool2_forward` (``y``, ``argmax``: its outputs).

    BatchNorm's backward, ``dx = k (M g - sum(g) - xhat sum(g xhat))`` with
    ``k = gamma inv_std / M``, where ``g``, the gradient after the ReLU and
    the pool, is ``dy`` at a window's positive maximum and zero elsewhere: the
    sums run over the pooled positions only, and ``dx`` is a straight line in
    ``x - mean`` everywhere, plus ``k M dy`` at those maxima.
    """
    x = np.ascontiguousarray(x)
    dy, argmax, y = (np.ascontiguousarray(a) for a in (dy, argmax, y))
    N, C, H, W = x.shape
    mean = mean.astype(np.float64)
    inv_std = 1.0 / np.sqrt(var.astype(np.float64) + eps)
    sum_dy = np.empty(C, dtype=np.float64)
    sum_dy_xc = np.empty(C, dtype=np.float64)
    _winner_sums(dy, argmax, y, x, mean, sum_dy, sum_dy_xc)
    sum_dy_xhat = sum_dy_xc * inv_std                       # dgamma
    k = gamma.astype(np.float64) * inv_std / (N * H * W)
    slope, offset, gain = -k * inv_std * sum_dy_xhat, -k * sum_dy, k * (N * H * W)
    # The map is applied in x's dtype (float32 for a float32 model): within a unit in
    # the last place of its largest term of the float64 sum batchnorm_backward rounds once.
    dx = np.empty_like(x)
    _pooled_batchnorm_input_grad(dy, argmax, y, x, *(a.astype(x.dtype) for a in
                                                     (mean, slope, offset, gain)),
                                 x.dtype.type(0), dx)
    return dx, sum_dy_xhat.astype(x.dtype), sum_dy.astype(x.dtype)
