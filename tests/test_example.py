"""examples/bloodcells.py end to end, on a small subset of the real images.

The slow tests run the script's ``main(argv)`` in this process (the numba
kernels are then compiled once) with ``--max-per-class 40 --epochs 2``; they
check the outputs, that ``--resume`` gives exactly the weights of an
uninterrupted run, and ``--predict``. The fast tests need no training.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import numcnn
from numcnn.data import CLASSES, ImageSet, load_bloodcells, read_rgb_image
from numcnn.data.recipe import centre_crop, crop_and_flip, preprocess_image, random_crop

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "examples" / "bloodcells.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("bloodcells_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = _load_example()


# ----------------------------------------------------------------------------
# Fast: no data, no training
# ----------------------------------------------------------------------------

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
    env = dict(os.environ, NUMCNN_BLOODCELLS=str(tmp_path / "not-here"))
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
    assert example.parse_args([]).tta == "symmetries"
    assert example.parse_args(["--crop", "0", "--factor", "4"]).tta == "none"
    assert example.parse_args(["--tta", "none"]).tta == "none"


def test_resume_accepts_recipes_written_before_a_setting_existed(tmp_path):
    """A recipe.json without colour_jitter was trained without it: resumable with 0 only."""
    recipe = example.recipe_of(example.parse_args([]))
    del recipe["colour_jitter"]
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    example.check_resumable(example.parse_args([]), tmp_path)              # no error
    with pytest.raises(example.SettingsError, match="colour_jitter: 0.0 -> 0.1"):
        example.check_resumable(example.parse_args(["--colour-jitter", "0.1"]), tmp_path)


def test_pooled_test_interval_stacks_the_seeds(tmp_path):
    y = np.repeat([0, 1, 2, 3], 6)
    groups = np.repeat(np.arange(8), 3)                         # 2 cells per class
    predicted = {0: y.copy(), 1: np.where(groups % 2 == 0, y, (y + 1) % 4)}   # seed 1 misses 4 cells
    for seed, classes in predicted.items():
        (tmp_path / f"seed{seed}").mkdir()
        np.save(tmp_path / f"seed{seed}" / "predicted_test.npy", classes.astype(np.int8))
    data = {"test": ImageSet(x=np.zeros((24, 3, 8, 8), np.float32), y=y, classes=list(CLASSES),
                             paths=[]), "test_groups": groups}
    results = [{"seed": 0, "test": {}}, {"seed": 1, "test": {}}]
    pooled = example.pooled_test_interval(tmp_path, results, data)
    expected = numcnn.metrics.accuracy_interval_over_groups(
        np.stack([predicted[0] == y, predicted[1] == y]), groups, strata=y)
    assert pooled == expected and pooled["accuracy"] == 0.75
    assert example.pooled_test_interval(tmp_path, [{"seed": 0}], data) is None   # no TEST


def test_resume_refuses_another_validation_split(tmp_path):
    recipe = example.recipe_of(example.parse_args([]))
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))           # split not recorded
    example.check_resumable(example.parse_args([]), tmp_path, np.arange(5))
    recipe["validation_split"] = example.validation_digest(np.arange(5))
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    example.check_resumable(example.parse_args([]), tmp_path, np.arange(5))
    with pytest.raises(example.SettingsError, match="held out other validation images"):
        example.check_resumable(example.parse_args([]), tmp_path, np.arange(1, 6))


def test_resume_reads_a_recipe_without_validation_as_images(tmp_path):
    recipe = example.recipe_of(example.parse_args([]))
    del recipe["validation"]
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    example.check_resumable(example.parse_args(["--validation", "images"]), tmp_path)  # no error
    with pytest.raises(example.SettingsError, match="validation: 'images' -> 'cells'"):
        example.check_resumable(example.parse_args([]), tmp_path)


def test_validation_by_cells_holds_out_whole_groups():
    """With groups, about 10% of each class's groups are held out, none split in two."""
    y = np.repeat(np.arange(4), 200)
    groups = np.repeat(np.arange(80), 10)                  # 20 groups of 10 images per class
    x = np.broadcast_to(groups[:, None, None, None], (800, 3, 4, 4)).astype(np.float32)
    data = {"train": ImageSet(x=x, y=y, classes=list(CLASSES), paths=[]),
            "test": ImageSet(x=x[:4], y=y[:4], classes=list(CLASSES), paths=[]),
            "groups": groups}

    def groups_of(arrays, mean, split):                     # each image holds its group id
        return np.rint(arrays[split][0] + mean.mean)[:, 0, 0, 0].astype(int)

    arrays, mean, val_index = example.split_and_centre(data, seed=0)
    held_out, kept = groups_of(arrays, mean, "val"), groups_of(arrays, mean, "train")
    cells = example.cells_of_splits(data, val_index)
    np.testing.assert_array_equal(cells["val"], held_out)             # the interval's cells
    np.testing.assert_array_equal(groups[val_index], held_out)
    assert cells["test"] is None                                      # no TEST groups in data
    # the training part is shuffled: its first images (BatchNorm calibration) hold every class
    assert set(arrays["train"][1][:40]) == {0, 1, 2, 3}
    assert len(held_out) + len(kept) == 800
    assert not set(held_out) & set(kept)
    assert np.bincount(arrays["val"][1], minlength=4).tolist() == [20, 20, 20, 20]  # 2 groups each
    assert sorted(np.bincount(held_out)[np.unique(held_out)]) == [10] * 8      # whole groups
    again, mean_again, _ = example.split_and_centre(data, seed=0)
    np.testing.assert_array_equal(groups_of(again, mean_again, "val"), held_out)
    other, mean_other, _ = example.split_and_centre(data, seed=1)
    assert set(groups_of(other, mean_other, "val")) != set(held_out)


