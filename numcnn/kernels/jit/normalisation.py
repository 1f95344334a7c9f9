"""Batch normalisation, alone or followed by a ReLU.

The numba twins of the normalisation sections of :mod:`numcnn.kernels.reference`.
Statistics are summed in float64, one channel an iteration of ``prange``; the
fused kernels make one pass fewer over the data each way than the layers one
by one, with the same sums in the same order.
"""
import numpy as np
from numba import prange

from .compiling import kernel

__all__ = ["batchnorm_forward", "batchnorm_inference", "batchnorm_backward",
           "batchnorm_relu_forward", "batchnorm_relu_inference", "batchnorm_relu_backward"]


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


@kernel(parallel=True)
def _channel_affine(x, scale, shift, relu, y):
    N, C, L = x.shape
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        s = scale[c]
        t = shift[c]
        for i in range(L):
            v = x[n, c, i] * s + t
            y[n, c, i] = (0 if v <= 0 else v) if relu else v   # relu: the ReLU after it, fused


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
    _channel_affine(x3, scale, shift, relu, y.reshape(N, C, -1))
    return y, mean.astype(x.dtype), var.astype(x.dtype)


def _batchnorm_fixed(x, gamma, beta, mean, var, eps, relu):
    """The affine map of fixed statistics (and the ReLU)."""
    x = np.ascontiguousarray(x)
    N, C = x.shape[:2]
    scale, shift = _affine_from_stats(gamma, beta, mean, var, eps, x.dtype)
    y = np.empty_like(x)
    _channel_affine(x.reshape(N, C, -1), scale, shift, relu, y.reshape(N, C, -1))
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
