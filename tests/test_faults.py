"""Faults and bad input in the library: what goes wrong is said, raised, and nothing is lost.

One test per hostile case, by class (the table in docs/reliability.md lists
them with their outcome):

1. non-finite training: a learning rate of 1e30, a NaN gradient, an update
   that makes a weight non-finite, an optimizer state that overflows,
   BatchNorm statistics that overflow (in a step, or re-measured by a callback
   after the epoch); a runaway but finite loss only warns; learning rates;
2. prediction: non-finite outputs are refused;
3. concurrency: two processes saving one model path at once;
4. the decode cache notices changed content and survives a damaged or
   unwritable cache;
7. outputs: a full or read-only disk (simulated, and for real on a small
   tmpfs where mounting is allowed), the permissions of written files;
8. every public entry point checks its arguments, naming the argument, what
   it expects and what it got.

Classes 5 and 6 (data layout, damaged run state) and the command-line side of
the others are in examples/tests/test_example_faults.py.
"""
import contextlib
import errno
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import numcnn
import numcnn.data.cache
import numcnn.files
from numcnn.callbacks import (BatchNormCalibration, EarlyStopping, LearningRateScheduler,
                              ModelCheckpoint, recalibrate_batchnorm)
from numcnn.data import CentreCrop
from numcnn.datasets import bloodcells
from numcnn.errors import (DivergenceWarning, ModelFileError, NonFiniteOutputError,
                           RunawayLossWarning)
from numcnn.files import write_atomically
from numcnn.layers import BatchNorm2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from numcnn.losses import SoftmaxCrossEntropy
from numcnn.optim import SGD, Adam, AdamW

REPO_ROOT = Path(__file__).resolve().parents[1]
CLASSES = bloodcells.CLASSES


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------

def images(n=64, seed=0, side=8):
    """``n`` random NCHW images and a label the images determine (red brighter than blue)."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 3, side, side), dtype=np.float32)
    y = (x[:, 0].mean(axis=(1, 2)) > x[:, 2].mean(axis=(1, 2))).astype(np.int64)
    return x, y


def small_cnn(optimizer, seed=0, side=8):
    model = numcnn.Sequential([Conv2D(3, 4, 3, padding=1), BatchNorm2D(4), ReLU(),
                               MaxPool2D(2), Flatten(), Dense(4 * (side // 2) ** 2, 2)], seed=seed)
    return model.compile(optimizer, SoftmaxCrossEntropy())


def state_of(model):
    """Copies of every parameter and buffer, by name."""
    return {f"{i}.{kind}.{name}": value.copy() for i, layer in enumerate(model.layers)
            for kind, store in (("param", layer.params), ("buffer", layer.buffers))
            for name, value in store.items()}


def assert_all_finite(model):
    for name, value in state_of(model).items():
        assert np.isfinite(value).all(), name


def assert_same_state(before, after):
    assert before.keys() == after.keys()
    for name in before:
        assert np.array_equal(before[name], after[name]), name


def fit_quietly(model, x, y, **kwargs):
    """``model.fit`` with verbose=0, returning the history and the warnings raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, verbose=0, **kwargs)
    return history, [w for w in caught]


def kinds(caught):
    return [type(w.message) for w in caught]


def temporaries(folder):
    """The atomic writer's temporary files (``.<name>.<random>.tmp``) under ``folder``."""
    return sorted(path for path in Path(folder).rglob(".*.tmp"))


# ----------------------------------------------------------------------------
# 1. Non-finite training
# ----------------------------------------------------------------------------

def test_sgd_at_lr_1e30_diverges_says_so_and_keeps_finite_weights(tmp_path):
    x, y = images()
    model = small_cnn(SGD(1e30))
    history, caught = fit_quietly(model, x, y, batch_size=16, epochs=3)
    assert DivergenceWarning in kinds(caught)
    assert history.diverged and "learning rate 1e+30" in history.stop_reason
    assert "epoch 1 is not counted" in history.stop_reason
    assert model.epoch == 0 and history.epochs == []
    assert_all_finite(model)
    model.save(tmp_path / "model.npz")                     # a finite model can be saved
    assert numcnn.load(tmp_path / "model.npz").history.diverged


