"""Sequential end to end: summary, fit, evaluate, predict, save/load, resume,
input errors, non-finite losses, backends, and the callbacks.
"""
import math
import warnings

import numpy as np
import pytest

import numcnn
from numcnn.callbacks import (Callback, EarlyStopping, History, LearningRateScheduler,
                              ModelCheckpoint, cosine_schedule)
from numcnn.layers import (BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten,
                           MaxPool2D, ReLU, Softmax)
from numcnn.layers.activation import softmax
from numcnn.losses import SoftmaxCrossEntropy
from numcnn.optim import SGD, Adam

C, H, W, K = 2, 8, 8, 3


def make_layers(dropout=0.25, final_softmax=False):
    layers = [Conv2D(C, 4, 3, padding=1), BatchNorm2D(4), ReLU(), MaxPool2D(2),   # 4 x 4 x 4
              Conv2D(4, 6, (3, 2), stride=1, padding=1), ReLU(),                 # 6 x 4 x 5
              Flatten(), Dense(6 * 4 * 5, 12), BatchNorm1D(12), ReLU(),
              Dropout(dropout), Dense(12, K)]
    if final_softmax:
        layers.append(Softmax())
    return layers


def make_model(seed=0, lr=1e-2, optimizer=None, **kwargs):
    model = numcnn.Sequential(make_layers(**kwargs), seed=seed)
    return model.compile(SoftmaxCrossEntropy(), optimizer or Adam(lr))


def make_data(n=96, seed=1):
    """Three classes told apart by where the signal is: easy to learn, not trivial."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % K
    rng.shuffle(y)
    x = 0.3 * rng.standard_normal((n, C, H, W))
    x[y == 0, 0, :4, :4] += 1.0     # top-left of channel 0
    x[y == 1, 0, 4:, 4:] += 1.0     # bottom-right of channel 0
    x[y == 2, 1, 2:6, 2:6] += 1.0   # centre of channel 1
    return x.astype(np.float32), y


def flip_augment(xb, rng):
    """Random horizontal flips, drawn from the model's Generator."""
    flip = rng.random(len(xb)) < 0.5
    out = xb.copy()
    out[flip] = out[flip, :, :, ::-1]
    return out


def weights_of(model, buffers=True):
    """Copies of every parameter (and running statistic), with stable names."""
    return [(f"{i}.{kind}.{name}", value.copy())
            for i, layer in enumerate(model.layers)
            for kind, store in (("param", layer.params), ("buffer", layer.buffers))
            if buffers or kind == "param"
            for name, value in store.items()]


def assert_same_weights(a, b):
    wa, wb = weights_of(a), weights_of(b)
    assert [k for k, _ in wa] == [k for k, _ in wb]
    for (key, va), (_, vb) in zip(wa, wb):
        assert va.dtype == vb.dtype, key
        np.testing.assert_array_equal(va, vb, err_msg=key)


# ---------------------------------------------------------------------------
# Structure
# ---------------------------------------------------------------------------
def test_summary_counts_parameters_by_hand():
    model = numcnn.Sequential(make_layers(), seed=0)
    text = model.summary(input_shape=(C, H, W), print_fn=None)
    per_layer = []
    for layer in model.layers:
        if isinstance(layer, Conv2D):
            n = layer.out_channels * layer.in_channels * layer.KH * layer.KW + layer.out_channels
        elif isinstance(layer, Dense):
            n = layer.in_features * layer.out_features + layer.out_features
        elif isinstance(layer, (BatchNorm2D, BatchNorm1D)):
            n = 2 * layer.num_features                      # gamma and beta
        else:
            n = 0
        per_layer.append(n)
        assert layer.num_params() == n, layer
    trainable = sum(per_layer)
    frozen = sum(2 * layer.num_features for layer in model.layers
                 if isinstance(layer, (BatchNorm2D, BatchNorm1D)))   # running mean and var
    assert model.num_params() == trainable
    assert f"Total params: {trainable + frozen:,}" in text
    assert f"Trainable params: {trainable:,}" in text
    assert f"Non-trainable params: {frozen:,}" in text
    lines = text.splitlines()
    for layer, n in zip(model.layers, per_layer):
        row = next(line for line in lines if line.startswith(f"{layer.name} ("))
        assert row.split()[-1] == f"{n:,}"
    # Output shapes: conv keeps 8x8 (padding 1), pool halves, (3, 2) kernel with padding 1
    # gives (4 + 2 - 3 + 1, 4 + 2 - 2 + 1) = (4, 5).
    assert "(None, 4, 8, 8)" in text and "(None, 6, 4, 5)" in text and "(None, 120)" in text
    assert "(None, 3)" in text


