"""Exercises that check themselves: write a forward or backward pass, and ask whether it is right.

The course (``docs/course/``) leaves functions for the student to write, each
with a ``# your code here`` stub; :func:`check` runs the student's function on
random inputs and edge cases (odd sizes, strides, padding, a batch of one),
compares it with the reference, and, for a backward pass, with finite
differences of the forward pass. It prints exactly one line and returns
``True`` or ``False``:

>>> import numpy as np
>>> from numcnn import exercises
>>> def dense_forward(x, W, b):
...     return x @ W + b
>>> exercises.check("dense_forward", dense_forward)  # doctest: +ELLIPSIS
PASS dense_forward (max relative error ...)
True
>>> def dense_forward(x, W, b):
...     return x @ W
>>> exercises.check("dense_forward", dense_forward)  # doctest: +ELLIPSIS
FAIL dense_forward: y differs from the reference (case 'N=4, D=7, M=5'); hint: add the bias b to every row (max relative error ..., expected shape (4, 5), got (4, 5))
False

A function that raises (a stub's ``NotImplementedError`` included) fails; an
unknown name raises ``KeyError``. :data:`EXERCISES` maps every name to the
reference function the checker compares with, whose docstring gives the
signature the student's function must have.

Every array is float64 and NCHW where it is an image batch; the errors are the
worst elementwise relative error ``|a - b| / (|a| + |b|)`` (entries tiny next
to the largest one measured against the largest), and a check passes below
:data:`TOLERANCE`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Sequence, Tuple

import numpy as np

from .finite_differences import numerical_gradient, relative_error

__all__ = ["check", "EXERCISES", "TOLERANCE", "reference_of"]

TOLERANCE = 1e-5
"""A check passes when the worst relative error of every output is below this."""


def _out_size(size, kernel, stride, pad):
    return (size + 2 * pad - kernel) // stride + 1


# ---------------------------------------------------------------------------
# The references: what the student's functions must compute
# ---------------------------------------------------------------------------
def dense_forward(x, W, b):
    """``y = x @ W + b``.

    x (N, D), W (D, M), b (M,) -> y (N, M).
    """
    return x @ W + b


def dense_backward(dy, x, W):
    """Gradients of ``y = x @ W + b``.

    dy (N, M), x (N, D), W (D, M) -> ``(dx, dW, db)`` of shapes (N, D), (D, M), (M,):
    ``dx = dy @ W.T``, ``dW = x.T @ dy``, ``db = dy.sum(axis=0)``.
    """
    return dy @ W.T, x.T @ dy, dy.sum(axis=0)


def relu_backward(dy, x):
    """Gradient of ``y = max(x, 0)``: ``dx = dy`` where ``x > 0``, else 0.

    dy, x of any shape (the same) -> dx of that shape. At ``x == 0`` the gradient is 0.
    """
    return np.where(x > 0, dy, 0.0)


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of ``softmax(logits)`` and its gradient.

    logits (N, K) float, labels (N,) int in [0, K) -> ``(loss, dlogits)``: ``loss``
    a float, ``-mean_n log p[n, labels[n]]`` with ``p = softmax(logits)`` along
    axis 1; ``dlogits`` (N, K), ``(p - onehot(labels)) / N``. Stable for logits
    in the thousands (subtract each row's maximum before ``exp``).
    """
    N = len(logits)
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -logp[np.arange(N), labels].mean()
    dlogits = np.exp(logp)
    dlogits[np.arange(N), labels] -= 1
    return float(loss), dlogits / N


def conv2d_forward_loops(x, W, b, stride, pad):
    """A convolution (cross-correlation: no flip) by its definition.

    x (N, C, H, W), W (F, C, KH, KW), b (F,), stride and pad ints -> y (N, F, OH, OW)
    with ``OH = (H + 2 pad - KH) // stride + 1`` and
    ``y[n, f, oh, ow] = b[f] + sum_{c,i,j} W[f, c, i, j] * xp[n, c, stride*oh + i, stride*ow + j]``,
    ``xp`` the input with ``pad`` zeros on every side.
    """
    N, C, H, Wd = x.shape
    F, _, KH, KW = W.shape
    OH, OW = _out_size(H, KH, stride, pad), _out_size(Wd, KW, stride, pad)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    y = np.empty((N, F, OH, OW))
    for oh in range(OH):
        for ow in range(OW):
            patch = xp[:, :, oh * stride:oh * stride + KH, ow * stride:ow * stride + KW]
            y[:, :, oh, ow] = np.tensordot(patch, W, axes=([1, 2, 3], [1, 2, 3])) + b
    return y


def im2col(x, KH, KW, stride, pad):
    """Every patch of the padded input as one column of a matrix.

    x (N, C, H, W), KH, KW, stride, pad ints -> cols (C*KH*KW, N*OH*OW): row
    ``(c*KH + i)*KW + j`` is the kernel tap ``(c, i, j)``, column
    ``n*OH*OW + oh*OW + ow`` the output position ``(n, oh, ow)``, so that
    ``W.reshape(F, -1) @ cols`` is the convolution.
    """
    N, C, H, Wd = x.shape
    OH, OW = _out_size(H, KH, stride, pad), _out_size(Wd, KW, stride, pad)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = np.empty((C, KH, KW, N, OH, OW))
    for i in range(KH):
        for j in range(KW):
            window = xp[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride]
            cols[:, i, j] = window.transpose(1, 0, 2, 3)
    return cols.reshape(C * KH * KW, N * OH * OW)