def test_a_nan_gradient_skips_the_update_and_stops():
    x, y = images()
    model = small_cnn(AdamW(1e-3))
    model.build(x.shape[1:])
    before = state_of(model)
    backward = model.loss.backward
    model.loss.backward = lambda: np.full_like(backward(), np.nan)   # every gradient NaN
    history, caught = fit_quietly(model, x, y, batch_size=16, epochs=2)
    assert history.diverged and "epoch 1, batch 1" in history.stop_reason
    assert DivergenceWarning in kinds(caught)
    assert_same_state(before, state_of(model))            # nothing of the step remains
    assert model.optimizer.iterations == 0 and model.optimizer.state == {}


def test_an_update_that_makes_a_weight_non_finite_is_undone():
    x, y = images()
    model = small_cnn(AdamW(1e-3))
    healthy = model.optimizer._update

    def update(key, param, grad):                         # the third step ruins one weight
        healthy(key, param, grad)
        if model.optimizer.iterations == 3:
            param.flat[0] = np.inf

    model.optimizer._update = update
    fit_quietly(model, x, y, batch_size=16, epochs=1, shuffle=False)   # warm-up: 4 steps
    assert model.history.diverged and "epoch 1, batch 3" in model.history.stop_reason
    assert_all_finite(model)
    assert model.optimizer.iterations == 2                # the bad step is not counted
    assert all(np.isfinite(v).all() for slot in model.optimizer.state.values()
               for v in slot.values())


def test_an_optimizer_state_that_overflows_is_undone():
    """Gradients of 1e25 are finite, their squares are not: Adam's second moment is
    infinite while the weights stay finite (m / sqrt(inf) = 0). The step is undone."""
    x, y = images()
    model = numcnn.Sequential([Flatten(), Dense(3 * 8 * 8, 2)], seed=0)
    model.compile(Adam(1e-3), SoftmaxCrossEntropy())
    model.build(x.shape[1:])
    before = state_of(model)
    backward = model.loss.backward
    model.loss.backward = lambda: backward() * np.float32(1e25)
    history, caught = fit_quietly(model, x, y, batch_size=16, epochs=1)
    assert history.diverged and "optimizer's state" in history.stop_reason
    assert DivergenceWarning in kinds(caught)
    assert_same_state(before, state_of(model))
    assert model.optimizer.iterations == 0 and model.optimizer.state == {}


def test_batchnorm_statistics_that_overflow_in_a_step_stop_training():
    """Inputs of 1e20 (finite) give BatchNorm a batch variance of about 1e40, beyond
    float32: the running variance would be infinite while the normalised loss stays
    finite. The step is undone: no model with infinite statistics comes out."""
    x, y = images()
    model = small_cnn(AdamW(1e-3))
    model.build(x.shape[1:])
    before = state_of(model)
    history, caught = fit_quietly(model, x * np.float32(1e20), y, batch_size=16, epochs=1)
    assert history.diverged and "epoch 1, batch 1" in history.stop_reason
    assert DivergenceWarning in kinds(caught) and model.epoch == 0
    assert_same_state(before, state_of(model))


def test_batchnorm_statistics_made_non_finite_by_a_callback_stop_training(tmp_path):
    """Training is healthy, but BatchNormCalibration re-measures the statistics on inputs
    that overflow them: the epoch is not counted, nothing is checkpointed, the model
    holds the finite state of before the epoch's last step."""
    x, y = images()
    model = small_cnn(AdamW(1e-3))
    history, caught = fit_quietly(
        model, x, y, batch_size=16, epochs=2,
        callbacks=[BatchNormCalibration(x[:32] * np.float32(1e20)),
                   ModelCheckpoint(tmp_path / "checkpoint.npz")])
    assert history.diverged and "the end of epoch 1" in history.stop_reason
    assert DivergenceWarning in kinds(caught)
    assert model.epoch == 0 and not (tmp_path / "checkpoint.npz").exists()
    assert_all_finite(model)
    assert model.optimizer.iterations == 3                # 4 steps, the last one undone


def test_adam_at_lr_1e3_gets_a_runaway_warning_and_goes_on():
    x, y = images()
    model = numcnn.Sequential([Flatten(), Dense(3 * 8 * 8, 2)], seed=0)
    model.compile(Adam(1e3), SoftmaxCrossEntropy())
    history, caught = fit_quietly(model, x, y, batch_size=16, epochs=3)
    assert kinds(caught).count(RunawayLossWarning) == 3 and DivergenceWarning not in kinds(caught)
    assert not history.diverged and history.epochs == [0, 1, 2] and model.epoch == 3
    assert "learning rate (1000) is probably too high" in str(caught[0].message)
    assert_all_finite(model)


