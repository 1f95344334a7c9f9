"""examples/twolabs.py end to end, on a small subset of both laboratories' real images.

The two-laboratory study runs once (seed 0, one epoch, 12 images per class of
each split, a narrow network); its reports per laboratory, figures and
results.json are checked, then --resume and --predict on images of both
laboratories, at their scales, and on one with no stained cell.
"""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from numcnn.testing import load_script

import numcnn
from numcnn.datasets import bloodcells

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"
#: What --predict prints for an image: the issue fixed this format.
PREDICTION = re.compile(r"^(?P<path>.+): (?P<cls>EOSINOPHIL|LYMPHOCYTE|MONOCYTE|NEUTROPHIL)  "
                        r"\(EOSINOPHIL (\d\.\d{3})  LYMPHOCYTE (\d\.\d{3})  "
                        r"MONOCYTE (\d\.\d{3})  NEUTROPHIL (\d\.\d{3})\)$")


def _load(name):
    return load_script(EXAMPLES / f"{name}.py", f"{name}_example")


twolabs = _load("twolabs")


@pytest.fixture(scope="module")
def study(bloodcells_dir, pbc_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("twolabs")
    common = ["--data", str(bloodcells_dir), "--pbc-data", str(pbc_dir), "--max-per-class", "12",
              "--filters", "8,16,32", "--cache-dir", str(root / "cache")]

    def run(*extra):
        return twolabs.main(common + ["--out", str(root / "run"), *extra])

    assert run("--epochs", "1") == 0
    return {"run": run, "out": root / "run", "pbc_dir": pbc_dir, "bloodcells_dir": bloodcells_dir}


def test_the_example_reads_as_a_short_story():
    lines = (EXAMPLES / "twolabs.py").read_text().splitlines()
    assert len(lines) <= 250
    first = "\n".join(lines[:160])
    assert "def train_seed(" in first and "model.fit(" in first


def test_each_laboratory_is_reported(study):
    out, seed = study["out"], study["out"] / "seed0"
    results = json.loads((out / "results.json").read_text())
    assert set(results) >= {"study", "classes", "recipe", "machine", "data", "seeds", "mean",
                            "std", "test_interval_over_seeds", "test_pbc_interval_over_seeds"}
    assert results["classes"] == list(bloodcells.CLASSES)
    first = results["seeds"]["0"]
    assert first["epochs"] == 1 and first["seconds_per_epoch"] > 0
    for split, unit in (("test", "estimated cells"), ("test_pbc", "images")):
        report = first[split]
        assert sum(report["support"].values()) == 4 * 12
        assert 0 <= report["balanced_accuracy"] <= 1 and 0 <= report["macro_f1"] <= 1
        recalls = [report["recall"][name] for name in bloodcells.CLASSES]
        assert report["balanced_accuracy"] == pytest.approx(np.mean(recalls))
        assert np.array(report["confusion"]).sum() == 4 * 12
        low, high = report["accuracy_interval"]
        assert low <= report["accuracy"] <= high
        assert f"95% interval over {report['cells']} {unit}" in \
            (seed / f"report_{split}.txt").read_text()
    assert first["test_pbc"]["cells"] == 4 * 12                    # PBC: one image per cell
    assert first["test"]["cells"] < 4 * 12                         # the archive: copies of cells
    recipe = json.loads((seed / "recipe.json").read_text())
    assert recipe["augment"] == "lab" and "Giemsa" in recipe["augmentation"]
    assert 1.0 < recipe["pbc_px_per_bloodcell_px"] < 1.3           # PBC's cells look larger
    assert (seed / "mean_image.npy").is_file() and (seed / "model.npz").is_file()
    summary = (out / "summary.txt").read_text()
    assert "test accuracy" in summary and "PBC test, four classes, over 1 seed(s)" in summary
    if numcnn.plots.available():
        for name in ("confusion_test.png", "confusion_test_pbc.png", "learning_curves.png"):
            assert (seed / name).read_bytes()[:4] == b"\x89PNG", name


def test_training_is_balanced_between_the_laboratories():
    from cellstudy.crosslab.twolabs import balanced_sample
    y = np.repeat(np.arange(4), [500, 300, 150, 50])
    chosen = balanced_sample(y, 400, seed=0)
    assert len(chosen) == 400 == len(set(chosen))
    np.testing.assert_array_equal(np.bincount(y[chosen]), [200, 120, 60, 20])   # its mix
    np.testing.assert_array_equal(chosen, balanced_sample(y, 400, seed=0))
    assert not np.array_equal(chosen, balanced_sample(y, 400, seed=1))
    np.testing.assert_array_equal(balanced_sample(y[:90], 400, seed=0), np.arange(90))


def test_resume_goes_on(study):
    assert study["run"]("--epochs", "2", "--resume", "--no-plots", "--quiet") == 0
    first = json.loads((study["out"] / "results.json").read_text())["seeds"]["0"]
    assert first["resumed_from_epoch"] == 1 and first["epochs"] == 2


def test_predict_classifies_cells_of_both_laboratories(study, tmp_path, capsys):
    from skimage import io
    frame = sorted((bloodcells.split_dir("TEST", study["bloodcells_dir"]) / "MONOCYTE")
                   .glob("*.jpeg"))[0]
    prepared = sorted((study["pbc_dir"] / "images" / "lymphocyte").glob("*.jpg"))[0]
    blank = tmp_path / "blank.png"
    io.imsave(blank, np.full((120, 160, 3), 235, np.uint8), check_contrast=False)
    model = str(study["out"] / "seed0" / "model.npz")
    capsys.readouterr()
    assert twolabs.main(["--predict", str(frame), "--model", model]) == 0
    assert twolabs.main(["--predict", str(prepared), "--model", model, "--scale", "1.12"]) == 0
    assert twolabs.main(["--predict", str(frame), str(blank), "--model", model]) == 1
    printed = capsys.readouterr()
    lines = [line for line in printed.out.splitlines() if PREDICTION.match(line)]
    assert [PREDICTION.match(line)["path"] for line in lines] == [str(frame), str(prepared),
                                                                   str(frame)]
    for line in lines:
        probabilities = [float(p) for p in PREDICTION.match(line).groups()[2:]]
        assert sum(probabilities) == pytest.approx(1.0, abs=0.01)
        assert PREDICTION.match(line)["cls"] == bloodcells.CLASSES[int(np.argmax(probabilities))]
    assert lines[0] == lines[2]                        # the same image, the same answer
    assert "1.12x the blood-cell archive's scale" in printed.out
    assert f"error: {blank}: no stained white cell found" in printed.err


def test_pbc_camera_changes_pbc_training_images_only_and_is_recorded():
    from cellstudy.crosslab.twolabs import (PBC_CAMERA_STREAM, TwoLabSettings, parse_args,
                                            training_set)
    from cellstudy.shared.evaluation import LAB_CAMERA
    rng = np.random.default_rng(3)
    bc_x, pbc_x = (rng.random((n, 3, 24, 24), dtype=np.float32) for n in (5, 7))
    plain = training_set(bc_x, pbc_x, seed=0)
    np.testing.assert_array_equal(plain, np.concatenate([bc_x, pbc_x]))
    seen = training_set(bc_x, pbc_x, seed=0, pbc_camera=True, chunk=3)   # chunks: 3, 3, 1
    np.testing.assert_array_equal(seen[:5], bc_x)                        # the archive untouched
    changed = np.abs(seen[5:] - pbc_x).reshape(7, -1).max(axis=1)
    assert (changed > 0.01).all() and seen.min() >= 0 and seen.max() <= 1
    first_chunk = numcnn.data.camera_jitter(pbc_x[:3], np.random.default_rng([0, PBC_CAMERA_STREAM]),
                                            **LAB_CAMERA)
    np.testing.assert_allclose(seen[5:8], first_chunk, atol=1e-6)      # the library's camera
    np.testing.assert_array_equal(training_set(bc_x, pbc_x, 0, True, chunk=3), seen)
    assert np.abs(training_set(bc_x, pbc_x, 1, True)[5:] - seen[5:]).max() > 0.01
    settings, _ = parse_args(["--pbc-camera"])
    recipe = twolabs.recipe_of(settings)
    assert recipe["pbc_camera"] is True and "JPEG round trip of quality 20..95" in \
        recipe["pbc_training_images"]
    assert TwoLabSettings.from_recipe(recipe) == settings
    assert twolabs.recipe_of(TwoLabSettings())["pbc_training_images"] == "as they are"
    older = {key: value for key, value in twolabs.recipe_of(TwoLabSettings()).items()
             if key != "pbc_camera"}                       # a run of before the flag
    assert TwoLabSettings.from_recipe(older).pbc_camera is False


def test_a_small_crop_is_set_on_its_own_background():
    from cellstudy.crosslab.scale import rescaled_for_predict
    image = np.full((100, 80, 3), 200, np.uint8)
    image[40:60, 30:50] = (90, 40, 160)                    # a purple nucleus
    out = rescaled_for_predict(image, 0.5, 144)             # twice as large: 200x160
    assert out.shape == (200, 160, 3)
    small = rescaled_for_predict(image, 2.0, 144)           # half as large, in the window
    assert small.shape == (144, 144, 3)
    assert tuple(small[0, 0]) == (200, 200, 200)           # the image's background, not black
    np.testing.assert_array_equal(rescaled_for_predict(image, 1.0, 50), image)   # as it is


def test_every_training_image_of_both_laboratories_when_asked():
    from cellstudy.crosslab.twolabs import TwoLabSettings, parse_args, training_images
    bc_y, pbc_y = np.repeat(np.arange(4), [300, 200, 100, 60]), np.repeat(np.arange(4), 50)
    bc_train = np.arange(0, len(bc_y), 2)                  # validation cells held out
    for seed in (0, 1):
        bc, pbc = training_images(bc_train, bc_y, pbc_y, seed, "equal")
        assert len(bc) == len(pbc) == 200 and set(bc) <= set(bc_train)
        np.testing.assert_array_equal(pbc, np.arange(200))
        bc, pbc = training_images(bc_train, bc_y, pbc_y, seed, "none")
        np.testing.assert_array_equal(bc, bc_train)
        np.testing.assert_array_equal(pbc, np.arange(200))
    bc, pbc = training_images(bc_train[:50], bc_y, pbc_y, 0, "equal")   # PBC the larger
    assert len(bc) == len(pbc) == 50 and np.bincount(pbc_y[pbc]).tolist() == [13, 13, 12, 12]
    settings, _ = parse_args(["--lab-balance", "none", "--augment", "lab+camera"])
    recipe = twolabs.recipe_of(settings)
    assert recipe["lab_balance"] == "none" and recipe["balance"].startswith("none: every")
    assert "JPEG round trip of quality 20..95" in recipe["augmentation"]
    assert TwoLabSettings.from_recipe(recipe) == settings
    older = {key: value for key, value in twolabs.recipe_of(TwoLabSettings()).items()
             if key != "lab_balance"}                      # a run of before the flag
    assert TwoLabSettings.from_recipe(older).lab_balance == "equal"
    with pytest.raises(SystemExit):
        parse_args(["--lab-balance", "half"])
