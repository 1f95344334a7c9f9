"""No confident answer from a broken model, no silent reuse of the wrong state.

The second round of hostile cases against the library (docs/reliability.md,
"The hostile cases"): weights, statistics and inputs that are not finite (or
become so when cast to float32), a layer shared by two models, a model asked
about another image size, model files whose header does not match their
arrays, BatchNorm given one value per channel, and a damaged numba cache.
"""
import copy
import gc
import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import numcnn
from numcnn.errors import ModelFileError, NonFiniteModelError, NonFiniteOutputError
from numcnn.layers import (BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D,
                           ReLU)

REPO_ROOT = Path(__file__).resolve().parent.parent


def network(seed=0):
    return numcnn.Sequential([
        Conv2D(3, 4, 3, padding=1), BatchNorm2D(4), ReLU(), MaxPool2D(2), Dropout(0.2),
        Flatten(), Dense(4 * 4 * 4, 6), BatchNorm1D(6), ReLU(), Dense(6, 3),
    ], seed=seed).compile(numcnn.optim.AdamW(1e-2), numcnn.losses.SoftmaxCrossEntropy())


@pytest.fixture
def data(rng):
    x = rng.random((32, 3, 8, 8), dtype=np.float32)
    return x, (x[:, 0].mean(axis=(1, 2)) > x[:, 2].mean(axis=(1, 2))).astype(np.int64)


@pytest.fixture
def trained(data):
    model = network()
    model.fit(*data, batch_size=8, epochs=2, verbose=0)
    return model


def header_and_arrays(path):
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    return json.loads(str(arrays.pop("__numcnn__"))), arrays


def write_model_file(path, header, arrays):
    np.savez(path, __numcnn__=np.array(json.dumps(header)), **arrays)
    return path


# ----------------------------------------------------------------------------
# Values that are not finite, or not in float32's range, never become answers
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["0.W", "6.b", "7.gamma"])
def test_a_non_finite_weight_set_in_place_is_refused_by_predict_evaluate_and_fit(
        trained, data, value, where):
    index, name = where.split(".")
    trained.layers[int(index)].params[name].flat[1] = value
    layer = trained.layers[int(index)].describe()
    for call in (lambda: trained.predict(data[0]), lambda: trained.evaluate(*data),
                 lambda: trained.fit(*data, epochs=trained.epoch + 1, verbose=0)):
        with pytest.raises(NonFiniteModelError, match=f"{layer} has 1 NaN or infinite"):
            call()
    assert trained.epoch == 2                                # nothing was trained


def test_a_non_finite_or_negative_running_variance_is_refused(trained, data):
    trained.layers[1].buffers["running_var"][2] = -0.5
    with pytest.raises(NonFiniteModelError, match="negative running variance"):
        trained.predict(data[0])
    trained.layers[1].buffers["running_var"][2] = np.nan
    with pytest.raises(NonFiniteModelError, match="'running_var'"):
        trained.predict(data[0])


def test_nan_hidden_behind_batchnorm_and_relu_reaches_the_output_check(trained, data):
    """Even past the model's own checks (a forward pass of the plan itself), a NaN is not
    turned into zeros by the ReLU after BatchNorm: the output check refuses it."""
    trained.layers[1].buffers["running_mean"][0] = np.nan
    logits = trained.plan().forward(data[0], training=False)
    assert np.isnan(logits).all()                           # every image: NaN, not a class


def test_weights_of_1e300_in_float64_are_infinite_once_float32_and_refused(trained, tmp_path):
    path = trained.save(tmp_path / "model.npz")
    header, arrays = header_and_arrays(path)
    arrays["layer6/param/W"] = np.full(arrays["layer6/param/W"].shape, 1e300)   # float64
    damaged = write_model_file(tmp_path / "huge.npz", header, arrays)
    with pytest.raises(ModelFileError, match="layer6/param/W.*once cast to float32"):
        numcnn.load(damaged)
    with pytest.raises(NonFiniteModelError, match="6.W of Dense.*once cast to float32"):
        trained.load_state_dict(dict(trained.state_dict(), **{"6.W": arrays["layer6/param/W"]}))
    assert np.isfinite(trained.layers[6].params["W"]).all()


