"""Sequential end to end: summary, fit, evaluate, predict, save/load, resume,
weights, input errors, non-finite losses and divergence, backends, and the callbacks.
"""
import json
import math
import warnings

import numpy as np
import pytest

import numcnn
from numcnn.callbacks import (Callback, EarlyStopping, History, LearningRateScheduler,
                              ModelCheckpoint, ProgressBar, cosine_schedule,
                              recalibrate_batchnorm)
from numcnn.errors import DivergenceWarning, ModelFileError, NonFiniteOutputError
from numcnn.layers import (BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten,
                           MaxPool2D, ReLU, Softmax)
from numcnn.layers.activation import softmax
from numcnn.losses import SoftmaxCrossEntropy
from numcnn.optim import SGD, Adam, AdamW

C, H, W, K = 2, 8, 8, 3


def make_layers(dropout=0.25):
    """Ends in logits (a Dense layer), as every numcnn model does."""
    return [Conv2D(C, 4, 3, padding=1), BatchNorm2D(4), ReLU(), MaxPool2D(2),   # 4 x 4 x 4
            Conv2D(4, 6, (3, 2), stride=1, padding=1), ReLU(),                 # 6 x 4 x 5
            Flatten(), Dense(6 * 4 * 5, 12), BatchNorm1D(12), ReLU(),
            Dropout(dropout), Dense(12, K)]


def make_model(seed=0, lr=1e-2, optimizer=None, **kwargs):
    model = numcnn.Sequential(make_layers(**kwargs), seed=seed)
    return model.compile(optimizer or Adam(lr), SoftmaxCrossEntropy())


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
    np.testing.assert_array_equal(probs, model.predict(x, batch_size=7))  # eval mode: deterministic
    # Another batch size gives the same probabilities to float32 rounding (not bit for bit:
    # BLAS may sum a product in another order for another number of columns, as OpenBLAS's
    # Haswell kernels do).
    np.testing.assert_allclose(probs, model.predict(x, batch_size=256), rtol=1e-5, atol=1e-7)


def test_validation_data_is_evaluated_each_epoch():
    x, y = make_data(n=48)
    xv, yv = make_data(n=24, seed=5)
    model = make_model()
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0, validation_data=(xv, yv))
    assert len(history.history["val_loss"]) == 2
    scores = model.evaluate(xv, yv, batch_size=16)       # fit validates in its own batch size
    assert history.history["val_loss"][-1] == pytest.approx(scores["loss"], rel=1e-12)
    assert history.history["val_accuracy"][-1] == pytest.approx(scores["accuracy"])


def test_sequential_refuses_a_final_softmax():
    """A model ends in logits: the loss takes them and predict applies the softmax."""
    with pytest.raises(ValueError, match=r"Sequential: the last layer is a Softmax.*ends in "
                                         r"logits.*Remove the final Softmax\(\)"):
        numcnn.Sequential(make_layers() + [Softmax()], seed=0)