def test_summary_without_input_shape_is_an_error():
    with pytest.raises(ValueError, match="input shape is unknown"):
        numcnn.Sequential(make_layers(), seed=0).summary(print_fn=None)


def test_mismatched_layers_are_caught_at_build():
    layers = [Conv2D(C, 4, 3), Flatten(), Dense(4 * 8 * 8, 3)]   # conv gives 6x6, not 8x8
    with pytest.raises(ValueError, match=r"Dense layer 'dense_1' expects 256 input features.*got 144"):
        numcnn.Sequential(layers, input_shape=(C, H, W))


def test_layer_names_are_numbered_per_kind():
    model = numcnn.Sequential(make_layers(), seed=0)
    names = [layer.name for layer in model.layers]
    assert names[0] == "conv2d_1" and names[4] == "conv2d_2" and names[-1] == "dense_2"
    assert len(set(names)) == len(names)


# ---------------------------------------------------------------------------
# Training, evaluation, prediction
# ---------------------------------------------------------------------------
def test_fit_learns_a_small_synthetic_problem():
    x, y = make_data()
    model = make_model(seed=0)
    before = model.evaluate(x, y)["loss"]
    history = model.fit(x, y, epochs=8, batch_size=16, verbose=0)
    after = model.evaluate(x, y)
    assert after["loss"] < 0.25 * before
    assert after["loss"] < 0.25 * math.log(K)          # far below chance level
    assert after["accuracy"] >= 0.95
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert history.epochs == list(range(8))
    assert set(history.history) >= {"loss", "accuracy", "lr", "seconds"}
    assert model.epoch == 8


def test_predict_returns_probabilities():
    x, y = make_data(n=30)
    model = make_model()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    probs = model.predict(x, batch_size=7)    # several batches, the last one short
    assert probs.shape == (30, K) and probs.dtype == np.float32
    assert (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(probs, model.predict(x, batch_size=256))  # eval mode: deterministic


def test_validation_data_is_evaluated_each_epoch():
    x, y = make_data(n=48)
    xv, yv = make_data(n=24, seed=5)
    model = make_model()
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0, validation_data=(xv, yv))
    assert len(history.history["val_loss"]) == 2
    scores = model.evaluate(xv, yv)
    assert history.history["val_loss"][-1] == pytest.approx(scores["loss"], rel=1e-12)
    assert history.history["val_accuracy"][-1] == pytest.approx(scores["accuracy"])


def test_trailing_softmax_is_skipped_in_training_and_applied_once_by_predict():
    x, y = make_data(n=48)
    with_softmax = make_model(seed=3, final_softmax=True)
    logits_only = make_model(seed=3, final_softmax=False)
    with_softmax.fit(x, y, epochs=2, batch_size=16, verbose=0)
    logits_only.fit(x, y, epochs=2, batch_size=16, verbose=0)
    # The fused loss saw logits in both: the same training, step for step.
    for a, b in zip(with_softmax.layers, logits_only.layers):
        for name in a.params:
            np.testing.assert_array_equal(a.params[name], b.params[name])
    probs = with_softmax.predict(x)
    np.testing.assert_allclose(probs, logits_only.predict(x), rtol=1e-6, atol=1e-7)
    logits = logits_only._forward(x, training=False)
    np.testing.assert_allclose(probs, softmax(logits.astype(np.float64)), rtol=1e-5, atol=1e-7)
    twice = softmax(softmax(logits.astype(np.float64)))
    assert np.abs(probs - twice).max() > 1e-2          # not softmax applied twice
    assert with_softmax.evaluate(x, y)["loss"] == pytest.approx(logits_only.evaluate(x, y)["loss"],
                                                                rel=1e-6)


class GradientRecorder(SGD):
    """SGD that keeps a copy of the gradients it was given."""

    def step(self, slots):
        self.seen = {key: grad.copy() for key, _, grad in slots}
        super().step(slots)


