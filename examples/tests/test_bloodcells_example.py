"""examples/bloodcells.py end to end, on a small subset of the real images, and its cellstudy parts.

The slow tests run the script's ``main(argv)`` in this process (the numba
kernels are then compiled once) with ``--max-per-class 40 --epochs 2``; they
check the outputs, that ``--resume`` gives exactly the weights of an
uninterrupted run (also from the files numcnn 0.1 wrote), and ``--predict``.
The fast tests need no training.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from numcnn.testing import load_script
from skimage import io, transform

import numcnn
from numcnn.data import preprocess_image, read_rgb_image
from numcnn.datasets import bloodcells

from cellstudy.bloodcells.command import BloodCellSettings, parse_args
from cellstudy.bloodcells.stain import StainCrop
from cellstudy.shared import evaluation, reports
from cellstudy.shared.runs import RunFolder
from cellstudy.shared.settings import SettingsError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "examples" / "bloodcells.py"
CLASSES = bloodcells.CLASSES


example = load_script(SCRIPT, "bloodcells_example")


def settings_of(argv):
    """The settings that the command line ``argv`` gives."""
    return parse_args(argv)[0]


def write_recipe(folder, recipe):
    (folder / "recipe.json").write_text(json.dumps(recipe))


def version_1_recipe(recipe):
    """A recipe.json as numcnn 0.1 wrote it: no settings_version, its own extra keys."""
    recipe = {key: value for key, value in recipe.items() if key != "settings_version"}
    recipe.update(explain=False, explain_per_class=4, optimizer="Adam (decoupled weight decay)")
    return recipe


# ----------------------------------------------------------------------------
# Fast: no data, no training
# ----------------------------------------------------------------------------

def test_the_example_reads_as_a_short_story():
    """At most 250 lines; the network and the call to fit come within the first 150."""
    lines = SCRIPT.read_text().splitlines()
    assert len(lines) <= 250, len(lines)
    first = "\n".join(lines[:150])
    assert "def network(" in first and "model.fit(" in first


def test_missing_data_dir_gives_the_help_and_exit_2(tmp_path, capsys):
    status = example.main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2
    assert str(tmp_path / "nowhere") in err
    assert "kaggle" in err.lower() and "NUMCNN_BLOODCELLS" in err and "--data" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_missing_data_dir_from_the_command_line(tmp_path):
    """The real command: a clean message on stderr, no traceback, status 2."""
    env = dict(os.environ, NUMCNN_BLOODCELLS=str(tmp_path / "not-here"),
               NUMCNN_CACHE=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert "NUMCNN_BLOODCELLS" in done.stderr and "not-here" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_settings_are_rejected_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        example.main(["--crop", "144", "--input-size", "80", "--out", str(tmp_path)])
    assert stop.value.code == 2
    assert "--input-size" in capsys.readouterr().err


@pytest.mark.parametrize("argv, flag", [
    (["--crop", "0", "--factor", "4", "--tta", "symmetries"], "--tta"),
    (["--colour-jitter", "1.5"], "--colour-jitter"),
    (["--crop", "0", "--factor", "4", "--validation", "cells"], "--validation"),
    (["--filters", "8,8,8,8,8,8,8"], "--filters"),
])
def test_settings_that_cannot_work_name_their_flag(tmp_path, capsys, argv, flag):
    with pytest.raises(SystemExit) as stop:
        example.main(argv + ["--out", str(tmp_path)])
    assert stop.value.code == 2
    assert flag in capsys.readouterr().err


def test_test_time_views_default_to_the_symmetries_of_square_inputs():
    assert settings_of([]).tta == "symmetries"
    assert settings_of(["--crop", "0", "--factor", "4"]).tta == "none"
    assert settings_of(["--tta", "none"]).tta == "none"


def test_settings_are_frozen_and_parse_args_splits_off_the_actions():
    settings, actions = parse_args(["--predict", "a.jpeg", "--allow-other-size", "--lr", "0.01"])
    assert isinstance(settings, BloodCellSettings) and settings.lr == 0.01
    assert actions.predict == ["a.jpeg"] and actions.allow_other_size is True
    assert not hasattr(settings, "predict")
    with pytest.raises(AttributeError):
        settings.lr = 0.1
    assert settings.replace(lr=0.1).lr == 0.1 and settings.lr == 0.01
    assert settings_of([]) == BloodCellSettings()               # the defaults are the recipe


def test_recipe_is_the_settings_and_what_the_code_fixes():
    settings = settings_of(["--seed", "3", "--colour-jitter", "0.05"])
    recipe = example.recipe_of(settings, "abc")
    assert {key: recipe[key] for key in settings.to_recipe()} == settings.to_recipe()
    assert recipe["settings_version"] == BloodCellSettings.VERSION == 2
    assert recipe["classes"] == list(CLASSES) and recipe["validation_split"] == "abc"
    assert "colour jitter 0.05" in recipe["augmentation"]
    assert "8 symmetries" in recipe["evaluation_views"]
    assert "validation_split" not in example.recipe_of(settings)
    assert BloodCellSettings.from_recipe(json.loads(json.dumps(recipe))) == settings


def test_a_recipe_without_settings_version_has_the_old_meanings():
    """numcnn 0.1's recipe.json: settings added since then take what their absence meant."""
    old = {"data": "../shared/blood-cells", "out": "runs/bloodcells", "cache_dir": None,
           "max_per_class": None, "crop": 144, "factor": 2, "input_size": 64,
           "tta": "symmetries", "epochs": 20, "batch_size": 64, "lr": 0.001,
           "class_weights": "none", "seeds": 1, "seed": None, "resume": False,
           "skip_test": False, "backend": "numba", "explain": False, "explain_per_class": 4,
           "no_plots": False, "quiet": False, "classes": list(CLASSES),
           "optimizer": "Adam (decoupled weight decay)"}
    settings = BloodCellSettings.from_recipe(old)
    assert settings.colour_jitter == 0.0 and settings.validation == "images"
    assert settings.filters == (32, 64, 128) and settings.first_stride == 1
    assert settings.crop == 144 and settings.epochs == 20
    # what a version-1 recipe says is kept, whatever today's defaults are
    kept = BloodCellSettings.from_recipe(dict(old, validation="cells", filters=[16, 32],
                                              colour_jitter=0.1, first_stride=2))
    assert (kept.validation, kept.filters, kept.colour_jitter, kept.first_stride) == \
        ("cells", (16, 32), 0.1, 2)
    # a version-2 recipe without a setting takes today's default, not the old meaning
    current = BloodCellSettings.from_recipe(dict(old, settings_version=2))
    assert current.validation == "cells"


