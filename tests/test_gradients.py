"""Finite-difference gradient checks (float64) for every layer and the loss, on both backends.

``numcnn.gradcheck`` compares ``backward`` with central differences of
``sum(forward(x) * dy)`` for a random ``dy``; it reports the worst relative error
for the input and for every parameter. A correct backward in float64 gives
errors around 1e-9; a wrong one gives errors of order 1e-2 or more.
"""
import numpy as np
import pytest

import numcnn
from numcnn import gradcheck_loss
from numcnn.layers import (BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten,
                           MaxPool2D, ReLU, Softmax)
from numcnn.losses import SoftmaxCrossEntropy

TOL = 1e-6
#: Seed of gradcheck's random upstream gradient. Not 0: the ``rng`` fixture is
#: seeded with 0, and an input equal to dy makes BatchNorm's input gradient vanish.
DY_SEED = 12345


def assert_gradients_ok(layer, x, training=True):
    errors = numcnn.gradcheck(layer, x, training=training, seed=DY_SEED)
    expected_keys = {"x"} | set(layer.params)
    assert set(errors) == expected_keys, f"gradcheck did not check {expected_keys - set(errors)}"
    bad = {name: err for name, err in errors.items() if not err < TOL}
    assert not bad, f"{layer!r}: relative errors above {TOL}: {bad}"
    return errors


def randomise_params(layer, rng):
    """Replace every parameter by random values (zero biases would hide bias bugs)."""
    for name, value in layer.params.items():
        layer.params[name] = rng.standard_normal(value.shape).astype(value.dtype)


def no_ties(rng, shape, spacing=0.1):
    """Distinct values spaced far apart compared with the finite-difference step."""
    size = int(np.prod(shape))
    return (rng.permutation(size).reshape(shape) - size / 2) * spacing


def away_from_zero(rng, shape, margin=0.1):
    x = rng.standard_normal(shape)
    return np.where(x >= 0, x + margin, x - margin)


# ---------------------------------------------------------------------------
# Conv2D
# ---------------------------------------------------------------------------
CONV_CASES = [
    # C, F, kernel, stride, padding, H, W
    (2, 3, 3, 1, 0, 5, 5),
    (2, 3, 3, 1, 1, 5, 5),
    (2, 2, 3, 2, 1, 6, 7),
    (1, 2, (2, 3), 1, 0, 4, 5),   # non-square kernel
    (2, 2, (3, 2), 2, 1, 5, 6),   # non-square kernel, stride and padding
    (3, 2, 1, 1, 0, 3, 3),        # 1x1 kernel
    (1, 2, 4, 3, 2, 6, 5),        # stride larger than 1, kernel wider than stride
]


@pytest.mark.parametrize("C, F, kernel, stride, padding, H, W", CONV_CASES)
def test_conv2d_gradients(backend, rng, C, F, kernel, stride, padding, H, W):
    layer = Conv2D(C, F, kernel, stride=stride, padding=padding, rng=1)
    randomise_params(layer, rng)
    x = rng.standard_normal((2, C, H, W))
    assert_gradients_ok(layer, x)


@pytest.mark.parametrize("stride, padding", [(1, 0), (1, 1), (2, 1)])
def test_direct_convolution_backward_matches_finite_differences(rng, stride, padding):
    """The definition's own gradients (the direct loops test_layers.py compares the
    layer with) are right too: the ladder stands on finite differences."""
    from numcnn.finite_differences import relative_error
    from numcnn.kernels import reference
    x = rng.standard_normal((2, 2, 5, 6))
    W = rng.standard_normal((3, 2, 3, 2))
    b = rng.standard_normal(3)
    y = reference.conv2d_direct(x, W, b, stride, padding)
    dy = np.random.default_rng(DY_SEED).standard_normal(y.shape)
    dx, dW, db = reference.conv2d_direct_backward(dy, x, W, stride, padding)
    def objective():
        return float((reference.conv2d_direct(x, W, b, stride, padding) * dy).sum())

    for name, analytic, array in (("x", dx, x), ("W", dW, W), ("b", db, b)):
        error = relative_error(analytic, numcnn.numerical_gradient(objective, array))
        assert error < TOL, f"d{name}: relative error {error}"


# ---------------------------------------------------------------------------
# BatchNorm
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batchnorm2d_gradients(backend, rng, training):
    layer = BatchNorm2D(3)
    randomise_params(layer, rng)
    layer.buffers["running_mean"] = rng.standard_normal(3).astype(np.float32)
    layer.buffers["running_var"] = rng.uniform(0.5, 2.0, 3).astype(np.float32)
    x = 1.5 * rng.standard_normal((3, 3, 4, 3)) + 0.7
    assert_gradients_ok(layer, x, training=training)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batchnorm1d_gradients(backend, rng, training):
    layer = BatchNorm1D(5)
    randomise_params(layer, rng)
    layer.buffers["running_mean"] = rng.standard_normal(5).astype(np.float32)
    layer.buffers["running_var"] = rng.uniform(0.5, 2.0, 5).astype(np.float32)
    x = 2.0 * rng.standard_normal((6, 5)) - 0.3
    assert_gradients_ok(layer, x, training=training)