def conv2d_backward(dy, x, W, stride, pad):
    """Gradients of :func:`conv2d_forward_loops`.

    dy (N, F, OH, OW), x (N, C, H, W), W (F, C, KH, KW), stride, pad ->
    ``(dx, dW, db)`` of shapes (N, C, H, W), (F, C, KH, KW), (F,).
    """
    N, C, H, Wd = x.shape
    F, _, KH, KW = W.shape
    OH, OW = dy.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp, dW = np.zeros_like(xp), np.zeros_like(W)
    for oh in range(OH):
        for ow in range(OW):
            rows = slice(oh * stride, oh * stride + KH)
            cols = slice(ow * stride, ow * stride + KW)
            g = dy[:, :, oh, ow]                                            # (N, F)
            dW += np.tensordot(g, xp[:, :, rows, cols], axes=([0], [0]))
            dxp[:, :, rows, cols] += np.tensordot(g, W, axes=([1], [0]))
    return dxp[:, :, pad:pad + H, pad:pad + Wd], dW, dy.sum(axis=(0, 2, 3))


def maxpool_forward(x, K, stride):
    """Max pooling over K x K windows, no padding.

    x (N, C, H, W), K, stride ints -> y (N, C, OH, OW), ``OH = (H - K) // stride + 1``.
    """
    N, C, H, Wd = x.shape
    OH, OW = _out_size(H, K, stride, 0), _out_size(Wd, K, stride, 0)
    y = np.full((N, C, OH, OW), -np.inf)
    for i in range(K):
        for j in range(K):
            y = np.maximum(y, x[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride])
    return y


def maxpool_backward(dy, x, K, stride):
    """Gradient of :func:`maxpool_forward`: each window's gradient goes to its maximum.

    dy (N, C, OH, OW), x (N, C, H, W) (no ties), K, stride -> dx (N, C, H, W).
    Where windows overlap (stride < K) a pixel adds the gradients of every
    window whose maximum it is.
    """
    OH, OW = dy.shape[2:]
    y = maxpool_forward(x, K, stride)
    dx = np.zeros_like(x)
    for i in range(K):
        for j in range(K):
            window = x[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride]
            dx[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride] += \
                np.where(window == y, dy, 0.0)
    return dx


def batchnorm_forward(x, gamma, beta, eps):
    """BatchNorm in training mode: each channel normalised by its batch statistics.

    x (N, C, H, W), gamma, beta (C,), eps float -> y (N, C, H, W),
    ``y = gamma * (x - mean) / sqrt(var + eps) + beta`` with the mean and the
    biased variance of each channel over N, H and W.
    """
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    xhat = (x - mean) / np.sqrt(var + eps)
    return gamma[None, :, None, None] * xhat + beta[None, :, None, None]


def batchnorm_backward(dy, x, gamma, eps):
    """Gradients of :func:`batchnorm_forward`.

    dy, x (N, C, H, W), gamma (C,), eps -> ``(dx, dgamma, dbeta)`` of shapes
    (N, C, H, W), (C,), (C,). With ``M = N*H*W``:
    ``dx = gamma / sqrt(var + eps) / M * (M dy - dbeta - xhat dgamma)``.
    """
    M = x.shape[0] * x.shape[2] * x.shape[3]
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    inv_std = 1 / np.sqrt(x.var(axis=(0, 2, 3), keepdims=True) + eps)
    xhat = (x - mean) * inv_std
    dbeta = dy.sum(axis=(0, 2, 3))
    dgamma = (dy * xhat).sum(axis=(0, 2, 3))
    dx = gamma[None, :, None, None] * inv_std / M * (
        M * dy - dbeta[None, :, None, None] - xhat * dgamma[None, :, None, None])
    return dx, dgamma, dbeta


def dropout_forward(x, u, p):
    """Inverted dropout with given uniform numbers.

    x of any shape, u (like x) uniform in [0, 1), p the drop probability in
    [0, 1) -> y like x: ``x / (1 - p)`` where ``u >= p`` (kept), 0 where ``u < p``.
    """
    return np.where(u >= p, x / (1 - p), 0.0)


def adam_step(param, grad, m, v, t, lr, beta1, beta2, eps):
    """One Adam step (Kingma and Ba, 2015) on one array.

    param, grad, m, v arrays of one shape, t the step number (1 for the first
    step), lr, beta1, beta2, eps floats -> ``(param, m, v)`` after the step:
    ``m = beta1 m + (1 - beta1) grad``, ``v = beta2 v + (1 - beta2) grad**2``,
    ``param - lr * mhat / (sqrt(vhat) + eps)`` with ``mhat = m / (1 - beta1**t)``,
    ``vhat = v / (1 - beta2**t)``. Returns new arrays.
    """
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad ** 2
    mhat, vhat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
    return param - lr * mhat / (np.sqrt(vhat) + eps), m, v