@pytest.mark.parametrize("make", [SGD, Adam, AdamW])
@pytest.mark.parametrize("lr", [float("nan"), float("inf"), -float("inf"), -1.0, 0.0])
def test_optimizers_refuse_a_learning_rate_that_is_not_finite_and_positive(make, lr):
    with pytest.raises(ValueError, match=rf"{make.__name__}: lr must be a finite number > 0; "
                                         rf"got {re.escape(repr(lr))}"):
        make(lr)


@pytest.mark.parametrize("make", [SGD, Adam, AdamW])
def test_setting_the_learning_rate_refuses_nan_inf_and_negative_but_takes_zero(make):
    optimizer = make(0.1)
    for bad in (float("nan"), float("inf"), -1e-9, "0.1", None, True):
        with pytest.raises(ValueError, match=rf"{make.__name__}: lr must be a finite number "
                                             rf">= 0; got {re.escape(repr(bad))}"):
            optimizer.lr = bad
        assert optimizer.lr == 0.1                         # unchanged
    optimizer.lr = 0
    assert optimizer.lr == 0.0


def test_a_schedule_may_reach_zero_and_training_then_changes_nothing():
    x, y = images()
    model = small_cnn(SGD(0.1))
    model.build(x.shape[1:])
    params = {k: v for k, v in state_of(model).items() if ".param." in k}
    history, caught = fit_quietly(model, x, y, batch_size=16, epochs=2,
                                  callbacks=[LearningRateScheduler(lambda epoch: 0.0)])
    assert not history.diverged and history.history["lr"] == [0.0, 0.0]
    assert DivergenceWarning not in kinds(caught)
    after = {k: v for k, v in state_of(model).items() if ".param." in k}
    assert_same_state(params, after)


@pytest.mark.parametrize("bad", [-0.01, float("nan"), float("inf"), "fast", None])
def test_a_schedule_that_gives_a_bad_rate_fails_naming_the_epoch_before_its_steps(bad):
    x, y = images()
    model = small_cnn(SGD(0.1))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    before = state_of(model)
    schedule = LearningRateScheduler(lambda epoch: 0.1 if epoch < 1 else bad)
    with pytest.raises(ValueError, match=rf"the schedule gave lr = {re.escape(repr(bad))} for "
                                         rf"epoch 1; a learning rate must be a finite number >= 0"):
        model.fit(x, y, batch_size=16, epochs=3, initial_epoch=1, verbose=0, callbacks=[schedule])
    assert_same_state(before, state_of(model))
    assert model.epoch == 1


# ----------------------------------------------------------------------------
# 2. Prediction
# ----------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
def test_predict_refuses_outputs_that_overflow_from_finite_weights():
    x, _ = images(8)
    model = numcnn.Sequential([Flatten(), Dense(3 * 8 * 8, 2)], seed=0)
    model.layers[1].params["W"][...] = np.float32(1e38)    # finite, but the logits are not
    with pytest.raises(NonFiniteOutputError, match=r"predict: the model gives non-finite "
                                                   r"outputs for 8 of 8 images \(first: image 0\)"):
        model.predict(x)
    assert issubclass(NonFiniteOutputError, ValueError)


@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
def test_predict_refuses_outputs_that_overflow_from_huge_finite_inputs():
    x, _ = images(8)
    x[3] *= np.float32(3e38)                              # finite: float32 reaches 3.4e38
    model = numcnn.Sequential([Flatten(), Dense(3 * 8 * 8, 2)], seed=0)
    model.layers[1].params["W"][...] = 1                  # logits: the sum of the pixels
    with pytest.raises(NonFiniteOutputError, match=r"for 1 of 8 images \(first: image 3\)"):
        model.predict(x)
    probabilities = model.predict(np.delete(x, 3, axis=0))  # the others are fine
    assert np.isfinite(probabilities).all()


def test_predict_refuses_non_finite_inputs_naming_how_many():
    x, _ = images(8)
    x[2, 0, 0, 0] = np.nan
    x[5, 1, 2, 3] = np.inf
    model = numcnn.Sequential([Flatten(), Dense(3 * 8 * 8, 2)], seed=0)
    with pytest.raises(ValueError, match=r"predict: x must hold finite values; got NaN or "
                                         r"infinite values in 2 of 8 samples"):
        model.predict(x)