def test_model_call_gives_the_logits_and_predict_their_softmax():
    x, y = make_data(n=48)
    model = make_model(seed=3)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    logits = model(x)
    assert logits.shape == (48, K) and logits.dtype == np.float32
    np.testing.assert_array_equal(logits, model.forward(x))
    np.testing.assert_array_equal(logits, model.forward(x, training=False))
    h = x
    for layer in model.layers:                         # by hand: every layer, evaluation mode
        h = layer(h)
    np.testing.assert_array_equal(logits, h)
    assert (logits < 0).any()                          # scores, not probabilities
    probs = model.predict(x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-6)
    np.testing.assert_allclose(probs, softmax(logits.astype(np.float64)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(softmax(model(x).astype(np.float64)), model.predict(x),
                               rtol=1e-5, atol=1e-7)
    twice = softmax(softmax(logits.astype(np.float64)))
    assert np.abs(probs - twice).max() > 1e-2          # the softmax is applied once, not twice
    # The loss takes the logits: evaluate's loss is the cross-entropy of those probabilities.
    expected = -np.log(softmax(logits.astype(np.float64))[np.arange(48), y]).mean()
    assert model.evaluate(x, y)["loss"] == pytest.approx(expected, rel=1e-6)
    # model(x, training=True) is training mode: dropout and batch statistics.
    assert np.abs(model(x, training=True) - logits).max() > 1e-3


# ---------------------------------------------------------------------------
# compile and fit: Keras' argument orders and epoch semantics
# ---------------------------------------------------------------------------
class StepCounter(Callback):
    """Counts the training steps and records the epoch indices it sees."""

    def __init__(self):
        self.steps, self.epochs = 0, []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1


def test_fit_takes_batch_size_then_epochs_positionally_and_a_second_call_trains_more():
    x, y = make_data(n=96)
    model = make_model()
    counter = StepCounter()
    history = model.fit(x, y, 32, 2, 0, [counter])      # batch_size=32, epochs=2, verbose=0
    assert counter.steps == 2 * 3                       # 2 epochs of 96 / 32 = 3 batches
    assert counter.epochs == [0, 1] and model.epoch == 2
    assert model.optimizer.iterations == 6
    assert len(history.history["loss"]) == 2
    second = StepCounter()
    history = model.fit(x, y, 32, 2, 0, [second])       # Keras: 2 more epochs, not none
    assert second.steps == 6 and model.optimizer.iterations == 12
    assert second.epochs == [0, 1]                      # from initial_epoch=0 again, as Keras
    assert history is model.history
    assert len(history.history["loss"]) == 4 and history.epochs == [0, 1, 0, 1]


def test_initial_epoch_trains_the_remaining_epochs_with_global_indices():
    x, y = make_data(n=32)
    model = make_model()
    counter = StepCounter()
    seen = []

    def schedule(epoch):
        seen.append(epoch)
        return 0.01 / (epoch + 1)

    history = model.fit(x, y, epochs=5, initial_epoch=3, batch_size=16, verbose=0,
                        callbacks=[LearningRateScheduler(schedule), counter])
    assert seen == [3, 4] and counter.epochs == [3, 4]
    assert counter.steps == 2 * 2 and model.optimizer.iterations == 4
    assert history.epochs == [3, 4] and model.epoch == 5
    assert history.history["lr"] == [0.01 / 4, 0.01 / 5]
    # Nothing left to train: epochs <= initial_epoch runs no epoch.
    model.fit(x, y, epochs=5, initial_epoch=5, batch_size=16, verbose=0, callbacks=[counter])
    assert counter.steps == 4 and model.history.epochs == [3, 4]


def test_compile_takes_the_optimizer_then_the_loss():
    model = numcnn.Sequential(make_layers(), seed=0)
    optimizer, loss = SGD(0.1), SoftmaxCrossEntropy()
    assert model.compile(optimizer, loss) is model
    assert model.optimizer is optimizer and model.loss is loss
    model = numcnn.Sequential(make_layers(), seed=0)
    model.compile(optimizer=optimizer, loss=loss)
    assert model.optimizer is optimizer and model.loss is loss


def test_compile_in_the_old_order_names_the_new_one():
    model = numcnn.Sequential(make_layers(), seed=0)
    with pytest.raises(TypeError, match=r"compile\(optimizer, loss\).*swap them"):
        model.compile(SoftmaxCrossEntropy(), Adam(1e-3))
    assert model.optimizer is None and model.loss is None


@pytest.mark.parametrize("optimizer, loss, message", [
    ("adam", SoftmaxCrossEntropy(), r"optimizer must be a numcnn optimizer.*got str"),
    (Adam(1e-3), "categorical_crossentropy", r"loss must be a numcnn loss.*got str"),
    (Adam(1e-3), Adam(1e-3), r"loss must be a numcnn loss.*got Adam"),
    (SoftmaxCrossEntropy(), SoftmaxCrossEntropy(),
     r"optimizer must be a numcnn optimizer.*got SoftmaxCrossEntropy"),
    (None, None, r"optimizer must be a numcnn optimizer.*got NoneType"),
])
def test_compile_rejects_other_types(optimizer, loss, message):
    with pytest.raises(TypeError, match="compile: " + message):
        numcnn.Sequential(make_layers(), seed=0).compile(optimizer, loss)


@pytest.mark.parametrize("call, name", [
    (lambda model, x, y: model.fit(x, y, epochs=2.5, verbose=0), "epochs"),
    (lambda model, x, y: model.fit(x, y, batch_size=0, verbose=0), "batch_size"),
    (lambda model, x, y: model.fit(x, y, epochs=2, initial_epoch=-1, verbose=0),
     "initial_epoch"),
    (lambda model, x, y: model.predict(x, batch_size=0), "batch_size"),
    (lambda model, x, y: model.evaluate(x, y, batch_size=0), "batch_size"),
    (lambda model, x, y: model.fit(x, y, verbose=0, validation_data=(x,)), "validation_data"),
    (lambda model, x, y: model.fit(x, y, verbose=0, validation_data=(x, y, y)),
     "validation_data"),
])
def test_bad_arguments_are_value_errors_naming_the_argument(call, name):
    x, y = make_data(n=12)
    model = make_model()
    with pytest.raises(ValueError, match=rf"\b{name} must be"):
        call(model, x, y)
    assert model.optimizer.iterations == 0 and model.history.epochs == []


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
            model.compile(GradientRecorder(0.1), SoftmaxCrossEntropy())
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
    assert str(model.save(path)) == str(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]   # no temporary file left
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
    lambda: AdamW(1e-2, weight_decay=0.01),
    lambda: SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
], ids=["adam", "adamw", "sgd-nesterov"])
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
    resumed.fit(x, y, epochs=2, initial_epoch=resumed.epoch, **kwargs)

    assert_same_weights(resumed, straight)
    assert resumed.optimizer.iterations == straight.optimizer.iterations
    for key, value in straight.optimizer.state_arrays().items():
        np.testing.assert_array_equal(resumed.optimizer.state_arrays()[key], value, err_msg=key)
    assert resumed.history.epochs == straight.history.epochs == [0, 1]
    for key in ("loss", "accuracy", "lr"):
        assert resumed.history.history[key] == straight.history.history[key], key
    # And the checkpoint written after the second epoch is the same model too.
    assert_same_weights(numcnn.load(tmp_path / "straight-2.npz"), straight)


