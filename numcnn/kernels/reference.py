"""Plain-NumPy kernels: the readable twins of :mod:`numcnn.kernels.jit`.

Read this file to learn how each layer computes; run :mod:`numcnn.kernels.jit`
to train. Both modules define the same functions with the same signatures and
return the same numbers (the tests prove it), so a whole model can run on either
backend (:func:`numcnn.set_backend`).

Layout conventions
------------------
Images are NCHW: ``x[n, c, h, w]``. Names follow the CS231n notation:
``N`` batch, ``C`` channels, ``H, W`` input height and width, ``KH, KW`` kernel
height and width, ``OH, OW`` output height and width, ``P = OH * OW`` output
positions per image.

The column matrix of ``im2col`` has shape ``(C * KH * KW, N * OH * OW)``:
row ``k = (c * KH + i) * KW + j`` holds the input pixel that kernel tap
``(c, i, j)`` sees, column ``n * P + oh * OW + ow`` is one output position of
one image. With it a convolution is a single matrix multiply
``W.reshape(F, C * KH * KW) @ cols``.
"""
import numpy as np


def conv_output_size(size, kernel, stride, pad):
    """Output length of a convolution or pooling along one axis."""
    return (size + 2 * pad - kernel) // stride + 1


# ---------------------------------------------------------------------------
# Convolution by its definition: direct loops
# ---------------------------------------------------------------------------
def conv2d_direct(x, W, b, stride, pad):
    """A convolution computed straight from its definition, one output position at a time.

    ``y[n, f, oh, ow] = b[f] + sum over c, i, j of W[f, c, i, j] * xp[n, c, s*oh + i, s*ow + j]``
    where ``xp`` is ``x`` with ``pad`` zeros on every side. This is the
    definition the faster paths are checked against: im2col + one matrix
    multiply (the Conv2D layer) gives the same numbers.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    W : ndarray, shape (F, C, KH, KW)
    b : ndarray, shape (F,)
    stride, pad : int

    Returns
    -------
    y : ndarray, shape (N, F, OH, OW)
    """
    N, C, H, Wd = x.shape
    F, _, KH, KW = W.shape
    OH = conv_output_size(H, KH, stride, pad)
    OW = conv_output_size(Wd, KW, stride, pad)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    y = np.empty((N, F, OH, OW), dtype=x.dtype)
    for oh in range(OH):
        for ow in range(OW):
            patch = xp[:, :, oh * stride:oh * stride + KH, ow * stride:ow * stride + KW]  # (N, C, KH, KW)
            y[:, :, oh, ow] = np.tensordot(patch, W, axes=([1, 2, 3], [1, 2, 3])) + b     # (N, F)
    return y


def conv2d_direct_backward(dy, x, W, stride, pad, input_grad=True):
    """Gradients of :func:`conv2d_direct`, from the same loop over output positions.

    Each output ``y[n, f, oh, ow]`` depends on one patch of ``xp`` through
    ``W[f]``, so its gradient ``g = dy[n, f, oh, ow]`` adds ``g * patch`` to
    ``dW[f]`` and ``g * W[f]`` to that patch of ``dxp``; ``db[f]`` is the sum
    of ``dy[:, f]``.

    Parameters
    ----------
    dy : ndarray, shape (N, F, OH, OW)
    x : ndarray, shape (N, C, H, W)
    W : ndarray, shape (F, C, KH, KW)
    stride, pad : int
    input_grad : bool
        False skips ``dx`` (a first layer needs none) and returns None for it.

    Returns
    -------
    dx : ndarray, shape (N, C, H, W), or None
    dW : ndarray, shape (F, C, KH, KW)
    db : ndarray, shape (F,)
    """
    N, C, H, Wd = x.shape
    F, _, KH, KW = W.shape
    OH, OW = dy.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp = np.zeros_like(xp)
    dW = np.zeros_like(W)
    for oh in range(OH):
        for ow in range(OW):
            rows = slice(oh * stride, oh * stride + KH)
            cols = slice(ow * stride, ow * stride + KW)
            g = dy[:, :, oh, ow]                                            # (N, F)
            dW += np.tensordot(g, xp[:, :, rows, cols], axes=([0], [0]))    # (F, C, KH, KW)
            dxp[:, :, rows, cols] += np.tensordot(g, W, axes=([1], [0]))    # (N, C, KH, KW)
    db = dy.sum(axis=(0, 2, 3))
    return (dxp[:, :, pad:pad + H, pad:pad + Wd] if input_grad else None), dW, db


