"""Faults and bad input in the examples: a run that goes wrong says so, exits non-zero, and loses nothing.

Every run here is examples/bloodcells.py on 20 images per class of the real
archive, with a narrow network so that a run takes seconds (``RUN``:
``--max-per-class 20 --epochs 3 --batch-size 16 --filters 8,16,32 --no-plots
--quiet``), or on small temporary copies of it; decoded images are cached
once for the module.
One uninterrupted run in a subprocess is the reference (``reference``);
the runs that are interrupted or damaged must end, after ``--resume``, with
its model.npz bit for bit (every array, the random state, the losses).

- Killed runs (subprocesses, through a driver script that announces every
  training step and can pause inside the atomic write of checkpoint.npz):
  SIGKILL at seeded random moments (a random step, then a random fraction of
  a second) and during a checkpoint write, with a second run on the same
  ``--out`` refused meanwhile (exit 4, naming the first's process id);
  SIGTERM (143) and SIGINT (130), leaving no temporary file.
- In this process (``main(argv)``): divergence (exit 3), ``--predict`` with
  bad models and images (exit 1 or 2), data that cannot be used (exit 2),
  damaged run state (``--resume`` goes on), outputs that cannot be written
  (exit 5), arguments refused before any work (exit 2), and the exit-status
  table in docs/reliability.md and ``--help``.

The library's own fault tests are in tests/test_faults.py; docs/reliability.md
lists every case with its outcome.
"""
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from numcnn.testing import load_script
from skimage import io, transform

import numcnn
import numcnn.files
import numcnn.training
from numcnn.data import read_rgb_image
from numcnn.datasets import bloodcells
from numcnn.errors import NonFiniteOutputError

from cellstudy.bloodcells.command import parse_args
from cellstudy.shared import command

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "examples" / "bloodcells.py"
PBC_SCRIPT = REPO_ROOT / "examples" / "pbc.py"
CLASSES = bloodcells.CLASSES
RUN = ["--max-per-class", "20", "--epochs", "3", "--batch-size", "16", "--filters", "8,16,32",
       "--no-plots", "--quiet"]
STEPS = 15             # training steps of a whole run: 3 epochs of 5 batches (about 72 images)
TIMEOUT = 300          # seconds any one subprocess may take before the test fails


example = load_script(SCRIPT, "bloodcells_example_faults")
pbc_example = load_script(PBC_SCRIPT, "pbc_example_faults")

# The driver runs examples/bloodcells.py as a script, as `python bloodcells.py ...` does,
# with two hooks: it prints FAULT-STEP to stderr before every training step, and with
# FAULT_PAUSE=checkpoint.npz it prints FAULT-WRITING once the bytes of that file are
# in its temporary file (before the flush and the rename), then sleeps: a kill then
# lands in the middle of the checkpoint's atomic write, deterministically.
DRIVER = textwrap.dedent('''
    import os, runpy, signal, sys, time
    from pathlib import Path
    script = sys.argv[1]
    sys.argv = [script] + sys.argv[2:]
    sys.path.insert(0, str(Path(script).parent))       # cellstudy, as `python <script>` has it
    signal.signal(signal.SIGINT, signal.default_int_handler)   # Ctrl-C, even if started ignored
    import numcnn.saving, numcnn.training              # (numcnn first: its OpenBLAS setting)
    pause = os.environ.get("FAULT_PAUSE")
    write_atomically, step = numcnn.saving.write_atomically, numcnn.training.Trainer.train_step

    def pausing(path, write):
        if Path(path).name != pause:
            return write_atomically(path, write)
        def write_then_pause(handle):
            write(handle)
            handle.flush()
            print(f"FAULT-WRITING {path}", file=sys.stderr, flush=True)
            time.sleep(3600)
        return write_atomically(path, write_then_pause)

    def announcing(self, xb, yb):
        print("FAULT-STEP", file=sys.stderr, flush=True)
        return step(self, xb, yb)

    numcnn.saving.write_atomically = pausing
    numcnn.training.Trainer.train_step = announcing
    runpy.run_path(script, run_name="__main__")
''')


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------