def test_backends_give_the_same_loss_and_gradients():
    x, y = make_data(n=16)
    results = {}
    for name in ("numpy", "numba"):
        with numcnn.use_backend(name):
            model = numcnn.Sequential(make_layers(dropout=0.3), seed=11)
            model.compile(SoftmaxCrossEntropy(), GradientRecorder(0.1))
            loss, _ = model.train_step(x, y)
            results[name] = (loss, model.optimizer.seen, weights_of(model))
    loss_np, grads_np, weights_np = results["numpy"]
    loss_nb, grads_nb, weights_nb = results["numba"]
    assert loss_nb == pytest.approx(loss_np, rel=1e-5)
    assert set(grads_np) == set(grads_nb)
    assert len(grads_np) == sum(len(layer.params) for layer in make_layers())
    # One scale for all: the bias of a conv followed by BatchNorm has an exactly zero
    # gradient, so its computed value is pure round-off and has no size of its own.
    scale = max(np.abs(g).max() for g in grads_np.values())
    for key in grads_np:
        np.testing.assert_allclose(grads_nb[key], grads_np[key], rtol=1e-4, atol=1e-5 * scale,
                                   err_msg=key)
    for (key, a), (_, b) in zip(weights_np, weights_nb):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, err_msg=key)


# ---------------------------------------------------------------------------
# Save, load, resume
# ---------------------------------------------------------------------------
def test_save_load_gives_identical_predictions(tmp_path):
    x, y = make_data(n=48)
    model = make_model()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "model.npz"
    assert model.save(path) == str(path)
    assert not (tmp_path / "model.npz.partial").exists()
    loaded = numcnn.load(path)
    assert_same_weights(loaded, model)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.evaluate(x, y) == model.evaluate(x, y)
    assert loaded.epoch == 2
    assert loaded.history.epochs == model.history.epochs
    assert loaded.history.history == model.history.history
    assert type(loaded.optimizer) is Adam and loaded.optimizer.iterations == model.optimizer.iterations
    assert loaded.optimizer.lr == model.optimizer.lr
    assert [type(a) for a in loaded.layers] == [type(b) for b in model.layers]
    assert [repr(a) for a in loaded.layers] == [repr(b) for b in model.layers]


@pytest.mark.parametrize("make_optimizer", [
    lambda: Adam(1e-2, weight_decay=0.01),
    lambda: SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
], ids=["adam", "sgd-nesterov"])
def test_resume_from_checkpoint_is_bitwise_identical(tmp_path, make_optimizer):
    x, y = make_data(n=40)
    kwargs = dict(batch_size=16, shuffle=True, augment=flip_augment, verbose=0)

    straight = make_model(seed=7, dropout=0.3, optimizer=make_optimizer())
    straight.fit(x, y, epochs=2, callbacks=[ModelCheckpoint(tmp_path / "straight-{epoch}.npz")],
                 **kwargs)
    assert (tmp_path / "straight-1.npz").exists() and (tmp_path / "straight-2.npz").exists()

    first = make_model(seed=7, dropout=0.3, optimizer=make_optimizer())
    first.fit(x, y, epochs=1, callbacks=[ModelCheckpoint(tmp_path / "interrupted.npz")], **kwargs)
    del first                                             # the process "dies" here
    resumed = numcnn.load(tmp_path / "interrupted.npz")
    assert resumed.epoch == 1
    assert type(resumed.optimizer) is type(straight.optimizer)
    assert resumed.optimizer.config() == straight.optimizer.config()
    resumed.fit(x, y, epochs=2, **kwargs)

    assert_same_weights(resumed, straight)
    assert resumed.optimizer.iterations == straight.optimizer.iterations
    for key, value in straight.optimizer.state_arrays().items():
        np.testing.assert_array_equal(resumed.optimizer.state_arrays()[key], value, err_msg=key)
    assert resumed.history.epochs == straight.history.epochs == [0, 1]
    for key in ("loss", "accuracy", "lr"):
        assert resumed.history.history[key] == straight.history.history[key], key
    # And the checkpoint written after the second epoch is the same model too.
    assert_same_weights(numcnn.load(tmp_path / "straight-2.npz"), straight)


def test_save_keeps_the_given_file_name(tmp_path):
    model = make_model()
    path = tmp_path / "model.ckpt"          # not .npz: must be written (and read) as named
    model.save(path)
    assert path.exists() and not (tmp_path / "model.ckpt.npz").exists()
    assert_same_weights(numcnn.load(path), model)