def test_resume_accepts_recipes_written_before_a_setting_existed(tmp_path):
    """A recipe.json without colour_jitter was trained without it: resumable with 0 only."""
    recipe = version_1_recipe(example.recipe_of(settings_of([])))
    del recipe["colour_jitter"]
    write_recipe(tmp_path, recipe)
    RunFolder.check_resumable(tmp_path, settings_of([]))                   # no error
    with pytest.raises(SettingsError, match="colour_jitter: 0.0 -> 0.1"):
        RunFolder.check_resumable(tmp_path, settings_of(["--colour-jitter", "0.1"]))


def test_resume_refuses_other_training_settings(tmp_path):
    write_recipe(tmp_path, example.recipe_of(settings_of([])))
    RunFolder.check_resumable(tmp_path, settings_of(["--epochs", "30", "--quiet"]))  # not training
    with pytest.raises(SettingsError, match=r"--resume: .*lr: 0\.001 -> 0\.01"):
        RunFolder.check_resumable(tmp_path, settings_of(["--lr", "0.01"]))
    with pytest.raises(SettingsError, match=r"filters: \[32, 64, 128\] -> \[16, 32\]"):
        RunFolder.check_resumable(tmp_path, settings_of(["--filters", "16,32"]))
    RunFolder.check_resumable(tmp_path / "elsewhere", settings_of(["--lr", "0.01"]))  # no recipe


def test_pooled_test_interval_stacks_the_seeds(tmp_path):
    y = np.repeat([0, 1, 2, 3], 6)
    groups = np.repeat(np.arange(8), 3)                         # 2 cells per class
    predicted = {0: y.copy(), 1: np.where(groups % 2 == 0, y, (y + 1) % 4)}   # seed 1 misses 4 cells
    for seed, classes in predicted.items():
        (tmp_path / f"seed{seed}").mkdir()
        np.save(tmp_path / f"seed{seed}" / "predicted_test.npy", classes.astype(np.int8))
    results = [{"seed": 0, "test": {}}, {"seed": 1, "test": {}}]
    pooled = reports.pooled_interval(tmp_path, results, y, groups)
    expected = numcnn.metrics.accuracy_interval_over_groups(
        np.stack([predicted[0] == y, predicted[1] == y]), groups, strata=y)
    assert pooled == expected and pooled["accuracy"] == 0.75
    assert reports.pooled_interval(tmp_path, [{"seed": 0}], y, groups) is None   # no TEST
    assert reports.pooled_interval(tmp_path, results, y, None) is None          # no cells


def test_resume_refuses_another_validation_split(tmp_path):
    recipe = example.recipe_of(settings_of([]))
    write_recipe(tmp_path, recipe)                                          # split not recorded
    RunFolder.check_resumable(tmp_path, settings_of([]), evaluation.validation_digest(np.arange(5)))
    write_recipe(tmp_path, example.recipe_of(settings_of([]),
                                             evaluation.validation_digest(np.arange(5))))
    RunFolder.check_resumable(tmp_path, settings_of([]), evaluation.validation_digest(np.arange(5)))
    with pytest.raises(SettingsError, match="held out other validation images"):
        RunFolder.check_resumable(tmp_path, settings_of([]),
                                  evaluation.validation_digest(np.arange(1, 6)))


