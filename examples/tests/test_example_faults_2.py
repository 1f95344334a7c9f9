"""More hostile cases on the command lines: state reused, files beside a model, data against itself.

Four classes of docs/reliability.md's hostile-case table, each fixed where it
arises and tested here with the cases that showed it:

- **State reused** (``--resume``, transfer.py): a run goes on only with the
  same data, recipe, seed and network (cellstudy.shared.runs); more ``--epochs`` is a
  recorded continuation; transfer.py takes four-class models only.
- **Files beside a model** (``--predict``, ``--explain``): mean_image.npy and
  recipe.json are checked against the model and each other
  (cellstudy.shared.seedfiles); both commands run under the guard.
- **The data against itself** (cellstudy.shared.datacheck): TEST that is TRAIN, a
  class folder that is another, files shared between splits or classes;
  ``--out`` inside the data; a class with no test image; one-class models.
- **What reaches a terminal**: flags that cannot work, file names that are not
  UTF-8, Ctrl-C before the guard and during ``--predict``, a closed standard
  output (141), a full disk at the first write (5).

The runs reuse test_example_faults.py's fixtures and helpers: its uninterrupted
reference run (``--max-per-class 20 --epochs 3``, a narrow network) and small
archives of links to the real images; decoded images are cached for the module.
"""
import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from numcnn.testing import load_script

import numcnn
from numcnn import metrics
from numcnn.data import list_image_files, subsample_per_class
from numcnn.datasets import bloodcells, pbc
from numcnn.optim import AdamW
from numcnn.losses import SoftmaxCrossEntropy

import cellstudy.shared.prediction
from cellstudy.pbc.command import PBCSettings
from cellstudy.shared import command
from cellstudy.shared.runs import RunFolder

import test_example_faults as faults
from test_example_faults import (CLASSES, RUN, SCRIPT, TIMEOUT, copy_of, error_lines, example,
                                 fail_writes, linked_archive, pbc_example, run_here)

# The fixtures of test_example_faults.py (module-scoped: one reference run for this module too).
runs, reference, pictures = faults.runs, faults.reference, faults.pictures

REPO_ROOT = Path(__file__).resolve().parents[2]
TRANSFER_SCRIPT = REPO_ROOT / "examples" / "transfer.py"
SHARED = ("eosinophil", "lymphocyte", "monocyte", "neutrophil")


transfer_example = load_script(TRANSFER_SCRIPT, "transfer_example_faults")


def one_error(err):
    """The single ``error:`` line of a run's stderr (and no traceback)."""
    assert "Traceback" not in err, err
    lines = error_lines(err)
    assert len(lines) == 1, err
    return lines[0]


def trained_settings(*extra):
    """The settings of the reference run (and ``extra`` flags)."""
    return example.parse_args(RUN + list(extra))[0]


# ----------------------------------------------------------------------------
# State reused: --resume goes on only from a state that fits this run
# ----------------------------------------------------------------------------

def a_model_file(path, settings, seed=0, epoch=2):
    """Write an untrained model of ``settings``' network as if trained ``epoch`` epochs."""
    model = example.network(settings, seed)
    model.compile(AdamW(settings.lr), SoftmaxCrossEntropy())
    model.epoch = epoch
    model.save(path)


@pytest.fixture
def same_backend():
    """``main`` sets the backend for the whole process: put it back after the test."""
    before = numcnn.get_backend()
    yield
    numcnn.set_backend(before)


def seed_files(out):
    """The bytes of every file of every seed folder of ``out``."""
    return {str(path.relative_to(out)): path.read_bytes() for path in sorted(out.glob("seed*/*"))}