class Process:
    """A study run in a subprocess; its stderr is read line by line as it comes."""

    def __init__(self, argv, env, log):
        self.popen = subprocess.Popen(argv, stdout=open(log, "w"), stderr=subprocess.PIPE,
                                      text=True, env=env)
        self.lines, self.ended = [], False
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.popen.stderr:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.ended = True
            self.changed.notify_all()

    def wait_for(self, marker, count=1, timeout=TIMEOUT):
        """True once ``count`` stderr lines hold ``marker``; False if the process ended first."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while sum(marker in line for line in self.lines) < count:
                if self.ended:
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    self.popen.kill()
                    raise AssertionError(f"no {marker!r} after {timeout} s:\n{self.stderr}")
                self.changed.wait(left)
        return True

    def send(self, signum):
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    def finish(self):
        try:
            status = self.popen.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            raise
        self.reader.join()
        return status

    @property
    def stderr(self):
        return "".join(self.lines)


@pytest.fixture(scope="module")
def runs(bloodcells_dir, tmp_path_factory):
    """Start runs of examples/bloodcells.py in subprocesses, on one shared cache."""
    root = tmp_path_factory.mktemp("fault-runs")
    driver = root / "driver.py"
    driver.write_text(DRIVER)
    cache = root / "cache"
    env = dict(os.environ, NUMCNN_CACHE=str(cache), PYTHONUNBUFFERED="1")
    env.pop("FAULT_PAUSE", None)
    started = []

    def start(out, *extra, pause=None, through_driver=True):
        argv = ([sys.executable, str(driver), str(SCRIPT)] if through_driver
                else [sys.executable, str(SCRIPT)])
        argv += ["--data", str(bloodcells_dir), "--out", str(out), "--cache-dir", str(cache),
                 *RUN, *extra]
        process = Process(argv, dict(env, FAULT_PAUSE=pause or ""),
                          root / f"stdout-{len(started)}.txt")
        started.append(process)
        return process

    def run(out, *extra):
        """A whole run of the plain script: (status, stderr)."""
        process = start(out, *extra, through_driver=False)
        return process.finish(), process.stderr

    yield type("Runs", (), dict(root=root, cache=cache, start=start, run=run,
                                data=bloodcells_dir))
    for process in started:
        if process.popen.poll() is None:
            process.popen.kill()


@pytest.fixture(scope="module")
def reference(runs):
    """The uninterrupted run every interrupted one must equal: <out>/seed0/model.npz and all."""
    out = runs.root / "reference"
    status, stderr = runs.run(out)
    assert status == 0, stderr
    return out


def model_file(path):
    """Every array of a model file, and its header."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    return arrays, json.loads(str(arrays.pop("__numcnn__")))


def assert_same_model(path, expected):
    """``path`` holds bit for bit the model at ``expected``: every array (weights,
    statistics, optimizer state), the random state, the epoch and the losses."""
    arrays, header = model_file(path)
    want, want_header = model_file(expected)
    assert arrays.keys() == want.keys()
    for name in want:
        assert arrays[name].dtype == want[name].dtype and np.array_equal(arrays[name], want[name]), name
    assert header["rng_state"] == want_header["rng_state"]
    assert header["epoch"] == want_header["epoch"] == 3
    assert header["history"]["history"]["loss"] == want_header["history"]["history"]["loss"]


def temporaries(folder):
    """The atomic writer's temporary files (``.<name>.<random>.tmp``) under ``folder``."""
    return sorted(Path(folder).rglob(".*.tmp"))


def resume_until_done(runs, out, attempts=2):
    for _ in range(attempts):
        status, stderr = runs.run(out, "--resume")
        if status == 0:
            return stderr
    raise AssertionError(f"--resume did not finish: status {status}\n{stderr}")


def interrupt_at_a_random_moment(process, rng, signum, steps=STEPS):
    """``signum`` at a seeded random moment of training: after a random step's announcement,
    a random fraction of a second later. True if sent; False if the run ended before."""
    step, delay = int(rng.integers(1, steps + 1)), float(rng.uniform(0.0, 0.5))
    if not process.wait_for("FAULT-STEP", count=step):
        return False
    time.sleep(delay)
    process.send(signum)
    return True


# ----------------------------------------------------------------------------
# Killed runs (subprocesses): SIGKILL, SIGTERM, SIGINT
# ----------------------------------------------------------------------------

@pytest.mark.slow
def test_sigkill_anywhere_then_resume_gives_the_uninterrupted_model(runs, reference):
    """SIGKILL in the middle of the first checkpoint's atomic write (a second run on the
    same --out meanwhile exits 4 naming the first's process id), then at two seeded random
    moments of resumed runs; --resume until done: the model of the uninterrupted run, bit
    for bit, and no temporary file left (the run that takes the lock removes them)."""
    out = runs.root / "sigkill"
    first = runs.start(out, pause="checkpoint.npz")
    assert first.wait_for("FAULT-WRITING"), first.stderr
    assert [path.name[:16] for path in temporaries(out)] == [".checkpoint.npz."]
    status, stderr = runs.run(out, "--resume")               # the folder is in use
    assert status == 4, stderr
    assert f"is in use by another run (process {first.popen.pid})" in stderr
    assert "Traceback" not in stderr
    first.send(signal.SIGKILL)
    assert first.finish() == -signal.SIGKILL
    assert not (out / "seed0" / "checkpoint.npz").exists()   # it was never renamed into place

    killed = 1
    rng = np.random.default_rng(2024)
    for _ in range(2):                                       # a resumed run may finish first
        process = runs.start(out, "--resume")
        interrupt_at_a_random_moment(process, rng, signal.SIGKILL)
        status = process.finish()
        assert status in (0, -signal.SIGKILL), process.stderr
        killed += status == -signal.SIGKILL
    assert killed >= 2

    resume_until_done(runs, out)
    assert_same_model(out / "seed0" / "model.npz", reference / "seed0" / "model.npz")
    assert temporaries(out) == []
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"]["0"]["test"] == json.loads(
        (reference / "results.json").read_text())["seeds"]["0"]["test"]