def test_resume_reads_a_recipe_without_validation_as_images(tmp_path):
    recipe = version_1_recipe(example.recipe_of(settings_of([])))
    del recipe["validation"]
    write_recipe(tmp_path, recipe)
    RunFolder.check_resumable(tmp_path, settings_of(["--validation", "images"]))  # no error
    with pytest.raises(SettingsError, match="validation: 'images' -> 'cells'"):
        RunFolder.check_resumable(tmp_path, settings_of([]))


def test_validation_by_cells_holds_out_whole_groups():
    """With groups, about 10% of each class's groups are held out, none split in two."""
    y = np.repeat(np.arange(4), 200)
    groups = np.repeat(np.arange(80), 10)                  # 20 groups of 10 images per class
    train_index, val_index = evaluation.split_whole_groups(y, groups, seed=0)
    held_out, kept = groups[val_index], groups[train_index]
    # the training part is shuffled: its first images (BatchNorm calibration) hold every class
    assert set(y[train_index][:40]) == {0, 1, 2, 3}
    assert len(held_out) + len(kept) == 800
    assert sorted(np.concatenate([train_index, val_index]).tolist()) == list(range(800))
    assert not set(held_out) & set(kept)
    assert np.bincount(y[val_index], minlength=4).tolist() == [20, 20, 20, 20]  # 2 groups each
    assert sorted(np.bincount(held_out)[np.unique(held_out)]) == [10] * 8      # whole groups
    again_train, again_val = evaluation.split_whole_groups(y, groups, seed=0)
    np.testing.assert_array_equal(again_val, val_index)
    np.testing.assert_array_equal(again_train, train_index)
    _, other = evaluation.split_whole_groups(y, groups, seed=1)
    assert set(groups[other]) != set(held_out)
    assert evaluation.validation_digest(val_index) != evaluation.validation_digest(other)


def test_validation_by_images_is_stratified_and_seeded():
    y = np.repeat(np.arange(4), 50)
    train_index, val_index = evaluation.split_by_images(y, seed=0)
    assert np.bincount(y[val_index], minlength=4).tolist() == [5, 5, 5, 5]
    assert sorted(np.concatenate([train_index, val_index]).tolist()) == list(range(200))
    np.testing.assert_array_equal(evaluation.split_by_images(y, seed=0)[1], val_index)
    assert set(evaluation.split_by_images(y, seed=1)[1]) != set(val_index)


def document_of(results, recipe, skipped):
    study = reports.StudyRecord(title="a test", classes=CLASSES, recipe=recipe,
                                data={"skipped_count": skipped}, test_y=None)
    return reports.results_document(study, results, None)


def test_summary_without_test_still_gives_validation_over_seeds():
    split = {"accuracy": 0.9, "worst_recall": 0.8, "worst_recall_class": "MONOCYTE",
             "f1": {c: 0.9 for c in CLASSES}, "recall": {c: 0.8 for c in CLASSES}}
    results = [{"seed": s, "epochs": 2, "train": split, "val": dict(split, accuracy=a),
                "seconds_per_epoch": 1.0} for s, a in ((0, 0.90), (1, 0.94))]
    document = document_of(results, {"epochs": 2, "skip_test": True}, {"train": 0, "test": 0})
    text = reports.summary_text(results, document)
    assert "TEST not evaluated" in text and "test accuracy" not in text
    assert "validation acc.    0.9200 +- 0.0283" in text


def test_network_is_the_study_network():
    model = example.network(BloodCellSettings(), seed=0)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds[:5] == ["Conv2D", "BatchNorm2D", "ReLU", "MaxPool2D", "Dropout"]
    assert kinds[-6:] == ["Flatten", "Dense", "BatchNorm1D", "ReLU", "Dropout", "Dense"]
    assert model.layers[-1].params["W"].shape == (128, 4)                 # logits, no Softmax
    assert model.layers[16].params["W"].shape == (128 * 8 * 8, 128)
    assert model.summary(print_fn=None).count("Conv2D") == 3
    assert model.input_shape == (3, 64, 64)
    probabilities = model.predict(np.zeros((2, 3, 64, 64), np.float32))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_filters_give_one_block_each():
    model = example.network(BloodCellSettings(filters=(32, 64, 128, 128)), seed=0)
    assert model.summary(print_fn=None).count("Conv2D") == 4
    assert model.layers[21].params["W"].shape == (128 * 4 * 4, 128)
    assert model.predict(np.zeros((2, 3, 64, 64), np.float32)).shape == (2, 4)
    assert settings_of(["--filters", "16,32"]).filters == (16, 32)
    assert settings_of([]).filters == (32, 64, 128)