def test_load_of_a_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "model.npz"
    with pytest.raises(FileNotFoundError, match="model.npz"):
        numcnn.load(path)


def test_load_of_random_bytes(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(np.random.default_rng(0).bytes(2048))
    with pytest.raises(ValueError, match=r"garbage\.npz.*not a readable numcnn model file"):
        numcnn.load(path)


def test_load_of_a_truncated_model(tmp_path):
    model = make_model()
    good = tmp_path / "good.npz"
    model.save(good)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"cut\.npz"):
        numcnn.load(cut)


def test_load_of_a_foreign_npz(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, weights=np.ones(3), labels=np.arange(4))
    with pytest.raises(ValueError, match=r"foreign\.npz.*not a numcnn model"):
        numcnn.load(path)


def test_load_of_a_model_with_a_missing_array(tmp_path):
    model = make_model()
    path = tmp_path / "model.npz"
    model.save(path)
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    del arrays["layer1/buffer/running_var"]
    damaged = tmp_path / "damaged.npz"
    np.savez(damaged, **arrays)
    with pytest.raises(ValueError, match=r"damaged\.npz.*layer1/buffer/running_var.*BatchNorm2D"):
        numcnn.load(damaged)


# ---------------------------------------------------------------------------
# Bad input to fit
# ---------------------------------------------------------------------------
def test_fit_rejects_labels_out_of_range():
    x, y = make_data(n=12)
    y = y.copy()
    y[5] = K
    with pytest.raises(ValueError, match=r"fit: y.*\[0, 3\).*got 3"):
        make_model().fit(x, y, epochs=1, verbose=0)


def test_fit_rejects_integer_images():
    x, y = make_data(n=12)
    with pytest.raises(TypeError, match="fit: x must be float32.*got dtype uint8"):
        make_model().fit((x * 100).astype(np.uint8), y, epochs=1, verbose=0)


def test_fit_rejects_nan_images():
    x, y = make_data(n=12)
    x[3, 1, 2, 2] = np.nan
    x[7, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"fit: x holds NaN or infinite values \(2 of 12 samples\)"):
        make_model().fit(x, y, epochs=1, verbose=0)


def test_fit_rejects_wrong_image_shape():
    x, y = make_data(n=12)
    with pytest.raises(ValueError, match=r"Conv2D layer 'conv2d_1' expects 2 input channels"):
        make_model().fit(np.concatenate([x, x], axis=1), y, epochs=1, verbose=0)


def test_fit_survives_a_last_batch_of_one_sample_with_batchnorm1d():
    """33 samples in batches of 16 leave a last batch of one sample.

    BatchNorm1D cannot normalise a single sample in training mode, so fit must not
    hand it one (drop or merge that batch), or must refuse before training starts.
    Today it raises after two optimizer steps, at the end of the first epoch,
    leaving a half-trained model (with the blood-cell data: 8,961 training images
    and batch_size=64 do this).
    """
    x, y = make_data(n=33)
    model = make_model()
    try:
        history = model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    except ValueError as error:
        assert model.optimizer.iterations == 0, (
            f"fit failed after {model.optimizer.iterations} steps, mid-epoch: {error}")
    else:
        assert history.epochs == [0]


def test_fit_before_compile_is_an_error():
    x, y = make_data(n=12)
    with pytest.raises(RuntimeError, match="compile"):
        numcnn.Sequential(make_layers(), seed=0).fit(x, y, epochs=1, verbose=0)


# ---------------------------------------------------------------------------
# Non-finite loss or gradient: stop, warn, keep the last finite weights
# ---------------------------------------------------------------------------
def test_fit_stops_on_a_non_finite_loss(monkeypatch):
    x, y = make_data(n=64)
    model = make_model()
    good_steps = 6                       # 4 batches per epoch: fails in the second epoch
    calls = {"n": 0}
    snapshot = {}
    real_forward = model.loss.forward

    def forward(logits, labels):
        calls["n"] += 1
        if calls["n"] > good_steps:
            snapshot.setdefault("params", weights_of(model, buffers=False))  # no update yet
            return math.inf
        snapshot["buffers"] = [{k: v.copy() for k, v in layer.buffers.items()}
                               for layer in model.layers]
        return real_forward(logits, labels)

    monkeypatch.setattr(model.loss, "forward", forward)
    with pytest.warns(RuntimeWarning, match="non-finite loss"):
        history = model.fit(x, y, epochs=5, batch_size=16, verbose=0)

    assert calls["n"] == good_steps + 1, "training must stop at the first bad step"
    assert "non-finite" in history.stop_reason and "epoch 2, batch 3" in history.stop_reason
    assert model.optimizer.iterations == good_steps
    assert history.epochs == [0] and model.epoch == 1   # the broken epoch is not recorded
    for (key, expected), (_, actual) in zip(snapshot["params"], weights_of(model, buffers=False)):
        np.testing.assert_array_equal(actual, expected, err_msg=key)
    # The bad step's forward moved BatchNorm's running statistics; they were put back:
    # BatchNorm's running statistics are those after the last finite step's forward.
    for layer, expected in zip(model.layers, snapshot["buffers"]):
        for name, value in expected.items():
            np.testing.assert_array_equal(layer.buffers[name], value)


