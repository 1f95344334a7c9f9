"""Element-wise kernels: ReLU, dropout and its random numbers, Adam's step (flattened, split
across the cores).

The numba twins of the element-wise section of :mod:`numcnn.kernels.reference`.
Dropout's uniform numbers are made on the fly from one 64-bit seed with the
reference's SplitMix64 (its constants ``SPLITMIX_STEP``, ``SPLITMIX_MIX1``
and ``SPLITMIX_MIX2``, named once there), so that both backends draw the
same mask.
"""
import numpy as np
from numba import njit, prange

from .. import reference
from ..reference import SPLITMIX_MIX1, SPLITMIX_MIX2, SPLITMIX_STEP
from .compiling import kernel

__all__ = ["relu_forward", "relu_backward", "uniform_from_seed", "dropout_mask",
           "dropout_forward", "dropout_backward", "adam_update"]


@kernel(parallel=True)
def _relu_forward(x, y):
    for i in prange(x.size):
        v = x[i]
        y[i] = 0 if v <= 0 else v       # NaN stays NaN, as in max(x, 0)


def relu_forward(x):
    """``max(x, 0)``, any shape."""
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    _relu_forward(x.reshape(-1), y.reshape(-1))
    return y


@kernel(parallel=True)
def _relu_backward(dy, y, dx):
    for i in prange(dy.size):
        dx[i] = dy[i] if y[i] > 0 else 0


def relu_backward(dy, y):
    """``dy * (y > 0)``."""
    dy = np.ascontiguousarray(dy)
    dx = np.empty_like(dy)
    _relu_backward(dy.reshape(-1), np.ascontiguousarray(y).reshape(-1), dx.reshape(-1))
    return dx


@njit(inline="always")
def _splitmix_uniform(seed, i):
    """The ``i``-th uniform of :func:`numcnn.kernels.reference.uniform_from_seed` (0-based)."""
    z = seed + np.uint64(i + 1) * SPLITMIX_STEP
    z = (z ^ (z >> np.uint64(30))) * SPLITMIX_MIX1
    z = (z ^ (z >> np.uint64(27))) * SPLITMIX_MIX2
    z = z ^ (z >> np.uint64(31))
    return np.float32(z >> np.uint64(40)) * np.float32(2.0 ** -24)


@kernel(parallel=True)
def _uniform_from_seed(seed, u):
    for i in prange(u.size):
        u[i] = _splitmix_uniform(seed, i)


def uniform_from_seed(seed, shape):
    """Uniform float32 numbers in [0, 1) from one 64-bit seed; see the reference twin."""
    u = np.empty(shape, dtype=np.float32)
    _uniform_from_seed(np.uint64(seed), u.reshape(-1))
    return u


@kernel(parallel=True)
def _dropout(x, seed, p, scale, y):
    for i in prange(x.size):
        u = _splitmix_uniform(seed, i)  # made here, never stored
        y[i] = x[i] * scale if u >= p else x[i] * 0


def _dropout_call(x, seed, p):
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    _dropout(x.reshape(-1), np.uint64(seed), np.float32(p), x.dtype.type(1.0 / (1.0 - p)),
             y.reshape(-1))
    return y


def dropout_mask(seed, shape, p, dtype):
    """The mask that dropout_forward multiplies by, as an array; see the reference twin."""
    return _dropout_call(np.ones(shape, dtype=dtype), seed, p)


def dropout_forward(x, seed, p):
    """Inverted dropout, its uniform numbers made on the fly; see the reference twin."""
    return _dropout_call(x, seed, p)


def dropout_backward(dy, seed, p):
    """``dy * mask``, the mask made again from the seed; see the reference twin."""
    return _dropout_call(dy, seed, p)


@kernel(parallel=True)
def _adam_update(param, grad, m, v, decay, b1, one_minus_b1, b2, one_minus_b2, step_size,
                 correction2, eps):
    for i in prange(param.size):
        p = param[i]
        if decay != 0:
            p = p - decay * p
        g = grad[i]
        m_i = m[i] * b1 + one_minus_b1 * g
        v_i = v[i] * b2 + one_minus_b2 * g * g
        m[i] = m_i
        v[i] = v_i
        param[i] = p - step_size * m_i / (np.sqrt(v_i / correction2) + eps)


def adam_update(param, grad, m, v, lr, betas, eps, t, decay=0.0):
    """One step of Adam in place, one pass over the four arrays (the reference makes about
    a dozen); the same numbers, each operation rounded to param's dtype as NumPy rounds it.
    Arrays that are not contiguous floats of one dtype go to the reference."""
    arrays = (param, grad, m, v)
    if not (param.dtype.kind == "f" and all(a.flags.c_contiguous and a.dtype == param.dtype
                                            and a.shape == param.shape for a in arrays)):
        return reference.adam_update(param, grad, m, v, lr, betas, eps, t, decay)
    number = param.dtype.type
    b1, b2 = betas
    _adam_update(*(a.reshape(-1) for a in arrays), number(decay), number(b1), number(1 - b1),
                 number(b2), number(1 - b2), number(lr / (1 - b1 ** t)), number(1 - b2 ** t),
                 number(eps))