def test_a_model_file_with_non_finite_weights_is_never_written_nor_read(tmp_path):
    model = numcnn.Sequential([Flatten(), Dense(3 * 8 * 8, 2)], seed=0)
    model.save(tmp_path / "good.npz")
    model.layers[1].params["b"][1] = np.nan
    with pytest.raises(ValueError, match="layer1/param/b holds NaN or infinite values"):
        model.save(tmp_path / "good.npz")
    assert numcnn.load(tmp_path / "good.npz").layers[1].params["b"][1] == 0   # the old file
    assert temporaries(tmp_path) == []


# ----------------------------------------------------------------------------
# 3. Concurrency: two processes save one model path at once
# ----------------------------------------------------------------------------

SAVER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {root!r})
    import numcnn
    from numcnn.layers import Dense, Flatten
    from numcnn.losses import SoftmaxCrossEntropy
    from numcnn.optim import AdamW
    path, seed, times, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    model = numcnn.Sequential([Flatten(), Dense(3 * 32 * 32, 256), Dense(256, 4)], seed=seed)
    model.compile(AdamW(1e-3), SoftmaxCrossEntropy()).build((3, 32, 32))
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.01)
    for _ in range(times):
        model.save(path)
    print("saved", flush=True)
""")


@pytest.mark.subprocess
def test_two_processes_saving_one_model_path_at_once(tmp_path):
    """Both finish without an error; every load while they write finds a whole file; the
    file left is one of the two models, whole; no temporary file is left behind."""
    script = tmp_path / "saver.py"
    script.write_text(SAVER.format(root=str(REPO_ROOT)))
    target, go = tmp_path / "out" / "model.npz", tmp_path / "go"
    target.parent.mkdir()
    savers = [subprocess.Popen([sys.executable, str(script), str(target), str(seed), "20",
                                str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True) for seed in (1, 2)]
    try:
        for saver in savers:
            assert saver.stdout.readline().strip() == "ready", saver.stderr.read()
        go.touch()                                        # both start writing at once
        loads = 0
        while any(saver.poll() is None for saver in savers):
            if target.exists():
                assert numcnn.load(target).epoch == 0     # whole, whichever wrote it last
                loads += 1
            time.sleep(0.01)
        outputs = [saver.communicate(timeout=60) for saver in savers]
    finally:
        for saver in savers:
            if saver.poll() is None:
                saver.kill()
    for saver, (out, err) in zip(savers, outputs):
        assert saver.returncode == 0 and out.strip() == "saved", err
    final = numcnn.load(target)
    expected = {seed: numcnn.Sequential([Flatten(), Dense(3 * 32 * 32, 256), Dense(256, 4)],
                                        seed=seed) for seed in (1, 2)}
    assert final.seed in expected
    assert np.array_equal(final.layers[1].params["W"], expected[final.seed].layers[1].params["W"])
    assert temporaries(tmp_path) == [] and loads > 0


# ----------------------------------------------------------------------------
# 4. The decode cache notices changed content
# ----------------------------------------------------------------------------

@pytest.fixture
def archive(bloodcells_dir, tmp_path):
    """``tmp_path/archive/images/TEST/<class>``: copies of 3 real JPEGs per class."""
    source = bloodcells.split_dir("TEST", bloodcells_dir)
    for name in CLASSES:
        folder = tmp_path / "archive" / "images" / "TEST" / name
        folder.mkdir(parents=True)
        for path in sorted((source / name).glob("*.jpeg"))[:3]:
            shutil.copy2(path, folder / path.name)
    return tmp_path / "archive"


def load(archive, cache_dir, **extra):
    return bloodcells.load_data("TEST", archive, CentreCrop(128), 4, progress=False,
                                cache_dir=cache_dir, **extra)


def assert_same_images(a, b):
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert a.paths == b.paths


def test_cache_sees_a_file_replaced_with_cp_p_keeping_its_time(archive, tmp_path):
    """``cp -p other file``: another size and content, the old file's modification time."""
    cache = tmp_path / "cache"
    before = load(archive, cache)
    folder = archive / "images" / "TEST" / "MONOCYTE"
    target, other = sorted(folder.glob("*.jpeg"))[:2]
    stat = target.stat()
    shutil.copy2(other, target)                           # cp -p other target
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert target.stat().st_mtime_ns == stat.st_mtime_ns
    after = load(archive, cache)
    assert_same_images(after, load(archive, cache, cache=False))
    row = before.paths.index(target)
    assert not np.array_equal(after.x[row], before.x[row])
    assert len(list(cache.glob("*.npz"))) == 2