@pytest.mark.slow
def test_sigterm_during_a_checkpoint_write_exits_143_and_resume_goes_on(runs, reference):
    out = runs.root / "sigterm"
    process = runs.start(out, pause="checkpoint.npz")
    assert process.wait_for("FAULT-WRITING"), process.stderr
    assert len(temporaries(out)) == 1                        # the checkpoint, half-way
    process.send(signal.SIGTERM)
    assert process.finish() == 143 == command.EXIT.TERMINATED
    assert "terminated: the last complete checkpoint is kept; --resume goes on" in process.stderr
    assert "Traceback" not in process.stderr
    assert temporaries(out) == []                            # removed by the atomic writer
    assert not (out / "seed0" / "checkpoint.npz").exists() and not (out / "seed0" / "model.npz").exists()

    resume_until_done(runs, out)
    assert_same_model(out / "seed0" / "model.npz", reference / "seed0" / "model.npz")
    assert temporaries(out) == []


@pytest.mark.slow
def test_sigint_at_a_random_moment_exits_130_and_resume_goes_on(runs, reference):
    out = runs.root / "sigint"
    process = runs.start(out)                                # a fresh run: all 15 steps to go
    assert interrupt_at_a_random_moment(process, np.random.default_rng(130), signal.SIGINT)
    status = process.finish()
    assert status == 130 == command.EXIT.INTERRUPTED, process.stderr
    assert "interrupted: the last complete checkpoint is kept; --resume goes on" in process.stderr
    assert "Traceback" not in process.stderr and temporaries(out) == []

    resume_until_done(runs, out)
    assert_same_model(out / "seed0" / "model.npz", reference / "seed0" / "model.npz")


# ----------------------------------------------------------------------------
# Run folders prepared from the reference run (for --resume in this process)
# ----------------------------------------------------------------------------

def run_here(runs, out, *extra):
    """``main(argv)`` of examples/bloodcells.py in this process, on the module's cache."""
    return example.main(["--data", str(runs.data), "--out", str(out), "--cache-dir",
                         str(runs.cache), *RUN, *extra])


def copy_of(reference, out, state="complete"):
    """A copy of the reference run folder as a run left it at some point.

    complete: all 3 epochs, model.npz; after-epoch-3: checkpoint.npz of epoch 3 (and the
    previous one), no model.npz; after-epoch-2: checkpoint.npz of epoch 2, no model.npz.
    """
    shutil.copytree(reference, out)
    seed = out / "seed0"
    if state != "complete":
        (seed / "model.npz").unlink()
    if state == "after-epoch-2":
        os.replace(seed / "checkpoint.previous.npz", seed / "checkpoint.npz")
    return out


def error_lines(text):
    return [line for line in text.splitlines() if line.startswith("error:")]


def flags_named(text):
    """The ``--flags`` a message names (not those of the download commands it quotes)."""
    ours = "\n".join(line for line in text.splitlines()
                     if "kaggle datasets download" not in line and "git clone" not in line)
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", ours))