def wilson_interval(k, n, z):
    """Wilson's score interval for a proportion: k successes of n independent trials.

    k, n ints (0 <= k <= n, n > 0), z float (1.96 for 95%) -> ``(low, high)`` floats:
    ``(p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)`` with ``p = k / n``.
    """
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def grad_cam(activations, gradients):
    """Grad-CAM's map before scaling (Selvaraju et al., 2017).

    activations, gradients (N, F, h, w): a layer's output and the gradient of
    a class score with respect to it -> cam (N, h, w),
    ``ReLU(sum_f alpha[n, f] * activations[n, f])`` with
    ``alpha[n, f] = mean over h, w of gradients[n, f]``.
    """
    alpha = gradients.mean(axis=(2, 3))
    return np.maximum((alpha[:, :, None, None] * activations).sum(axis=1), 0)


def normalise_colour(x):
    """Each image's channels to mean 0.5 and standard deviation 0.2.

    x (N, C, H, W) -> like x: ``(x - mean) / max(std, 1e-3) * 0.2 + 0.5``, with
    the mean and standard deviation of each image's each channel (over H, W).
    """
    mean = x.mean(axis=(2, 3), keepdims=True)
    std = x.std(axis=(2, 3), keepdims=True)
    return (x - mean) / np.maximum(std, 1e-3) * 0.2 + 0.5


def conv3x3_shifted(x, W, b):
    """A 3x3 convolution, stride 1, padding 1, as nine shifted copies of the input.

    x (N, C, H, W), W (F, C, 3, 3), b (F,) -> y (N, F, H, W), the same numbers
    as ``conv2d_forward_loops(x, W, b, 1, 1)``: ``y = b + sum over the taps
    (i, j) of W[:, :, i, j]`` applied (over channels) to ``xp[:, :, i:i+H, j:j+W]``.
    """
    N, C, H, Wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = np.zeros((N, W.shape[0], H, Wd)) + b[None, :, None, None]
    for i in range(3):
        for j in range(3):
            y += np.einsum("fc,nchw->nfhw", W[:, :, i, j], xp[:, :, i:i + H, j:j + Wd])
    return y


# ---------------------------------------------------------------------------
# How each exercise is checked
# ---------------------------------------------------------------------------
@dataclass
class Exercise:
    """What the checker needs to know of one exercise (see :func:`check`)."""

    reference: Callable
    outputs: Tuple[str, ...]                    # names of the returned values
    cases: Callable                             # rng -> [(label, args, sizes)]
    mistakes: Sequence[Tuple[str, Callable]] = ()   # (hint, wrong function with the same args)
    gradients: Callable = None                  # rng -> (args, {output index: numeric gradient})
    shape_hints: Dict[str, str] = field(default_factory=dict)


def _r(rng, *shape):
    return rng.standard_normal(shape)


def _dense_cases(rng):
    return [(f"N={n}, D={d}, M={m}", (_r(rng, n, d), _r(rng, d, m), _r(rng, m)), {"N": n})
            for n, d, m in [(4, 7, 5), (1, 3, 2), (9, 1, 6)]]


def _dense_backward_cases(rng):
    return [(f"N={n}, D={d}, M={m}", (_r(rng, n, m), _r(rng, n, d), _r(rng, d, m)), {"N": n})
            for n, d, m in [(4, 7, 5), (1, 3, 2), (6, 6, 6)]]


def _dense_gradients(rng):
    dy, x, W = _r(rng, 3, 4), _r(rng, 3, 5), _r(rng, 5, 4)
    b = _r(rng, 4)
    loss = lambda: float((dense_forward(x, W, b) * dy).sum())  # noqa: E731
    return (dy, x, W), {0: numerical_gradient(loss, x), 1: numerical_gradient(loss, W),
                        2: numerical_gradient(loss, b)}


def _relu_cases(rng):
    x = _r(rng, 2, 3, 4, 5)
    x[0, 0, 0, :3] = 0.0                                        # exact zeros: the gradient is 0
    return [("(2, 3, 4, 5) with zeros", (_r(rng, 2, 3, 4, 5), x), {}),
            ("(1, 7)", (_r(rng, 1, 7), _r(rng, 1, 7)), {})]


def _relu_gradients(rng):
    x, dy = _r(rng, 3, 4), _r(rng, 3, 4)
    loss = lambda: float((np.maximum(x, 0) * dy).sum())  # noqa: E731
    return (dy, x), {0: numerical_gradient(loss, x)}


def _softmax_cases(rng):
    return [("N=5, K=4", (_r(rng, 5, 4), rng.integers(0, 4, 5)), {"N": 5}),
            ("N=1, K=3", (_r(rng, 1, 3), np.array([2])), {"N": 1}),
            ("logits in the thousands", (1000 * _r(rng, 6, 10), rng.integers(0, 10, 6)),
             {"N": 6})]


def _softmax_gradients(rng):
    logits, labels = _r(rng, 4, 3), rng.integers(0, 3, 4)
    loss = lambda: softmax_cross_entropy(logits, labels)[0]  # noqa: E731
    return (logits, labels), {1: numerical_gradient(loss, logits)}