def test_cache_sees_a_file_removed(archive, tmp_path):
    cache = tmp_path / "cache"
    before = load(archive, cache)
    gone = before.paths[4]
    gone.unlink()
    after = load(archive, cache)
    assert len(after) == len(before) - 1 and gone not in after.paths
    assert_same_images(after, load(archive, cache, cache=False))


def test_cache_sees_a_file_added(archive, bloodcells_dir, tmp_path):
    cache = tmp_path / "cache"
    before = load(archive, cache)
    source = bloodcells.split_dir("TEST", bloodcells_dir) / "LYMPHOCYTE"
    new = sorted(source.glob("*.jpeg"))[3]
    shutil.copy2(new, archive / "images" / "TEST" / "LYMPHOCYTE" / new.name)
    after = load(archive, cache)
    assert len(after) == len(before) + 1
    assert archive.resolve() / "images" / "TEST" / "LYMPHOCYTE" / new.name in after.paths
    assert_same_images(after, load(archive, cache, cache=False))


def damage_cache(file, kind):
    if kind == "garbage":
        file.write_bytes(os.urandom(5000))
    elif kind == "empty":
        file.write_bytes(b"")
    elif kind == "inconsistent":                          # a readable archive, one label short
        with np.load(file) as data:
            arrays = {name: data[name] for name in data.files}
        arrays["labels"] = arrays["labels"][:-1]
        with open(file, "wb") as handle:
            np.savez(handle, **arrays)
    elif kind == "another key":                           # written for other files or settings
        with np.load(file) as data:
            arrays = {name: data[name] for name in data.files}
        arrays["key"] = np.array("0" * 64)
        with open(file, "wb") as handle:
            np.savez(handle, **arrays)
    elif kind == "a folder":
        file.unlink()
        file.mkdir()
    else:
        raise AssertionError(kind)


@pytest.mark.filterwarnings("ignore:could not write the cache file")
@pytest.mark.parametrize("kind", ["garbage", "empty", "inconsistent", "another key", "a folder"])
def test_a_damaged_cache_file_is_rebuilt_with_a_warning(archive, tmp_path, kind):
    cache = tmp_path / "cache"
    good = load(archive, cache)
    (file,) = cache.glob("*.npz")
    damage_cache(file, kind)
    with pytest.warns(UserWarning, match=f"cache file {re.escape(str(file))}.*rebuilding it"):
        again = load(archive, cache)
    assert_same_images(again, good)
    if kind != "a folder":                                # rebuilt in place: a clean hit now
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert_same_images(load(archive, cache), good)
    assert temporaries(cache) == []


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS, errno.ENOSPC])
def test_an_unwritable_cache_folder_only_warns(archive, tmp_path, monkeypatch, code):
    """Read-only (EACCES, EROFS) or full (ENOSPC): the images come back, a warning says the
    cache was not written, and nothing is left in the cache folder."""
    cache = tmp_path / "cache"
    cache.mkdir()
    fail_writes(monkeypatch, "", code, at="create" if code != errno.ENOSPC else "flush")
    with pytest.warns(UserWarning, match=rf"could not write the cache file .*{os.strerror(code)}"
                                         rf".*continuing without it"):
        got = load(archive, cache)
    assert len(got) == 12 and list(cache.iterdir()) == []
    monkeypatch.undo()
    assert_same_images(got, load(archive, tmp_path / "fresh"))


# ----------------------------------------------------------------------------
# 7. Outputs: a full or read-only disk; permissions
# ----------------------------------------------------------------------------

def fail_writes(monkeypatch, name, code, at="flush"):
    """Make numcnn's atomic writer fail with ``OSError(code)`` for targets whose name starts
    with ``name`` ("" for all): when creating the temporary file (``at="create"``: a
    read-only folder) or when flushing it to disk (``"flush"``: a full disk)."""
    if at == "create":
        real = numcnn.files.tempfile.mkstemp

        def mkstemp(*args, prefix="", **kwargs):
            if prefix.startswith(f".{name}"):
                raise OSError(code, os.strerror(code), kwargs.get("dir"))
            return real(*args, prefix=prefix, **kwargs)
        monkeypatch.setattr(numcnn.files.tempfile, "mkstemp", mkstemp)
    else:
        real = os.fsync

        def fsync(descriptor):
            written = os.path.basename(os.readlink(f"/proc/self/fd/{descriptor}"))
            if written.startswith(f".{name}"):
                raise OSError(code, os.strerror(code))
            return real(descriptor)
        monkeypatch.setattr(numcnn.files.os, "fsync", fsync)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("code, at", [(errno.ENOSPC, "flush"), (errno.EROFS, "create"),
                                      (errno.EACCES, "create")])