def write_version_1_file(path, model):
    """A model file as numcnn 0.1 wrote it: format version 1, the layers followed by a
    final Softmax, the optimizer under its class name with its settings and state."""
    header = {
        "format": "numcnn-model", "version": 1,
        "layers": [{"class": type(layer).__name__, "config": layer.config()}
                   for layer in model.layers] + [{"class": "Softmax", "config": {}}],
        "seed": model.seed,
        "input_shape": list(model.input_shape),
        "epoch": model.epoch,
        "history": {"epochs": model.history.epochs, "history": model.history.history,
                    "stop_reason": None},
        "rng_state": model.rng.bit_generator.state,
        "loss": {"class": "SoftmaxCrossEntropy", "config": model.loss.config()},
        "optimizer": {"class": "Adam", "config": model.optimizer.config()},  # 0.1 had no AdamW
    }
    arrays = {"__numcnn__": np.array(json.dumps(header))}
    for i, layer in enumerate(model.layers):
        for name, value in layer.params.items():
            arrays[f"layer{i}/param/{name}"] = value
        for name, value in layer.buffers.items():
            arrays[f"layer{i}/buffer/{name}"] = value
    for name, value in model.optimizer.state_arrays().items():
        arrays[f"optim/{name}"] = value
    np.savez(path, **arrays)