@pytest.mark.slow
@pytest.mark.usefixtures("same_backend")
@pytest.mark.parametrize("kind, flags, message", [
    ("another backend", ["--backend", "numpy"], "backend: 'numba' -> 'numpy'"),
    ("fewer --epochs than the model has", ["--epochs", "2"],
     "model.npz has 3 epochs, more than --epochs 2"),
    ("a checkpoint of another architecture", [],
     "checkpoint.npz is a model of another architecture (layer 0 is Conv2D"),
    ("the model of another seed", [], "model.npz holds the model of seed 1, not of seed 0"),
    ("swapped seed folders", ["--seed", "1"], "model.npz holds the model of seed 0, not of seed 1"),
])
def test_resume_refuses_a_state_that_does_not_fit_this_run(runs, reference, tmp_path, capsys,
                                                           kind, flags, message):
    out = copy_of(reference, tmp_path / "out",
                  "after-epoch-2" if "architecture" in kind else "complete")
    seed = out / "seed0"
    if "architecture" in kind:
        a_model_file(seed / "checkpoint.npz", trained_settings("--filters", "4,8,16"))
    if kind == "the model of another seed":
        model = numcnn.load(seed / "model.npz")
        model.seed = 1
        model.save(seed / "model.npz")
    if kind == "swapped seed folders":           # seed1/ holds seed 0's run
        shutil.copytree(seed, out / "seed1")
    before = seed_files(out)
    assert run_here(runs, out, "--resume", *flags) == 2 == command.EXIT.BAD_INPUT
    line = one_error(capsys.readouterr().err)
    assert line.startswith("error: --resume: ") and message in line, line
    assert seed_files(out) == before                                    # nothing rewritten


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:no table of the original labels")
def test_resume_on_other_data_is_refused_and_the_same_data_elsewhere_goes_on(runs, reference,
                                                                             tmp_path, capsys):
    """The data's identity is its names and bytes: a copy elsewhere is the same data, one
    image replaced (same name) is not."""
    out = copy_of(reference, tmp_path / "out")
    archive = linked_archive(runs.data, tmp_path, count=None)          # all of it, as links
    assert run_here(runs, out, "--resume", "--data", str(archive)) == 0
    recorded = json.loads((out / "seed0" / "recipe.json").read_text())["data_identity"]
    assert recorded["train"]["images"] == recorded["test"]["images"] == 80

    _, paths, labels = list_image_files(bloodcells.split_dir("TRAIN", archive), CLASSES)
    used = paths[subsample_per_class(labels, 20, seed=0)[0]]            # one of the 80 trained on
    other = sorted(used.parent.iterdir())[-1]                          # another cell, same name
    used.unlink()
    used.symlink_to(os.readlink(other))
    capsys.readouterr()
    assert run_here(runs, out, "--resume", "--data", str(archive)) == 2
    line = one_error(capsys.readouterr().err)
    assert "was trained on other data: its TRAIN split held 80 images" in line, line
    assert "use the same --data or another --out" in line


@pytest.mark.slow
def test_more_epochs_is_a_recorded_continuation(runs, reference, tmp_path, capsys):
    """--epochs 4 on a run of 3 (its checkpoint after epoch 2): trained on, and recipe.json
    and results.json say that epochs 3-4 followed the schedule of 4 epochs."""
    out = copy_of(reference, tmp_path / "out", "after-epoch-2")
    assert run_here(runs, out, "--resume", "--epochs", "4") == 0
    change = [{"after_epoch": 2, "epochs_before": 3, "epochs_now": 4}]
    recipe = json.loads((out / "seed0" / "recipe.json").read_text())
    assert recipe["epochs"] == 4 and recipe["epochs_changed"] == change
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"]["0"]["epochs_changed"] == change
    assert numcnn.load(out / "seed0" / "model.npz").epoch == 4
    assert run_here(runs, out, "--resume", "--epochs", "4") == 0        # complete: kept
    assert json.loads((out / "seed0" / "recipe.json").read_text())["epochs_changed"] == change


@pytest.mark.slow
def test_a_run_folder_without_a_data_record_resumes_with_a_warning(runs, reference, tmp_path):
    out = copy_of(reference, tmp_path / "out")
    recipe_file = out / "seed0" / "recipe.json"
    recipe = json.loads(recipe_file.read_text())
    for key in ("data_identity", "mean_image", "recipe_checksum"):      # as 0.3.0 wrote it
        del recipe[key]
    recipe_file.write_text(json.dumps(recipe))
    with pytest.warns(UserWarning, match="does not record which images it was trained on"):
        assert run_here(runs, out, "--resume") == 0
    assert "data_identity" in json.loads(recipe_file.read_text())     # recorded from now on