def test_a_model_save_that_fails_keeps_the_old_file_and_leaves_nothing(tmp_path, monkeypatch,
                                                                        code, at):
    model = small_cnn(AdamW(1e-3))
    model.build((3, 8, 8))
    path = tmp_path / "model.npz"
    model.save(path)
    before = path.read_bytes()
    model.layers[0].params["W"] += 1
    fail_writes(monkeypatch, "model.npz", code, at)
    with pytest.raises(OSError) as error:
        model.save(path)
    assert error.value.errno == code and error.value.filename == str(path)
    assert str(path) in str(error.value) and os.strerror(code) in str(error.value)
    assert path.read_bytes() == before and temporaries(tmp_path) == []


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
def test_a_checkpoint_that_cannot_be_written_stops_fit_and_keeps_the_previous_one(tmp_path,
                                                                               monkeypatch):
    x, y = images()
    model = small_cnn(AdamW(1e-3))
    checkpoint = ModelCheckpoint(tmp_path / "checkpoint.npz", keep_previous=True)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[checkpoint])
    fail_writes(monkeypatch, "checkpoint.npz", errno.ENOSPC)
    with pytest.raises(OSError, match="No space left on device"):
        model.fit(x, y, batch_size=16, epochs=2, initial_epoch=1, verbose=0,
                  callbacks=[checkpoint])
    assert not (tmp_path / "checkpoint.npz").exists()
    assert numcnn.load(tmp_path / "checkpoint.previous.npz").epoch == 1   # epoch 1, whole
    assert temporaries(tmp_path) == []


def test_a_damaged_checkpoint_is_not_kept_as_the_previous_one(tmp_path):
    """A run resumed from checkpoint.previous.npz because checkpoint.npz is damaged: the
    next checkpoint must not push the good previous one out for the damaged file."""
    x, y = images()
    model = small_cnn(AdamW(1e-3))
    checkpoint = ModelCheckpoint(tmp_path / "checkpoint.npz", keep_previous=True)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[checkpoint])
    newest = tmp_path / "checkpoint.npz"
    newest.write_bytes(newest.read_bytes()[:5000])        # truncated
    resumed = numcnn.load(tmp_path / "checkpoint.previous.npz")
    assert resumed.epoch == 1
    resumed.fit(x, y, batch_size=16, epochs=2, initial_epoch=1, verbose=0,
                callbacks=[ModelCheckpoint(newest, keep_previous=True)])
    assert numcnn.load(newest).epoch == 2
    assert numcnn.load(tmp_path / "checkpoint.previous.npz").epoch == 1   # still whole


@contextlib.contextmanager
def small_tmpfs(folder, size):
    """A tmpfs of ``size`` mounted at ``folder`` (skip when mounting is not allowed)."""
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): the simulated "
                    f"ENOSPC and EROFS tests cover this")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_really_full_disk_keeps_the_old_model_and_leaves_nothing(tmp_path):
    """A 1 MiB tmpfs: the second model (3.2 MB) does not fit; the first (small) one stays."""
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        small = numcnn.Sequential([Flatten(), Dense(3 * 8 * 8, 2)], seed=0)
        small.save(disk / "model.npz")
        before = (disk / "model.npz").read_bytes()
        big = numcnn.Sequential([Flatten(), Dense(3 * 64 * 64, 64), Dense(64, 2)], seed=0)
        with pytest.raises(OSError) as error:
            big.save(disk / "model.npz")
        assert error.value.errno == errno.ENOSPC and error.value.filename == str(disk / "model.npz")
        assert (disk / "model.npz").read_bytes() == before and temporaries(disk) == []
        assert sorted(path.name for path in disk.iterdir()) == ["model.npz"]


def test_a_really_read_only_disk_says_which_file(tmp_path):
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        model = numcnn.Sequential([Flatten(), Dense(3 * 8 * 8, 2)], seed=0)
        model.save(disk / "model.npz")
        done = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True)
        if done.returncode:
            pytest.skip("cannot remount the tmpfs read-only")
        with pytest.raises(OSError) as error:
            model.save(disk / "model.npz")
        assert error.value.errno == errno.EROFS and error.value.filename == str(disk / "model.npz")
        assert numcnn.load(disk / "model.npz").epoch == 0


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002], ids=["022", "077", "002"])
def test_written_files_get_the_permissions_of_a_plain_open(tmp_path, umask):
    """mkstemp makes 0o600 files: the atomic writer gives them 0o666 less the umask, as
    open() does (results meant to be shared are readable by the group)."""
    previous = os.umask(umask)
    try:
        path = write_atomically(tmp_path / "file.txt", lambda handle: handle.write(b"x"))
        with open(tmp_path / "plain.txt", "wb") as handle:
            handle.write(b"x")
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert path.stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777