# ---------------------------------------------------------------------------
# im2col / col2im
# ---------------------------------------------------------------------------
def im2col(x, KH, KW, stride, pad, out=None):
    """Unfold image patches into the columns of a matrix.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    KH, KW : int
        Kernel height and width.
    stride, pad : int
        Step between patches and zero padding on every side.
    out : ndarray, shape (C * KH * KW, N * OH * OW), optional
        Buffer to write into (it is fully overwritten).

    Returns
    -------
    cols : ndarray, shape (C * KH * KW, N * OH * OW)
    """
    N, C, H, W = x.shape
    OH = conv_output_size(H, KH, stride, pad)
    OW = conv_output_size(W, KW, stride, pad)
    if out is None:
        out = np.empty((C * KH * KW, N * OH * OW), dtype=x.dtype)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = out.reshape(C, KH, KW, N, OH, OW)  # a view: writes land in `out`
    for i in range(KH):
        for j in range(KW):
            # Tap (i, j) sees a strided window of the padded image.
            window = xp[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride]
            cols[:, i, j] = window.transpose(1, 0, 2, 3)  # (C, N, OH, OW)
    return out


def col2im(cols, x_shape, KH, KW, stride, pad, out=None):
    """Fold columns back into an image, summing overlapping patches.

    The adjoint of :func:`im2col`: if ``cols = im2col(x)`` then
    ``sum(cols * g) == sum(x * col2im(g))`` for any ``g``. This is exactly the
    gradient of im2col, so ``dx = col2im(dcols)``.

    Parameters
    ----------
    cols : ndarray, shape (C * KH * KW, N * OH * OW)
    x_shape : tuple (N, C, H, W)
    KH, KW, stride, pad : int
    out : ndarray, shape (N, C, H, W), optional
        Buffer to write into (it is fully overwritten).

    Returns
    -------
    x : ndarray, shape (N, C, H, W)
    """
    N, C, H, W = x_shape
    OH = conv_output_size(H, KH, stride, pad)
    OW = conv_output_size(W, KW, stride, pad)
    xp = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=cols.dtype)
    cols6 = cols.reshape(C, KH, KW, N, OH, OW)
    for i in range(KH):
        for j in range(KW):
            xp[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride] += \
                cols6[:, i, j].transpose(1, 0, 2, 3)
    if out is None:
        out = np.empty(x_shape, dtype=cols.dtype)
    out[...] = xp[:, :, pad:pad + H, pad:pad + W]
    return out


def nchw_from_rows(y_rows, N, out=None, bias=None):
    """Turn a GEMM result of shape (F, N * P) into NCHW order (N, F, P).

    Parameters
    ----------
    y_rows : ndarray, shape (F, N * P)
    N : int
    out : ndarray, shape (N, F, P), optional
    bias : ndarray, shape (F,), optional
        Added to every value of its channel on the way (``out[n, f, :] += bias[f]``).

    Returns
    -------
    y : ndarray, shape (N, F, P)
    """
    F = y_rows.shape[0]
    P = y_rows.shape[1] // N
    if out is None:
        out = np.empty((N, F, P), dtype=y_rows.dtype)
    out[...] = y_rows.reshape(F, N, P).transpose(1, 0, 2)
    if bias is not None:
        out += bias[None, :, None]
    return out


def rows_from_nchw(y, out=None):
    """Inverse of :func:`nchw_from_rows`: (N, F, P) -> (F, N * P)."""
    N, F, P = y.shape
    if out is None:
        out = np.empty((F, N * P), dtype=y.dtype)
    out.reshape(F, N, P)[...] = y.transpose(1, 0, 2)
    return out


def add_channel_bias(y, b):
    """In place ``y[n, f, :] += b[f]`` for y of shape (N, F, P)."""
    y += b[None, :, None]
    return y