def test_whole_images_give_the_downscaled_frame_as_input():
    settings = settings_of(["--crop", "0", "--factor", "8"])
    assert settings.input_shape == (3, 30, 40) and not settings.square
    model = example.network(settings, seed=0)
    assert model.predict(np.zeros((1, 3, 30, 40), np.float32)).shape == (1, 4)


def test_strided_first_convolution_contains_block_mean_then_3x3():
    """--first-stride 2 at full size can compute what --factor 2 and a 3x3 layer do."""
    from numcnn.data import downscale
    strided = example.network(BloodCellSettings(input_size=32, first_stride=2), seed=0)
    plain = example.network(BloodCellSettings(input_size=16), seed=1)
    conv_s, conv_p = strided.layers[0], plain.layers[0]
    assert conv_s.params["W"].shape == (32, 3, 6, 6) and conv_p.params["W"].shape == (32, 3, 3, 3)
    # each 3x3 weight spread evenly over a 2x2 block: the block mean folded in
    conv_s.params["W"][...] = np.repeat(np.repeat(conv_p.params["W"], 2, axis=2), 2, axis=3) / 4
    conv_s.params["b"][...] = conv_p.params["b"]
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    expected = conv_p.forward(downscale(x, 2), training=False)
    np.testing.assert_allclose(conv_s.forward(x, training=False), expected, rtol=1e-4, atol=1e-5)
    assert strided.predict(x).shape == (2, 4)
    assert strided.layers[16].params["W"].shape == (128 * 2 * 2, 128)   # 32 -> 16 -> 8, 4, 2


def test_first_stride_is_a_training_setting(tmp_path, capsys):
    assert settings_of([]).first_stride == 1
    settings = settings_of(["--factor", "1", "--input-size", "128", "--first-stride", "2"])
    assert example.recipe_of(settings)["first_stride"] == 2
    assert "first_stride" in BloodCellSettings.TRAINING
    assert settings.training_settings()["first_stride"] == 2
    for stride in ("0", "65"):                                # the input is 64 pixels
        with pytest.raises(SystemExit):
            parse_args(["--first-stride", stride])
        assert "--first-stride must be between 1 and the 64-pixel input" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["32,x", "32,0", ""])