_CONV_SHAPES = [  # (label, x shape, W shape, stride, pad)
    ("x (2, 3, 5, 5), 3x3, stride 1, pad 1", (2, 3, 5, 5), (4, 3, 3, 3), 1, 1),
    ("x (1, 2, 7, 6), 3x2 kernel, stride 2, no padding", (1, 2, 7, 6), (3, 2, 3, 2), 2, 0),
    ("x (3, 1, 6, 6), 5x5, stride 1, pad 2", (3, 1, 6, 6), (2, 1, 5, 5), 1, 2),
    ("x (2, 4, 5, 7), 1x1 kernel", (2, 4, 5, 7), (3, 4, 1, 1), 1, 0),
    ("x (1, 2, 8, 8), 3x3, stride 3, pad 1", (1, 2, 8, 8), (2, 2, 3, 3), 3, 1),
]


def _conv_cases(rng):
    return [(label, (_r(rng, *xs), _r(rng, *ws), _r(rng, ws[0]), s, p), {"N": xs[0]})
            for label, xs, ws, s, p in _CONV_SHAPES]


def _shifted_cases(rng):
    return [(f"x {xs}", (_r(rng, *xs), _r(rng, f, xs[1], 3, 3), _r(rng, f)), {"N": xs[0]})
            for xs, f in [((2, 3, 5, 5), 4), ((1, 2, 7, 4), 3), ((3, 1, 1, 6), 2)]]


def _im2col_cases(rng):
    return [(label, (_r(rng, *xs), ws[2], ws[3], s, p), {"N": xs[0]})
            for label, xs, ws, s, p in _CONV_SHAPES]


def _conv_backward_cases(rng):
    cases = []
    for label, xs, ws, s, p in _CONV_SHAPES:
        x = _r(rng, *xs)
        OH, OW = _out_size(xs[2], ws[2], s, p), _out_size(xs[3], ws[3], s, p)
        cases.append((label, (_r(rng, xs[0], ws[0], OH, OW), x, _r(rng, *ws), s, p),
                      {"N": xs[0]}))
    return cases


def _conv_gradients(rng):
    x, W, b = _r(rng, 2, 2, 5, 4), _r(rng, 3, 2, 3, 3), _r(rng, 3)
    dy = _r(rng, 2, 3, 3, 2)                                    # stride 2, pad 1
    loss = lambda: float((conv2d_forward_loops(x, W, b, 2, 1) * dy).sum())  # noqa: E731
    return (dy, x, W, 2, 1), {0: numerical_gradient(loss, x), 1: numerical_gradient(loss, W),
                              2: numerical_gradient(loss, b)}


def _distinct(rng, *shape):
    """Values without ties (a max-pool gradient is undefined at a tie)."""
    return rng.permutation(np.prod(shape)).reshape(shape) / np.prod(shape) + 0.01 * _r(rng, *shape)


_POOL_SHAPES = [("x (2, 3, 4, 4), K=2, stride 2", (2, 3, 4, 4), 2, 2),
                ("x (1, 2, 7, 7), K=3, stride 2 (overlapping)", (1, 2, 7, 7), 3, 2),
                ("x (2, 1, 5, 6), K=2, stride 1 (overlapping)", (2, 1, 5, 6), 2, 1),
                ("x (1, 1, 5, 5), K=2, stride 2 (odd: last row dropped)", (1, 1, 5, 5), 2, 2)]


def _pool_cases(rng):
    return [(label, (_distinct(rng, *xs), k, s), {"N": xs[0]}) for label, xs, k, s in _POOL_SHAPES]


def _pool_backward_cases(rng):
    cases = []
    for label, xs, k, s in _POOL_SHAPES:
        OH, OW = _out_size(xs[2], k, s, 0), _out_size(xs[3], k, s, 0)
        cases.append((label, (_r(rng, xs[0], xs[1], OH, OW), _distinct(rng, *xs), k, s),
                      {"N": xs[0]}))
    return cases


def _pool_gradients(rng):
    x, dy = _distinct(rng, 2, 2, 5, 5), _r(rng, 2, 2, 2, 2)
    loss = lambda: float((maxpool_forward(x, 3, 2) * dy).sum())  # noqa: E731
    return (dy, x, 3, 2), {0: numerical_gradient(loss, x, h=1e-6)}


_BN_SHAPES = [("x (4, 3, 5, 5)", (4, 3, 5, 5)), ("x (1, 2, 3, 4): a batch of one", (1, 2, 3, 4)),
              ("x (6, 5, 1, 1)", (6, 5, 1, 1))]


def _bn_cases(rng):
    return [(label, (3 + 2 * _r(rng, *xs), 1 + _r(rng, xs[1]), _r(rng, xs[1]), 1e-5),
             {"N": xs[0], "M": xs[0] * xs[2] * xs[3]}) for label, xs in _BN_SHAPES]


def _bn_backward_cases(rng):
    return [(label, (_r(rng, *xs), 3 + 2 * _r(rng, *xs), 1 + _r(rng, xs[1]), 1e-5),
             {"N": xs[0], "M": xs[0] * xs[2] * xs[3]}) for label, xs in _BN_SHAPES]


