"""The 8x8 digits: the loader (shapes, values, the fixed split) and examples/digits.py end to end.

The data ships with scikit-learn, so nothing here is skipped. The split is
held to checksums of its row indices and of its pixels: a change in the rule,
in the order of the loader or in scikit-learn's copy of the data fails here.
"""
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

import numcnn
from numcnn.datasets import digits
from numcnn.errors import DataError

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = REPO_ROOT / "examples" / "digits.py"


def sha256(array, dtype):
    return hashlib.sha256(np.ascontiguousarray(array, dtype=dtype).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def splits():
    return {split: digits.load_data(split) for split in digits.SPLITS}


def test_shapes_dtypes_range_and_classes(splits):
    for split, size in (("train", 1442), ("test", 355)):
        images = splits[split]
        assert images.x.shape == (size, 1, 8, 8) and images.x.dtype == np.float32
        assert images.y.shape == (size,) and images.y.dtype == np.int64
        assert images.x.min() == 0.0 and images.x.max() == 1.0
        assert np.array_equal(images.x * 16, np.round(images.x * 16))   # counts 0..16, exact
        assert images.classes == ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
        assert len(images.paths) == size and images.skipped == []
        assert set(images.y.tolist()) == set(range(10))


def test_split_sizes_per_class(splits):
    assert tuple(splits["test"].class_counts().values()) == digits.TEST_PER_CLASS
    assert sum(digits.TEST_PER_CLASS) == 355
    assert tuple(splits["train"].class_counts().values()) == \
        (143, 146, 142, 147, 145, 146, 145, 144, 140, 144)


def test_split_is_disjoint_covers_everything_and_follows_the_rule():
    train, test = digits.split_indices("train"), digits.split_indices("test")
    assert not set(train.tolist()) & set(test.tolist())
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(1797))
    labels = load_digits().target
    for label in range(10):            # the 5th, 10th, ... image of each digit, and only those
        rows = np.flatnonzero(labels == label)
        assert np.array_equal(np.intersect1d(rows, test), rows[4::5])


def test_split_is_stable(splits):
    test = digits.split_indices("test")
    assert test[:10].tolist() == [33, 36, 37, 40, 44, 47, 51, 58, 59, 64]
    assert sha256(test, "<i8") == \
        "f169ac7f88a6056159147defc4b4a795976fc25cda8160bd80f79271c567a30a"
    assert sha256(splits["test"].x, "<f4") == \
        "1f96ea88bb77d575e408b4c50bda78b6b40c349e7e86d5d4e0b2435d91c458ba"
    assert sha256(splits["train"].x, "<f4") == \
        "ea11aa32432684bead025c6d3bd7c228dcef76c2d8e33930cd2115979c3c4e1e"
    assert "".join(map(str, splits["test"].y[:20])) == "50987126340263175948"


def test_rows_are_those_of_load_digits_named_in_paths(splits):
    raw = load_digits()
    for split, images in splits.items():
        rows = digits.split_indices(split)
        assert np.array_equal(images.x[:, 0] * 16, raw.images[rows])
        assert np.array_equal(images.y, raw.target[rows])
        assert images.paths == [f"load_digits[{i}]" for i in rows]


@pytest.mark.parametrize("split", ["TEST", "val", None, 0])
def test_unknown_split_is_a_value_error_naming_it(split):
    for function in (digits.load_data, digits.split_indices):
        with pytest.raises(ValueError, match=r"digits\.\w+: split must be one of "
                                             r"\['train', 'test'\]; got " + re.escape(repr(split))):
            function(split)


def test_other_data_from_scikit_learn_is_a_data_error(monkeypatch):
    from sklearn.utils import Bunch

    raw = load_digits()
    fewer = Bunch(images=raw.images[:-1], target=raw.target[:-1])
    monkeypatch.setattr(digits, "load_digits", lambda: fewer)
    with pytest.raises(DataError, match=r"load_digits .* got images of shape \(1796, 8, 8\)"):
        digits.load_data("train")


def run_example(*arguments):
    return subprocess.run([sys.executable, str(EXAMPLE), "--quiet", *arguments],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)


@pytest.mark.subprocess
def test_example_learns_prints_test_accuracy_and_saves_the_model(tmp_path, splits):
    out = tmp_path / "digits.npz"
    run = run_example("--epochs", "3", "--seed", "0", "--out", str(out))
    assert run.returncode == 0, run.stderr
    found = re.search(r"test accuracy (\d\.\d{4}) \((\d+) of 355 digits\), 3 epochs", run.stdout)
    assert found, run.stdout
    accuracy = float(found.group(1))
    assert accuracy >= 0.9, f"3 epochs reached only {accuracy} (measured: 0.944-0.963 over seeds)"
    model = numcnn.load(out)          # the saved model is the one that was scored
    scores = model.evaluate(splits["test"].x, splits["test"].y)
    assert round(scores["accuracy"], 4) == accuracy
    assert round(scores["accuracy"] * 355) == int(found.group(2))


@pytest.mark.subprocess
def test_example_exits_3_when_training_diverges_and_saves_nothing(tmp_path):
    out = tmp_path / "digits.npz"
    run = run_example("--epochs", "1", "--lr", "1e30", "--out", str(out))
    assert run.returncode == 3
    assert "digits.py: training diverged" in run.stderr
    assert "test accuracy" not in run.stdout and not out.exists()