def known_flags(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    return flags_named(capsys.readouterr().out)


# ----------------------------------------------------------------------------
# 1. Training that diverges
# ----------------------------------------------------------------------------

@pytest.mark.slow
def test_lr_1e30_exits_3_with_no_model_and_no_report(runs, reference, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_here(runs, out, "--lr", "1e30") == 3 == command.EXIT.DIVERGED
    captured = capsys.readouterr()
    assert "seed 0: training diverged at epoch 1" in captured.err and "Traceback" not in captured.err
    seed = out / "seed0"
    assert not (seed / "model.npz").exists() and not list(seed.glob("report_*"))
    assert not list(seed.glob("predicted_*"))
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"] == {} and results["mean"] == {} and results["std"] == {}
    assert "learning rate 1e+30" in results["diverged_seeds"]["0"]
    summary = (out / "summary.txt").read_text()
    assert "Summary: 0 seed(s) trained, 1 diverged" in summary
    assert "seed 0: TRAINING DIVERGED, no result" in summary and "test accuracy" not in summary
    assert json.loads((seed / "history.json").read_text())["diverged"] is True


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
@pytest.mark.parametrize("lr", ["1e6", "1e12"])
def test_learning_rates_that_blow_up_batchnorm_statistics_exit_3_not_with_a_traceback(
        runs, tmp_path, capsys, lr):
    """Huge but finite weights: BatchNorm's running variance (in a step, or re-measured
    after the epoch) overflows while the normalised loss stays finite."""
    out = tmp_path / "out"
    assert run_here(runs, out, "--lr", lr) == 3
    err = capsys.readouterr().err
    assert "seed 0: training diverged at " in err, err
    assert "Traceback" not in err and not (out / "seed0" / "model.npz").exists()
    for checkpoint in (out / "seed0").glob("checkpoint*.npz"):      # any kept one is usable
        assert numcnn.load(checkpoint).epoch >= 1


@pytest.mark.slow
def test_a_diverged_run_in_the_folder_of_an_earlier_run_leaves_none_of_its_results(runs,
                                                                                   reference,
                                                                                   tmp_path):
    """The earlier run's model and reports must not sit beside this run's recipe (--predict
    would use them), nor its checkpoints (--resume would re-evaluate them as this run's)."""
    out = copy_of(reference, tmp_path / "out")
    assert run_here(runs, out, "--lr", "1e30") == 3
    seed = out / "seed0"
    left = sorted(path.name for path in seed.iterdir())
    assert left == ["history.json", "mean_image.npy", "recipe.json"], left
    assert run_here(runs, out, "--lr", "1e30", "--resume") == 3     # not 0: nothing to reuse
    assert not (seed / "model.npz").exists()


@pytest.mark.slow
def test_two_seeds_where_one_diverges_keep_the_other_and_exit_3(runs, tmp_path, monkeypatch,
                                                               capsys):
    healthy = numcnn.training.Trainer.train_step

    def train_step(self, xb, yb):                        # seed 1 diverges at its first step
        return (float("nan"), 0) if self.seed == 1 else healthy(self, xb, yb)

    monkeypatch.setattr(numcnn.training.Trainer, "train_step", train_step)
    out = tmp_path / "out"
    assert run_here(runs, out, "--seeds", "2", "--epochs", "1") == 3
    assert "seed 1: training diverged at epoch 1, batch 1" in capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert list(results["seeds"]) == ["0"] and list(results["diverged_seeds"]) == ["1"]
    for split in ("train", "val", "test"):                # the means are seed 0's alone
        assert results["mean"][split]["accuracy"] == results["seeds"]["0"][split]["accuracy"]
        assert results["std"][split]["accuracy"] is None
    assert (out / "seed0" / "model.npz").is_file() and (out / "seed0" / "report_test.txt").is_file()
    assert not (out / "seed1" / "model.npz").exists() and not list((out / "seed1").glob("report_*"))
    summary = (out / "summary.txt").read_text()
    assert "Summary: 1 seed(s) trained, 1 diverged" in summary
    assert "seed 1: TRAINING DIVERGED, no result" in summary
    assert "the means below leave out the diverged seed(s) 1" in summary
    assert re.search(r"seed 0: test accuracy \d\.\d{4}", summary)


@pytest.mark.slow
def test_a_trained_model_whose_outputs_are_not_finite_gives_no_result(runs, reference, tmp_path,
                                                                      monkeypatch, capsys):
    """Finite weights, but evaluation gives NaN: the seed has no result (exit 3), its model
    and reports are removed, its checkpoints kept; no traceback."""
    out = copy_of(reference, tmp_path / "out")

    def predict(self, x, batch_size=256):
        raise NonFiniteOutputError("predict: the model gives non-finite outputs for 1 of 2 images")

    monkeypatch.setattr(numcnn.training.Trainer, "predict", predict)
    assert run_here(runs, out, "--resume") == 3
    err = capsys.readouterr().err
    assert "seed 0: the trained model cannot be evaluated: predict: the model gives non-finite" in err
    assert "Traceback" not in err
    seed = out / "seed0"
    assert not (seed / "model.npz").exists() and not list(seed.glob("report_*"))
    assert (seed / "checkpoint.npz").is_file()
    assert "0" in json.loads((out / "results.json").read_text())["diverged_seeds"]


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "0", "-inf", "1e400", "fast"])
def test_a_learning_rate_that_is_not_finite_and_positive_exits_2_naming_lr(value, tmp_path,
                                                                           capsys):
    with pytest.raises(SystemExit) as stop:
        example.main(["--lr", value, "--out", str(tmp_path / "out")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "argument --lr:" in err and "Traceback" not in err
    # argparse reads "-inf" as an option, not a number: "expected one argument" (--lr=-inf works)
    assert value in err or value == "-inf"
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------
# 2. --predict (the sizes 40x30 and portrait are in test_bloodcells_example.py)
# ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pictures(runs, tmp_path_factory):
    """A real TEST frame, a 1280x960 and a 40x30 version of it."""
    folder = tmp_path_factory.mktemp("pictures")
    test_dir = bloodcells.split_dir("TEST", runs.data)
    frame_path = sorted((test_dir / "MONOCYTE").glob("*.jpeg"))[0]
    frame = read_rgb_image(frame_path)
    for name, size in (("large.png", (960, 1280)), ("small.png", (30, 40))):
        io.imsave(folder / name, (transform.resize(frame, size) * 255).round().astype(np.uint8),
                  check_contrast=False)
    return {"frame": frame_path, "large": folder / "large.png", "small": folder / "small.png"}


def printed_classes(out, paths):
    return {str(path): line for line in out.splitlines() for path in paths
            if line.startswith(f"{path}: ")}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
def test_predict_with_a_model_whose_outputs_are_not_finite_exits_1_naming_it(runs, reference,
                                                                          pictures, tmp_path,
                                                                          capsys):
    folder = tmp_path / "model"
    shutil.copytree(reference / "seed0", folder)
    model = numcnn.load(folder / "model.npz")
    model.layers[-1].params["W"][...] = np.float32(1e38)   # finite weights, infinite logits
    model.save(folder / "model.npz")
    capsys.readouterr()
    assert example.main(["--predict", str(pictures["frame"]),
                         "--model", str(folder / "model.npz")]) \
        == 1 == command.EXIT.PREDICT_UNREADABLE
    captured = capsys.readouterr()
    assert f"model {folder / 'model.npz'}" in captured.out
    assert f"error: {pictures['frame']}: predict: the model gives non-finite outputs" in captured.err
    assert "1 of 1 image(s) could not be classified" in captured.err
    assert printed_classes(captured.out, [pictures["frame"]]) == {}


@pytest.mark.slow
def test_predict_refuses_a_1280x960_image_and_still_classifies_the_others(reference, pictures,
                                                                         capsys):
    model = str(reference / "seed0" / "model.npz")
    capsys.readouterr()
    assert example.main(["--predict", str(pictures["large"]), str(pictures["frame"]),
                         "--model", model]) == 1
    captured = capsys.readouterr()
    assert (f"error: {pictures['large']}: a 1280x960 image; the model was trained on 320x240 "
            f"frames; --allow-other-size classifies it anyway") in captured.err
    assert list(printed_classes(captured.out, [pictures["large"], pictures["frame"]])) == \
        [str(pictures["frame"])]
    assert "1 of 2 image(s) could not be classified" in captured.err


@pytest.mark.slow
@pytest.mark.parametrize("which, shown", [("large", "1280x960"), ("small", "40x30")])
def test_allow_other_size_classifies_larger_and_smaller_frames_with_a_warning(reference, pictures,
                                                                             capsys, which, shown):
    capsys.readouterr()
    assert example.main(["--predict", str(pictures[which]), "--model",
                         str(reference / "seed0" / "model.npz"), "--allow-other-size"]) == 0
    captured = capsys.readouterr()
    assert (f"warning: {pictures[which]}: a {shown} image; the model was trained on 320x240 "
            f"frames; classified anyway (--allow-other-size)") in captured.err
    assert list(printed_classes(captured.out, [pictures[which]])) == [str(pictures[which])]


def damage_model_folder(folder, kind):
    if kind == "truncated model.npz":
        path = folder / "model.npz"
        path.write_bytes(path.read_bytes()[:4000])
        return "model.npz"
    if kind == "no mean_image.npy":
        (folder / "mean_image.npy").unlink()
        return "mean_image.npy"
    if kind == "garbage recipe.json":
        (folder / "recipe.json").write_bytes(b"\x00\xff garbage")
        return "model.npz"
    if kind == "a .npy as --model":
        np.save(folder / "model.npy", np.zeros(3))
        return "model.npy"
    raise AssertionError(kind)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["truncated model.npz", "no mean_image.npy",
                                  "garbage recipe.json", "a .npy as --model"])
def test_predict_with_a_damaged_model_folder_exits_2_naming_the_file(reference, pictures,
                                                                     tmp_path, capsys, kind):
    folder = tmp_path / "model"
    shutil.copytree(reference / "seed0", folder)
    named = damage_model_folder(folder, kind)
    model = folder / ("model.npy" if kind == "a .npy as --model" else "model.npz")
    assert example.main(["--predict", str(pictures["frame"]), "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot use the model {model}") and named in err
    assert "Traceback" not in err and len(error_lines(err)) == 1


# ----------------------------------------------------------------------------
# 5. Data that cannot be used: a clear message and exit 2
# ----------------------------------------------------------------------------

def linked_archive(data_dir, root, count=12):
    """``root/archive``: links to the first ``count`` real images per class of TRAIN and TEST."""
    source = bloodcells.images_dir(data_dir)
    for split in ("TRAIN", "TEST"):
        for name in CLASSES:
            folder = root / "archive" / "dataset2-master" / "images" / split / name
            folder.mkdir(parents=True)
            for image in sorted((source / split / name).glob("*.jpeg"))[:count]:
                (folder / image.name).symlink_to(image)
    return root / "archive"


def spoil(archive, kind):
    """Spoil the archive's layout; return (the --data to give, what the message must name)."""
    images = archive / "dataset2-master" / "images"
    if kind == "missing data folder":
        return archive.parent / "nowhere", str(archive.parent / "nowhere")
    if kind == "data folder that is a file":
        file = archive.parent / "archive.zip"
        file.write_bytes(b"PK\x03\x04 not unpacked")
        return file, str(file)
    if kind == "missing split TEST":
        shutil.rmtree(images / "TEST")
        return archive, str(images / "TEST")
    if kind == "missing class folder":
        shutil.rmtree(images / "TRAIN" / "MONOCYTE")
        return archive, "MONOCYTE missing from"
    if kind == "empty class folder":
        for link in (images / "TEST" / "NEUTROPHIL").iterdir():
            link.unlink()
        return archive, str(images / "TEST" / "NEUTROPHIL")
    if kind == "class folder without images":
        for link in (images / "TRAIN" / "LYMPHOCYTE").iterdir():
            link.unlink()
        (images / "TRAIN" / "LYMPHOCYTE" / "notes.txt").write_text("moved elsewhere")
        return archive, str(images / "TRAIN" / "LYMPHOCYTE")
    if kind == "extra class folder":
        (images / "TRAIN" / "BASOPHIL").mkdir()
        shutil.copy(next((images / "TRAIN" / "MONOCYTE").iterdir()), images / "TRAIN" / "BASOPHIL")
        return archive, "unexpected folder BASOPHIL"
    if kind == "no usable image":
        for name in CLASSES:
            for link in (images / "TRAIN" / name).iterdir():
                link.unlink()
                link.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
        return archive, "none of the 40 image files could be used"
    raise AssertionError(kind)


LAYOUTS = ["missing data folder", "data folder that is a file", "missing split TEST",
           "missing class folder", "empty class folder", "class folder without images",
           "extra class folder", "no usable image"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:no table of the original labels")
@pytest.mark.parametrize("kind", LAYOUTS)
def test_data_that_cannot_be_used_exits_2_with_one_clear_message(runs, tmp_path, capsys, kind):
    known = known_flags(capsys)
    data, named = spoil(linked_archive(runs.data, tmp_path, count=10), kind)
    status = example.main(["--data", str(data), "--out", str(tmp_path / "out"), "--cache-dir",
                           str(runs.cache), *RUN])
    err = capsys.readouterr().err
    assert status == 2 == command.EXIT.BAD_INPUT, err
    assert err.startswith("error: ") and named in err, err
    assert "Traceback" not in err and len(error_lines(err)) == 1
    assert flags_named(err) <= known, f"suggests an option that does not exist: {err}"


def labels_csv(kind):
    if kind == "binary":
        return b"\x89PNG\r\n\x1a\n\x00\x00" + bytes(range(256))
    if kind == "one Latin-1 byte":
        return ",Image,Category\r\n,0,NEUTROPHIL\r\n,1,EOSIN\xd3PHIL\r\n".encode("latin-1")
    if kind == "empty":
        return b""
    if kind == "no Category column":
        return b",Image,Kind\r\n,0,NEUTROPHIL\r\n"
    raise AssertionError(kind)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["binary", "one Latin-1 byte", "empty", "no Category column"])
def test_a_damaged_labels_csv_only_warns_and_the_run_goes_on(runs, tmp_path, kind):
    archive = linked_archive(runs.data, tmp_path)
    (archive / "dataset-master").mkdir()
    (archive / "dataset-master" / "labels.csv").write_bytes(labels_csv(kind))
    with pytest.warns(UserWarning, match=r"no table of the original labels: .*labels\.csv"):
        status = example.main(["--data", str(archive), "--out", str(tmp_path / "out"),
                               "--cache-dir", str(runs.cache), *RUN, "--epochs", "1",
                               "--validation", "images", "--skip-test", "--tta", "none"])
    assert status == 0
    assert (tmp_path / "out" / "seed0" / "model.npz").is_file()


@pytest.mark.parametrize("kind, named", [
    ("binary", "is not UTF-8 text"),
    ("no split column", "lacks the column(s) ['split']"),
    ("unknown class", "unknown class 'basofil'"),
])
def test_pbc_with_a_damaged_splits_csv_exits_2(tmp_path, capsys, kind, named):
    root = tmp_path / "pbc"
    (root / "images").mkdir(parents=True)
    text = {"binary": b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x81" + bytes(range(256)),
            "no split column": b"class,file,md5_of_original\nbasophil,BA_1.jpg,0\n",
            "unknown class": b"class,file,split\nbasofil,BA_1.jpg,train\n"}[kind]
    (root / "splits.csv").write_bytes(text)
    status = pbc_example.main(["--data", str(root), "--out", str(tmp_path / "out"),
                               "--no-plots", "--quiet"])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith(f"error: {root / 'splits.csv'}") and named in err
    assert "Traceback" not in err and len(error_lines(err)) == 1


# ----------------------------------------------------------------------------
# 6. --resume survives any single damaged state file
# ----------------------------------------------------------------------------

def damage_state(seed, kind):
    """Damage one file of a seed folder; return that file."""
    file = {"empty recipe.json": "recipe.json", "garbage recipe.json": "recipe.json",
            "recipe.json a list": "recipe.json", "truncated model.npz": "model.npz",
            "damaged history.json": "history.json", "damaged results.json": "../results.json",
            "damaged summary.txt": "../summary.txt", "damaged mean_image.npy": "mean_image.npy"}[kind]
    path = seed / file
    content = {"empty recipe.json": b"", "recipe.json a list": b"[1, 2, 3]\n",
               "truncated model.npz": path.read_bytes()[:len(path.read_bytes()) // 2]
               }.get(kind, b"\x00\x93NUMPY\xff\xfe garbage {")
    path.write_bytes(content)
    return path.resolve()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["empty recipe.json", "garbage recipe.json",
                                  "recipe.json a list", "truncated model.npz",
                                  "damaged history.json", "damaged results.json",
                                  "damaged summary.txt", "damaged mean_image.npy"])
def test_resume_survives_one_damaged_state_file(runs, reference, tmp_path, kind):
    out = copy_of(reference, tmp_path / "out")
    damaged = damage_state(out / "seed0", kind)
    if "recipe" in kind or "model" in kind:
        with pytest.warns(UserWarning, match=rf"--resume: {re.escape(str(out / 'seed0'))}/"
                                             rf"(recipe\.json is damaged|model\.npz cannot be used)"):
            assert run_here(runs, out, "--resume") == 0
    else:
        assert run_here(runs, out, "--resume") == 0
    assert_same_model(out / "seed0" / "model.npz", reference / "seed0" / "model.npz")
    if damaged.suffix == ".json":                            # rewritten whole
        json.loads(damaged.read_text())
    if damaged.name == "mean_image.npy":
        np.testing.assert_array_equal(np.load(damaged),
                                      np.load(reference / "seed0" / "mean_image.npy"))
    if damaged.name == "summary.txt":
        assert damaged.read_text().startswith("Summary: 1 seed(s)")
    assert json.loads((out / "seed0" / "recipe.json").read_text())["lr"] == 0.001


@pytest.mark.slow
def test_resume_from_a_truncated_checkpoint_falls_back_to_the_previous_one(runs, reference,
                                                                         tmp_path):
    """checkpoint.npz (epoch 3) truncated: --resume continues from checkpoint.previous.npz
    (epoch 2), trains epoch 3 again, and gives the uninterrupted model bit for bit; the
    good previous checkpoint is not replaced by the damaged one."""
    out = copy_of(reference, tmp_path / "out", state="after-epoch-3")
    checkpoint = out / "seed0" / "checkpoint.npz"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100_000])
    with pytest.warns(UserWarning, match=rf"--resume: {re.escape(str(checkpoint))} cannot be "
                                         rf"used .*trying the state before it"):
        assert run_here(runs, out, "--resume") == 0
    assert_same_model(out / "seed0" / "model.npz", reference / "seed0" / "model.npz")
    assert numcnn.load(checkpoint).epoch == 3
    assert numcnn.load(out / "seed0" / "checkpoint.previous.npz").epoch == 2
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"]["0"]["resumed_from_epoch"] == 2