def pbc_model_folder(folder, classes):
    """A PBC seed folder (untrained model, mean image, recipe.json) of ``classes``."""
    settings = pbc_example.parse_args(["--filters", "8,16,32", "--dense", "32",
                                       "--classes", ",".join(classes)] if len(classes) > 1
                                      else ["--filters", "8,16,32", "--dense", "32"])[0]
    settings = settings.replace(classes=tuple(classes))
    folder.mkdir(parents=True)
    model = pbc_example.network(settings, 0, classes)
    model.compile(AdamW(settings.lr), SoftmaxCrossEntropy())
    model.save(folder / "model.npz")
    RunFolder(folder.parent).write_seed_files(folder, pbc_example.recipe_of(settings, classes),
                                              np.full(settings.image_shape, 0.5, np.float32))
    return folder / "model.npz"


def test_transfer_refuses_a_model_of_other_classes_before_any_work(bloodcells_dir, tmp_path,
                                                                   capsys):
    """An eight-class PBC model was scored as a four-class one ("accuracy 0.292", exit 0)."""
    pbc_model_folder(tmp_path / "pbc8" / "seed0", pbc_example.pbc.CLASSES)
    status = transfer_example.main(["--pbc", str(tmp_path / "pbc8"), "--bloodcells-data",
                                    str(bloodcells_dir), "--out", str(tmp_path / "out"),
                                    "--quiet", "--no-plots"])
    line = one_error(capsys.readouterr().err)
    assert status == 2
    assert "is a model of the classes ['basophil', 'eosinophil'" in line
    assert "the transfer tests models of the four shared ones" in line
    assert not (tmp_path / "out").exists()                              # nothing measured


def test_transfer_maps_a_four_class_model_listed_in_another_order(tmp_path):
    order = ("neutrophil", "eosinophil", "monocyte", "lymphocyte")
    pbc_model_folder(tmp_path / "pbc4" / "seed0", order)
    ((path, model, recipe, labels, mean),) = transfer_example.saved_models(tmp_path / "pbc4",
                                                                           PBCSettings)
    assert [SHARED[label] for label in labels] == list(order)


# ----------------------------------------------------------------------------
# Files beside a model: checked against the model and each other
# ----------------------------------------------------------------------------

def spoil_beside(folder, kind):
    """Spoil mean_image.npy or recipe.json of a model folder as ``kind`` says."""
    mean = np.load(folder / "mean_image.npy")
    recipe = json.loads((folder / "recipe.json").read_text())
    if kind == "mean_image.npy scaled by 255":
        np.save(folder / "mean_image.npy", mean * 255)
    elif kind == "mean_image.npy as float64":
        np.save(folder / "mean_image.npy", mean.astype(np.float64))
    elif kind == "mean_image.npy of another shape":
        np.save(folder / "mean_image.npy", mean[:, :36, :36])
    elif kind == "mean_image.npy with a NaN":
        mean[1, 2, 3] = np.nan
        np.save(folder / "mean_image.npy", mean)
    elif kind == "mean_image.npy scaled by 1.1 (finite, right shape)":
        np.save(folder / "mean_image.npy", mean * np.float32(1.1))
    else:
        recipe = {"recipe.json a list": [1, 2, 3],
                  "recipe.json with crop as text": dict(recipe, crop="144"),
                  "recipe.json with a reordered class list": dict(recipe,
                                                                  classes=recipe["classes"][::-1]),
                  "recipe.json of settings_version 99": dict(recipe, settings_version=99),
                  "recipe.json of settings_version '2'": dict(recipe, settings_version="2"),
                  }[kind]
        (folder / "recipe.json").write_text(json.dumps(recipe))