def channel_sums(y):
    """``sums[f] = sum over n, p of y[n, f, p]``, accumulated in float64.

    The bias gradient of a convolution: ``db = channel_sums(dy)``.

    Parameters
    ----------
    y : ndarray, shape (N, F, P)

    Returns
    -------
    sums : ndarray, shape (F,), float64
    """
    return y.sum(axis=(0, 2), dtype=np.float64)


# ---------------------------------------------------------------------------
# Max pooling
# ---------------------------------------------------------------------------
def maxpool_forward(x, K, stride):
    """Max pooling over K x K windows, no padding.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    K, stride : int

    Returns
    -------
    y : ndarray, shape (N, C, OH, OW)
    argmax : ndarray of int32, shape (N, C, OH, OW)
        Position ``i * K + j`` of the maximum inside each window (the first one
        on ties), kept for the backward pass. A NaN is a window's maximum (the
        first NaN, as in PyTorch), so that it reaches the output.
    """
    N, C, H, W = x.shape
    OH = conv_output_size(H, K, stride, 0)
    OW = conv_output_size(W, K, stride, 0)
    y = np.full((N, C, OH, OW), -np.inf, dtype=x.dtype)
    argmax = np.zeros((N, C, OH, OW), dtype=np.int32)
    for i in range(K):
        for j in range(K):
            window = x[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride]
            bigger = (window > y) | (np.isnan(window) & ~np.isnan(y))  # the first maximum, or NaN
            y[bigger] = window[bigger]
            argmax[bigger] = i * K + j
    return y, argmax


def maxpool_backward(dy, argmax, x_shape, K, stride):
    """Route each output gradient to the input that was the window's maximum.

    Parameters
    ----------
    dy : ndarray, shape (N, C, OH, OW)
    argmax : ndarray of int32, shape (N, C, OH, OW)
    x_shape : tuple (N, C, H, W)
    K, stride : int

    Returns
    -------
    dx : ndarray, shape (N, C, H, W)
    """
    OH, OW = dy.shape[2:]
    dx = np.zeros(x_shape, dtype=dy.dtype)
    for i in range(K):
        for j in range(K):
            routed = np.where(argmax == i * K + j, dy, 0)
            dx[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride] += routed
    return dx


# ---------------------------------------------------------------------------
# Batch normalisation (per channel, statistics over N, H, W)
# ---------------------------------------------------------------------------
def batchnorm_forward(x, gamma, beta, eps):
    """Normalise each channel with its batch statistics, then scale and shift.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    gamma, beta : ndarray, shape (C,)
    eps : float

    Returns
    -------
    y : ndarray, shape (N, C, H, W)
        ``gamma * (x - mean) / sqrt(var + eps) + beta``
    mean, var : ndarray, shape (C,)
        Batch mean and biased variance of each channel.
    """
    mean = x.mean(axis=(0, 2, 3), dtype=np.float64)  # accumulate in float64
    var = x.var(axis=(0, 2, 3), dtype=np.float64)
    inv_std = 1.0 / np.sqrt(var + eps)
    scale = (gamma * inv_std).astype(x.dtype)
    shift = (beta - mean * gamma * inv_std).astype(x.dtype)
    y = x * scale[None, :, None, None] + shift[None, :, None, None]
    return y, mean.astype(x.dtype), var.astype(x.dtype)


def batchnorm_inference(x, gamma, beta, mean, var, eps):
    """Normalise with fixed (running) statistics: a per-channel affine map."""
    inv_std = 1.0 / np.sqrt(var + eps)
    scale = (gamma * inv_std).astype(x.dtype)
    shift = (beta - mean * gamma * inv_std).astype(x.dtype)
    return x * scale[None, :, None, None] + shift[None, :, None, None]