# ----------------------------------------------------------------------------
# 7. Outputs that cannot be written: one message, exit 5, nothing half-written
# ----------------------------------------------------------------------------

def fail_writes(monkeypatch, name, code):
    """numcnn's atomic writer fails with ``OSError(code)`` for the target ``name``: a full
    disk (ENOSPC) when flushing its bytes, a read-only one (EROFS, EACCES) when creating
    the temporary file."""
    if code == errno.ENOSPC:
        real = os.fsync

        def fsync(descriptor):
            if os.path.basename(os.readlink(f"/proc/self/fd/{descriptor}")).startswith(f".{name}."):
                raise OSError(code, os.strerror(code))
            return real(descriptor)
        monkeypatch.setattr(numcnn.files.os, "fsync", fsync)
    else:
        real = numcnn.files.tempfile.mkstemp

        def mkstemp(*args, prefix="", **kwargs):
            if prefix == f".{name}.":
                raise OSError(code, os.strerror(code), kwargs.get("dir"))
            return real(*args, prefix=prefix, **kwargs)
        monkeypatch.setattr(numcnn.files.tempfile, "mkstemp", mkstemp)


OUTPUTS = [  # (the file that cannot be written, the error, the state of the run folder)
    ("checkpoint.npz", errno.ENOSPC, "after-epoch-2"),
    ("checkpoint.npz", errno.EROFS, "after-epoch-2"),
    ("report_val.txt", errno.ENOSPC, "complete"),
    ("results.json", errno.EACCES, "complete"),
]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("name, code, state", OUTPUTS,
                         ids=[f"{name}-{errno.errorcode[code]}" for name, code, _ in OUTPUTS])
