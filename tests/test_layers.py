"""Forward semantics of every layer, against direct loops and hand computations.

Gradients are checked in test_gradients.py; here: what each layer computes,
its training/evaluation modes, chunking, and its input validation.

The convolution is checked along a ladder: the direct loops of its definition
(:func:`numcnn.kernels.reference.conv2d_direct`, itself checked against scipy)
give what the Conv2D layer computes with im2col and one matrix multiply, on
both backends, forward and backward (test_kernels.py checks the numba twins of
the direct loops).
"""
import re

import numpy as np
import pytest
from scipy import signal

import numcnn.layers.columns as columns_module
from numcnn.kernels import reference
from numcnn.layers import (BatchNorm, BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten,
                           MaxPool2D, ReLU, Softmax)


# ---------------------------------------------------------------------------
# Conv2D
# ---------------------------------------------------------------------------
def conv2d_scipy(x, W, b, stride, pad):
    """Cross-correlation with scipy, one (image, filter, channel) plane at a time."""
    N, C, H, Wd = x.shape
    F, _, KH, KW = W.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    full = np.zeros((N, F, H + 2 * pad - KH + 1, Wd + 2 * pad - KW + 1))
    for n in range(N):
        for f in range(F):
            for c in range(C):
                full[n, f] += signal.correlate(xp[n, c], W[f, c], mode="valid")
    return full[:, :, ::stride, ::stride] + b[None, :, None, None]


CONV_CASES = [
    # C, F, kernel, stride, padding, H, W
    (3, 4, 3, 1, 0, 7, 6),
    (3, 4, 3, 1, 1, 7, 6),
    (2, 3, 3, 2, 1, 8, 9),
    (2, 3, 5, 2, 2, 9, 7),
    (1, 2, (2, 4), 1, 0, 5, 6),
    (2, 2, (3, 1), 3, 1, 10, 5),
    (4, 2, 1, 1, 0, 3, 4),
]


@pytest.mark.parametrize("C, F, kernel, stride, padding, H, W", CONV_CASES)
def test_conv2d_forward_matches_scipy(backend, rng, C, F, kernel, stride, padding, H, W):
    layer = Conv2D(C, F, kernel, stride=stride, padding=padding, rng=0)
    layer.params["b"] = rng.standard_normal(F).astype(np.float32)
    x = rng.standard_normal((3, C, H, W))
    expected = conv2d_scipy(x, layer.params["W"].astype(np.float64),
                            layer.params["b"].astype(np.float64), stride, padding)
    y64 = layer.forward(x)
    assert y64.dtype == np.float64
    assert y64.shape == expected.shape
    np.testing.assert_allclose(y64, expected, rtol=1e-10, atol=1e-10)
    y32 = layer.forward(x.astype(np.float32))
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("C, F, kernel, stride, padding, H, W", CONV_CASES)
def test_direct_loops_match_scipy(rng, C, F, kernel, stride, padding, H, W):
    """The bottom of the ladder: the definition, with loops, against scipy's correlate."""
    kh, kw = (kernel, kernel) if np.isscalar(kernel) else kernel
    x = rng.standard_normal((3, C, H, W))
    Wt = rng.standard_normal((F, C, kh, kw))
    b = rng.standard_normal(F)
    expected = conv2d_scipy(x, Wt, b, stride, padding)
    y = reference.conv2d_direct(x, Wt, b, stride, padding)
    assert y.shape == expected.shape and y.dtype == np.float64
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("C, F, kernel, stride, padding, H, W", CONV_CASES)
def test_conv2d_layer_matches_the_direct_loops(backend, rng, C, F, kernel, stride, padding, H, W):
    """im2col + one matrix multiply (the layer) equals the definition (direct loops)."""
    layer = Conv2D(C, F, kernel, stride=stride, padding=padding, rng=0)
    layer.params["b"] = rng.standard_normal(F).astype(np.float32)
    x = rng.standard_normal((3, C, H, W))
    W64, b64 = (layer.params[k].astype(np.float64) for k in ("W", "b"))
    y = layer.forward(x, training=True)
    expected = reference.conv2d_direct(x, W64, b64, stride, padding)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    dx_direct, dW_direct, db_direct = reference.conv2d_direct_backward(dy, x, W64, stride, padding)
    assert dx.shape == x.shape and dW_direct.shape == layer.params["W"].shape
    np.testing.assert_allclose(dx, dx_direct, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.grads["W"], dW_direct, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.grads["b"], db_direct, rtol=1e-12, atol=1e-12)
    # In float32, as the layer trains: agreement to float32 round-off.
    x32 = x.astype(np.float32)
    y32 = layer.forward(x32, training=True)
    assert y32.dtype == np.float32
    scale = np.abs(expected).max()
    np.testing.assert_allclose(y32, reference.conv2d_direct(x32, layer.params["W"],
                                                            layer.params["b"], stride, padding),
                               rtol=1e-4, atol=1e-5 * scale)