def test_an_error_while_writing_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("old")

    def half_then_fail(handle):
        handle.write(b"new, but only ha")
        raise KeyboardInterrupt                           # Ctrl-C in the middle of a write

    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, half_then_fail)
    assert path.read_text() == "old" and temporaries(tmp_path) == []
    with pytest.raises(FileNotFoundError) as error:       # a missing folder names the target
        write_atomically(tmp_path / "nowhere" / "x.json", lambda handle: None)
    assert error.value.filename == str(tmp_path / "nowhere" / "x.json")


# ----------------------------------------------------------------------------
# 8. Every public entry point checks its arguments
# ----------------------------------------------------------------------------

def compiled():
    model = numcnn.Sequential([Conv2D(3, 4, 3, padding=1), BatchNorm2D(4), ReLU(), Flatten(),
                               Dense(4 * 8 * 8, 2)], seed=0)
    return model.compile(SGD(0.1), SoftmaxCrossEntropy())


X, Y = images(8)


def npy_file(tmp_path):
    np.save(tmp_path / "array.npy", np.zeros(3))
    return numcnn.load(tmp_path / "array.npy")


ARGUMENTS = {
    # call: (error, the message: where, the argument, what is expected, what was received)
    "fit(epochs=2.5)": (lambda tmp: compiled().fit(X, Y, epochs=2.5, verbose=0), ValueError,
                        r"fit: epochs must be an integer >= 0; got 2\.5"),
    "fit(epochs=-3)": (lambda tmp: compiled().fit(X, Y, epochs=-3, verbose=0), ValueError,
                       r"fit: epochs must be an integer >= 0; got -3"),
    "fit(batch_size=0)": (lambda tmp: compiled().fit(X, Y, batch_size=0, verbose=0), ValueError,
                          r"fit: batch_size must be a positive integer; got 0"),
    "fit(batch_size=True)": (lambda tmp: compiled().fit(X, Y, batch_size=True, verbose=0),
                             ValueError, r"fit: batch_size must be a positive integer; got True"),
    "fit(initial_epoch=-1)": (lambda tmp: compiled().fit(X, Y, initial_epoch=-1, verbose=0),
                              ValueError, r"fit: initial_epoch must be an integer >= 0; got -1"),
    "fit(verbose=5)": (lambda tmp: compiled().fit(X, Y, verbose=5), ValueError,
                       r"fit: verbose must be 0, 1 or 2; got 5"),
    "fit(validation_data=(x,))": (lambda tmp: compiled().fit(X, Y, validation_data=(X,),
                                                             verbose=0), ValueError,
                                  r"fit: validation_data must be a pair \(x, y\) of arrays; got "
                                  r"a tuple of length 1"),
    "fit(callbacks=EarlyStopping())": (lambda tmp: compiled().fit(X, Y, verbose=0,
                                                                  callbacks=EarlyStopping()),
                                       TypeError, r"fit: callbacks must be a list of numcnn "
                                                  r"Callbacks; got <numcnn\.callbacks\.Early"),
    "fit(augment=3)": (lambda tmp: compiled().fit(X, Y, augment=3, verbose=0), TypeError,
                       r"fit: augment must be a function \(x_batch, rng\) -> x_batch; got int"),
    "predict(batch_size=0)": (lambda tmp: compiled().predict(X, batch_size=0), ValueError,
                              r"predict: batch_size must be a positive integer; got 0"),
    "evaluate(batch_size=1.5)": (lambda tmp: compiled().evaluate(X, Y, batch_size=1.5),
                                 ValueError,
                                 r"evaluate: batch_size must be a positive integer; got 1\.5"),
    "summary(input_shape=(3, 8.5, 8))": (lambda tmp: compiled().summary(input_shape=(3, 8.5, 8),
                                                                        print_fn=None),
                                         TypeError, r"input_shape must be a tuple of positive "
                                                    r"integers; got \(3, 8\.5, 8\)"),
    "load of a .npy": (npy_file, ModelFileError,
                       r"load: '.*array\.npy' is not a readable numcnn model file \(damaged, or "
                       r"not a \.npz archive: a single \.npy array, not a \.npz archive\)"),
    "EarlyStopping(patience=-1)": (lambda tmp: EarlyStopping(patience=-1), ValueError,
                                   r"EarlyStopping: patience must be an integer >= 0; got -1"),
    "EarlyStopping(monitor=3)": (lambda tmp: EarlyStopping(monitor=3), TypeError,
                                 r"EarlyStopping: monitor must be the name of a metric such as "
                                 r"'val_loss'; got 3"),
    "EarlyStopping(min_delta=nan)": (lambda tmp: EarlyStopping(min_delta=float("nan")),
                                     ValueError, r"min_delta must be a finite number >= 0; "
                                                 r"got nan"),
    "Sequential(seed=-1)": (lambda tmp: numcnn.Sequential([Dense(2, 2)], seed=-1), ValueError,
                            r"Sequential: seed must be an integer >= 0; got -1"),
    "Dropout(p=1.0)": (lambda tmp: Dropout(p=1.0), ValueError,
                       r"Dropout: p must be in \[0, 1\); got 1\.0"),
    "Dropout(p='0.5')": (lambda tmp: Dropout(p="0.5"), TypeError,
                         r"Dropout: p must be a number in \[0, 1\); got '0\.5'"),
    "SoftmaxCrossEntropy(label_smoothing=1)": (
        lambda tmp: SoftmaxCrossEntropy(label_smoothing=1), ValueError,
        r"SoftmaxCrossEntropy: label_smoothing must be a number in \[0, 1\); got 1"),
    "recalibrate_batchnorm(batch_size=0)": (
        lambda tmp: recalibrate_batchnorm(compiled(), X, batch_size=0), ValueError,
        r"recalibrate_batchnorm: batch_size must be a positive integer; got 0"),
    "BatchNormCalibration(x, batch_size=0)": (
        lambda tmp: BatchNormCalibration(X, batch_size=0), ValueError,
        r"BatchNormCalibration: batch_size must be a positive integer; got 0"),
    "ModelCheckpoint(None)": (lambda tmp: ModelCheckpoint(None), TypeError,
                              r"ModelCheckpoint: path must be a file name \(str or Path\); "
                              r"got None"),
    "SGD(0.1, momentum=1.5)": (lambda tmp: SGD(0.1, momentum=1.5), ValueError,
                               r"SGD: momentum must be a number in \[0, 1\); got 1\.5"),
    "Conv2D(3, 4, 2.5)": (lambda tmp: Conv2D(3, 4, 2.5), ValueError,
                          r"Conv2D: kernel_size must be a positive integer; got 2\.5"),
    "bloodcells.load_data(factor=0)": (lambda tmp: bloodcells.load_data("TEST", factor=0),
                                       ValueError, r"bloodcells\.load_data: factor must be a "
                                                   r"positive integer; got 0"),
}