def test_an_output_that_cannot_be_written_exits_5_and_resume_then_works(runs, reference, tmp_path,
                                                                       monkeypatch, capsys,
                                                                       name, code, state):
    out = copy_of(reference, tmp_path / "out", state=state)
    with monkeypatch.context() as patch:
        fail_writes(patch, name, code)
        status = run_here(runs, out, "--resume")
    err = capsys.readouterr().err
    assert status == 5 == command.EXIT.CANNOT_WRITE, err
    assert len(error_lines(err)) == 1 and "Traceback" not in err
    assert re.search(rf"error: cannot write the output \S*{re.escape(name)}: "
                     rf"{re.escape(os.strerror(code))}", err), err
    assert "then --resume" in err
    assert temporaries(out) == []
    if name == "checkpoint.npz":                             # the epoch before is kept, whole
        assert numcnn.load(out / "seed0" / "checkpoint.previous.npz").epoch == 2

    assert run_here(runs, out, "--resume") == 0
    assert_same_model(out / "seed0" / "model.npz", reference / "seed0" / "model.npz")
    assert (out / "seed0" / "report_val.txt").is_file() and (out / "summary.txt").is_file()
    assert temporaries(out) == []


def test_an_out_that_is_a_file_exits_5(runs, tmp_path, capsys):
    out = tmp_path / "results"
    out.write_text("not a folder")
    status = run_here(runs, out)
    err = capsys.readouterr().err
    assert status == 5
    assert f"error: cannot write the output {out}: the output folder {out} is a file" in err
    assert out.read_text() == "not a folder" and len(error_lines(err)) == 1