def test_conv2d_output_shape_formula():
    layer = Conv2D(3, 5, (3, 5), stride=2, padding=1)
    H, W = 11, 14
    expected = (5, (H + 2 - 3) // 2 + 1, (W + 2 - 5) // 2 + 1)
    assert layer.output_shape((3, H, W)) == expected
    assert layer.forward(np.zeros((2, 3, H, W), np.float32)).shape == (2,) + expected


@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 0)])
def test_conv2d_chunked_equals_unchunked(backend, rng, monkeypatch, stride, padding):
    N, C, F, K, H, W = 5, 2, 3, 3, 6, 7
    x = rng.standard_normal((N, C, H, W))
    whole = Conv2D(C, F, K, stride=stride, padding=padding, rng=1)
    whole.params["b"] = rng.standard_normal(F).astype(np.float32)
    y_whole = whole.forward(x, training=True)
    dy = rng.standard_normal(y_whole.shape)
    dx_whole = whole.backward(dy)

    chunked = Conv2D(C, F, K, stride=stride, padding=padding, rng=1)
    chunked.params = {k: v.copy() for k, v in whole.params.items()}
    OH, OW = y_whole.shape[2:]
    per_image = C * K * K * OH * OW * x.dtype.itemsize
    monkeypatch.setattr(columns_module, "COLS_BUDGET_BYTES", 2 * per_image + 1)
    assert chunked.columns.chunk_size(x) == 2                                # 3 chunks: 2, 2, 1
    assert [(images.start, images.stop) for images, _ in chunked.columns.chunks(x)] == \
        [(0, 2), (2, 4), (4, 5)]
    y_chunked = chunked.forward(x, training=True)
    assert chunked.cols_nbytes == 2 * per_image           # memory bounded by the chunk
    assert whole.cols_nbytes == N * per_image
    dx_chunked = chunked.backward(dy)

    np.testing.assert_allclose(y_chunked, y_whole, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx_chunked, dx_whole, rtol=1e-12, atol=1e-12)
    for name in ("W", "b"):
        np.testing.assert_allclose(chunked.grads[name], whole.grads[name], rtol=1e-12, atol=1e-12)