def _bn_gradients(rng):
    x, gamma, beta, dy = _r(rng, 3, 2, 3, 2), 1 + _r(rng, 2), _r(rng, 2), _r(rng, 3, 2, 3, 2)
    loss = lambda: float((batchnorm_forward(x, gamma, beta, 1e-5) * dy).sum())  # noqa: E731
    return (dy, x, gamma, 1e-5), {0: numerical_gradient(loss, x), 1: numerical_gradient(loss, gamma),
                                  2: numerical_gradient(loss, beta)}


def _dropout_cases(rng):
    return [(f"x {xs}, p={p}", (_r(rng, *xs), rng.random(xs), p), {})
            for xs, p in [((4, 3, 5, 5), 0.5), ((1, 10), 0.2), ((2, 6), 0.0), ((3, 8), 0.75)]]


def _adam_cases(rng):
    cases = []
    for t, shape in [(1, (4, 3)), (10, (7,)), (1000, (2, 2, 3))]:
        args = (_r(rng, *shape), _r(rng, *shape), 0.1 * _r(rng, *shape),
                0.1 * rng.random(shape), t, 1e-2, 0.9, 0.999, 1e-8)
        cases.append((f"step t={t}, shape {shape}", args, {}))
    return cases


def _wilson_cases(rng):
    return [(f"k={k}, n={n}", (k, n, 1.96), {}) for k, n in
            [(62, 71), (2200, 2487), (0, 10), (10, 10), (1, 3)]]


def _cam_cases(rng):
    return [(f"(N, F, h, w) = {s}", (np.abs(_r(rng, *s)), _r(rng, *s)), {"hw": s[2] * s[3]})
            for s in [(2, 8, 4, 4), (1, 3, 7, 5), (3, 16, 2, 2)]]


def _colour_cases(rng):
    return [(f"x {s}", (rng.random(s) * rng.random((s[0], s[1], 1, 1)), ), {})
            for s in [(4, 3, 8, 8), (1, 3, 5, 7), (2, 1, 6, 6)]]


def _flipped(conv):
    return lambda x, W, *rest: conv(x, W[:, :, ::-1, ::-1], *rest)


def _im2col_spatial_first(x, KH, KW, stride, pad):
    cols = im2col(x, KH, KW, stride, pad)
    C = x.shape[1]
    return cols.reshape(C, KH, KW, -1).transpose(1, 2, 0, 3).reshape(C * KH * KW, -1)


def _im2col_positions_first(x, KH, KW, stride, pad):
    N = x.shape[0]
    cols = im2col(x, KH, KW, stride, pad)
    return cols.reshape(len(cols), N, -1).transpose(0, 2, 1).reshape(len(cols), -1)


def _bn_stats(axes, ddof=0, eps_outside=False):
    def wrong(x, gamma, beta, eps):
        mean = x.mean(axis=axes, keepdims=True)
        std = x.std(axis=axes, keepdims=True, ddof=ddof)
        xhat = (x - mean) / (std + eps if eps_outside else np.sqrt(std ** 2 + eps))
        return gamma[None, :, None, None] * xhat + beta[None, :, None, None]
    return wrong


def _bn_backward_constant_stats(dy, x, gamma, eps):
    _, dgamma, dbeta = batchnorm_backward(dy, x, gamma, eps)
    inv_std = 1 / np.sqrt(x.var(axis=(0, 2, 3), keepdims=True) + eps)
    return gamma[None, :, None, None] * inv_std * dy, dgamma, dbeta


def _pool_backward_assign(dy, x, K, stride):
    OH, OW = dy.shape[2:]
    y = maxpool_forward(x, K, stride)
    dx = np.zeros_like(x)
    for i in range(K):
        for j in range(K):
            window = x[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride]
            target = dx[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride]
            np.copyto(target, dy, where=window == y)
    return dx


def _avgpool(x, K, stride):
    N, C, H, Wd = x.shape
    OH, OW = _out_size(H, K, stride, 0), _out_size(Wd, K, stride, 0)
    return sum(x[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride]
               for i in range(K) for j in range(K)) / (K * K)


def _avgpool_backward(dy, x, K, stride):
    OH, OW = dy.shape[2:]
    dx = np.zeros_like(x)
    for i in range(K):
        for j in range(K):
            dx[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride] += dy / (K * K)
    return dx


def _wald(k, n, z):
    p = k / n
    half = z * math.sqrt(p * (1 - p) / n)
    return p - half, p + half


def _softmax_axis0(logits, labels):
    N = len(logits)
    p = np.exp(logits - logits.max(axis=0)) / np.exp(logits - logits.max(axis=0)).sum(axis=0)
    loss = -np.log(p[np.arange(N), labels]).mean()
    d = p.copy()
    d[np.arange(N), labels] -= 1
    return float(loss), d / N


_FLIP_HINT = ("you flipped the kernel: a CNN's convolution is a cross-correlation, "
              "W[f, c, i, j] multiplies xp[n, c, stride*oh + i, stride*ow + j]")
_OUTPUT_SIZE_HINT = "OH = (H + 2*pad - KH) // stride + 1"

