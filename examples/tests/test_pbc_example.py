"""examples/pbc.py and examples/transfer.py end to end, on a small subset of the real data.

The PBC study runs once (seed 0, one epoch, 12 images per class of each split,
a narrow network) and its outputs are checked: the reports of every split,
intervals over images, figures, results.json with the keys of the blood-cell
study, --resume, --predict. The transfer script then tests that model's
four-class sibling and a tiny blood-cell model on the other laboratory's images.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from numcnn.testing import load_script

import numcnn
from numcnn.datasets import pbc
from numcnn.data import read_rgb_image

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"
SHARED = ("eosinophil", "lymphocyte", "monocyte", "neutrophil")


def _load(name):
    return load_script(EXAMPLES / f"{name}.py", f"{name}_example")


pbc_example = _load("pbc")
bloodcells_example = _load("bloodcells")
transfer_example = _load("transfer")


@pytest.fixture(scope="module")
def study(pbc_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("pbc-study")
    common = ["--data", str(pbc_dir), "--max-per-class", "12", "--filters", "8,16,32",
              "--dense", "32", "--cache-dir", str(root / "cache")]

    def run(out, *extra):
        return pbc_example.main(common + ["--out", str(root / out), *extra])

    assert run("full", "--epochs", "1") == 0
    return {"root": root, "run": run, "out": root / "full", "data_dir": pbc_dir}


def printed_probabilities(printed, image):
    """The numbers --predict printed on the line of ``image``."""
    line = [row for row in printed.splitlines() if row.startswith(str(image))][0]
    return [float(part) for part in line.replace("(", " ").replace(")", " ").split()
            if part.replace(".", "").isdigit()]


def test_the_example_reads_as_a_short_story():
    lines = (EXAMPLES / "pbc.py").read_text().splitlines()
    assert len(lines) <= 250
    first = "\n".join(lines[:150])
    assert "def network(" in first and "model.fit(" in first


def test_study_writes_reports_figures_and_results(study):
    out, seed = study["out"], study["out"] / "seed0"
    results = json.loads((out / "results.json").read_text())
    assert set(results) >= {"study", "classes", "recipe", "machine", "data", "seeds", "mean",
                            "std", "test_interval_over_seeds"}
    assert results["classes"] == list(pbc.CLASSES)
    first = results["seeds"]["0"]
    for split, images in (("train", 8 * 12), ("val", 8 * 12), ("test", 8 * 12)):
        report = first[split]
        assert sum(report["support"].values()) == images
        assert set(report["f1"]) == set(pbc.CLASSES) == set(report["precision"])
        assert 0 <= report["macro_f1"] <= 1 and len(report["confusion"]) == 8
        assert (seed / f"report_{split}.txt").is_file()
        if split != "train":                         # one image per cell: intervals over images
            low, high = report["accuracy_interval"]
            assert low <= report["accuracy"] <= high and report["cells"] == images
            assert "95% interval over 96 images" in (seed / f"report_{split}.txt").read_text()
            assert len(np.load(seed / f"predicted_{split}.npy")) == images
    low, high = results["test_interval_over_seeds"]["low"], results["test_interval_over_seeds"]["high"]
    assert [low, high] == first["test"]["accuracy_interval"]
    assert first["seconds_per_epoch"] > 0 and first["epochs"] == 1
    assert results["recipe"]["data_licence"] == pbc.CITATION
    if numcnn.plots.available():
        for name in ("confusion_train.png", "confusion_val.png", "confusion_test.png",
                     "learning_curves.png"):
            assert (seed / name).read_bytes()[:4] == b"\x89PNG", name
    assert "test accuracy" in (out / "summary.txt").read_text()


def test_batchnorm_is_calibrated_on_a_fair_sample_of_every_class():
    """The split comes sorted by class: the calibration images must not be its head."""
    from cellstudy.shared.evaluation import fair_sample
    labels = np.repeat(np.arange(8), [853, 2182, 1086, 2027, 850, 994, 2331, 1644])
    sample = fair_sample(len(labels), 2048, seed=0)
    assert len(sample) == 2048 == len(set(sample)) and np.all(np.diff(sample) > 0)
    counts = np.bincount(labels[sample], minlength=8)
    expected = 2048 * np.bincount(labels) / len(labels)
    assert np.all(np.abs(counts - expected) < 0.25 * expected)     # every class, in proportion
    assert set(labels[:2048]) == {0, 1}                           # what the head would give
    np.testing.assert_array_equal(sample, fair_sample(len(labels), 2048, seed=0))
    assert not np.array_equal(sample, fair_sample(len(labels), 2048, seed=1))
    np.testing.assert_array_equal(fair_sample(96, 2048, seed=3), np.arange(96))


def test_resume_goes_on_and_predict_classifies_images(study, capsys):
    assert study["run"]("full", "--epochs", "2", "--resume", "--no-plots", "--quiet") == 0
    results = json.loads((study["out"] / "results.json").read_text())
    assert results["seeds"]["0"]["resumed_from_epoch"] == 1 and results["seeds"]["0"]["epochs"] == 2
    image = sorted((study["data_dir"] / "images" / "platelet").glob("*.jpg"))[0]
    model = str(study["out"] / "seed0" / "model.npz")
    capsys.readouterr()
    assert pbc_example.main(["--predict", str(image), "--model", model]) == 0
    numbers = printed_probabilities(capsys.readouterr().out, image)
    assert len(numbers) == 8 and sum(numbers) == pytest.approx(1.0, abs=0.01)


def test_predict_refuses_an_image_of_another_size(study, tmp_path, capsys):
    from skimage import io
    image = read_rgb_image(sorted((study["data_dir"] / "images" / "basophil").glob("*.jpg"))[0])
    small = tmp_path / "small.png"
    io.imsave(small, image[:100, :90], check_contrast=False)
    model = str(study["out"] / "seed0" / "model.npz")
    assert pbc_example.main(["--predict", str(small), "--model", model]) == 1
    assert "90x100 image" in capsys.readouterr().err


def test_a_colour_normalised_model_ignores_a_slide_wide_change_of_stain(study, tmp_path, capsys):
    """--colour-norm image (remedy R2): predict normalises each image as training did."""
    from skimage import io
    assert study["run"]("cnorm", "--epochs", "1", "--colour-norm", "image", "--no-plots",
                        "--quiet") == 0
    recipe = json.loads((study["root"] / "cnorm" / "seed0" / "recipe.json").read_text())
    assert recipe["colour_norm"] == "image"
    image = read_rgb_image(sorted((study["data_dir"] / "images" / "monocyte").glob("*.jpg"))[0])
    restained = np.clip(np.rint(image.astype(np.float64) * [0.8, 0.9, 0.85] + [20, 5, 12]),
                        0, 255).astype(np.uint8)    # another slide: lighter, another tint
    paths = [tmp_path / "original.png", tmp_path / "restained.png"]
    for path, pixels in zip(paths, (image, restained)):
        io.imsave(path, pixels, check_contrast=False)
    model = str(study["root"] / "cnorm" / "seed0" / "model.npz")
    capsys.readouterr()
    assert pbc_example.main(["--predict", *map(str, paths), "--model", model]) == 0
    printed = capsys.readouterr().out
    probabilities = [printed_probabilities(printed, path) for path in paths]
    assert len(probabilities[0]) == 8
    # Equal up to the rounding of the re-stained copy to whole pixel values (seen: 0.001;
    # without the normalisation in predict, 0.06).
    np.testing.assert_allclose(probabilities[0], probabilities[1], atol=0.01)


def test_transfer_runs_both_ways(study, bloodcells_dir, tmp_path):
    """Tiny models of both studies on the other laboratory's images: the script's outputs."""
    four = tmp_path / "pbc4"
    assert study["run"](str(four), "--epochs", "1", "--classes", ",".join(SHARED), "--no-plots",
                        "--quiet", "--colour-norm", "image") == 0        # remedy R2 on one side
    cells = tmp_path / "bloodcells"
    assert bloodcells_example.main(["--data", str(bloodcells_dir), "--max-per-class", "20",
                                    "--epochs", "1", "--filters", "8,16,32", "--out", str(cells),
                                    "--cache-dir", str(study["root"] / "cache"), "--no-plots",
                                    "--quiet"]) == 0
    out = tmp_path / "transfer"
    assert transfer_example.main(["--bloodcells", str(cells), "--pbc", str(four),
                                  "--bloodcells-data", str(bloodcells_dir),
                                  "--pbc-data", str(study["data_dir"]), "--out", str(out),
                                  "--max-per-class", "10", "--every", "20",
                                  "--cache-dir", str(study["root"] / "cache"), "--quiet",
                                  "--no-plots", "--adapt-batchnorm"]) == 0
    results = json.loads((out / "results.json").read_text())
    ratio = results["scale"]["pbc_px_per_bloodcell_px"]
    assert 0.5 < ratio < 2.5                                  # the same cells, both at some scale
    forward = results["bloodcells_on_pbc"][str(cells)]
    backward = results["pbc_on_bloodcells"][str(four)]
    assert forward["seeds"][0]["transfer"]["support"] == {name: 10 for name in
                                                          ("EOSINOPHIL", "LYMPHOCYTE",
                                                           "MONOCYTE", "NEUTROPHIL")}
    assert sum(backward["seeds"][0]["transfer"]["support"].values()) == 2 * 4 * 10  # TRAIN + TEST
    assert forward["seeds"][0]["recipe"]["colour_norm"] == "none"
    assert backward["seeds"][0]["recipe"]["colour_norm"] == "image"
    for direction in (forward, backward):
        interval = direction["pooled_interval"]
        assert interval["low"] <= direction["mean_accuracy"] <= interval["high"]
    assert "PBC pixels per blood-cell pixel" in (out / "summary.txt").read_text()
    # --adapt-batchnorm: the archive's TEST is the test side (10 per class of 2 x 4 x 10);
    # its unadapted reading is the transfer's own predictions on those images.
    seed = backward["seeds"][0]
    assert sum(seed["test_side"]["support"].values()) == 4 * 10
    assert seed["adapted_test_side"]["support"] == seed["test_side"]["support"]
    assert seed["adapted"]["support"] == seed["transfer"]["support"]
    folder = out / "pbc_on_bloodcells" / four.name / "seed0"
    everything = np.load(folder / "predicted_transfer.npy")
    np.testing.assert_array_equal(np.load(folder / "predicted_test_side.npy"), everything[40:])
    np.testing.assert_array_equal(np.load(folder / "predicted_adapted_test_side.npy"),
                                  np.load(folder / "predicted_adapted.npy")[40:])
    # PBC's first 10 images of each class may hold none of its test split: then no reading
    split_of = pbc.read_splits(study["data_dir"])
    names = sorted(p.name for p in (study["data_dir"] / "images" / "eosinophil").iterdir())[:10]
    assert ("test_side" in forward["seeds"][0]) == any(
        split_of[("eosinophil", name)] == "test" for name in names)
    for direction in (forward, backward):
        for split in ("adapted", "test_side", "adapted_test_side"):
            if f"{split}_pooled_interval" not in direction:
                continue
            interval = direction[f"{split}_pooled_interval"]
            assert interval is None or (interval["low"] <= direction[f"{split}_mean_accuracy"]
                                        <= interval["high"])
    assert "(adapted test side): accuracy" in (out / "summary.txt").read_text()


def test_adapting_batchnorm_measures_the_training_side_only():
    """--adapt-batchnorm's statistics: the training side's centre views, never a test image."""
    from types import SimpleNamespace
    from numcnn.callbacks import recalibrate_batchnorm
    from numcnn.layers import BatchNorm2D, Conv2D, Dense, Flatten
    from cellstudy.shared.evaluation import evaluation_view
    rng = np.random.default_rng(0)
    x = rng.random((40, 3, 10, 10), dtype=np.float32)
    test_side = np.arange(40) >= 30
    x[test_side] = np.nan                              # a test image used anywhere shows
    mean = np.full((3, 10, 10), 0.25, np.float32)

    def model():
        net = numcnn.Sequential([Conv2D(3, 4, 3), BatchNorm2D(4), Flatten(), Dense(4 * 6 * 6, 2)],
                                seed=7)
        net.build((3, 8, 8))
        return net

    adapted, expected = model(), model()
    before = adapted.layers[1].buffers["running_mean"].copy()
    transfer_example.adapt_batchnorm(adapted, x, mean, SimpleNamespace(input_size=8), test_side)
    recalibrate_batchnorm(expected, evaluation_view(x[:30] - mean, 8))   # all 30: fewer than 2,048
    norm = adapted.layers[1]
    assert all(np.isfinite(value).all() for value in norm.buffers.values())
    assert not np.allclose(norm.buffers["running_mean"], before)
    for name, value in norm.buffers.items():
        np.testing.assert_allclose(value, expected.layers[1].buffers[name], rtol=1e-6)


def test_zoom_sets_the_lab_augmentations_range_and_is_recorded(capsys):
    from cellstudy.pbc.command import PBCSettings, parse_args
    from cellstudy.shared.evaluation import LAB_LIGHT, LAB_STAIN, training_augment
    from cellstudy.shared.settings import SettingsError
    from numcnn.data.stain import lab_augment
    default, _ = parse_args(["--augment", "lab"])
    assert default.zoom == (0.85, 1.18)                    # the registered range
    wide, _ = parse_args(["--augment", "lab", "--zoom", "0.67,1.5"])
    assert wide.zoom == (0.67, 1.5)
    recipe = pbc_example.recipe_of(wide, wide.classes)
    assert recipe["zoom"] == [0.67, 1.5] and "zoom Uniform(0.67, 1.5)" in recipe["augmentation"]
    assert PBCSettings.from_recipe(json.loads(json.dumps(recipe))) == wide
    older = {key: value for key, value in default.to_recipe().items() if key != "zoom"}
    assert PBCSettings.from_recipe(older) == default       # a run of before the flag
    # The setting is what the training batches get: the same draws as lab_augment's own.
    images = np.random.default_rng(0).random((6, 3, 20, 20), dtype=np.float32)
    mean = images.mean(axis=0)
    for settings in (default, wide):
        ours = training_augment(settings, mean, 16)(images - mean, np.random.default_rng(3))
        direct = lab_augment(16, mean, stain=LAB_STAIN, rescale=settings.zoom, light=LAB_LIGHT)(
            images - mean, np.random.default_rng(3))
        np.testing.assert_array_equal(ours, direct)
    assert not np.array_equal(training_augment(default, mean, 16)(images - mean,
                                                                  np.random.default_rng(3)),
                              training_augment(wide, mean, 16)(images - mean,
                                                               np.random.default_rng(3)))
    for argv, words in ((["--augment", "lab", "--zoom", "1.1,1.5"], "0 < LOW <= 1 <= HIGH"),
                        (["--augment", "lab", "--zoom", "0.8"], "two numbers LOW,HIGH"),
                        (["--augment", "lab", "--zoom", "nan,1.2"], "0 < LOW <= 1 <= HIGH"),
                        (["--zoom", "0.67,1.5"], "with --augment standard nothing is zoomed")):
        with pytest.raises(SystemExit) as stop:
            parse_args(argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and "--zoom" in err and words in err, err
    for bad in ([1.1, 1.5], [0.9], ["0.9", 1.1], [0.0, 1.2], None):
        with pytest.raises(SettingsError, match="the recipe's zoom"):
            PBCSettings.from_recipe(dict(recipe, zoom=bad))