def test_conv2d_backward_after_second_forward_uses_latest_input(backend, rng):
    """The layer re-uses one column buffer; it must not serve a stale im2col."""
    layer = Conv2D(2, 3, 3, padding=1, rng=0)
    fresh = Conv2D(2, 3, 3, padding=1, rng=0)
    x1, x2 = rng.standard_normal((4, 2, 5, 5)), rng.standard_normal((2, 2, 5, 5))
    layer.forward(x1, training=True)
    layer.forward(x2, training=True)
    dy = rng.standard_normal((2, 3, 5, 5))
    dx = layer.backward(dy)
    fresh.forward(x2, training=True)
    np.testing.assert_allclose(dx, fresh.backward(dy), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.grads["W"], fresh.grads["W"], rtol=1e-12, atol=1e-12)
    # A second backward on the same forward (the buffer now holds dcols) still agrees.
    layer.backward(dy)
    np.testing.assert_allclose(layer.grads["W"], fresh.grads["W"], rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# BatchNorm
# ---------------------------------------------------------------------------
def test_batchnorm2d_training_normalises_each_channel(backend, rng):
    C = 3
    layer = BatchNorm2D(C)
    x = (rng.standard_normal((8, C, 5, 4)) * np.array([0.5, 3.0, 10.0])[None, :, None, None]
         + np.array([-2.0, 0.0, 7.0])[None, :, None, None]).astype(np.float32)
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    var = x.astype(np.float64).var(axis=(0, 2, 3))
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), var / (var + layer.eps), rtol=1e-4)

    gamma, beta = np.array([2.0, 0.5, -1.0], np.float32), np.array([1.0, -3.0, 0.25], np.float32)
    layer.params["gamma"], layer.params["beta"] = gamma, beta
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), beta, atol=1e-4)
    np.testing.assert_allclose(y.std(axis=(0, 2, 3)), np.abs(gamma), rtol=1e-3)


def expected_running(x, axes, momentum, steps):
    """Running mean and (unbiased) variance after ``steps`` updates on the same batch."""
    x = x.astype(np.float64)
    mean = x.mean(axis=axes)
    M = x.size // mean.size
    unbiased = x.var(axis=axes) * M / (M - 1)
    rm, rv = np.zeros_like(mean), np.ones_like(mean)
    for _ in range(steps):
        rm = (1 - momentum) * rm + momentum * mean
        rv = (1 - momentum) * rv + momentum * unbiased
    return rm, rv


@pytest.mark.parametrize("momentum", [0.1, 0.3])
def test_batchnorm2d_running_statistics(backend, rng, momentum):
    layer = BatchNorm2D(2, momentum=momentum)
    x = (rng.standard_normal((4, 2, 3, 3)) * 2.0 + 1.5).astype(np.float32)
    for steps in (1, 2, 3):
        layer.forward(x, training=True)
        rm, rv = expected_running(x, (0, 2, 3), momentum, steps)
        np.testing.assert_allclose(layer.buffers["running_mean"], rm, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(layer.buffers["running_var"], rv, rtol=1e-5, atol=1e-6)


def test_batchnorm2d_eval_uses_running_statistics(backend, rng):
    layer = BatchNorm2D(3)
    layer.params["gamma"] = np.array([1.5, -0.5, 2.0], np.float32)
    layer.params["beta"] = np.array([0.1, 0.2, -0.3], np.float32)
    rm = np.array([0.5, -1.0, 2.0], np.float32)
    rv = np.array([4.0, 0.25, 1.5], np.float32)
    layer.buffers["running_mean"], layer.buffers["running_var"] = rm.copy(), rv.copy()
    x = rng.standard_normal((5, 3, 4, 4)).astype(np.float32)
    y_eval = layer.forward(x, training=False)
    c = (None, slice(None), None, None)
    expected = (layer.params["gamma"][c] * (x - rm[c]) / np.sqrt(rv[c] + layer.eps)
                + layer.params["beta"][c])
    np.testing.assert_allclose(y_eval, expected, rtol=1e-5, atol=1e-6)
    # Evaluation leaves the running statistics alone ...
    np.testing.assert_array_equal(layer.buffers["running_mean"], rm)
    np.testing.assert_array_equal(layer.buffers["running_var"], rv)
    # ... and differs from training mode, which uses the batch statistics.
    y_train = layer.forward(x, training=True)
    assert np.abs(y_train - y_eval).max() > 0.1


def test_batchnorm1d_training_eval_and_running_statistics(backend, rng):
    F, momentum = 4, 0.2
    layer = BatchNorm1D(F, momentum=momentum)
    x = (rng.standard_normal((16, F)) * np.array([1.0, 2.0, 0.1, 5.0]) + 3.0).astype(np.float32)
    y = layer.forward(x, training=True)
    assert y.shape == x.shape
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-5)
    var = x.astype(np.float64).var(axis=0)
    np.testing.assert_allclose(y.var(axis=0), var / (var + layer.eps), rtol=1e-4)
    rm, rv = expected_running(x, 0, momentum, 1)
    np.testing.assert_allclose(layer.buffers["running_mean"], rm, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.buffers["running_var"], rv, rtol=1e-5, atol=1e-6)

    y_eval = layer.forward(x, training=False)
    expected = (x - rm) / np.sqrt(rv + layer.eps)
    np.testing.assert_allclose(y_eval, expected, rtol=1e-5, atol=1e-5)
    assert np.abs(y_eval - y).max() > 0.1