_SPECS: Dict[str, Exercise] = {
    "dense_forward": Exercise(
        dense_forward, ("y",), _dense_cases,
        mistakes=[("add the bias b to every row", lambda x, W, b: x @ W)],
        shape_hints={"y": "y = x @ W + b has shape (N, M)"}),
    "dense_backward": Exercise(
        dense_backward, ("dx", "dW", "db"), _dense_backward_cases,
        mistakes=[("db is the sum of dy over the batch (axis 0), not its mean",
                   lambda dy, x, W: (dy @ W.T, x.T @ dy, dy.mean(axis=0))),
                  ("dW = x.T @ dy (shape (D, M), like W)",
                   lambda dy, x, W: (dy @ W.T, dy.T @ x, dy.sum(0)))],
        gradients=_dense_gradients,
        shape_hints={"dW": "dW has W's shape (D, M): x.T @ dy",
                     "db": "db has b's shape (M,): sum dy over the batch, axis 0",
                     "dx": "dx has x's shape (N, D): dy @ W.T"}),
    "relu_backward": Exercise(
        relu_backward, ("dx",), _relu_cases,
        mistakes=[("the mask is x > 0: at x == 0 the gradient is 0, not dy",
                   lambda dy, x: np.where(x >= 0, dy, 0.0)),
                  ("mask dy by where the *input* was positive, not where dy is",
                   lambda dy, x: np.maximum(dy, 0))],
        gradients=_relu_gradients),
    "softmax_cross_entropy": Exercise(
        softmax_cross_entropy, ("loss", "dlogits"), _softmax_cases,
        mistakes=[("the softmax runs along axis 1 (over the classes of one sample), "
                   "not axis 0", _softmax_axis0)],
        gradients=_softmax_gradients,
        shape_hints={"loss": "the loss is one number: the mean over the batch"}),
    "conv2d_forward_loops": Exercise(
        conv2d_forward_loops, ("y",), _conv_cases,
        mistakes=[(_FLIP_HINT, _flipped(conv2d_forward_loops)),
                  ("add the bias b[f] to every output of filter f",
                   lambda x, W, b, s, p: conv2d_forward_loops(x, W, 0 * b, s, p))],
        shape_hints={"y": _OUTPUT_SIZE_HINT}),
    "im2col": Exercise(
        im2col, ("cols",), _im2col_cases,
        mistakes=[("order the rows channel first: row (c*KH + i)*KW + j is tap (c, i, j)",
                   _im2col_spatial_first),
                  ("order the columns image first: column n*OH*OW + oh*OW + ow",
                   _im2col_positions_first)],
        shape_hints={"cols": "cols has shape (C*KH*KW, N*OH*OW), " + _OUTPUT_SIZE_HINT}),
    "conv2d_backward": Exercise(
        conv2d_backward, ("dx", "dW", "db"), _conv_backward_cases,
        mistakes=[("for dx, turn the kernel half a turn (flip both spatial axes) "
                   "or scatter W back over each patch",
                   lambda dy, x, W, s, p: (conv2d_backward(dy, x, W[:, :, ::-1, ::-1], s, p)[0],
                                           *conv2d_backward(dy, x, W, s, p)[1:]))],
        gradients=_conv_gradients),
    "maxpool_forward": Exercise(
        maxpool_forward, ("y",), _pool_cases,
        mistakes=[("take the window's maximum, not its mean", _avgpool)],
        shape_hints={"y": "OH = (H - K) // stride + 1 (no padding)"}),
    "maxpool_backward": Exercise(
        maxpool_backward, ("dx",), _pool_backward_cases,
        mistakes=[("send each window's gradient to its maximum only, not evenly to all",
                   _avgpool_backward),
                  ("where windows overlap, add (+=) the gradients: a pixel can be the "
                   "maximum of two windows", _pool_backward_assign)],
        gradients=_pool_gradients),
    "batchnorm_forward": Exercise(
        batchnorm_forward, ("y",), _bn_cases,
        mistakes=[("wrong axis: each channel's mean and variance are over N, H and W, "
                   "axis=(0, 2, 3)", _bn_stats((0,))),
                  ("wrong axis: each channel's mean and variance are over N, H and W, "
                   "axis=(0, 2, 3), not per image", _bn_stats((2, 3))),
                  ("use the biased variance (divide by M, not M - 1: ddof=0)",
                   _bn_stats((0, 2, 3), ddof=1)),
                  ("eps goes inside the square root: sqrt(var + eps)",
                   _bn_stats((0, 2, 3), eps_outside=True))]),
    "batchnorm_backward": Exercise(
        batchnorm_backward, ("dx", "dgamma", "dbeta"), _bn_backward_cases,
        mistakes=[("the mean and the variance depend on x too: dx has three terms, "
                   "gamma*inv_std/M * (M*dy - dbeta - xhat*dgamma)",
                   _bn_backward_constant_stats)],
        gradients=_bn_gradients),
    "dropout_forward": Exercise(
        dropout_forward, ("y",), _dropout_cases,
        mistakes=[("inverted dropout scales the kept units by 1 / (1 - p)",
                   lambda x, u, p: np.where(u >= p, x, 0.0)),
                  ("keep where u >= p: p is the probability to drop",
                   lambda x, u, p: np.where(u < p, x / (1 - p) if p < 1 else x, 0.0)),
                  ("scale by 1 / (1 - p), not by (1 - p)",
                   lambda x, u, p: np.where(u >= p, x * (1 - p), 0.0))]),
    "adam_step": Exercise(
        adam_step, ("param", "m", "v"), _adam_cases,
        mistakes=[("correct the bias of the moments: mhat = m / (1 - beta1**t), "
                   "vhat = v / (1 - beta2**t)",
                   lambda p, g, m, v, t, lr, b1, b2, eps: adam_step(p, g, m, v, 10 ** 9, lr, b1,
                                                                    b2, eps))]),
    "wilson_interval": Exercise(
        wilson_interval, ("low", "high"), _wilson_cases,
        mistakes=[("that is the normal (Wald) interval p -+ z sqrt(p(1-p)/n); Wilson's "
                   "is centred at (p + z^2/2n) / (1 + z^2/n)", _wald)]),
    "grad_cam": Exercise(
        grad_cam, ("cam",), _cam_cases,
        mistakes=[("keep only the positive part: ReLU of the weighted sum",
                   lambda a, g: (g.mean(axis=(2, 3))[:, :, None, None] * a).sum(axis=1)),
                  ("wrong axis: alpha[n, f] is the mean of gradients[n, f] over h and w, "
                   "axis=(2, 3)",
                   lambda a, g: np.maximum((g.mean(axis=1)[:, None] * a).sum(axis=1), 0))],
        shape_hints={"cam": "sum over the channels F: cam has shape (N, h, w)"}),
    "normalise_colour": Exercise(
        normalise_colour, ("y",), _colour_cases,
        mistakes=[("wrong axis: the statistics are each image's, each channel's: axis=(2, 3)",
                   lambda x: (x - x.mean(axis=(0, 2, 3), keepdims=True))
                   / np.maximum(x.std(axis=(0, 2, 3), keepdims=True), 1e-3) * 0.2 + 0.5),
                  ("wrong axis: one mean and spread per channel of each image, axis=(2, 3), "
                   "not over the channels too",
                   lambda x: (x - x.mean(axis=(1, 2, 3), keepdims=True))
                   / np.maximum(x.std(axis=(1, 2, 3), keepdims=True), 1e-3) * 0.2 + 0.5)]),
    "conv3x3_shifted": Exercise(
        conv3x3_shifted, ("y",), _shifted_cases,
        mistakes=[(_FLIP_HINT, _flipped(conv3x3_shifted))],
        shape_hints={"y": "padding 1 keeps H x W: y has shape (N, F, H, W)"}),
}

