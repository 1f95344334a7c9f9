"""Grad-CAM, saliency, feature maps and the per-layer profile."""
import time

import numpy as np
import pytest

import numcnn
from numcnn.layers import BatchNorm2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from numcnn.plan import build_plan


def tiny_model(seed=0, side=8):
    model = numcnn.Sequential([
        Conv2D(3, 4, 3, padding=1), BatchNorm2D(4), ReLU(), MaxPool2D(2), Dropout(0.3),
        Conv2D(4, 5, 3, padding=1), ReLU(), Flatten(), Dense(5 * (side // 2) ** 2, 3),
    ], seed=seed)
    model.compile(numcnn.optim.Adam(1e-2), numcnn.losses.SoftmaxCrossEntropy())
    return model


@pytest.fixture
def trained(rng):
    x = rng.standard_normal((24, 3, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, 24)
    model = tiny_model()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)  # running statistics become non-trivial
    return model, x


def class_scores(model, x):
    """The logits, by hand: every layer, in evaluation mode (the model ends in logits)."""
    h = x
    for layer in model.layers:
        h = layer.forward(h, training=False)
    return h


def test_class_scores_are_the_models_logits(trained):
    model, x = trained
    np.testing.assert_array_equal(class_scores(model, x), model(x))


def test_grad_cam_weights_are_the_mean_gradients_computed_by_hand(trained):
    model, x = trained
    conv = model.layers[5]
    result = numcnn.explain.grad_cam(model, x[:3], layer=conv, class_index=1)
    # By hand: the activation A of the second Conv2D, and d(score_1)/dA by
    # backpropagating a one-hot through the layers after it, one at a time.
    h = x[:3].astype(np.float32)
    for layer in model.layers[:6]:
        h = layer.forward(h, training=False)
    activation = h.copy()
    for layer in model.layers[6:]:
        h = layer.forward(h, training=False)
    upstream = np.zeros_like(h)
    upstream[:, 1] = 1.0
    for layer in reversed(model.layers[6:]):
        upstream = layer.backward(upstream)
    expected_weights = upstream.mean(axis=(2, 3))
    np.testing.assert_allclose(result["weights"], expected_weights, rtol=1e-5, atol=1e-7)
    expected_cam = np.maximum((expected_weights[:, :, None, None] * activation).sum(axis=1), 0)
    np.testing.assert_allclose(result["cam"], expected_cam, rtol=1e-5, atol=1e-6)
    assert result["heatmap"].shape == (3, 8, 8)
    assert result["heatmap"].min() >= 0 and result["heatmap"].max() <= 1


def test_grad_cam_explains_the_predicted_class_by_default(trained):
    model, x = trained
    result = numcnn.explain.grad_cam(model, x[:4])
    np.testing.assert_array_equal(result["classes"], model.predict(x[:4]).argmax(axis=1))


def test_saliency_matches_finite_differences(trained):
    model, x = trained
    image = x[:1].astype(np.float64)
    for layer in model.layers:  # float64 parameters for a clean finite difference
        layer.params = {k: v.astype(np.float64) for k, v in layer.params.items()}
    gradient = numcnn.explain.saliency(model, image.astype(np.float32), class_index=2)["gradient"]
    # saliency runs in float32 (the model casts its input); compare with a float64 oracle
    score = lambda: float(class_scores(model, image)[0, 2])  # noqa: E731
    numeric = numcnn.numerical_gradient(score, image, h=1e-4)
    scale = np.abs(numeric).max()
    np.testing.assert_allclose(gradient, numeric, atol=2e-3 * scale)


def test_saliency_map_is_the_channel_maximum_of_the_absolute_gradient(trained):
    model, x = trained
    result = numcnn.explain.saliency(model, x[:2])
    np.testing.assert_array_equal(result["map"], np.abs(result["gradient"]).max(axis=1))


def test_feature_maps_returns_one_layers_activation(trained):
    model, x = trained
    maps = numcnn.explain.feature_maps(model, x[0], "relu_1")
    h = x[:1]
    for layer in model.layers[:3]:
        h = layer.forward(h, training=False)
    np.testing.assert_array_equal(maps, h[0])


def test_explain_names_a_missing_layer(trained):
    model, x = trained
    with pytest.raises(ValueError, match="no layer 'conv2d_9'"):
        numcnn.explain.grad_cam(model, x[:1], layer="conv2d_9")


def test_profile_bytes_match_the_arrays(trained):
    model, x = trained
    y = np.zeros(len(x), dtype=np.int64)
    result = model.profile(x, y, print_fn=None)
    h = x
    assert len(result["layers"]) == len(model.layers)
    for row, layer in zip(result["layers"], model.layers):
        h = layer.forward(h, training=False)
        assert row["output_bytes"] == h.nbytes
        assert row["output_shape"] == h.shape
        assert row["params"] == sum(p.size for p in layer.params.values())
    conv = model.layers[0]
    N, (C, H, W) = len(x), x.shape[1:]
    assert result["layers"][0]["im2col_bytes"] == C * 3 * 3 * N * H * W * 4
    assert result["layers"][1]["im2col_bytes"] == 0
    assert conv.cols_nbytes == C * 9 * N * H * W * 4


def test_profile_leaves_the_model_unchanged(trained):
    model, x = trained
    before = model.predict(x)
    model.profile(x, np.zeros(len(x), dtype=np.int64), print_fn=None)
    np.testing.assert_array_equal(model.predict(x), before)


def test_profile_total_agrees_with_a_timed_training_step(rng):
    model = tiny_model(side=32)
    x = rng.standard_normal((64, 3, 32, 32)).astype(np.float32)
    model.compile(numcnn.optim.SGD(1e-3), numcnn.losses.SoftmaxCrossEntropy())
    # The profile runs the layers one by one; so does the step it is set beside (the
    # plan's fused steps and direct convolutions are faster, which says nothing here).
    model.plan = lambda: build_plan(model.layers, fuse=False)
    y = rng.integers(0, 3, 64)
    model.train_step(x, y)  # compile and warm up
    steps, profiles = [], []
    for _ in range(5):
        began = time.perf_counter()
        model.train_step(x, y)
        steps.append(time.perf_counter() - began)
        profiles.append(model.profile(x, y, print_fn=None)["total_ms"] / 1e3)
    # The profile is the step without the optimizer update: same order of magnitude.
    # Minima, the least disturbed call of each: on a loaded machine (a training run
    # beside the suite) the medians of five calls once gave 0.28.
    ratio = min(profiles) / min(steps)
    assert 0.3 < ratio < 3.0, (min(profiles), min(steps))


def test_profile_prints_a_table(trained, capsys):
    model, x = trained
    model.profile(x, np.zeros(len(x), dtype=np.int64))
    out = capsys.readouterr().out
    assert "conv2d_1" in out and "forward ms" in out and "im2col MB" in out