def test_batchnorm1d_and_batchnorm2d_share_one_base_and_pytorchs_argument_order():
    for cls in (BatchNorm1D, BatchNorm2D):
        assert issubclass(cls, BatchNorm)
        layer = cls(4, 1e-3, 0.25)                        # (num_features, eps, momentum)
        assert (layer.num_features, layer.eps, layer.momentum) == (4, 1e-3, 0.25)
        assert layer.config() == dict(num_features=4, eps=1e-3, momentum=0.25)
        assert cls(**layer.config()).config() == layer.config()
        default = cls(4)
        assert (default.eps, default.momentum) == (1e-5, 0.1)   # PyTorch's defaults
    assert not issubclass(BatchNorm1D, BatchNorm2D) and not issubclass(BatchNorm2D, BatchNorm1D)
    # BatchNorm1D is BatchNorm2D's maths with H = W = 1.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    one, two = BatchNorm1D(4, 1e-3, 0.25), BatchNorm2D(4, 1e-3, 0.25)
    np.testing.assert_array_equal(one.forward(x, training=True),
                                  two.forward(x[:, :, None, None], training=True)[:, :, 0, 0])
    for name in ("running_mean", "running_var"):
        np.testing.assert_array_equal(one.buffers[name], two.buffers[name])


def test_batchnorm_training_needs_more_than_one_value(backend):
    with pytest.raises(ValueError, match="BatchNorm1D.*more than one value"):
        BatchNorm1D(3).forward(np.ones((1, 3), np.float32), training=True)
    # Evaluation of a single sample is fine: it uses the running statistics.
    assert BatchNorm1D(3).forward(np.ones((1, 3), np.float32)).shape == (1, 3)


# ---------------------------------------------------------------------------
# Dropout
# ---------------------------------------------------------------------------
def test_dropout_eval_is_identity(backend, rng):
    x = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    layer = Dropout(0.5, rng=0)
    np.testing.assert_array_equal(layer.forward(x, training=False), x)
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), np.ones_like(x))


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_training_is_inverted_dropout(backend, rng, p):
    x = rng.uniform(0.5, 1.5, (50, 4, 10, 10)).astype(np.float32)   # 20,000 units, none zero
    layer = Dropout(p, rng=1)
    y = layer.forward(x, training=True)
    n = x.size
    dropped = y == 0
    # Fraction dropped: binomial(n, p) / n, within 5 standard deviations.
    assert abs(dropped.mean() - p) < 5 * np.sqrt(p * (1 - p) / n)
    # Kept units are scaled by exactly 1 / (1 - p) (in float32).
    scale = np.float32(1.0 / (1.0 - p))
    np.testing.assert_array_equal(y[~dropped], x[~dropped] * scale)
    # The mean is preserved in expectation: E[y] = x.
    sd_of_mean = np.sqrt(p / (1 - p) * (x.astype(np.float64) ** 2).sum()) / n
    assert abs(y.mean(dtype=np.float64) - x.mean(dtype=np.float64)) < 5 * sd_of_mean
    # Backward uses the same mask.
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx = layer.backward(dy)
    np.testing.assert_array_equal(dx[dropped], 0)
    np.testing.assert_array_equal(dx[~dropped], dy[~dropped] * scale)