EXERCISES: Dict[str, Callable] = {name: spec.reference for name, spec in _SPECS.items()}
"""``{exercise name: the reference function}``; each reference's docstring gives the signature.

The names, in course order: ``softmax_cross_entropy``; ``dense_forward``,
``dense_backward``, ``relu_backward``; ``conv2d_forward_loops``, ``im2col``,
``conv2d_backward``; ``maxpool_forward``, ``maxpool_backward``,
``batchnorm_forward``, ``batchnorm_backward``, ``dropout_forward``;
``adam_step``; ``wilson_interval``; ``grad_cam``; ``normalise_colour``;
``conv3x3_shifted``.
"""


def reference_of(name):
    """The reference function of exercise ``name`` (``EXERCISES[name]``, with a clearer KeyError)."""
    if name not in _SPECS:
        raise KeyError(f"no exercise named {name!r}; the exercises are: {', '.join(_SPECS)}")
    return _SPECS[name].reference


# ---------------------------------------------------------------------------
# The checker
# ---------------------------------------------------------------------------
def _as_tuple(value, count):
    if count == 1:
        return (value,)
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _shape(value):
    return tuple(np.shape(value))


def _copy(args):
    return tuple(np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args)


def _close(got, wanted):
    try:
        got = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return got.shape == np.shape(wanted) and bool(np.all(np.isfinite(got))) and \
        relative_error(got, wanted) < TOLERANCE


def _scale_hint(got, wanted, sizes):
    """'your y is the reference times 4: a missing 1/N?' when ``got`` is a multiple of ``wanted``."""
    got, wanted = np.asarray(got, np.float64).ravel(), np.asarray(wanted, np.float64).ravel()
    norm = float(wanted @ wanted)
    if norm == 0 or not np.all(np.isfinite(got)):
        return None
    factor = float(got @ wanted) / norm
    if abs(factor - 1) < 1e-3 or abs(factor) < 1e-6 or relative_error(got, factor * wanted) > 1e-6:
        return None
    for label, size in sizes.items():
        if size > 1 and abs(factor - size) < 1e-6 * size:
            return f"it is the reference times {size} (= {label}): a missing 1/{label}?"
        if size > 1 and abs(factor * size - 1) < 1e-6:
            return f"it is the reference divided by {size} (= {label}): an extra 1/{label}?"
    return f"it is the reference times {factor:.4g}"


def _error(got, wanted):
    got = np.asarray(got, dtype=np.float64)
    if not np.all(np.isfinite(got)):
        return math.inf
    return relative_error(got, wanted)


class _Failure(Exception):
    def __init__(self, reason, error, expected, got):
        super().__init__(reason)
        self.reason, self.error, self.expected, self.got = reason, error, expected, got