def test_gradcheck_leaves_the_dropout_generator_alone(rng):
    """In a model every Dropout draws from the model's Generator (that is what makes
    training reproducible and resumable); gradcheck must not leave a different one."""
    model = numcnn.Sequential([Dropout(0.5)], seed=0)
    layer = model.layers[0]
    assert layer.rng is model.rng
    numcnn.gradcheck(layer, rng.standard_normal((3, 4)), training=True)
    assert layer.rng is model.rng


def test_gradcheck_restores_batchnorm_state(rng):
    layer = BatchNorm2D(2)
    before = {k: v.copy() for k, v in layer.buffers.items()}
    numcnn.gradcheck(layer, rng.standard_normal((2, 2, 3, 3)), training=True)
    for name, value in layer.buffers.items():
        np.testing.assert_array_equal(value, before[name])
    assert all(p.dtype == np.float32 for p in layer.params.values())


# ---------------------------------------------------------------------------
# MaxPool2D
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("K, stride, H, W", [(2, 2, 6, 6), (2, 2, 5, 7), (3, 2, 7, 7), (3, 2, 6, 8)])
def test_maxpool2d_gradients(backend, rng, K, stride, H, W):
    layer = MaxPool2D(K, stride)
    x = no_ties(rng, (2, 2, H, W))
    assert_gradients_ok(layer, x)


# ---------------------------------------------------------------------------
# Dropout, Dense, activations, Flatten
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.25, 0.5])
def test_dropout_gradients_training(backend, rng, p):
    layer = Dropout(p, rng=3)
    x = rng.standard_normal((4, 3, 3, 3))
    assert_gradients_ok(layer, x, training=True)


def test_dropout_gradients_eval(backend, rng):
    assert_gradients_ok(Dropout(0.5, rng=3), rng.standard_normal((3, 7)), training=False)


def test_dense_gradients(backend, rng):
    layer = Dense(7, 4, rng=2)
    randomise_params(layer, rng)
    assert_gradients_ok(layer, rng.standard_normal((5, 7)))


def test_relu_gradients(backend, rng):
    assert_gradients_ok(ReLU(), away_from_zero(rng, (3, 2, 4, 4)))


def test_flatten_gradients(backend, rng):
    assert_gradients_ok(Flatten(), rng.standard_normal((3, 2, 3, 4)))


def test_softmax_gradients(backend, rng):
    assert_gradients_ok(Softmax(), 2.0 * rng.standard_normal((5, 6)))


# ---------------------------------------------------------------------------
# The loss
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("class_weights, label_smoothing", [
    (None, 0.0),
    ([0.5, 2.0, 1.0, 3.0], 0.0),
    (None, 0.1),
    ([0.5, 2.0, 1.0, 3.0], 0.2),
])
def test_softmax_cross_entropy_gradients(rng, class_weights, label_smoothing):
    loss = SoftmaxCrossEntropy(class_weights=class_weights, label_smoothing=label_smoothing)
    logits = 2.0 * rng.standard_normal((7, 4))
    labels = np.array([0, 1, 2, 3, 1, 3, 0])
    assert gradcheck_loss(loss, logits, labels) < TOL


# ---------------------------------------------------------------------------
# The check has teeth
# ---------------------------------------------------------------------------
def test_gradcheck_catches_wrong_input_gradient(rng, monkeypatch):
    layer = Conv2D(2, 3, 3, padding=1, rng=0)
    right_backward = layer._backward

    def wrong_backward(dy, input_grad=True):
        return 1.01 * right_backward(dy, input_grad)

    monkeypatch.setattr(layer, "_backward", wrong_backward)
    errors = numcnn.gradcheck(layer, rng.standard_normal((2, 2, 4, 4)), seed=DY_SEED)
    # |1.01 a - a| / (|1.01 a| + |a|) = 0.01 / 2.01 for every entry.
    assert errors["x"] > 1e-3
    assert errors["W"] < TOL and errors["b"] < TOL   # the parameter gradients were not touched


def test_gradcheck_catches_wrong_parameter_gradient(rng, monkeypatch):
    layer = BatchNorm2D(2)
    right_backward = layer._backward

    def wrong_backward(dy, input_grad=True):
        dx = right_backward(dy, input_grad)
        layer.grads["gamma"] = 1.01 * layer.grads["gamma"]
        return dx

    monkeypatch.setattr(layer, "_backward", wrong_backward)
    errors = numcnn.gradcheck(layer, rng.standard_normal((3, 2, 3, 3)), seed=DY_SEED)
    assert errors["gamma"] > 1e-3
    assert errors["x"] < TOL and errors["beta"] < TOL


def test_gradcheck_loss_catches_wrong_gradient(rng, monkeypatch):
    loss = SoftmaxCrossEntropy()
    right_backward = loss.backward
    monkeypatch.setattr(loss, "backward", lambda: 1.01 * right_backward())
    assert gradcheck_loss(loss, rng.standard_normal((4, 3)), np.array([0, 1, 2, 1])) > 1e-3