def test_inputs_beyond_float32_are_refused_not_turned_into_infinities(trained):
    x = np.zeros((4, 3, 8, 8))                                  # float64
    x[2, 0, 0, 0] = 1e39
    with pytest.raises(ValueError, match="float32 can hold.*1 of 4 samples"):
        trained.predict(x)
    with pytest.raises(ValueError, match="float32 can hold"):
        trained.evaluate(x, np.zeros(4, np.int64))


def test_predict_still_refuses_outputs_that_overflow_from_finite_weights(trained, data):
    trained.layers[9].params["W"][:] = 3e38                     # finite, but the sums are not
    with pytest.raises(NonFiniteOutputError, match="non-finite outputs"):
        trained.predict(data[0] + 1)


# ----------------------------------------------------------------------------
# State reused without a check
# ----------------------------------------------------------------------------

def test_a_layer_belongs_to_one_model(trained, data):
    before = trained.predict(data[0])
    with pytest.raises(ValueError, match="already belongs to another model.*copy.deepcopy"):
        numcnn.Sequential([trained.layers[0], Flatten(), Dense(4 * 8 * 8, 3)], seed=1)
    np.testing.assert_array_equal(trained.predict(data[0]), before)   # not re-initialised
    conv = Conv2D(3, 4, 3, padding=1)
    with pytest.raises(ValueError, match="item 2 is the same layer object"):
        numcnn.Sequential([conv, ReLU(), conv], seed=0)


def test_a_copied_layer_or_model_is_free_and_keeps_its_weights(trained, data):
    copied = copy.deepcopy(trained.layers[0])
    assert copied.owner() is None
    np.testing.assert_array_equal(copied.params["W"], trained.layers[0].params["W"])
    other = numcnn.Sequential([copied, Flatten(), Dense(4 * 8 * 8, 3)])
    assert copied.owner() is other and trained.layers[0].owner() is trained
    twin = copy.deepcopy(trained)
    assert all(layer.owner() is twin for layer in twin.layers)
    np.testing.assert_array_equal(twin.predict(data[0]), trained.predict(data[0]))
    with pytest.raises(ValueError, match="already belongs"):
        numcnn.Sequential(twin.layers)


def test_the_layers_of_a_model_that_is_gone_are_free():
    layers = network().layers                                    # the model itself is dropped
    gc.collect()
    model = numcnn.Sequential(layers)
    assert all(layer.owner() is model for layer in layers)


def test_predict_on_another_image_size_keeps_the_models_input_shape(tmp_path, rng):
    model = numcnn.Sequential([Conv2D(3, 4, 3, padding=1), ReLU(), Conv2D(4, 2, 1)], seed=0,
                              input_shape=(3, 8, 8))              # fully convolutional
    model.compile(numcnn.optim.SGD(0.1), numcnn.losses.SoftmaxCrossEntropy())
    assert model(rng.random((2, 3, 12, 16), dtype=np.float32)).shape == (2, 2, 12, 16)
    assert model.input_shape == (3, 8, 8)
    assert numcnn.load(model.save(tmp_path / "m.npz")).input_shape == (3, 8, 8)


# ----------------------------------------------------------------------------
# Model files whose header does not match their arrays
# ----------------------------------------------------------------------------

def test_a_header_declaring_100000_channels_is_refused_before_any_allocation(trained, tmp_path):
    header, arrays = header_and_arrays(trained.save(tmp_path / "model.npz"))
    header["layers"][0]["config"]["out_channels"] = 100_000
    edited = write_model_file(tmp_path / "edited.npz", header, arrays)
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match=r"layer0/param/W of Conv2D layer 0 has shape "
                                                 r"\(4, 3, 3, 3\); the header declares"):
            numcnn.load(edited)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20                                  # megabytes, not 671 GiB


def test_a_deeply_nested_header_is_a_model_file_error(tmp_path):
    path = tmp_path / "deep.npz"
    np.savez(path, __numcnn__=np.array("[" * 100_000 + "]" * 100_000))
    with pytest.raises(ModelFileError, match="damaged numcnn header"):
        numcnn.load(path)