def test_bad_filters_are_rejected(text, tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--filters", text])
    assert "--filters" in capsys.readouterr().err


def test_summary_gives_mean_and_spread_over_seeds():
    def fake(seed, accuracy, worst):
        split = {"accuracy": accuracy, "worst_recall": worst, "worst_recall_class": "MONOCYTE",
                 "f1": {c: accuracy for c in CLASSES}, "recall": {c: worst for c in CLASSES},
                 "confusion": [[1]]}
        return {"seed": seed, "epochs": 20, "train": split, "val": split, "test": split,
                "seconds_per_epoch": 30.0}
    results = [fake(0, 0.80, 0.5), fake(1, 0.90, 0.7)]
    document = document_of(results, {"epochs": 20}, {"train": 1, "test": 0})
    assert document["mean"]["test"]["accuracy"] == pytest.approx(0.85)
    assert document["std"]["test"]["accuracy"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert "confusion" not in document["mean"]["test"]
    assert document["mean"] == reports.aggregate(results, lambda v: float(np.mean(v)))
    assert document["std"] == reports.aggregate(results, reports.sample_std)
    text = reports.summary_text(results, document)
    assert "0.8500 +- 0.0707" in text and "worst recall" in text and "TRAIN 1" in text
    for name in CLASSES:
        assert name in text


def test_class_count_table_matches_a_directory_listing(bloodcells_dir):
    counts = {split: bloodcells.count_per_class(split, bloodcells_dir) for split in ("TRAIN", "TEST")}
    folder = bloodcells.split_dir("TEST", bloodcells_dir)
    expected = sum(len([f for f in os.listdir(folder / name) if f.endswith(".jpeg")])
                   for name in CLASSES)
    table = reports.count_table(counts, CLASSES)
    assert table.splitlines()[0].split() == ["class", "TRAIN", "TEST"]
    assert table.splitlines()[-1].split()[2] == str(expected)
    assert [line.split()[0] for line in table.splitlines()[1:5]] == list(CLASSES)


# ----------------------------------------------------------------------------
# Slow: the whole study on 40 images per class
# ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def study(bloodcells_dir, tmp_path_factory):
    """Run the study once: seed 0, 2 epochs, 40 images per class of TRAIN and TEST."""
    root = tmp_path_factory.mktemp("study")
    common = ["--data", str(bloodcells_dir), "--max-per-class", "40", "--seeds", "1",
              "--cache-dir", str(root / "cache")]

    def run(out, *extra):
        return example.main(common + ["--out", str(root / out), *extra])

    assert run("full", "--epochs", "2") == 0
    # the model of 2 epochs in one go, kept: later tests train this run further
    shutil.copy(root / "full" / "seed0" / "model.npz", root / "two_epochs.npz")
    return {"root": root, "run": run, "out": root / "full", "data_dir": bloodcells_dir,
            "two_epochs": root / "two_epochs.npz"}


def _weights(path):
    model = numcnn.load(path)
    return model, {f"{i}/{kind}/{name}": value for i, layer in enumerate(model.layers)
                   for kind, store in (("param", layer.params), ("buffer", layer.buffers))
                   for name, value in store.items()}


def assert_same_model(path, expected_path):
    """Bit for bit the weights, random state and history of the model at ``expected_path``."""
    model, got = _weights(path)
    straight, expected = _weights(expected_path)
    assert model.epoch == straight.epoch
    assert expected.keys() == got.keys()
    for key in expected:
        assert np.array_equal(expected[key], got[key]), key
    assert model.rng.bit_generator.state == straight.rng.bit_generator.state
    assert model.history.history["loss"] == straight.history.history["loss"]
    return model


def probabilities_printed(out, prefix):
    """{file: [4 probabilities]} of the lines --predict printed for files under ``prefix``."""
    found = {}
    for line in out.splitlines():
        if line.startswith(str(prefix)):
            numbers = [float(word) for word in line.replace(")", "").split() if word[:1].isdigit()]
            found[line.split(":")[0]] = numbers
    return found


@pytest.mark.slow
def test_study_writes_reports_figures_and_results(study):
    out, seed_dir = study["out"], study["out"] / "seed0"
    for name in ("model.npz", "checkpoint.npz", "history.json", "mean_image.npy", "recipe.json"):
        assert (seed_dir / name).is_file(), name
    for split in ("train", "val", "test"):
        report = (seed_dir / f"report_{split}.txt").read_text()
        assert "precision" in report and all(name in report for name in CLASSES)
    if numcnn.plots.available():
        for name in ("confusion_train.png", "confusion_val.png", "confusion_test.png",
                     "learning_curves.png"):
            assert (seed_dir / name).read_bytes()[:4] == b"\x89PNG", name
        assert (out / "class_counts.png").is_file()

    results = json.loads((out / "results.json").read_text())
    seed0 = results["seeds"]["0"]
    for split in ("train", "val", "test"):
        assert 0.0 <= seed0[split]["accuracy"] <= 1.0
        assert set(seed0[split]["f1"]) == set(CLASSES)
        assert set(seed0[split]["precision"]) == set(CLASSES)
        assert 0.0 <= seed0[split]["worst_recall"] <= min(seed0[split]["recall"].values()) + 1e-12
    assert seed0["test"]["accuracy"] == results["mean"]["test"]["accuracy"]
    assert "accuracy" in results["std"]["test"]             # None with a single seed
    assert seed0["epochs"] == 2 and seed0["seconds_per_epoch"] > 0
    assert seed0["total_seconds"] >= seed0["train_seconds"] > 0
    assert results["recipe"]["crop"] == 144 and results["recipe"]["input_size"] == 64
    assert results["machine"]["cpu_count"] >= 1 and results["machine"]["numcnn_backend"]
    assert results["data"]["skipped_count"] == {"train": 0, "test": 0}
    assert sum(seed0["test"]["support"].values()) == 160          # TEST: 40 per class
    assert sum(seed0["train"]["support"].values()) + sum(seed0["val"]["support"].values()) == 160
    assert "test accuracy" in (out / "summary.txt").read_text()
    assert results["recipe"]["tta"] == "symmetries" and results["recipe"]["colour_jitter"] == 0.0
    assert "8 symmetries" in results["recipe"]["evaluation_views"]
    history = json.loads((seed_dir / "history.json").read_text())
    assert history["epochs"] == [0, 1] and len(history["history"]["val_accuracy"]) == 2
    # validation and TEST: predicted classes saved, accuracy with an interval over cells
    for split in ("val", "test"):
        predicted = np.load(seed_dir / f"predicted_{split}.npy")
        assert len(predicted) == sum(seed0[split]["support"].values())
        low, high = seed0[split]["accuracy_interval"]
        assert low <= seed0[split]["accuracy"] <= high and seed0[split]["cells"] >= 2
        assert "95% interval over" in (seed_dir / f"report_{split}.txt").read_text()
    pooled = results["test_interval_over_seeds"]             # one seed: its own interval
    assert [pooled["low"], pooled["high"]] == seed0["test"]["accuracy_interval"]
    # recipe.json: the settings (versioned) and the descriptive extras
    recipe = json.loads((seed_dir / "recipe.json").read_text())
    assert recipe["settings_version"] == 2 and recipe["validation"] == "cells"
    assert recipe["validation_split"] and recipe["classes"] == list(CLASSES)
    settings = BloodCellSettings.from_recipe(recipe)
    assert settings.max_per_class == 40 and settings.epochs == 2
    # the model ends in logits and its predictions are probabilities
    model = numcnn.load(seed_dir / "model.npz")
    assert type(model.layers[-1]).__name__ == "Dense"


@pytest.mark.slow
def test_resume_equals_an_uninterrupted_run(study):
    """1 epoch, then --resume to 2, gives bit for bit the weights of 2 epochs in one go."""
    run = study["run"]
    assert run("interrupted", "--epochs", "1", "--no-plots", "--quiet") == 0
    assert run("interrupted", "--epochs", "2", "--no-plots", "--quiet", "--resume") == 0
    resumed = assert_same_model(study["root"] / "interrupted" / "seed0" / "model.npz",
                                study["two_epochs"])
    assert resumed.epoch == 2
    results = json.loads((study["root"] / "interrupted" / "results.json").read_text())
    assert results["seeds"]["0"]["resumed_from_epoch"] == 1


def as_numcnn_0_1(path):
    """Rewrite a model file as numcnn 0.1 wrote it: format version 1, ``Adam`` (whose weight
    decay was decoupled), a final ``Softmax`` layer, no numcnn_version, no ``diverged``."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(str(arrays.pop("__numcnn__")))
    assert header["version"] == 2 and header["optimizer"]["class"] == "AdamW"
    header["version"] = 1
    del header["numcnn_version"]
    header["optimizer"]["class"] = "Adam"
    header["layers"].append({"class": "Softmax", "config": {}})
    header["history"].pop("diverged", None)
    with open(path, "wb") as handle:
        np.savez(handle, __numcnn__=np.array(json.dumps(header)), **arrays)


@pytest.mark.slow
def test_a_run_folder_of_numcnn_0_1_predicts_and_resumes(study, capsys):
    """Model files of format 1 and a recipe.json without settings_version: --predict
    reads them as they were meant, and --resume continues bit for bit."""
    run, root = study["run"], study["root"]
    assert run("old", "--epochs", "1", "--no-plots", "--quiet") == 0
    seed_dir = root / "old" / "seed0"
    shutil.copytree(seed_dir, root / "as-written" / "seed0")              # the 0.2 files, kept
    for name in ("model.npz", "checkpoint.npz"):
        as_numcnn_0_1(seed_dir / name)
    recipe = json.loads((seed_dir / "recipe.json").read_text())
    write_recipe(seed_dir, version_1_recipe(recipe))
    with np.load(seed_dir / "model.npz") as archive:                    # really format 1
        header = json.loads(str(archive["__numcnn__"]))
    assert header["version"] == 1 and header["layers"][-1]["class"] == "Softmax"
    old = numcnn.load(seed_dir / "checkpoint.npz")
    assert type(old.layers[-1]).__name__ == "Dense" and type(old.optimizer).__name__ == "AdamW"

    test_dir = bloodcells.split_dir("TEST", study["data_dir"])
    images = [str(sorted((test_dir / name).glob("*.jpeg"))[0]) for name in CLASSES]
    printed = {}
    for folder in ("old", "as-written"):
        capsys.readouterr()
        model = str(root / folder / "seed0" / "model.npz")
        assert example.main(["--predict", *images, "--model", model]) == 0
        out = capsys.readouterr().out
        assert "mean over the 8 symmetric views" in out and "(1 epochs)" in out
        printed[folder] = probabilities_printed(out, test_dir)
    assert len(printed["old"]) == 4 and printed["old"] == printed["as-written"]

    assert run("old", "--epochs", "2", "--no-plots", "--quiet", "--resume") == 0
    resumed = assert_same_model(seed_dir / "model.npz", study["two_epochs"])
    assert resumed.epoch == 2
    results = json.loads((root / "old" / "results.json").read_text())
    assert results["seeds"]["0"]["resumed_from_epoch"] == 1
    assert json.loads((seed_dir / "recipe.json").read_text())["settings_version"] == 2


@pytest.mark.slow
def test_resume_continues_to_more_epochs_then_only_reevaluates(study, capsys):
    run, seed_dir = study["run"], study["out"] / "seed0"
    assert run("full", "--epochs", "3", "--resume", "--no-plots", "--quiet") == 0
    history = json.loads((seed_dir / "history.json").read_text())
    assert history["epochs"] == [0, 1, 2]
    model, weights = _weights(seed_dir / "model.npz")
    assert model.epoch == 3

    # complete: --resume does not train again, only reports
    assert run("full", "--epochs", "3", "--resume", "--no-plots", "--quiet") == 0
    again, weights_again = _weights(seed_dir / "model.npz")
    assert again.epoch == 3 and all(np.array_equal(weights[k], weights_again[k]) for k in weights)
    results = json.loads((study["out"] / "results.json").read_text())
    assert results["seeds"]["0"]["resumed_from_epoch"] == 3
    assert len(json.loads((seed_dir / "history.json").read_text())["epochs"]) == 3

    # other training settings: refused, nothing overwritten
    capsys.readouterr()
    assert run("full", "--epochs", "4", "--resume", "--lr", "0.01", "--quiet") == 2
    assert "--resume" in capsys.readouterr().err
    assert numcnn.load(seed_dir / "model.npz").epoch == 3


@pytest.mark.slow
def test_skip_test_trains_and_reports_without_touching_test(study):
    out = study["root"] / "no-test"
    (out / "seed0").mkdir(parents=True)
    np.save(out / "seed0" / "predicted_test.npy", np.zeros(3, np.int8))   # an earlier run's
    assert study["run"]("no-test", "--epochs", "1", "--no-plots", "--quiet", "--skip-test") == 0
    assert not (out / "seed0" / "predicted_test.npy").exists()
    results = json.loads((out / "results.json").read_text())
    assert set(results["seeds"]["0"]) >= {"train", "val"} and "test" not in results["seeds"]["0"]
    assert not (out / "seed0" / "report_test.txt").exists()
    assert "TEST not evaluated" in (out / "summary.txt").read_text()


@pytest.mark.slow
def test_validation_by_cells_runs_end_to_end(study):
    assert study["run"]("cells", "--epochs", "1", "--no-plots", "--quiet", "--skip-test",
                        "--validation", "cells") == 0
    out = study["root"] / "cells"
    assert "original cells, held out whole" in (out / "seed0" / "report_val.txt").read_text()
    recipe = json.loads((out / "seed0" / "recipe.json").read_text())
    assert recipe["validation"] == "cells"
    assert list((study["root"] / "cache").glob("bloodcells-cellgroups-*.npy"))


@pytest.mark.slow
def test_predict_prints_probabilities_and_names_bad_files(study, capsys):
    test_dir = bloodcells.split_dir("TEST", study["data_dir"])
    images = [sorted((test_dir / name).glob("*.jpeg"))[0] for name in ("EOSINOPHIL", "LYMPHOCYTE")]
    model = str(study["out"] / "seed0" / "model.npz")
    capsys.readouterr()
    assert example.main(["--predict", *map(str, images), "--model", model]) == 0
    out = capsys.readouterr().out
    assert "mean over the 8 symmetric views" in out            # the model's recipe says so
    lines = [line for line in out.splitlines() if line.startswith(str(test_dir))]
    assert len(lines) == 2
    averaged = []
    for line in lines:
        numbers = [float(word) for word in line.replace(")", "").split() if word[:1].isdigit()]
        assert len(numbers) == 4 and sum(numbers) == pytest.approx(1.0, abs=0.01)
        assert all(name in line for name in CLASSES)
        averaged.append(numbers)
    # an explicit --tta none beats the recipe: one view, other probabilities
    assert example.main(["--predict", *map(str, images), "--model", model, "--tta", "none"]) == 0
    out = capsys.readouterr().out
    assert "; one view" in out
    single = [[float(word) for word in line.replace(")", "").split() if word[:1].isdigit()]
              for line in out.splitlines() if line.startswith(str(test_dir))]
    assert single != averaged

    missing = study["root"] / "no-such-cell.jpeg"
    assert example.main(["--predict", str(missing), str(images[0]), "--model", model]) == 1
    captured = capsys.readouterr()
    assert str(missing) in captured.err and "no such file" in captured.err
    assert str(images[0]) in captured.out                      # the good one still ran


@pytest.mark.slow
def test_predict_refuses_another_image_size_unless_allowed(study, tmp_path, capsys):
    """A 40x30 picture is refused (exit 1, saying why); a portrait 240x320 frame, turned
    by 90 degrees, is classified with --allow-other-size, with a warning."""
    test_dir = bloodcells.split_dir("TEST", study["data_dir"])
    frame = read_rgb_image(sorted((test_dir / "EOSINOPHIL").glob("*.jpeg"))[0])
    small = tmp_path / "small.png"
    io.imsave(small, (transform.resize(frame, (30, 40)) * 255).round().astype(np.uint8),
              check_contrast=False)
    portrait = tmp_path / "portrait.png"
    io.imsave(portrait, np.ascontiguousarray(np.rot90(frame)), check_contrast=False)
    assert read_rgb_image(portrait).shape == (320, 240, 3)
    model = str(study["out"] / "seed0" / "model.npz")

    capsys.readouterr()
    assert example.main(["--predict", str(small), "--model", model]) == 1
    captured = capsys.readouterr()
    assert f"error: {small}: a 40x30 image; the model was trained on 320x240 frames" in captured.err
    assert "--allow-other-size" in captured.err and str(small) + ":" not in captured.out
    assert example.main(["--predict", str(portrait), "--model", model]) == 1
    captured = capsys.readouterr()
    assert str(portrait) in captured.err and "portrait" in captured.err
    assert str(portrait) + ":" not in captured.out

    assert example.main(["--predict", str(portrait), "--model", model,
                         "--allow-other-size"]) == 0
    captured = capsys.readouterr()
    assert f"warning: {portrait}: a 240x320 image" in captured.err
    assert "portrait" in captured.err and "classified anyway (--allow-other-size)" in captured.err
    (numbers,) = probabilities_printed(captured.out, tmp_path).values()
    assert len(numbers) == 4 and sum(numbers) == pytest.approx(1.0, abs=0.01)


@pytest.mark.slow
def test_explain_draws_grad_cam_and_feature_maps(study, capsys):
    pytest.importorskip("matplotlib")
    model = str(study["out"] / "seed0" / "model.npz")
    argv = ["--explain", "--model", model, "--data", str(study["data_dir"]),
            "--explain-per-class", "2", "--cache-dir", str(study["root"] / "cache")]
    assert example.main(argv) == 0
    out = capsys.readouterr().out
    assert "Grad-CAM of 8 TEST images" in out
    for name in ("gradcam_test.png", "feature_maps_relu_1.png"):
        picture = study["out"] / "seed0" / name
        assert picture.is_file() and picture.stat().st_size > 1000
    assert example.main(["--explain", "--model", str(study["root"] / "nothing.npz")]) == 2


@pytest.mark.slow
def test_predict_preprocessing_equals_the_loader(study):
    """--predict must see an image exactly as training and evaluation saw it."""
    loaded = bloodcells.load_data("TEST", study["data_dir"], StainCrop(144), 2, max_per_class=40,
                                  seed=0, cache_dir=study["root"] / "cache", progress=False)
    for i in (0, 100):
        again = preprocess_image(read_rgb_image(loaded.paths[i]), StainCrop(144), 2)
        assert np.array_equal(again, loaded.x[i])


def linked_archive(data_dir, root, pattern="*.jpeg", count=12, rename=None):
    """``root/archive``: links to the first ``count`` real images matching ``pattern``
    per class of TRAIN and TEST, named ``rename(number, image)`` (default: as they are)."""
    source = bloodcells.images_dir(data_dir)
    for split in ("TRAIN", "TEST"):
        for name in CLASSES:
            folder = root / "archive" / "dataset2-master" / "images" / split / name
            folder.mkdir(parents=True)
            for number, image in enumerate(sorted((source / split / name).glob(pattern))[:count]):
                link = rename(number, image) if rename else image.name
                (folder / link).symlink_to(image)
    return root / "archive"


def run_on_archive(archive, root, *extra):
    return example.main(["--data", str(archive), "--out", str(root / "out"),
                         "--cache-dir", str(root / "cache"), "--no-plots", "--quiet", *extra])


@pytest.mark.slow
def test_corrupt_images_are_skipped_and_counted(bloodcells_dir, tmp_path):
    """A small archive of links to real images plus one broken JPEG (and no labels.csv)."""
    archive = linked_archive(bloodcells_dir, tmp_path)
    broken = archive / "dataset2-master" / "images" / "TRAIN" / "MONOCYTE" / "broken.jpeg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    with pytest.warns(UserWarning, match="skipped 1 of 49"):
        status = run_on_archive(archive, tmp_path, "--epochs", "1", "--validation", "images")
    assert status == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["data"]["skipped_count"] == {"train": 1, "test": 0}
    assert results["data"]["skipped"]["train"] == [str(broken)]
    assert "TRAIN 1, TEST 0" in (tmp_path / "out" / "summary.txt").read_text()


@pytest.mark.slow
def test_files_named_otherwise_cannot_be_split_by_cells(bloodcells_dir, tmp_path, capsys):
    """Without the archive's names the cells cannot be counted: exit 2, naming a file and the way out."""
    archive = linked_archive(bloodcells_dir, tmp_path, count=10,
                             rename=lambda number, image: f"cell{number}.jpeg")
    assert run_on_archive(archive, tmp_path) == 2
    error = capsys.readouterr().err
    assert "cell0.jpeg" in error and "--validation images" in error


@pytest.mark.slow
def test_files_named_otherwise_still_run_with_validation_by_images(bloodcells_dir, tmp_path):
    """The way out the error above names works: no cells, so no interval over them."""
    archive = linked_archive(bloodcells_dir, tmp_path, count=10,
                             rename=lambda number, image: f"cell{number}.jpeg")
    with pytest.warns(UserWarning, match="no interval over TEST's cells"):
        assert run_on_archive(archive, tmp_path, "--epochs", "1", "--validation", "images") == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert "accuracy_interval" not in results["seeds"]["0"]["test"]
    assert results["test_interval_over_seeds"] is None


@pytest.mark.slow
def test_too_few_cells_to_hold_one_out_is_an_error(bloodcells_dir, tmp_path, capsys):
    """The first files of each folder all sit at batch position 0: one cell by the names."""
    archive = linked_archive(bloodcells_dir, tmp_path, pattern="_0_*.jpeg", count=6)
    assert run_on_archive(archive, tmp_path) == 2
    error = capsys.readouterr().err
    assert "TRAIN/EOSINOPHIL" in error and "fewer than 2 original cells" in error
    assert "--validation images" in error