@pytest.mark.parametrize("make_optimizer, loads_as", [
    (lambda: AdamW(1e-2, weight_decay=0.05), AdamW),   # 0.1's Adam decoupled the decay
    (lambda: Adam(1e-2), Adam),                         # without decay the two are one rule
], ids=["adam-with-decay", "adam-without-decay"])
def test_a_version_1_file_loads_without_its_softmax_and_with_adamw(tmp_path, make_optimizer,
                                                                   loads_as):
    x, y = make_data(n=48)
    model = make_model(seed=4, dropout=0.3, optimizer=make_optimizer())
    model.fit(x, y, 16, 2, verbose=0, augment=flip_augment)
    path = tmp_path / "old.npz"
    write_version_1_file(path, model)
    with np.load(path) as archive:                      # the file is what 0.1 wrote
        header = json.loads(str(archive["__numcnn__"]))
    assert header["version"] == 1 and header["layers"][-1]["class"] == "Softmax"
    assert header["optimizer"]["class"] == "Adam"

    loaded = numcnn.load(path)
    assert [type(a) for a in loaded.layers] == [type(b) for b in model.layers]   # no Softmax
    assert type(loaded.optimizer) is loads_as
    assert loaded.optimizer.config() == model.optimizer.config()
    assert loaded.optimizer.iterations == model.optimizer.iterations == 6
    assert loaded.epoch == 2 and loaded.history.epochs == [0, 1]
    assert_same_weights(loaded, model)
    np.testing.assert_array_equal(loaded(x), model(x))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    # Resumed, it trains exactly as the model whose decay was decoupled.
    loaded.fit(x, y, 16, 3, verbose=0, initial_epoch=loaded.epoch, augment=flip_augment)
    model.fit(x, y, 16, 3, verbose=0, initial_epoch=model.epoch, augment=flip_augment)
    assert_same_weights(loaded, model)
    # Saved again, it is a file of the current version.
    loaded.save(tmp_path / "new.npz")
    with np.load(tmp_path / "new.npz") as archive:
        header = json.loads(str(archive["__numcnn__"]))
    assert header["version"] == 2 and header["layers"][-1]["class"] == "Dense"
    assert header["optimizer"]["class"] == loads_as.__name__


def test_load_of_a_npy_file(tmp_path):
    path = tmp_path / "weights.npy"
    np.save(path, np.ones((3, 4), np.float32))
    with pytest.raises(ModelFileError, match=r"weights\.npy.*not a readable numcnn model file"):
        numcnn.load(path)


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
    with pytest.raises(ModelFileError, match=r"garbage\.npz.*not a readable numcnn model file"):
        numcnn.load(path)


def test_load_of_a_truncated_model(tmp_path):
    model = make_model()
    good = tmp_path / "good.npz"
    model.save(good)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelFileError, match=r"cut\.npz"):
        numcnn.load(cut)


def test_load_of_a_foreign_npz(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, weights=np.ones(3), labels=np.arange(4))
    with pytest.raises(ModelFileError, match=r"foreign\.npz.*not a numcnn model"):
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
    with pytest.raises(ModelFileError,
                       match=r"damaged\.npz.*layer1/buffer/running_var.*BatchNorm2D"):
        numcnn.load(damaged)


# ---------------------------------------------------------------------------
# Weights: get/set (Keras), state_dict (PyTorch), weights files
# ---------------------------------------------------------------------------
def trained_model(seed=0, n=32):
    x, y = make_data(n=n)
    model = make_model(seed=seed)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    return model, x


def test_get_weights_and_set_weights_round_trip():
    model, x = trained_model()
    weights = model.get_weights()
    assert [w.shape for w in weights] == [v.shape for _, v in weights_of(model)]
    for w, (key, v) in zip(weights, weights_of(model)):                  # layer by layer
        np.testing.assert_array_equal(w, v, err_msg=key)
    weights[0][...] = 0.0                                 # copies: the model is untouched
    assert np.abs(model.layers[0].params["W"]).max() > 0
    other = make_model(seed=5)
    assert np.abs(other(x) - model(x)).max() > 1e-3
    other.set_weights(model.get_weights())
    assert_same_weights(other, model)
    np.testing.assert_array_equal(other(x), model(x))