def test_dropout_masks_follow_the_seed(backend):
    x = np.ones((8, 100), np.float32)
    a = Dropout(0.5, rng=7).forward(x, training=True)
    b = Dropout(0.5, rng=7).forward(x, training=True)
    c = Dropout(0.5, rng=8).forward(x, training=True)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    layer = Dropout(0.5, rng=7)
    first, second = layer.forward(x, training=True), layer.forward(x, training=True)
    assert (first != second).any(), "each forward must draw a fresh mask"


def test_dropout_zero_probability_is_identity_in_training(backend, rng):
    x = rng.standard_normal((3, 5)).astype(np.float32)
    np.testing.assert_array_equal(Dropout(0.0, rng=0).forward(x, training=True), x)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_rejects_bad_probability(p):
    with pytest.raises(ValueError, match=r"Dropout: p must be in \[0, 1\)"):
        Dropout(p)


# ---------------------------------------------------------------------------
# MaxPool2D
# ---------------------------------------------------------------------------
def maxpool_loop(x, K, stride):
    N, C, H, W = x.shape
    OH, OW = (H - K) // stride + 1, (W - K) // stride + 1
    y = np.empty((N, C, OH, OW), x.dtype)
    winner = np.empty((N, C, OH, OW, 2), int)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    window = x[n, c, oh * stride:oh * stride + K, ow * stride:ow * stride + K]
                    i, j = np.unravel_index(np.argmax(window), window.shape)
                    y[n, c, oh, ow] = window[i, j]
                    winner[n, c, oh, ow] = (oh * stride + i, ow * stride + j)
    return y, winner


@pytest.mark.parametrize("K, stride, H, W", [(2, 2, 6, 8), (2, 2, 7, 5), (3, 2, 7, 9),
                                             (3, 3, 9, 6), (2, 1, 4, 5)])
def test_maxpool2d_forward_and_routing(backend, rng, K, stride, H, W):
    N, C = 2, 3
    x = (rng.permutation(N * C * H * W).reshape(N, C, H, W) * 0.01).astype(np.float32)  # no ties
    layer = MaxPool2D(K, stride)
    y = layer.forward(x, training=True)
    expected, winner = maxpool_loop(x, K, stride)
    np.testing.assert_array_equal(y, expected)

    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy)
    routed = np.zeros(x.shape)
    for n, c, oh, ow in np.ndindex(*y.shape):
        h, w = winner[n, c, oh, ow]
        routed[n, c, h, w] += dy[n, c, oh, ow]
    np.testing.assert_allclose(dx, routed, rtol=1e-6, atol=1e-6)
    # Only window winners receive a gradient.
    assert np.count_nonzero(dx) <= y.size
    assert ((dx != 0) <= (routed != 0)).all()


def test_maxpool2d_default_stride_is_kernel_size():
    layer = MaxPool2D(3)
    assert layer.stride == 3
    assert layer.output_shape((2, 9, 10)) == (2, 3, 3)


def test_maxpool2d_rejects_input_smaller_than_window():
    with pytest.raises(ValueError, match="MaxPool2D.*smaller than the 3x3 window"):
        MaxPool2D(3).forward(np.zeros((1, 1, 2, 5), np.float32))


# ---------------------------------------------------------------------------
# ReLU, Flatten, Softmax
# ---------------------------------------------------------------------------
def test_relu_forward_and_backward(backend, rng):
    x = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    layer = ReLU()
    y = layer.forward(x, training=True)
    np.testing.assert_array_equal(y, np.where(x > 0, x, 0))
    dy = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(layer.backward(dy), np.where(x > 0, dy, 0))


def test_flatten_keeps_c_order_and_backward_restores_shape(rng):
    x = rng.standard_normal((3, 2, 4, 5)).astype(np.float32)
    layer = Flatten()
    y = layer.forward(x)
    assert y.shape == (3, 40)
    np.testing.assert_array_equal(y[1], x[1].ravel())
    assert y[2, 1 * 20 + 3 * 5 + 4] == x[2, 1, 3, 4]
    dy = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(layer.backward(dy), dy.reshape(x.shape))
    assert layer.output_shape((2, 4, 5)) == (40,)