BESIDE = [
    ("mean_image.npy scaled by 255", "mean_image.npy is not the mean image this model was "
                                     "trained with"),
    ("mean_image.npy scaled by 1.1 (finite, right shape)", "mean_image.npy is not the mean image"),
    ("mean_image.npy as float64", "mean_image.npy holds float64 values"),
    ("mean_image.npy of another shape", "mean_image.npy has shape (3, 36, 36); the recipe's "
                                        "images have (3, 72, 72)"),
    ("mean_image.npy with a NaN", "mean_image.npy holds NaN or infinite values"),
    ("recipe.json a list", "recipe.json: the recipe is a JSON list"),
    ("recipe.json with crop as text", "recipe.json: the recipe's crop is '144'; expected a whole"),
    ("recipe.json with a reordered class list", "recipe.json was changed after the run wrote it"),
    ("recipe.json of settings_version 99", "the recipe has settings_version 99; this code reads "
                                           "versions 1 to 2"),
    ("recipe.json of settings_version '2'", "settings_version '2'"),
]


@pytest.mark.slow
@pytest.mark.parametrize("kind, message", BESIDE, ids=[kind for kind, _ in BESIDE])
def test_predict_refuses_files_beside_the_model_that_do_not_fit_it(reference, pictures, tmp_path,
                                                                   capsys, kind, message):
    folder = tmp_path / "model"
    shutil.copytree(reference / "seed0", folder)
    spoil_beside(folder, kind)
    capsys.readouterr()
    assert example.main(["--predict", str(pictures["frame"]), "--model",
                         str(folder / "model.npz")]) == 2
    captured = capsys.readouterr()
    line = one_error(captured.err)
    assert line.startswith(f"error: cannot use the model {folder / 'model.npz'}: ")
    assert message in line, line
    assert f"{pictures['frame']}:" not in captured.out                  # no class printed


@pytest.mark.slow
@pytest.mark.parametrize("kind, status, message", [
    ("as it was", 0, None),
    ("mean_image.npy scaled by 255", 2, "holds values from 1"),
    ("recipe.json with a reordered class list", 2, "this study's models have ['EOSINOPHIL', "
                                                   "'LYMPHOCYTE', 'MONOCYTE', 'NEUTROPHIL'], in "
                                                   "that order"),
])
def test_a_model_folder_of_an_earlier_version_is_checked_as_far_as_it_can_be(
        reference, pictures, tmp_path, capsys, kind, status, message):
    """recipe.json without the records (as numcnn 0.3.0 wrote it): the range of the mean image
    and the class list are still checked, and a warning says what could not be."""
    folder = tmp_path / "model"
    shutil.copytree(reference / "seed0", folder)
    recipe = json.loads((folder / "recipe.json").read_text())
    for key in ("data_identity", "mean_image", "recipe_checksum"):
        del recipe[key]
    (folder / "recipe.json").write_text(json.dumps(recipe))
    if kind != "as it was":
        spoil_beside(folder, kind)
    argv = ["--predict", str(pictures["frame"]), "--model", str(folder / "model.npz")]
    if status == 0:
        with pytest.warns(UserWarning, match="written by an earlier version of the study: it "
                                             "records no checksum"):
            assert example.main(argv) == 0
        assert f"{pictures['frame']}: " in capsys.readouterr().out
    else:
        assert example.main(argv) == status
        assert message in one_error(capsys.readouterr().err)