def test_summary_without_test_still_gives_validation_over_seeds():
    split = {"accuracy": 0.9, "worst_recall": 0.8, "worst_recall_class": "MONOCYTE",
             "f1": {c: 0.9 for c in CLASSES}, "recall": {c: 0.8 for c in CLASSES}}
    results = [{"seed": s, "epochs": 2, "train": split, "val": dict(split, accuracy=a),
                "seconds_per_epoch": 1.0} for s, a in ((0, 0.90), (1, 0.94))]
    document = {"recipe": {"epochs": 2, "skip_test": True},
                "data": {"skipped_count": {"train": 0, "test": 0}},
                "mean": example.aggregate(results, lambda v: float(np.mean(v))),
                "std": example.aggregate(results, example.sample_std)}
    text = example.summary_text(results, document)
    assert "TEST not evaluated" in text and "test accuracy" not in text
    assert "validation acc.    0.9200 +- 0.0283" in text


def test_build_model_is_the_study_network():
    model = example.build_model((3, 64, 64), seed=0)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds[:5] == ["Conv2D", "BatchNorm2D", "ReLU", "MaxPool2D", "Dropout"]
    assert kinds[-7:] == ["Flatten", "Dense", "BatchNorm1D", "ReLU", "Dropout", "Dense", "Softmax"]
    assert model.layers[16].params["W"].shape == (128 * 8 * 8, 128)
    assert model.summary(print_fn=None).count("Conv2D") == 3


def test_filters_give_one_block_each():
    model = example.build_model((3, 64, 64), seed=0, filters=[32, 64, 128, 128])
    assert model.summary(print_fn=None).count("Conv2D") == 4
    assert model.layers[21].params["W"].shape == (128 * 4 * 4, 128)
    assert model.predict(np.zeros((2, 3, 64, 64), np.float32)).shape == (2, 4)
    assert example.parse_args(["--filters", "16,32"]).filters == [16, 32]
    assert example.parse_args([]).filters == [32, 64, 128]


def test_strided_first_convolution_contains_block_mean_then_3x3():
    """--first-stride 2 at full size can compute what --factor 2 and a 3x3 layer do."""
    from numcnn.data.preprocess import downscale
    strided = example.build_model((3, 32, 32), seed=0, first_stride=2)
    plain = example.build_model((3, 16, 16), seed=1)
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
    assert example.parse_args([]).first_stride == 1
    args = example.parse_args(["--factor", "1", "--input-size", "128", "--first-stride", "2"])
    assert example.recipe_of(args)["first_stride"] == 2 and "first_stride" in example.TRAINING_SETTINGS
    for stride in ("0", "65"):                                # the input is 64 pixels
        with pytest.raises(SystemExit):
            example.parse_args(["--first-stride", stride])
        assert "--first-stride must be between 1 and the 64-pixel input" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["32,x", "32,0", ""])