def test_fit_stops_on_a_non_finite_gradient(monkeypatch):
    x, y = make_data(n=32)
    model = make_model()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    before = weights_of(model)
    real_backward = model.loss.backward

    def backward():
        grad = real_backward()
        grad[0, 0] = np.nan
        return grad

    monkeypatch.setattr(model.loss, "backward", backward)
    with pytest.warns(RuntimeWarning, match="non-finite loss or gradient"):
        model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    for (key, expected), (_, actual) in zip(before, weights_of(model)):
        np.testing.assert_array_equal(actual, expected, err_msg=key)
    assert model.optimizer.iterations == 2 and model.epoch == 1


def test_fit_without_problems_emits_no_warning():
    x, y = make_data(n=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = make_model().fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert history.stop_reason is None


# ---------------------------------------------------------------------------
# Callbacks
# ---------------------------------------------------------------------------
def test_early_stopping_stops_after_patience():
    x, y = make_data(n=32)
    xv, yv = make_data(n=16, seed=9)
    model = make_model()
    # No improvement can beat a huge min_delta: the first epoch sets the best, then
    # `patience` epochs without improvement stop training.
    stopper = EarlyStopping(monitor="val_loss", patience=2, min_delta=1e9)
    history = model.fit(x, y, epochs=10, batch_size=16, verbose=0, validation_data=(xv, yv),
                        callbacks=[stopper])
    assert history.epochs == [0, 1, 2]
    assert "early stopping" in history.stop_reason and "val_loss" in history.stop_reason


class FakeModel:
    def __init__(self):
        self.stop_training = False
        self.history = History()


@pytest.mark.parametrize("monitor, values, stops_after", [
    ("val_loss", [1.0, 0.9, 0.95, 0.91, 0.92], 3),      # best 0.9 at epoch 1, patience 2
    ("val_accuracy", [0.5, 0.6, 0.6, 0.7, 0.65], None),  # improves at epoch 3: wait resets
    ("val_accuracy", [0.5, 0.6, 0.55, 0.6, 0.4], 3),    # equal is not better
])
def test_early_stopping_logic(monitor, values, stops_after):
    stopper = EarlyStopping(monitor=monitor, patience=2)
    model = FakeModel()
    stopper.set_model(model)
    stopper.on_train_begin()
    stopped_at = None
    for epoch, value in enumerate(values):
        stopper.on_epoch_end(epoch, {monitor: value})
        if model.stop_training:
            stopped_at = epoch
            break
    assert stopped_at == stops_after


def test_early_stopping_names_a_missing_metric():
    stopper = EarlyStopping(monitor="val_loss")
    stopper.set_model(FakeModel())
    stopper.on_train_begin()
    with pytest.raises(KeyError, match="val_loss.*available.*loss"):
        stopper.on_epoch_end(0, {"loss": 1.0, "accuracy": 0.5})


def test_learning_rate_scheduler_sets_lr_each_epoch():
    x, y = make_data(n=16)
    schedule = cosine_schedule(0.01, epochs=4, min_lr=0.001, warmup=1)
    seen = []

    class Spy(Callback):
        def on_epoch_end(self, epoch, logs):
            seen.append(self.model.optimizer.lr)

    model = make_model()
    history = model.fit(x, y, epochs=4, batch_size=8, verbose=0,
                        callbacks=[LearningRateScheduler(schedule), Spy()])
    expected = [float(schedule(e)) for e in range(4)]
    assert history.history["lr"] == expected
    assert seen == expected
    # Warm-up reaches the base rate, then the cosine decreases: not a constant rate.
    assert expected[0] == pytest.approx(0.01) and expected[1] == pytest.approx(0.01)
    assert expected[1] > expected[2] > expected[3]


def test_cosine_schedule_shape():
    base, low, epochs, warmup = 0.1, 0.01, 10, 2
    schedule = cosine_schedule(base, epochs, min_lr=low, warmup=warmup)
    assert schedule(0) == pytest.approx(base / warmup)
    assert schedule(warmup - 1) == pytest.approx(base)
    assert schedule(warmup) == pytest.approx(base)               # cosine starts at the top
    assert schedule(epochs) == pytest.approx(low)                # and ends at min_lr
    middle = warmup + (epochs - warmup) / 2
    assert schedule(middle) == pytest.approx((base + low) / 2)
    decay = [schedule(e) for e in range(warmup, epochs + 1)]
    assert all(a > b for a, b in zip(decay, decay[1:]))
    assert cosine_schedule(0.5, 4)(0) == pytest.approx(0.5)      # no warm-up


def test_callbacks_must_be_callbacks():
    x, y = make_data(n=8)
    with pytest.raises(TypeError, match="not a numcnn Callback"):
        make_model().fit(x, y, epochs=1, verbose=0, callbacks=[lambda: None])


def test_recalibrate_batchnorm_measures_statistics_without_dropout(rng):
    """After recalibration, each BatchNorm's running statistics are the batch
    statistics of its input computed with dropout off (one batch: exactly)."""
    from numcnn.layers import BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, ReLU
    model = numcnn.Sequential([Conv2D(2, 3, 3), BatchNorm2D(3), ReLU(), Dropout(0.5), Flatten(),
                               Dense(3 * 4 * 4, 5), BatchNorm1D(5), ReLU(), Dense(5, 2)], seed=0)
    model.compile(numcnn.losses.SoftmaxCrossEntropy(), numcnn.optim.SGD(0.1))
    x = rng.standard_normal((16, 2, 6, 6)).astype(np.float32)
    model.fit(x, np.arange(16) % 2, epochs=1, batch_size=4, verbose=0)
    state = model.rng.bit_generator.state
    model.recalibrate_batchnorm(x, batch_size=16)
    assert model.rng.bit_generator.state == state          # no random numbers drawn
    conv_out = model.layers[0].forward(x)
    M = conv_out.size // 3
    np.testing.assert_allclose(model.layers[1].buffers["running_mean"],
                               conv_out.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.layers[1].buffers["running_var"],
                               conv_out.var(axis=(0, 2, 3)) * M / (M - 1), rtol=1e-4)
    h = x
    for layer in model.layers[:6]:
        if not isinstance(layer, Dropout):
            h = layer.forward(h, training=isinstance(layer, BatchNorm2D))
    np.testing.assert_allclose(model.layers[6].buffers["running_var"],
                               h.var(axis=0) * 16 / 15, rtol=1e-4)


def test_batchnorm_calibration_runs_before_validation(rng):
    from numcnn.callbacks import BatchNormCalibration, Callback
    from numcnn.layers import BatchNorm2D, Conv2D, Dense, Dropout, Flatten
    order = []

    class Spy(Callback):
        def on_epoch_train_end(self, epoch):
            order.append(("train_end", epoch))

        def on_epoch_end(self, epoch, logs):
            order.append(("end", epoch))

    model = numcnn.Sequential([Conv2D(1, 2, 3), BatchNorm2D(2), Dropout(0.5), Flatten(),
                               Dense(2 * 3 * 3, 2)], seed=0)
    model.compile(numcnn.losses.SoftmaxCrossEntropy(), numcnn.optim.SGD(0.1))
    x = rng.standard_normal((8, 1, 5, 5)).astype(np.float32)
    y = np.arange(8) % 2
    model.fit(x, y, epochs=2, batch_size=4, verbose=0, validation_data=(x, y),
              callbacks=[BatchNormCalibration(x), Spy()])
    assert order == [("train_end", 0), ("end", 0), ("train_end", 1), ("end", 1)]
    before = model.layers[1].buffers["running_var"].copy()
    model.recalibrate_batchnorm(x)
    np.testing.assert_allclose(model.layers[1].buffers["running_var"], before, rtol=1e-6)