@pytest.mark.slow
def test_predict_and_explain_run_under_the_guard(runs, reference, pictures, tmp_path, capsys,
                                                  monkeypatch):
    """Ctrl-C during --predict or --explain: 130 and one line; an --explain picture that
    cannot be written: 5; a damaged recipe under --explain: 2; never a traceback."""
    pytest.importorskip("matplotlib")
    folder = tmp_path / "model"
    shutil.copytree(reference / "seed0", folder)
    model = str(folder / "model.npz")
    explain = ["--explain", "--model", model, "--data", str(runs.data), "--explain-per-class",
               "1", "--cache-dir", str(runs.cache)]

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(cellstudy.shared.prediction, "predict_views", interrupt)
        assert example.main(["--predict", str(pictures["frame"]), "--model", model]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "interrupted: stopped; nothing half-written is left behind", err
    with monkeypatch.context() as patch:
        patch.setattr(numcnn.explain, "grad_cam", interrupt)
        assert example.main(explain) == 130
    assert capsys.readouterr().err.strip() == ("interrupted: stopped; nothing half-written is "
                                               "left behind")
    with monkeypatch.context() as patch:
        fail_writes(patch, "gradcam_test.png", errno.EACCES)
        assert example.main(explain) == 5
    line = one_error(capsys.readouterr().err)
    assert line.startswith(f"error: cannot write the output {folder / 'gradcam_test.png'}")
    spoil_beside(folder, "recipe.json with crop as text")
    assert example.main(explain) == 2
    assert "the recipe's crop is '144'" in one_error(capsys.readouterr().err)


# ----------------------------------------------------------------------------
# The data checked against itself
# ----------------------------------------------------------------------------

def run_on(archive, out, *extra, cache=None):
    return example.main(["--data", str(archive), "--out", str(out), "--cache-dir", str(cache),
                         *RUN, *extra])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:no table of the original labels")
@pytest.mark.parametrize("kind, message", [
    ("TEST a link of TRAIN", "TEST is TRAIN: 48 of its 48 images are, byte for byte, TRAIN images"),
    ("TEST a copy of TRAIN", "TEST is TRAIN: 48 of its 48 images are, byte for byte, TRAIN images"),
    ("a class folder linked to another", "TRAIN/MONOCYTE is TRAIN/NEUTROPHIL: 12 of its 12 "
                                         "images are, byte for byte, NEUTROPHIL images"),
])
def test_held_out_data_that_is_not_held_out_is_refused(runs, tmp_path, capsys, kind, message):
    archive = linked_archive(runs.data, tmp_path)
    images = archive / "dataset2-master" / "images"
    if kind == "TEST a link of TRAIN":
        shutil.rmtree(images / "TEST")
        (images / "TEST").symlink_to("TRAIN")
    elif kind == "TEST a copy of TRAIN":
        shutil.rmtree(images / "TEST")
        shutil.copytree(images / "TRAIN", images / "TEST", symlinks=False)   # real copies
    else:
        shutil.rmtree(images / "TRAIN" / "MONOCYTE")
        (images / "TRAIN" / "MONOCYTE").symlink_to("NEUTROPHIL")
    assert run_on(archive, tmp_path / "out", cache=runs.cache) == 2
    line = one_error(capsys.readouterr().err)
    assert message in line, line
    assert not list((tmp_path / "out").glob("seed*"))                   # nothing trained


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:no table of the original labels")
def test_files_shared_between_splits_or_classes_are_counted(runs, tmp_path):
    """3 TRAIN images also in TEST, one TRAIN image in two classes: warnings with the counts,
    results.json and summary.txt count them, the run goes on."""
    archive = linked_archive(runs.data, tmp_path)
    images = archive / "dataset2-master" / "images"
    for number, image in enumerate(sorted((images / "TRAIN" / "EOSINOPHIL").iterdir())[:3]):
        shutil.copy(image, images / "TEST" / "EOSINOPHIL" / f"again{number}.jpeg")
    twice = sorted((images / "TRAIN" / "LYMPHOCYTE").iterdir())[0]
    shutil.copy(twice, images / "TRAIN" / "MONOCYTE" / "lymphocyte_too.jpeg")
    with pytest.warns(UserWarning) as caught:
        assert run_on(archive, tmp_path / "out", "--epochs", "1", "--validation", "images",
                      "--tta", "none", cache=runs.cache) == 0
    said = [str(warning.message) for warning in caught]
    assert any("3 of the 51 TEST images are, byte for byte, TRAIN images" in text for text in said)
    assert any("2 TRAIN images have the bytes of an image of another class" in text
               for text in said), said
    files = json.loads((tmp_path / "out" / "results.json").read_text())["data"]["files"]
    assert files["same_files"] == {"test_in_train": 3}
    assert files["classes_sharing_files"] == {"train": 2, "test": 0}
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert "TEST images that are TRAIN images byte for byte: 3 (not held out)" in summary
    assert "TRAIN images whose bytes appear under another class too: 2" in summary


@pytest.mark.slow
@pytest.mark.parametrize("flag, where", [
    ("--out", "dataset2-master/images/TRAIN/runs"), ("--out", "."),
    ("--cache-dir", "dataset2-master/images/TEST/cache")])
def test_an_output_inside_the_data_folder_is_refused(runs, tmp_path, capsys, flag, where):
    """It would become a class folder (or stray files) of every later run on that data."""
    archive = linked_archive(runs.data, tmp_path, count=10).resolve()
    before = sorted(archive.rglob("*"))
    place = (archive / where).resolve()
    argv = ["--data", str(archive), "--out", str(tmp_path / "out"), "--cache-dir",
            str(runs.cache), *RUN]
    argv[argv.index(flag) + 1] = str(place)
    assert example.main(argv) == 2
    line = one_error(capsys.readouterr().err)
    assert line.startswith(f"error: {flag} {place} lies inside the data folder {archive}"), line
    assert sorted(archive.rglob("*")) == before                         # nothing written


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:no table of the original labels", "ignore:skipped 10 of")
def test_a_class_with_no_test_image_is_reported_as_having_none(runs, tmp_path):
    """Every TEST/MONOCYTE file unreadable: no recall of 0 for it, no place in the macro
    averages or as the worst recall; the report says so."""
    archive = linked_archive(runs.data, tmp_path, count=10)
    for link in (archive / "dataset2-master" / "images" / "TEST" / "MONOCYTE").iterdir():
        link.unlink()
        link.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    out = tmp_path / "out"
    assert run_on(archive, out, "--epochs", "1", "--validation", "images", "--tta", "none",
                  "--seeds", "2", cache=runs.cache) == 0
    test = json.loads((out / "results.json").read_text())["seeds"]["0"]["test"]
    assert test["support"]["MONOCYTE"] == 0 and test["no_images"] == ["MONOCYTE"]
    assert test["recall"]["MONOCYTE"] is None and test["f1"]["MONOCYTE"] is None
    assert test["worst_recall_class"] != "MONOCYTE"
    others = [test["f1"][name] for name in CLASSES if name != "MONOCYTE"]
    assert test["macro_f1"] == pytest.approx(np.mean(others))
    report = (out / "seed0" / "report_test.txt").read_text()
    assert ("no images of MONOCYTE (left out of the macro averages and the worst recall)"
            in report)
    assert "MONOCYTE   no samples (predicted" in report and "macro avg of 3" in report
    assert "MONOCYTE     no images (left out of the means)" in (out / "summary.txt").read_text()


def test_class_report_leaves_a_class_without_samples_out_of_the_averages():
    y = np.array([0, 0, 1, 1, 3, 3])
    predicted = np.array([0, 1, 1, 2, 3, 0])
    names = ["a", "b", "c", "d"]
    report = metrics.class_report(y, predicted, names)
    assert report["no_samples"] == ["c"]
    assert report["classes"]["c"] == {"precision": None, "recall": None, "f1": None,
                                      "support": 0, "predicted": 1}
    assert report["macro"]["recall"] == pytest.approx(0.5)                # (0.5+0.5+0.5)/3
    assert report["worst_recall"][0] != "c"
    text = metrics.text_report(y, predicted, names)
    assert "c   no samples (predicted 1 times; left out of the averages)" in text
    assert "macro avg of 3" in text
    full = np.array([0, 1, 2, 3])
    assert metrics.text_report(full, full, names) == metrics.classification_report(
        full, full, labels=[0, 1, 2, 3], target_names=names, digits=3, zero_division=0)


def test_a_one_class_pbc_model_is_refused(tmp_path, capsys, pictures):
    """--classes eosinophil reported "accuracy 1.0000 [1.000-1.000]"."""
    with pytest.raises(SystemExit) as stop:
        pbc_example.main(["--classes", "eosinophil", "--out", str(tmp_path / "out")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--classes: expected at least 2 classes to tell apart" in err
    assert not (tmp_path / "out").exists()
    model = pbc_model_folder(tmp_path / "one" / "seed0", ("eosinophil",))
    assert pbc_example.main(["--predict", str(pictures["frame"]), "--model", str(model)]) == 2
    assert "expected two or more distinct names" in one_error(capsys.readouterr().err)


# ----------------------------------------------------------------------------
# What reaches a terminal: flags, odd file names, Ctrl-C, a closed stdout, a full disk
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("script, argv, flag", [
    ("bloodcells", ["--batch-size", "1"], "--batch-size must be at least 2: BatchNorm"),
    ("bloodcells", ["--seed", str(2**32)], "--seed must be between 0 and 2147483647"),
    ("bloodcells", ["--seed", str(2**31)], "--seed must be between 0 and 2147483647"),
    ("pbc", ["--batch-size", "1"], "--batch-size must be at least 2"),
    ("pbc", ["--seed", str(2**40)], "--seed must be between 0"),
    ("transfer", ["--max-per-class", "0"], "argument --max-per-class: must be at least 1"),
    ("transfer", ["--every", "0"], "argument --every: must be at least 1"),
])
def test_flags_that_cannot_work_exit_2_naming_the_flag(tmp_path, capsys, script, argv, flag):
    module = {"bloodcells": example, "pbc": pbc_example, "transfer": transfer_example}[script]
    with pytest.raises(SystemExit) as stop:
        module.main(argv + ["--out", str(tmp_path / "out")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err and not (tmp_path / "out").exists()


def test_transfer_refuses_every_0_in_its_parser_before_any_data_is_read(tmp_path, capsys,
                                                                         monkeypatch):
    """--every 0 would measure no lymphocyte: argparse refuses it (the shared positive_int),
    status 2 and its usage line, before a model, a data folder or an image is looked at."""
    def never(*args, **kwargs):
        raise AssertionError("transfer.py read something before its flags were checked")

    for name in ("saved_models", "measure_scale", "transfer"):
        monkeypatch.setattr(transfer_example, name, never)
    monkeypatch.setattr(bloodcells, "locate", never)
    monkeypatch.setattr(pbc, "locate", never)
    with pytest.raises(SystemExit) as stop:
        transfer_example.main(["--bloodcells", str(tmp_path / "cells"), "--pbc",
                               str(tmp_path / "pbc4"), "--every", "0",
                               "--out", str(tmp_path / "out")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: transfer.py") and "Traceback" not in err
    assert "argument --every: must be at least 1, got 0" in err
    assert not (tmp_path / "out").exists()


def run_script(argv, env, **kwargs):
    """The plain script as a user starts it: (status, stdout bytes, stderr text)."""
    done = subprocess.run([sys.executable, *argv], capture_output=True, env=env,
                          timeout=TIMEOUT, **kwargs)
    return done.returncode, done.stdout, done.stderr.decode("utf-8", "replace")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:no table of the original labels")
def test_a_file_name_that_is_not_utf8_is_trained_reported_and_predicted(runs, tmp_path):
    """Linux allows any bytes in a name: the cache key, the reports, results.json and
    --predict's output cope (they raised UnicodeEncodeError)."""
    archive = linked_archive(runs.data, tmp_path, count=10)
    odd = []
    for split in ("TRAIN", "TEST"):
        folder = os.fsencode(archive / "dataset2-master" / "images" / split / "MONOCYTE")
        source = sorted((bloodcells.split_dir(split, runs.data) / "MONOCYTE").glob("*.jpeg"))[40]
        shutil.copy(source, folder + b"/cell_\xff\xfe.jpeg")
        with open(folder + b"/broken_\xe9.jpeg", "wb") as broken:
            broken.write(b"\xff\xd8\xff\xe0 not really a JPEG")
        odd.append(folder + b"/cell_\xff\xfe.jpeg")
    out = tmp_path / "out"
    env = dict(os.environ, NUMCNN_CACHE=str(runs.cache))
    status, stdout, stderr = run_script(
        [str(SCRIPT), "--data", str(archive), "--out", str(out), "--cache-dir", str(runs.cache),
         *RUN, "--epochs", "1", "--validation", "images"], env)
    assert status == 0 and "Traceback" not in stderr, stderr
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["data"]["images"] == {"train": 41, "test": 41}
    skipped = [os.fsencode(name) for name in results["data"]["skipped"]["test"]]
    assert skipped == [os.fsencode(archive / "dataset2-master/images/TEST/MONOCYTE") +
                       b"/broken_\xe9.jpeg"]
    status, stdout, stderr = run_script(
        [str(SCRIPT), "--predict", odd[1], "--model", str(out / "seed0" / "model.npz")], env)
    assert status == 0 and "Traceback" not in stderr, stderr
    assert odd[1] + b": " in stdout                                     # the name's own bytes


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.3, 0.8])
def test_ctrl_c_while_the_script_loads_exits_130_with_one_line(runs, tmp_path, delay):
    """Before the guard is installed (imports, the flags): one line, status 130."""
    process = subprocess.Popen([sys.executable, str(SCRIPT), "--data", str(runs.data), "--out",
                                str(tmp_path / "out"), "--cache-dir", str(runs.cache), *RUN],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, NUMCNN_CACHE=str(runs.cache)))
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 130 == command.EXIT.INTERRUPTED, stderr
    assert "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if line.strip()] in (
        ["interrupted before the run began: nothing was written"],
        ["interrupted: the last complete checkpoint is kept; --resume goes on from there"])
    if delay == 0.3:                                    # still loading numpy, numba, numcnn
        assert "before the run began" in stderr


@pytest.mark.slow
@pytest.mark.parametrize("what", ["the study", "--help", "--predict"])
def test_a_closed_stdout_stops_quietly_with_141(runs, reference, pictures, tmp_path, what):
    """``| head -1``: the reader is gone; no 'error', no blame on labels.csv, no traceback."""
    argv = {"the study": ["--data", str(runs.data), "--out", str(tmp_path / "out"),
                          "--cache-dir", str(runs.cache), *RUN[:-1]],          # not --quiet
            "--help": ["--help"],
            "--predict": ["--predict", str(pictures["frame"]), "--model",
                          str(reference / "seed0" / "model.npz")]}[what]
    read, write = os.pipe()
    os.close(read)                                      # closed before the first line is written
    try:
        done = subprocess.run([sys.executable, str(SCRIPT), *argv], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=TIMEOUT,
                              env=dict(os.environ, NUMCNN_CACHE=str(runs.cache)))
    finally:
        os.close(write)
    if what == "--help":            # argparse ignores a closed output itself, and keeps its 0
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode == 141 == command.EXIT.STDOUT_CLOSED, done.stderr
    for word in ("error", "Traceback", "labels.csv", "Broken pipe", "Exception ignored"):
        assert word not in done.stderr, done.stderr
    if what == "the study":
        assert not list((tmp_path / "out").glob("seed*"))               # stopped at once


@contextlib.contextmanager
def full_tmpfs(folder):
    """A small tmpfs at ``folder``, filled to the last byte (skip where mounting is not allowed)."""
    folder.mkdir(parents=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): the simulated case "
                    f"stands")
    try:
        with open(folder / "filler", "wb", buffering=0) as filler:
            with contextlib.suppress(OSError):
                while True:
                    filler.write(b"\0" * 4096)
                    filler.flush()
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.mark.slow
@pytest.mark.parametrize("disk", ["simulated", "a really full tmpfs"])
def test_a_full_disk_at_the_first_write_exits_5(runs, tmp_path, capsys, monkeypatch, disk):
    """The first write into --out (the lock's holder file) fails with ENOSPC: exit 5, not 2."""
    if disk == "simulated":
        out = tmp_path / "out"
        real = Path.write_text

        def write_text(self, *args, **kwargs):
            if out in self.parents:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))    # no file name
            return real(self, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", write_text)
        status = run_here(runs, out)
    else:
        with full_tmpfs(tmp_path / "disk") as mounted:
            out = mounted / "out"
            status = run_here(runs, out)
    assert status == 5 == command.EXIT.CANNOT_WRITE
    line = one_error(capsys.readouterr().err)
    assert line == f"error: cannot write the output {out / '.lock.holder'}: No space left on device"