@pytest.mark.parametrize("call", list(ARGUMENTS))
def test_every_public_entry_point_names_the_argument_the_expected_and_the_received(call,
                                                                                  tmp_path):
    function, error, message = ARGUMENTS[call]
    with pytest.raises(error, match=message):
        function(tmp_path)


def test_early_stopping_on_an_unknown_monitor_fails_before_the_first_epoch():
    model = compiled()
    model.build(X.shape[1:])
    before = state_of(model)
    with pytest.raises(ValueError, match=r"EarlyStopping monitors 'val_acc', which the epoch "
                                         r"logs will not have; they have \['accuracy', 'loss', "
                                         r"'lr', 'seconds'\]"):
        model.fit(X, Y, verbose=0, epochs=3, callbacks=[EarlyStopping(monitor="val_acc")])
    assert model.epoch == 0 and model.optimizer.iterations == 0
    assert_same_state(before, state_of(model))


def test_fit_checks_everything_before_the_first_step():
    """A bad argument anywhere in the call: nothing was trained."""
    model = compiled()
    model.build(X.shape[1:])
    before = state_of(model)
    for kwargs in (dict(validation_data=(X, Y[:3])), dict(callbacks=[3]),
                   dict(validation_data=(X.astype(np.int64), Y))):
        with pytest.raises((TypeError, ValueError)):
            model.fit(X, Y, epochs=2, verbose=0, **kwargs)
    assert model.optimizer.iterations == 0
    assert_same_state(before, state_of(model))