# ----------------------------------------------------------------------------
# 8. Arguments are refused before any work
# ----------------------------------------------------------------------------

def test_filters_100000_is_refused_before_any_image_is_decoded(tmp_path, capsys, private_cache):
    before = sorted(private_cache.rglob("*"))
    with pytest.raises(SystemExit) as stop:
        example.main(["--filters", "100000", "--out", str(tmp_path / "out"),
                      "--cache-dir", str(tmp_path / "cache")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert re.search(r"--filters: the network would have [\d,]+ weights .*more than "
                     r"100,000,000; choose fewer filters", err), err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()
    assert sorted(private_cache.rglob("*")) == before


@pytest.mark.parametrize("argv, flag", [
    (["--epochs", "2.5"], "--epochs"), (["--epochs", "0"], "--epochs"),
    (["--batch-size", "0"], "--batch-size"), (["--max-per-class", "5"], "--max-per-class"),
    (["--seed", "-1"], "--seed"), (["--crop", "300"], "--crop"), (["--factor", "0"], "--factor"),
    (["--filters", "8,0"], "--filters"), (["--colour-jitter", "nan"], "--colour-jitter"),
])
def test_bad_flags_exit_2_naming_the_flag(tmp_path, capsys, argv, flag):
    with pytest.raises(SystemExit) as stop:
        example.main(argv + ["--out", str(tmp_path / "out")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------
# The exit statuses: one table, in the code, in --help and in docs/reliability.md
# ----------------------------------------------------------------------------

def exit_table_of(text):
    """The 'exit status:' block of a text: that line and the indented lines after it."""
    lines = text.splitlines()
    start = lines.index("exit status:")
    block = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        block.append(line)
    return "\n".join(block)


def test_the_exit_status_table_is_the_same_in_the_code_the_help_and_the_docs():
    doc = (REPO_ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    assert exit_table_of(doc) == command.EXIT_TABLE
    statuses = [int(line.split()[0]) for line in command.EXIT_TABLE.splitlines()[1:]]
    assert statuses == sorted(vars(command.EXIT).values())
    done = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert done.returncode == 0 and exit_table_of(done.stdout) == command.EXIT_TABLE