def test_set_weights_refuses_a_wrong_count_or_shape():
    model, _ = trained_model()
    before = model.get_weights()
    weights = model.get_weights()
    with pytest.raises(ValueError, match=rf"set_weights: expected {len(weights)} arrays; got "
                                         rf"{len(weights) - 1}"):
        model.set_weights(weights[:-1])
    weights[0] = np.zeros((4, C, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"0\.W of Conv2D layer 'conv2d_1' has shape "
                                         r"\(4, 2, 3, 4\); expected \(4, 2, 3, 3\)"):
        model.set_weights(weights)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_state_dict_and_load_state_dict_round_trip():
    model, x = trained_model()
    state = model.state_dict()
    assert list(state)[:4] == ["0.W", "0.b", "1.gamma", "1.beta"]
    assert "1.running_mean" in state and "1.running_var" in state      # buffers too
    assert set(key for key, _, _ in model.param_slots()) < set(state)
    state["0.W"][...] = 0.0                               # copies
    assert np.abs(model.layers[0].params["W"]).max() > 0
    other = make_model(seed=9)
    other.load_state_dict(model.state_dict())
    assert_same_weights(other, model)
    np.testing.assert_array_equal(other.predict(x), model.predict(x))
    # The arrays keep the model's dtype, whatever they were given as.
    state = {k: v.astype(np.float64) for k, v in model.state_dict().items()}
    other.load_state_dict(state)
    assert all(v.dtype == np.float32 for v in other.get_weights())


def test_load_state_dict_refuses_missing_unexpected_and_misshapen_entries():
    model, _ = trained_model()
    state = model.state_dict()
    del state["4.W"]
    with pytest.raises(ValueError, match=r"missing keys \['4\.W'\], unexpected keys \[\]"):
        model.load_state_dict(state)
    state = model.state_dict()
    state["99.W"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"missing keys \[\], unexpected keys \['99\.W'\]"):
        model.load_state_dict(state)
    state = model.state_dict()
    state["8.running_var"] = np.ones(13, np.float32)
    with pytest.raises(ValueError, match=r"8\.running_var of BatchNorm1D layer 'batchnorm1d_1' "
                                         r"has shape \(13,\); expected \(12,\)"):
        model.load_state_dict(state)


def test_save_weights_and_load_weights_round_trip(tmp_path):
    model, x = trained_model()
    path = tmp_path / "weights.npz"
    model.save_weights(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.npz"]
    other = make_model(seed=8)
    assert other.load_weights(path) is other
    assert_same_weights(other, model)
    np.testing.assert_array_equal(other.predict(x), model.predict(x))
    assert other.optimizer.iterations == 0                # weights only: not the optimizer
    # The module-level functions are the same thing.
    third = make_model(seed=7)
    numcnn.load_weights(third, path)
    assert_same_weights(third, model)
    numcnn.save_weights(third, tmp_path / "again.npz")
    with np.load(path) as a, np.load(tmp_path / "again.npz") as b:
        assert sorted(a.files) == sorted(b.files)
    # A weights file is not a model file.
    with pytest.raises(ModelFileError, match=r"weights\.npz.*numcnn-weights.*numcnn-model"):
        numcnn.load(path)


def test_load_weights_refuses_another_architecture(tmp_path):
    model, _ = trained_model()
    path = tmp_path / "weights.npz"
    model.save_weights(path)
    other = numcnn.Sequential(make_layers()[:-1] + [Dense(12, K + 1)], seed=0)
    before = other.get_weights()
    with pytest.raises(ModelFileError, match=r"load_weights: .*weights\.npz.*another "
                                             r"architecture"):
        other.load_weights(path)
    for a, b in zip(other.get_weights(), before):
        np.testing.assert_array_equal(a, b)               # nothing was changed
    smaller = numcnn.Sequential([Flatten(), Dense(C * H * W, K)], seed=0)
    with pytest.raises(ModelFileError, match="another architecture"):
        smaller.load_weights(path)
    with pytest.raises(ModelFileError, match=r"not a readable numcnn weights file"):
        path_npy = tmp_path / "w.npy"
        np.save(path_npy, np.ones(3))
        smaller.load_weights(path_npy)


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
    with pytest.raises(ValueError, match=r"fit: x must hold finite values; got NaN or infinite "
                                         r"values in 2 of 12 samples"):
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
    with pytest.warns(DivergenceWarning, match=r"fit stopped: training diverged at epoch 2, "
                                               r"batch 3: the loss.*not finite"):
        history = model.fit(x, y, epochs=5, batch_size=16, verbose=0)

    assert calls["n"] == good_steps + 1, "training must stop at the first bad step"
    assert "not finite" in history.stop_reason and "epoch 2, batch 3" in history.stop_reason
    assert history.diverged
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
    with pytest.warns(DivergenceWarning, match=r"epoch 2, batch 1: the loss, a gradient.*not "
                                               r"finite"):
        history = model.fit(x, y, epochs=3, batch_size=16, verbose=0, initial_epoch=model.epoch)
    for (key, expected), (_, actual) in zip(before, weights_of(model)):
        np.testing.assert_array_equal(actual, expected, err_msg=key)
    assert model.optimizer.iterations == 2 and model.epoch == 1
    assert history.diverged and history.epochs == [0]


def test_fit_without_problems_emits_no_warning():
    x, y = make_data(n=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = make_model().fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert history.stop_reason is None and not history.diverged


def small_model(optimizer):
    model = numcnn.Sequential([Conv2D(C, 4, 3, padding=1), BatchNorm2D(4), ReLU(), Flatten(),
                               Dense(4 * H * W, K)], seed=0)
    return model.compile(optimizer, SoftmaxCrossEntropy())


def test_training_that_diverges_stops_cleanly_with_finite_weights(tmp_path):
    x, y = make_data(n=32)
    model = small_model(SGD(1e30))
    with pytest.warns(DivergenceWarning, match="training diverged"):
        history = model.fit(x, y, batch_size=8, epochs=5, verbose=0)
    assert history.diverged
    assert "diverged" in history.stop_reason and "learning rate 1e+30" in history.stop_reason
    for key, value in model.state_dict().items():
        assert np.isfinite(value).all(), key
    assert all(np.isfinite(value).all() for slot in model.optimizer.state.values()
               for value in slot.values())
    model.save(tmp_path / "diverged.npz")                 # a finite model can be saved
    loaded = numcnn.load(tmp_path / "diverged.npz")
    assert loaded.history.diverged
    assert_same_weights(loaded, model)


def test_an_update_that_makes_a_weight_non_finite_is_undone():
    """The loss and gradients are finite; the update is not: it must be undone."""
    x, y = make_data(n=16)
    model = small_model(SGD(0.1))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    before = weights_of(model)
    state = model.optimizer.iterations
    real_update = model.optimizer._update

    def update(key, param, grad):
        real_update(key, param, grad)
        if key == "4.W":
            param[0, 0] = np.inf

    model.optimizer._update = update
    with pytest.warns(DivergenceWarning, match="epoch 2, batch 1"):
        history = model.fit(x, y, batch_size=8, epochs=2, initial_epoch=1, verbose=0)
    assert history.diverged
    for (key, expected), (_, actual) in zip(before, weights_of(model)):
        np.testing.assert_array_equal(actual, expected, err_msg=key)   # parameters and buffers
    assert model.optimizer.iterations == state


def test_predict_refuses_non_finite_outputs():
    x, y = make_data(n=10)
    model = make_model()
    model.fit(x, y, epochs=1, batch_size=5, verbose=0)
    model.layers[-1].params["W"][...] = np.finfo(np.float32).max     # logits overflow
    with np.errstate(over="ignore", invalid="ignore"):
        with pytest.raises(NonFiniteOutputError, match=r"predict: .*non-finite outputs for "
                                                       r"\d+ of 10 images"):
            model.predict(x)
    assert issubclass(NonFiniteOutputError, ValueError)


def test_learning_rate_must_stay_finite_and_non_negative():
    model = make_model()
    for bad in (float("nan"), float("inf"), -1e-3):
        with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
            model.optimizer.lr = bad
    assert model.optimizer.lr == 1e-2
    model.optimizer.lr = 0.0                             # a schedule may reach 0
    assert model.optimizer.lr == 0.0


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_a_schedule_that_gives_a_bad_rate_names_the_epoch(bad):
    x, y = make_data(n=16)
    model = make_model()
    schedule = LearningRateScheduler(lambda epoch: 1e-2 if epoch < 2 else bad)
    with pytest.raises(ValueError, match=r"LearningRateScheduler: the schedule gave lr = .* "
                                         r"for epoch 2; a learning rate must be a finite"):
        model.fit(x, y, epochs=4, batch_size=8, verbose=0, callbacks=[schedule])
    assert model.history.epochs == [0, 1] and model.optimizer.lr == 1e-2


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


def test_early_stopping_restores_the_weights_of_the_best_epoch():
    x, y = make_data(n=48)
    # Validation labels that disagree with the training labels: the better the model
    # learns, the worse val_loss gets, so the best epoch is an early one, not the last.
    xv, yv = x[:24], (y[:24] + 1) % K

    class Copies(Callback):
        def __init__(self):
            self.states = {}

        def on_epoch_end(self, epoch, logs=None):
            self.states[epoch] = self.model.state_dict()

    copies = Copies()
    stopper = EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    model = make_model(lr=2e-2)
    history = model.fit(x, y, epochs=8, batch_size=16, verbose=0, validation_data=(xv, yv),
                        callbacks=[stopper, copies])
    losses = history.history["val_loss"]
    best = int(np.argmin(losses))
    assert stopper.best_epoch == history.epochs[best]
    last = history.epochs[-1]
    assert stopper.best_epoch != last, "the test needs a best epoch that is not the last"
    state = model.state_dict()
    assert list(state) == list(copies.states[stopper.best_epoch])
    for key, value in copies.states[stopper.best_epoch].items():
        np.testing.assert_array_equal(state[key], value, err_msg=key)
    assert any(not np.array_equal(state[key], value) for key, value in copies.states[last].items())
    assert model.evaluate(xv, yv)["loss"] == pytest.approx(losses[best], rel=1e-6)


def test_early_stopping_without_restore_keeps_the_last_weights():
    x, y = make_data(n=48)
    xv, yv = x[:24], (y[:24] + 1) % K
    stopper = EarlyStopping(monitor="val_loss", patience=3)
    model = make_model(lr=2e-2)
    history = model.fit(x, y, epochs=8, batch_size=16, verbose=0, validation_data=(xv, yv),
                        callbacks=[stopper])
    assert model.evaluate(xv, yv)["loss"] == pytest.approx(history.history["val_loss"][-1],
                                                           rel=1e-6)


@pytest.mark.parametrize("monitor, validation", [("val_los", True), ("val_loss", False),
                                                  ("accuracy_top5", True)])
def test_early_stopping_on_an_unknown_metric_fails_before_training(monitor, validation):
    x, y = make_data(n=16)
    model = make_model()
    before = weights_of(model)
    counter = StepCounter()
    with pytest.raises(ValueError, match=rf"EarlyStopping monitors '{monitor}', which the epoch "
                                         r"logs will not have; they have \["):
        model.fit(x, y, epochs=3, batch_size=8, verbose=0,
                  callbacks=[EarlyStopping(monitor=monitor), counter],
                  validation_data=(x, y) if validation else None)
    assert counter.epochs == [] and counter.steps == 0                # no epoch ran
    assert model.optimizer.iterations == 0 and model.history.epochs == []
    for (key, expected), (_, actual) in zip(before, weights_of(model)):
        np.testing.assert_array_equal(actual, expected, err_msg=key)


class Recorder(Callback):
    """Records every hook it receives: (name, epoch or batch index, logs)."""

    def __init__(self):
        self.calls = []

    def set_params(self, params):
        super().set_params(params)
        self.calls.append(("set_params", None, params))

    def on_train_begin(self, logs=None):
        self.calls.append(("on_train_begin", None, logs))

    def on_train_end(self, logs=None):
        self.calls.append(("on_train_end", None, logs))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("on_epoch_begin", epoch, logs))

    def on_epoch_train_end(self, epoch, logs=None):
        self.calls.append(("on_epoch_train_end", epoch, logs))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("on_epoch_end", epoch, dict(logs)))

    def on_train_batch_begin(self, batch, logs=None):
        self.calls.append(("on_train_batch_begin", batch, logs))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("on_train_batch_end", batch, logs))