def test_bad_filters_are_rejected(text, tmp_path, capsys):
    with pytest.raises(SystemExit):
        example.parse_args(["--filters", text])
    assert "--filters" in capsys.readouterr().err


def test_crops_and_augmentation_are_seeded(rng):
    x = rng.random((5, 3, 72, 72), dtype=np.float32)
    a = random_crop(x, 64, np.random.default_rng(1))
    b = random_crop(x, 64, np.random.default_rng(1))
    assert a.shape == (5, 3, 64, 64) and np.array_equal(a, b)
    assert np.array_equal(centre_crop(x, 64), x[:, :, 4:68, 4:68])
    augment = crop_and_flip(64)
    assert np.array_equal(augment(x, np.random.default_rng(2)), augment(x, np.random.default_rng(2)))
    # with colour jitter: the same crops and flips (drawn first), then a gain and shift
    jittered = crop_and_flip(64, colour=0.1)(x, np.random.default_rng(2))
    plain = augment(x, np.random.default_rng(2))
    assert jittered.shape == plain.shape and not np.array_equal(jittered, plain)
    step_plain = plain[:, :, 1:] - plain[:, :, :-1]
    step_jittered = jittered[:, :, 1:] - jittered[:, :, :-1]
    ratio = step_jittered[np.abs(step_plain) > 0.05] / step_plain[np.abs(step_plain) > 0.05]
    assert 0.9 - 1e-3 < ratio.min() and ratio.max() < 1.1 + 1e-3     # the gain, per channel
    # every augmented image is some symmetry of some 64x64 window of its source
    out = augment(x[:1], np.random.default_rng(3))[0]
    windows = [x[0, :, i:i + 64, j:j + 64] for i in range(9) for j in range(9)]
    variants = [np.rot90(w[:, ::a, ::b], k, axes=(1, 2)) for w in windows
                for a in (1, -1) for b in (1, -1) for k in range(4)]
    assert any(np.array_equal(out, v) for v in variants)