def test_softmax_rows_are_probabilities(rng):
    x = 5.0 * rng.standard_normal((6, 4))
    y = Softmax().forward(x)
    assert (y > 0).all()
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-12)
    e = np.exp(x)
    np.testing.assert_allclose(y, e / e.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(Softmax().forward(x + 100.0), y, rtol=1e-10)  # shift invariant


def test_softmax_is_stable_for_huge_scores():
    x = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4]], np.float32)
    y = Softmax().forward(x)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6, atol=1e-30)


# ---------------------------------------------------------------------------
# layer(x): forward in evaluation mode
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("make, shape", [
    (lambda: Conv2D(3, 4, 3, padding=1, rng=0), (2, 3, 6, 6)),
    (lambda: BatchNorm2D(3), (4, 3, 5, 5)),
    (lambda: BatchNorm1D(3), (4, 3)),
    (lambda: MaxPool2D(2), (2, 3, 6, 6)),
    (lambda: Dense(5, 2, rng=0), (3, 5)),
    (lambda: ReLU(), (2, 3, 4)),
    (lambda: Softmax(), (3, 4)),
    (lambda: Dropout(0.5, rng=0), (4, 8)),
    (lambda: Flatten(), (2, 3, 2, 2)),
], ids=lambda v: None)
def test_calling_a_layer_is_its_forward_in_evaluation_mode(rng, make, shape):
    layer = make()
    if isinstance(layer, (BatchNorm1D, BatchNorm2D)):     # non-trivial running statistics
        layer.buffers["running_mean"] = rng.standard_normal(3).astype(np.float32)
        layer.buffers["running_var"] = rng.uniform(0.5, 2.0, 3).astype(np.float32)
    x = rng.standard_normal(shape).astype(np.float32)
    y = layer(x)
    np.testing.assert_array_equal(y, layer.forward(x))
    np.testing.assert_array_equal(y, layer.forward(x, training=False))
    np.testing.assert_array_equal(y, layer.forward(x, False, checked=True))
    if isinstance(layer, (Dropout, BatchNorm1D, BatchNorm2D)):   # training mode differs
        assert np.abs(layer(x, training=True) - y).max() > 1e-3
    with pytest.raises(TypeError):                        # layer(x) checks its input
        layer(x.astype(np.int64))


def test_checked_forward_skips_the_input_checks():
    x = np.ones((2, 3, 2), np.float32)
    x[0, 0, 1] = np.nan
    with pytest.raises(ValueError, match="Flatten.*NaN or infinite"):
        Flatten().forward(x)
    y = Flatten().forward(x, checked=True)                # the caller vouched for x
    assert y.shape == (2, 6) and np.isnan(y[0, 1])