def test_callbacks_receive_logs_in_every_hook_and_batch_hooks_once_per_batch():
    x, y = make_data(n=40)                               # batches of 16, 16, 8
    recorder = Recorder()
    model = make_model()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, validation_data=(x[:8], y[:8]),
              callbacks=[recorder])
    assert recorder.model is model
    names = [name for name, _, _ in recorder.calls]
    assert names[0] == "set_params" and names[1] == "on_train_begin"
    assert names[-1] == "on_train_end"
    per_epoch = (["on_epoch_begin"] + ["on_train_batch_begin", "on_train_batch_end"] * 3
                 + ["on_epoch_train_end", "on_epoch_end"])
    assert names[2:-1] == per_epoch * 2
    params = recorder.calls[0][2]
    assert params["epochs"] == 2 and params["initial_epoch"] == 0 and params["steps"] == 3
    assert params["verbose"] == 0 and params["batch_size"] == 16
    assert set(params["metrics"]) == {"loss", "accuracy", "lr", "seconds", "val_loss",
                                      "val_accuracy"}
    for name, index, logs in recorder.calls[1:]:
        assert isinstance(logs, dict), f"{name} got logs={logs!r}"
    batches = [(index, logs) for name, index, logs in recorder.calls
               if name == "on_train_batch_end"]
    assert [index for index, _ in batches] == [0, 1, 2, 0, 1, 2]
    for _, logs in batches:
        assert set(logs) == {"loss", "accuracy"} and math.isfinite(logs["loss"])
    epochs = [(index, logs) for name, index, logs in recorder.calls if name == "on_epoch_end"]
    assert [index for index, _ in epochs] == [0, 1]
    for epoch, logs in epochs:
        assert set(logs) == set(params["metrics"])
        assert logs["loss"] == model.history.history["loss"][epoch]
    # The running loss of the last batch is the epoch's loss.
    assert batches[2][1]["loss"] == pytest.approx(epochs[0][1]["loss"], rel=1e-12)