def test_summary_gives_mean_and_spread_over_seeds():
    def fake(seed, accuracy, worst):
        split = {"accuracy": accuracy, "worst_recall": worst, "worst_recall_class": "MONOCYTE",
                 "f1": {c: accuracy for c in CLASSES}, "recall": {c: worst for c in CLASSES},
                 "confusion": [[1]]}
        return {"seed": seed, "epochs": 20, "train": split, "val": split, "test": split,
                "seconds_per_epoch": 30.0}
    results = [fake(0, 0.80, 0.5), fake(1, 0.90, 0.7)]
    document = {"recipe": {"epochs": 20}, "data": {"skipped_count": {"train": 1, "test": 0}},
                "mean": example.aggregate(results, lambda v: float(np.mean(v))),
                "std": example.aggregate(results, example.sample_std)}
    assert document["mean"]["test"]["accuracy"] == pytest.approx(0.85)
    assert document["std"]["test"]["accuracy"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert "confusion" not in document["mean"]["test"]
    text = example.summary_text(results, document)
    assert "0.8500 +- 0.0707" in text and "worst recall" in text and "TRAIN 1" in text
    for name in CLASSES:
        assert name in text


# ----------------------------------------------------------------------------
# Slow: the whole study on 40 images per class
# ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data_dir():
    configured = os.environ.get("NUMCNN_BLOODCELLS")
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "blood-cells"
    if not (path / "dataset2-master" / "images").is_dir():
        pytest.skip(f"blood-cell dataset not found at {path}")
    return path


@pytest.fixture(scope="module")
def study(data_dir, tmp_path_factory):
    """Run the study once: seed 0, 2 epochs, 40 images per class of TRAIN and TEST."""
    root = tmp_path_factory.mktemp("study")
    common = ["--data", str(data_dir), "--max-per-class", "40", "--seeds", "1",
              "--cache-dir", str(root / "cache")]

    def run(out, *extra):
        return example.main(common + ["--out", str(root / out), *extra])

    assert run("full", "--epochs", "2") == 0
    return {"root": root, "run": run, "out": root / "full", "data_dir": data_dir}


def _weights(path):
    model = numcnn.load(path)
    return model, {f"{i}/{kind}/{name}": value for i, layer in enumerate(model.layers)
                   for kind, store in (("param", layer.params), ("buffer", layer.buffers))
                   for name, value in store.items()}


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


@pytest.mark.slow
def test_resume_equals_an_uninterrupted_run(study):
    """1 epoch, then --resume to 2, gives bit for bit the weights of 2 epochs in one go."""
    run = study["run"]
    assert run("interrupted", "--epochs", "1", "--no-plots", "--quiet") == 0
    assert run("interrupted", "--epochs", "2", "--no-plots", "--quiet", "--resume") == 0
    straight, expected = _weights(study["out"] / "seed0" / "model.npz")
    resumed, got = _weights(study["root"] / "interrupted" / "seed0" / "model.npz")
    assert resumed.epoch == straight.epoch == 2
    assert expected.keys() == got.keys()
    for key in expected:
        assert np.array_equal(expected[key], got[key]), key
    assert resumed.rng.bit_generator.state == straight.rng.bit_generator.state
    assert resumed.history.history["loss"] == straight.history.history["loss"]
    results = json.loads((study["root"] / "interrupted" / "results.json").read_text())
    assert results["seeds"]["0"]["resumed_from_epoch"] == 1


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
    test_dir = study["data_dir"] / "dataset2-master" / "images" / "TEST"
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
    loaded = load_bloodcells(study["data_dir"], "TEST", crop=144, factor=2, max_per_class=40,
                             seed=0, cache_dir=study["root"] / "cache", progress=False)
    for i in (0, 100):
        again = preprocess_image(read_rgb_image(loaded.paths[i]), crop=144, factor=2)
        assert np.array_equal(again, loaded.x[i])


def linked_archive(data_dir, root, pattern="*.jpeg", count=12, rename=None):
    """``root/archive``: links to the first ``count`` real images matching ``pattern``
    per class of TRAIN and TEST, named ``rename(number, image)`` (default: as they are)."""
    source = data_dir / "dataset2-master" / "images"
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
def test_corrupt_images_are_skipped_and_counted(data_dir, tmp_path):
    """A small archive of links to real images plus one broken JPEG (and no labels.csv)."""
    archive = linked_archive(data_dir, tmp_path)
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
def test_files_named_otherwise_cannot_be_split_by_cells(data_dir, tmp_path, capsys):
    """Without the archive's names the cells cannot be counted: exit 2, naming a file and the way out."""
    archive = linked_archive(data_dir, tmp_path, count=10,
                             rename=lambda number, image: f"cell{number}.jpeg")
    assert run_on_archive(archive, tmp_path) == 2
    error = capsys.readouterr().err
    assert "cell0.jpeg" in error and "--validation images" in error


@pytest.mark.slow
def test_files_named_otherwise_still_run_with_validation_by_images(data_dir, tmp_path):
    """The way out the error above names works: no cells, so no interval over them."""
    archive = linked_archive(data_dir, tmp_path, count=10,
                             rename=lambda number, image: f"cell{number}.jpeg")
    with pytest.warns(UserWarning, match="no interval over TEST's cells"):
        assert run_on_archive(archive, tmp_path, "--epochs", "1", "--validation", "images") == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert "accuracy_interval" not in results["seeds"]["0"]["test"]
    assert results["test_interval_over_seeds"] is None


@pytest.mark.slow
def test_too_few_cells_to_hold_one_out_is_an_error(data_dir, tmp_path, capsys):
    """The first files of each folder all sit at batch position 0: one cell by the names."""
    archive = linked_archive(data_dir, tmp_path, pattern="_0_*.jpeg", count=6)
    assert run_on_archive(archive, tmp_path) == 2
    error = capsys.readouterr().err
    assert "TRAIN/EOSINOPHIL" in error and "fewer than 2 original cells" in error
    assert "--validation images" in error