def batchnorm_backward(dy, x, gamma, mean, var, eps):
    """Gradients of :func:`batchnorm_forward` in training mode.

    With ``M = N * H * W``, ``xhat = (x - mean) * inv_std``:

    - ``dbeta = sum(dy)``, ``dgamma = sum(dy * xhat)`` (sums over N, H, W)
    - ``dx = gamma * inv_std / M * (M * dy - dbeta - xhat * dgamma)``

    Parameters
    ----------
    dy, x : ndarray, shape (N, C, H, W)
    gamma, mean, var : ndarray, shape (C,)
    eps : float

    Returns
    -------
    dx : ndarray, shape (N, C, H, W)
    dgamma, dbeta : ndarray, shape (C,)
    """
    N, C, H, W = x.shape
    M = N * H * W
    inv_std = (1.0 / np.sqrt(var + eps))[None, :, None, None]
    xhat = (x - mean[None, :, None, None]) * inv_std
    dbeta = dy.sum(axis=(0, 2, 3), dtype=np.float64).astype(x.dtype)
    dgamma = (dy * xhat).sum(axis=(0, 2, 3), dtype=np.float64).astype(x.dtype)
    g = gamma[None, :, None, None]
    dx = g * inv_std / M * (M * dy - dbeta[None, :, None, None]
                            - xhat * dgamma[None, :, None, None])
    return dx, dgamma, dbeta


# ---------------------------------------------------------------------------
# Element-wise steps
# ---------------------------------------------------------------------------
def relu_forward(x):
    """``max(x, 0)``, any shape (NaN stays NaN, as in PyTorch: a broken value is not hidden)."""
    return np.maximum(x, 0)


def relu_backward(dy, y):
    """Pass the gradient where the output was positive: ``dy * (y > 0)``."""
    return np.where(y > 0, dy, 0).astype(dy.dtype)


#: The constants of SplitMix64 (Steele, Lea and Flood, "Fast splittable
#: pseudorandom number generators", OOPSLA 2014): the step and the two mixers.
SPLITMIX_STEP = np.uint64(0x9E3779B97F4A7C15)
SPLITMIX_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
SPLITMIX_MIX2 = np.uint64(0x94D049BB133111EB)


def uniform_from_seed(seed, shape):
    """Uniform numbers in [0, 1), float32, one per element, from one 64-bit ``seed``.

    Element ``i`` (in C order) gets the ``i``-th output of the SplitMix64
    generator started at ``seed``: ``z = seed + (i + 1) * STEP``, mixed by two
    multiply-xorshift rounds, and its top 24 bits divided by 2**24 (24 bits:
    every value is exact in float32). Any element can be computed on its own,
    so a kernel draws them in parallel, without storing them; the layer draws
    the seed from the model's Generator, so one seed still decides everything.
    """
    i = np.arange(1, int(np.prod(shape)) + 1, dtype=np.uint64)
    z = np.uint64(seed) + i * SPLITMIX_STEP                       # wraps modulo 2**64
    z = (z ^ (z >> np.uint64(30))) * SPLITMIX_MIX1
    z = (z ^ (z >> np.uint64(27))) * SPLITMIX_MIX2
    z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)).reshape(shape)


def dropout_mask(seed, shape, p, dtype):
    """``0`` where a unit is dropped (``u < p``), ``1 / (1 - p)`` where it is kept.

    ``u = uniform_from_seed(seed, shape)``: the mask is a function of the
    seed, so the backward pass makes it again instead of keeping it.
    """
    u = uniform_from_seed(seed, shape)
    return (u >= np.float32(p)).astype(dtype) * np.dtype(dtype).type(1.0 / (1.0 - p))


def dropout_forward(x, seed, p):
    """Inverted dropout: ``x * mask``, kept units scaled by 1/(1-p).

    Parameters
    ----------
    x : ndarray, any shape
    seed : int
        64-bit seed of the uniform numbers (the layer draws it from its
        Generator); see :func:`dropout_mask`.
    p : float
        Drop probability, 0 <= p < 1.
    """
    return x * dropout_mask(seed, x.shape, p, x.dtype)


def dropout_backward(dy, seed, p):
    """``dy * mask``, the forward pass's mask made again from its seed: the same
    units are dropped and scaled on the way back, and no mask is stored."""
    return dy * dropout_mask(seed, dy.shape, p, dy.dtype)