@pytest.mark.parametrize("change", ["shape", "dtype", "stranger", "counter"])
def test_optimizer_state_that_does_not_fit_the_model_is_refused_at_load(trained, tmp_path,
                                                                         change):
    header, arrays = header_and_arrays(trained.save(tmp_path / "model.npz"))
    if change == "shape":
        arrays["optim/0.W/m"] = np.zeros((2, 2), np.float32)
        message = r"optimizer state 0.W/m has shape \(2, 2\)"
    elif change == "dtype":
        arrays["optim/0.W/m"] = np.array(["a"] * arrays["optim/0.W/m"].size).reshape(
            arrays["optim/0.W/m"].shape)
        message = "optimizer state 0.W/m is of dtype <U1"
    elif change == "stranger":
        arrays["optim/99.W/m"] = np.zeros(3, np.float32)
        message = "'99.W/m' belongs to no parameter"
    else:
        arrays["optim/iterations"] = np.array(-5)
        message = "step counter"
    with pytest.raises(ModelFileError, match=message):
        numcnn.load(write_model_file(tmp_path / "edited.npz", header, arrays))


def test_every_layer_declares_the_arrays_it_makes():
    """array_shapes(config) is what a layer made from config holds: the check of a file's
    header against its arrays relies on it."""
    for layer in (Conv2D(3, 5, (3, 2), stride=2, padding=1), Conv2D(2, 4, 1), Dense(7, 3),
                  BatchNorm2D(6), BatchNorm1D(2), ReLU(), Flatten(), MaxPool2D(2), Dropout(0.5)):
        made = {f"{kind}/{name}": value.shape
                for kind, store in (("param", layer.params), ("buffer", layer.buffers))
                for name, value in store.items()}
        assert type(layer).array_shapes(layer.config()) == made, layer


# ----------------------------------------------------------------------------
# BatchNorm given one value per channel; a damaged numba cache
# ----------------------------------------------------------------------------

def test_batch_size_1_with_a_batchnorm1d_is_refused_before_any_step(data):
    model = network()
    with pytest.raises(ValueError, match="batch_size 1 a batch holds a single sample.*"
                                         "BatchNorm1D layer 'batchnorm1d_1'"):
        model.fit(*data, batch_size=1, epochs=1, verbose=0)
    assert model.epoch == 0
    with pytest.raises(ValueError, match="more than one value per channel"):   # one step, fused
        model.train_step(data[0][:1], data[1][:1])
    convolutional = numcnn.Sequential([Conv2D(3, 2, 3, padding=1), BatchNorm2D(2), ReLU(),
                                       Flatten(), Dense(2 * 8 * 8, 3)], seed=0)
    convolutional.compile(numcnn.optim.SGD(0.1), numcnn.losses.SoftmaxCrossEntropy())
    history = convolutional.fit(*data, batch_size=1, epochs=1, verbose=0)   # 64 values: fine
    assert np.isfinite(history.history["loss"][0])


DAMAGE = textwrap.dedent("""
    import glob, sys
    kind = sys.argv[1]
    [index] = glob.glob(sys.argv[2] + "/*/elementwise._relu_forward-*.nbi")
    [data] = glob.glob(sys.argv[2] + "/*/elementwise._relu_forward-*.nbc")
    if kind == "truncated data":
        content = open(data, "rb").read()
        open(data, "wb").write(content[:len(content) // 2])
    elif kind == "garbage index":
        open(index, "wb").write(b"not a pickle" * 10)
    else:
        import os
        os.remove(index)
        os.mkdir(index)
""")


@pytest.mark.parametrize("kind", ["truncated data", "garbage index", "a folder for the index"])
@pytest.mark.subprocess
def test_a_damaged_numba_cache_is_compiled_again_with_one_warning(tmp_path, kind):
    cache = tmp_path / "numba-cache"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(REPO_ROOT))
    relu = ("import numpy as np; from numcnn.kernels import jit; "
            "print(jit.relu_forward(np.arange(-2, 3, dtype=np.float32)).sum())")

    def run():
        done = subprocess.run([sys.executable, "-c", relu], env=env, cwd=tmp_path,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip(), done.stderr.count("RuntimeWarning")

    assert run() == ("3.0", 0)                                  # compiled and cached
    subprocess.run([sys.executable, "-c", DAMAGE, kind, str(cache)], check=True)
    out, warnings = run()
    assert out == "3.0" and warnings == 1                       # compiled again, said once
    assert run() == ("3.0", 0)                                  # and the cache is whole again


def test_evaluate_gives_no_accuracy_from_outputs_that_are_not_finite(trained, data):
    """An argmax of NaN rows would count them as class 0: evaluate refuses, as predict does."""
    trained.layers[9].params["W"][:] = 3e38
    with pytest.raises(NonFiniteOutputError, match="evaluate: the model gives non-finite outputs"):
        trained.evaluate(data[0] + 1, data[1])