def _compare(spec, label, args, sizes, got, wanted, mistakes=True):
    """The worst error over the outputs; raises _Failure at the first wrong one."""
    names = spec.outputs
    if len(got) != len(wanted):
        raise _Failure(f"returned {len(got)} value(s); expected {len(wanted)}: "
                       f"({', '.join(names)})", math.inf, _shape(wanted[0]),
                       "a tuple of " + str(len(got)))
    worst = 0.0
    for index, (name, g, w) in enumerate(zip(names, got, wanted)):
        if g is None:
            raise _Failure(f"{name} is None ({label})", math.inf, _shape(w), "None")
        try:
            g_array = np.asarray(g, dtype=np.float64)
        except (TypeError, ValueError):
            raise _Failure(f"{name} is not numbers but {type(g).__name__} ({label})",
                           math.inf, _shape(w), type(g).__name__) from None
        if g_array.shape != _shape(w):
            reason = f"{name} has the wrong shape ({label})"
            if name in spec.shape_hints:
                reason += f"; hint: {spec.shape_hints[name]}"
            raise _Failure(reason, math.inf, _shape(w), g_array.shape)
        error = _error(g_array, w)
        if error >= TOLERANCE:
            if not np.all(np.isfinite(g_array)):
                reason = f"{name} holds NaN or infinity ({label})"
                if "thousands" in label:
                    reason += "; hint: subtract each row's maximum before exp"
                raise _Failure(reason, error, _shape(w), g_array.shape)
            reason = f"{name} differs from the reference ({label})"
            hints = []
            if mistakes:
                for hint, wrong in spec.mistakes:
                    try:
                        expected_wrong = _as_tuple(wrong(*_copy(args)), len(names))
                    except Exception:  # noqa: BLE001 - a mistake's model need not apply
                        continue
                    if index < len(expected_wrong) and _close(g_array, expected_wrong[index]) \
                            and not _close(expected_wrong[index], w):
                        hints.append(hint)
            if not hints:
                scale = _scale_hint(g_array, w, sizes)
                if scale:
                    hints.append(scale)
            if hints:
                reason += "; hint: " + "; ".join(hints)
            raise _Failure(reason, error, _shape(w), g_array.shape)
        worst = max(worst, error)
    return worst


def _call(function, args, label, spec, wanted):
    try:
        return _as_tuple(function(*_copy(args)), len(spec.outputs))
    except NotImplementedError:
        raise _Failure(f"raised NotImplementedError ({label}): write the function first",
                       math.inf, _shape(wanted[0]), "no output") from None
    except Exception as error:  # noqa: BLE001 - the student's error is the verdict
        raise _Failure(f"raised {type(error).__name__}: {error} ({label})", math.inf,
                       _shape(wanted[0]), "no output") from None


def _format_shape(shape):
    return str(tuple(shape)) if isinstance(shape, tuple) else str(shape)


def check(name, function, seed=0):
    """Check a student's ``function`` for exercise ``name``; print one line; True if right.

    The function is run on every case of the exercise (random inputs and edge
    cases: odd sizes, strides, padding, a batch of one) and its outputs are
    compared with the reference's (``EXERCISES[name]``); for a backward pass
    also with central finite differences of the forward pass, on one more
    case. The printed line is ``PASS <name> (max relative error 3.1e-09)`` or
    ``FAIL <name>: <reason> (max relative error ..., expected shape ...,
    got ...)``, the reason naming the output and the case, with a hint where
    the mistake is a common one (a flipped kernel, a wrong axis, a missing
    1/N, ...). An exception raised by ``function`` is a failure.

    Parameters
    ----------
    name : str
        One of :data:`EXERCISES`.
    function : callable
        The student's function, with the reference's signature.
    seed : int
        Seed of the random inputs.

    Returns
    -------
    bool
        True when every output of every case is within :data:`TOLERANCE`.

    Raises
    ------
    KeyError
        ``name`` is not an exercise.
    """
    reference_of(name)
    spec = _SPECS[name]
    rng = np.random.default_rng(seed)
    worst = 0.0
    try:
        for label, args, sizes in spec.cases(rng):
            wanted = _as_tuple(spec.reference(*_copy(args)), len(spec.outputs))
            got = _call(function, args, f"case '{label}'", spec, wanted)
            worst = max(worst, _compare(spec, f"case '{label}'", args, sizes, got, wanted))
        if spec.gradients is not None:
            args, numeric = spec.gradients(rng)
            wanted = _as_tuple(spec.reference(*_copy(args)), len(spec.outputs))
            label = "the finite-difference check"
            got = _call(function, args, label, spec, wanted)
            for index, gradient in numeric.items():
                single = Exercise(spec.reference, (spec.outputs[index],), spec.cases)
                worst = max(worst, _compare(single, label, args, {}, (got[index],), (gradient,),
                                            mistakes=False))
    except _Failure as failure:
        error = "inf" if math.isinf(failure.error) else f"{failure.error:.1e}"
        print(f"FAIL {name}: {failure.reason} (max relative error {error}, expected shape "
              f"{_format_shape(failure.expected)}, got {_format_shape(failure.got)})")
        return False
    print(f"PASS {name} (max relative error {worst:.1e})")
    return True