# ---------------------------------------------------------------------------
# An optimizer's step
# ---------------------------------------------------------------------------
def adam_update(param, grad, m, v, lr, betas, eps, t, decay=0.0):
    """One step of Adam, in place on ``param`` and its moments ``m`` and ``v`` (all one shape).

    ``param -= decay * param`` first (AdamW's decoupled weight decay, ``lr *
    weight_decay``; 0 for Adam), then ``m = b1 m + (1 - b1) g``, ``v = b2 v +
    (1 - b2) g**2`` and ``param -= lr / (1 - b1**t) * m / (sqrt(v / (1 - b2**t)) + eps)``,
    with ``g = grad`` and ``t`` the step number (from 1); every number in param's dtype.
    """
    b1, b2 = betas
    if decay:
        param -= decay * param
    m *= b1
    m += (1 - b1) * grad
    v *= b2
    v += (1 - b2) * grad * grad
    step_size = lr / (1 - b1 ** t)
    denom = np.sqrt(v / (1 - b2 ** t)) + eps
    param -= step_size * m / denom


# ===========================================================================
# The plan's fused steps (numcnn.plan): what each computes, in one call.
# Training and prediction on the numba backend run these where a BatchNorm and
# a ReLU follow each other (and a 2x2 max pool follows them); their numba twins
# make fewer passes over the data. Each is written here as the layers one after the other.
# ===========================================================================
# ---------------------------------------------------------------------------
# BatchNorm followed by ReLU: one call (the numba twins fuse the passes)
# ---------------------------------------------------------------------------
def batchnorm_relu_forward(x, gamma, beta, eps):
    """:func:`batchnorm_forward`, then :func:`relu_forward`: ``max(0, BN(x))``.

    Returns ``(y, mean, var)`` as :func:`batchnorm_forward` does, ``y`` after the ReLU.
    """
    y, mean, var = batchnorm_forward(x, gamma, beta, eps)
    return relu_forward(y), mean, var


def batchnorm_relu_inference(x, gamma, beta, mean, var, eps):
    """:func:`batchnorm_inference`, then :func:`relu_forward`."""
    return relu_forward(batchnorm_inference(x, gamma, beta, mean, var, eps))


def batchnorm_relu_backward(dy, y, x, gamma, mean, var, eps):
    """Gradients of :func:`batchnorm_relu_forward`: the ReLU's, then the BatchNorm's.

    ``dz = relu_backward(dy, y)`` is the gradient w.r.t. BatchNorm's output;
    then :func:`batchnorm_backward` of ``dz``. Returns ``(dx, dgamma, dbeta)``.
    """
    return batchnorm_backward(relu_backward(dy, y), x, gamma, mean, var, eps)


# ---------------------------------------------------------------------------
# BatchNorm, ReLU and a 2x2 max pool with stride 2: one call (the numba twins
# never write the ReLU's full-size output, nor its gradient)
# ---------------------------------------------------------------------------
def batchnorm_relu_maxpool2_forward(x, gamma, beta, eps):
    """:func:`batchnorm_relu_forward`, then :func:`maxpool_forward` with 2x2 windows, stride 2.

    Returns ``(y, argmax, mean, var)``: the pooled output and the position of
    each window's maximum (as :func:`maxpool_forward` gives them), and the
    batch statistics (as :func:`batchnorm_forward` gives them).
    """
    z, mean, var = batchnorm_relu_forward(x, gamma, beta, eps)
    y, argmax = maxpool_forward(z, 2, 2)
    return y, argmax, mean, var


def batchnorm_relu_maxpool2_inference(x, gamma, beta, mean, var, eps):
    """:func:`batchnorm_relu_inference`, then the 2x2 max pool (its output only)."""
    return maxpool_forward(batchnorm_relu_inference(x, gamma, beta, mean, var, eps), 2, 2)[0]


def batchnorm_relu_maxpool2_backward(dy, argmax, y, x, gamma, mean, var, eps):
    """Gradients of :func:`batchnorm_relu_maxpool2_forward`: the pool's, then BatchNorm-ReLU's.

    ``dz = maxpool_backward(dy, ...)`` is the gradient w.r.t. the ReLU's output
    ``z``; it is zero wherever an input did not win its window, so the ReLU's
    mask is needed only at the winners, where ``z`` equals the pooled ``y``:
    ``maxpool_backward(y, ...)`` puts it there. Returns ``(dx, dgamma, dbeta)``.
    """
    dz = maxpool_backward(dy, argmax, x.shape, 2, 2)
    z_at_winners = maxpool_backward(y, argmax, x.shape, 2, 2)
    return batchnorm_relu_backward(dz, z_at_winners, x, gamma, mean, var, eps)