# ---------------------------------------------------------------------------
# Input validation: errors name the layer, the expected and the received input
# ---------------------------------------------------------------------------
def test_wrong_rank_is_rejected():
    with pytest.raises(ValueError, match=re.escape("Conv2D") + r".*\(N, 3, H, W\).*\(3, 8\)"):
        Conv2D(3, 4, 3).forward(np.zeros((2, 3, 8), np.float32))
    with pytest.raises(ValueError, match=r"MaxPool2D.*\(N, C, H, W\).*\(3, 8, 8, 1\)"):
        MaxPool2D(2).forward(np.zeros((2, 3, 8, 8, 1), np.float32))
    with pytest.raises(ValueError, match=r"Dense.*\(N, 6\).*\(2, 3\)"):
        Dense(6, 2).forward(np.zeros((4, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm1D.*\(N, 3\).*\(3, 4, 4\)"):
        BatchNorm1D(3).forward(np.zeros((2, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm2D.*\(N, 3, H, W\).*\(3,\)"):
        BatchNorm2D(3).forward(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"Softmax.*\(N, K\).*\(4, 1\)"):
        Softmax().forward(np.zeros((2, 4, 1), np.float32))


def test_wrong_channel_count_is_rejected():
    with pytest.raises(ValueError, match=r"Conv2D.*expects 3 input channels.*got 4.*\(4, 8, 8\)"):
        Conv2D(3, 4, 3).forward(np.zeros((2, 4, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm2D.*expects 5 input channels.*got 2"):
        BatchNorm2D(5).forward(np.zeros((2, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"Dense.*expects 10 input features.*got 9"):
        Dense(10, 3).forward(np.zeros((2, 9), np.float32))


@pytest.mark.parametrize("layer", [Conv2D(3, 2, 3), BatchNorm2D(3), MaxPool2D(2), ReLU(),
                                   Dropout(0.5), Flatten()], ids=lambda layer: type(layer).__name__)
@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.float16])
def test_non_float_input_is_a_type_error(layer, dtype):
    x = np.ones((2, 3, 6, 6), dtype=dtype)
    name = type(layer).__name__
    with pytest.raises(TypeError, match=f"{name}.*float32.*got dtype {np.dtype(dtype).name}"):
        layer.forward(x)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("layer", [Conv2D(3, 2, 3), BatchNorm2D(3), MaxPool2D(2), ReLU()],
                         ids=lambda layer: type(layer).__name__)
def test_non_finite_input_is_a_value_error(layer, bad):
    x = np.ones((2, 3, 6, 6), dtype=np.float32)
    x[1, 2, 3, 4] = bad
    with pytest.raises(ValueError, match=f"{type(layer).__name__}.*NaN or infinite.*"
                                         + re.escape("(2, 3, 6, 6)")):
        layer.forward(x, training=True)


def test_non_array_input_is_a_type_error():
    with pytest.raises(TypeError, match=r"Dense.*NumPy array.*got list"):
        Dense(2, 2).forward([[1.0, 2.0]])


@pytest.mark.parametrize("layer, x_shape, bad_dy_shape", [
    (Conv2D(2, 3, 3), (2, 2, 5, 5), (2, 3, 5, 5)),
    (BatchNorm2D(2), (2, 2, 4, 4), (2, 2, 4)),
    (MaxPool2D(2), (1, 2, 4, 4), (1, 2, 4, 4)),
    (Dense(4, 3), (5, 4), (5, 4)),
    (ReLU(), (3, 4), (4, 3)),
    (Softmax(), (3, 4), (3, 5)),
    (Dropout(0.5, rng=0), (3, 4), (3, 4, 1)),
    (Flatten(), (2, 3, 2, 2), (2, 3, 2, 2)),
], ids=lambda v: type(v).__name__ if not isinstance(v, tuple) else None)
def test_backward_with_wrong_gradient_shape(backend, layer, x_shape, bad_dy_shape):
    y = layer.forward(np.ones(x_shape, np.float32), training=True)
    with pytest.raises(ValueError, match=f"{type(layer).__name__}.*backward.*"
                                         + re.escape(str(y.shape)) + ".*"
                                         + re.escape(str(bad_dy_shape))):
        layer.backward(np.ones(bad_dy_shape, np.float32))


def test_backward_before_forward_is_an_error():
    with pytest.raises(RuntimeError, match="Conv2D.*forward before backward"):
        Conv2D(1, 1, 1).backward(np.ones((1, 1, 1, 1), np.float32))


@pytest.mark.parametrize("make, message", [
    (lambda: Conv2D(0, 3, 3), "in_channels"),
    (lambda: Conv2D(3, 3, 3, stride=0), "stride"),
    (lambda: Conv2D(3, 3, 3, padding=-1), "padding"),
    (lambda: Conv2D(3, 3, 3, init="zeros"), "init"),
    (lambda: Dense(3, 0), "out_features"),
    (lambda: MaxPool2D(0), "kernel_size"),
    (lambda: BatchNorm2D(3, momentum=1.5), "momentum"),
    (lambda: BatchNorm2D(3, eps=0), "eps"),
])
def test_constructor_arguments_are_validated(make, message):
    with pytest.raises(ValueError, match=message):
        make()