class SpyProgressBar(ProgressBar):
    made = []

    def __init__(self):
        super().__init__()
        SpyProgressBar.made.append(self)


@pytest.mark.parametrize("verbose", [0, 1])
def test_verbose_1_adds_a_progress_bar_and_verbose_0_does_not(monkeypatch, capsys, verbose):
    import numcnn.training
    SpyProgressBar.made = []
    monkeypatch.setattr(numcnn.training, "ProgressBar", SpyProgressBar)
    x, y = make_data(n=32)
    model = make_model()
    model.fit(x, y, epochs=2, batch_size=16, verbose=verbose)
    assert len(SpyProgressBar.made) == verbose
    err = capsys.readouterr().err
    if verbose:
        assert SpyProgressBar.made[0].model is model
        assert "Epoch 1/2" in err and "Epoch 2/2" in err and "2/2" in err
    else:
        assert "Epoch" not in err


def test_verbose_is_the_default_and_progress_bar_is_a_callback(capsys):
    x, y = make_data(n=16)
    make_model().fit(x, y, epochs=1, batch_size=8)
    assert "Epoch 1/1" in capsys.readouterr().err
    assert issubclass(ProgressBar, Callback)


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
    model.compile(numcnn.optim.SGD(0.1), numcnn.losses.SoftmaxCrossEntropy())
    x = rng.standard_normal((16, 2, 6, 6)).astype(np.float32)
    model.fit(x, np.arange(16) % 2, epochs=1, batch_size=4, verbose=0)
    state = model.rng.bit_generator.state
    params = weights_of(model, buffers=False)
    recalibrate_batchnorm(model, x, batch_size=16)
    assert not hasattr(model, "recalibrate_batchnorm")     # a function now, not a method
    assert model.rng.bit_generator.state == state          # no random numbers drawn
    for (key, expected), (_, actual) in zip(params, weights_of(model, buffers=False)):
        np.testing.assert_array_equal(actual, expected, err_msg=key)   # no parameter changed
    assert [layer.momentum for layer in model.layers if hasattr(layer, "momentum")] == [0.1, 0.1]
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
        def on_epoch_train_end(self, epoch, logs=None):
            order.append(("train_end", epoch))

        def on_epoch_end(self, epoch, logs):
            order.append(("end", epoch))

    model = numcnn.Sequential([Conv2D(1, 2, 3), BatchNorm2D(2), Dropout(0.5), Flatten(),
                               Dense(2 * 3 * 3, 2)], seed=0)
    model.compile(numcnn.optim.SGD(0.1), numcnn.losses.SoftmaxCrossEntropy())
    x = rng.standard_normal((8, 1, 5, 5)).astype(np.float32)
    y = np.arange(8) % 2
    model.fit(x, y, epochs=2, batch_size=4, verbose=0, validation_data=(x, y),
              callbacks=[BatchNormCalibration(x), Spy()])
    assert order == [("train_end", 0), ("end", 0), ("train_end", 1), ("end", 1)]
    before = model.layers[1].buffers["running_var"].copy()
    recalibrate_batchnorm(model, x)
    np.testing.assert_allclose(model.layers[1].buffers["running_var"], before, rtol=1e-6)
