"""Tests of numcnn.datasets: the blood-cell and PBC loaders, where they look, and their cache.

Real-data tests use small subsets (max_per_class) of the blood-cell archive,
found through NUMCNN_BLOODCELLS or ``<repo>/../shared/blood-cells``, and small
temporary copies of the PBC dataset at NUMCNN_PBC or ``<repo>/../shared/pbc``;
each group skips when its data is absent. Damaged-file tests copy a few real
JPEGs into tmp_path. The default cache is a temporary folder (NUMCNN_CACHE).
"""

import csv
import io as text_io
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from skimage import color, io

import numcnn.data.cache
from numcnn.data import (CentreCrop, ImageSet, SkippedImagesWarning, downscale,
                         preprocess_image, read_rgb_image, to_unit_range)
from numcnn.datasets import bloodcells, pbc
from numcnn.errors import DataError, DataNotFoundError

CLASSES = bloodcells.CLASSES
DATA_ENV_VAR = bloodcells.DATA_ENV_VAR


# ----------------------------------------------------------------------------
# Fixtures and helpers
# ----------------------------------------------------------------------------

def replace_keeping_name_size_and_mtime(target: Path, content: bytes) -> None:
    """Overwrite ``target`` with ``content`` (padded after the JPEG's end to the old size),
    then give it back its modification time, as ``cp -p`` over a same-sized file would."""
    before = target.stat()
    assert len(content) <= before.st_size
    target.write_bytes(content + b"\0" * (before.st_size - len(content)))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = target.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def forbid_decoding(monkeypatch):
    """From here on, the loaders must read the cache: decoding a file fails the test."""
    def not_again(*args, **kwargs):
        raise AssertionError("the images were decoded again instead of read from the cache")
    monkeypatch.setattr(numcnn.data.cache, "decode_images", not_again)


# ----------------------------------------------------------------------------
# The blood-cell images: loading
# ----------------------------------------------------------------------------

def test_load_shapes_dtypes_range_and_label_order(bloodcells_dir):
    images = bloodcells.load_data("TRAIN", bloodcells_dir, CentreCrop(128), 2,
                                  max_per_class=5, cache=False, progress=False)
    assert isinstance(images, ImageSet)
    assert images.x.shape == (20, 3, 64, 64) and images.x.dtype == np.float32
    assert images.y.shape == (20,) and images.y.dtype == np.int64
    assert 0.0 <= images.x.min() and images.x.max() <= 1.0
    assert images.x.std() > 0.05                                # real pictures, not blank
    assert images.classes == ["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]
    np.testing.assert_array_equal(images.y, np.repeat(np.arange(4), 5))
    assert [path.parent.name for path in images.paths] == [CLASSES[label] for label in images.y]
    assert images.skipped == []
    assert images.class_counts() == dict.fromkeys(CLASSES, 5)


def test_load_whole_image_downscaled(bloodcells_dir):
    images = bloodcells.load_data("TEST", bloodcells_dir, factor=4, max_per_class=2,
                                  cache=False, progress=False)
    assert images.x.shape == (8, 3, 60, 80)


def test_loader_equals_decode_transform_downscale(bloodcells_dir):
    crop = CentreCrop(128)
    images = bloodcells.load_data("TEST", bloodcells_dir, crop, 2, max_per_class=2,
                                  cache=False, progress=False)
    for row, path in zip(images.x, images.paths):
        hwc = crop(read_rgb_image(path))
        expected = downscale(to_unit_range(hwc.transpose(2, 0, 1)), 2)
        np.testing.assert_allclose(row, expected, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(row, preprocess_image(read_rgb_image(path), crop, 2))


def test_subset_is_seeded_and_sorted(bloodcells_dir):
    def subset(seed):
        return bloodcells.load_data("TEST_SIMPLE", bloodcells_dir, factor=8, max_per_class=3,
                                    seed=seed, cache=False, progress=False).paths
    assert subset(1) == subset(1)
    assert subset(1) != subset(2)
    names = [path.name for path in subset(1)[9:]]               # the 3 neutrophils
    assert names == sorted(names)


def test_count_per_class_matches_a_directory_listing(bloodcells_dir):
    folder = bloodcells.images_dir(bloodcells_dir) / "TEST"
    expected = {name: len([f for f in os.listdir(folder / name) if f.endswith(".jpeg")])
                for name in CLASSES}
    assert bloodcells.count_per_class("TEST", bloodcells_dir) == expected


def test_unknown_split_and_bad_arguments_are_errors(bloodcells_dir):
    with pytest.raises(ValueError, match="VALID"):
        bloodcells.load_data("VALID", bloodcells_dir, progress=False, cache=False)
    with pytest.raises(ValueError, match="factor 7 must divide the image size 128x128"):
        bloodcells.load_data("TEST", bloodcells_dir, CentreCrop(128), 7, progress=False)
    with pytest.raises(ValueError, match="max_per_class"):
        bloodcells.load_data("TEST", bloodcells_dir, max_per_class=0, progress=False)


# ----------------------------------------------------------------------------
# The blood-cell images: the cache
# ----------------------------------------------------------------------------

def test_cache_hit_gives_identical_arrays(bloodcells_dir, tmp_path, monkeypatch):
    settings = dict(split="TEST", path=bloodcells_dir, transform=CentreCrop(128), factor=2,
                    max_per_class=3, seed=0, progress=False)
    first = bloodcells.load_data(cache_dir=tmp_path / "cache", **settings)
    cache_files = list((tmp_path / "cache").glob("*.npz"))
    assert len(cache_files) == 1
    uncached = bloodcells.load_data(cache=False, **settings)
    with monkeypatch.context() as patch:
        forbid_decoding(patch)
        second = bloodcells.load_data(cache_dir=tmp_path / "cache", **settings)
    for other in (second, uncached):
        np.testing.assert_array_equal(first.x, other.x)         # exactly, bit for bit
        np.testing.assert_array_equal(first.y, other.y)
        assert other.x.dtype == np.float32 and other.y.dtype == np.int64
        assert first.paths == other.paths
    bloodcells.load_data(cache_dir=tmp_path / "cache", **dict(settings, factor=4))
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2   # other settings, other file
    bloodcells.load_data(cache_dir=tmp_path / "cache", **dict(settings, transform=CentreCrop(64)))
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 3   # another transform, too


def test_cache_defaults_to_numcnn_cache(bloodcells_dir, private_cache):
    bloodcells.load_data("TEST_SIMPLE", bloodcells_dir, CentreCrop(128), 4, max_per_class=1,
                         progress=False)
    assert len(list(private_cache.glob("bloodcells-TEST_SIMPLE-*.npz"))) == 1


def test_corrupt_cache_is_rebuilt_with_a_warning(bloodcells_dir, tmp_path):
    settings = dict(split="TEST_SIMPLE", path=bloodcells_dir, transform=CentreCrop(128),
                    factor=4, max_per_class=2, progress=False, cache_dir=tmp_path)
    good = bloodcells.load_data(**settings)
    (cache_file,) = tmp_path.glob("*.npz")
    cache_file.write_bytes(cache_file.read_bytes()[:1000])      # truncated
    with pytest.warns(UserWarning, match="unreadable.*rebuilding"):
        rebuilt = bloodcells.load_data(**settings)
    np.testing.assert_array_equal(good.x, rebuilt.x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                          # now a clean hit
        bloodcells.load_data(**settings)


def test_unwritable_cache_only_warns(bloodcells_dir, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.warns(UserWarning, match="could not write the cache"):
        images = bloodcells.load_data("TEST_SIMPLE", bloodcells_dir, CentreCrop(128), 4,
                                      max_per_class=1, cache_dir=not_a_folder, progress=False)
    assert len(images) == 4


def test_cache_sees_a_file_replaced_by_another_of_the_same_name_size_and_time(bloodcells_dir,
                                                                              make_split, tmp_path):
    """The key is the files' bytes: not fooled by ``cp -p`` of an equal-sized file."""
    source = bloodcells.split_dir("TEST", bloodcells_dir)
    by_size = {}
    for path in sorted((source / "EOSINOPHIL").glob("*.jpeg")):
        by_size.setdefault(path.stat().st_size, []).append(path)
    pairs = [paths[:2] for paths in by_size.values()
             if len(paths) > 1 and paths[0].read_bytes() != paths[1].read_bytes()]
    if pairs:                                   # two real JPEGs of exactly the same size
        target, replacement = pairs[0]
    else:                                       # else the smaller one, padded after its end
        target, replacement = sorted(sorted((source / "EOSINOPHIL").glob("*.jpeg"))[:2],
                                     key=lambda path: -path.stat().st_size)
    archive = tmp_path / "archive"
    folder = make_split(archive, {name: sorted((source / name).glob("*.jpeg"))[:2]
                                  for name in CLASSES}, split="TEST")
    shutil.copy2(target, folder / "EOSINOPHIL" / target.name)
    settings = dict(split="TEST", path=archive, transform=CentreCrop(128), factor=2,
                    progress=False, cache_dir=tmp_path / "cache")
    before = bloodcells.load_data(**settings)
    row = [path.name for path in before.paths].index(target.name)

    copied = folder / "EOSINOPHIL" / target.name
    replace_keeping_name_size_and_mtime(copied, replacement.read_bytes())
    after = bloodcells.load_data(**settings)
    fresh = bloodcells.load_data(**dict(settings, cache=False))
    assert after.paths == before.paths
    assert not np.array_equal(after.x[row], before.x[row])      # the cache was not served
    np.testing.assert_array_equal(after.x, fresh.x)             # it equals a fresh decode
    np.testing.assert_array_equal(
        after.x[row], preprocess_image(read_rgb_image(replacement), CentreCrop(128), 2))
    others = np.arange(len(before)) != row
    np.testing.assert_array_equal(after.x[others], before.x[others])
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2


def test_transform_without_cache_key_is_not_cached(bloodcells_dir, tmp_path):
    def top_left(image):                                         # no cache_key attribute
        return image[:128, :128]

    with pytest.warns(UserWarning, match="no cache_key.*cannot be cached"):
        images = bloodcells.load_data("TEST_SIMPLE", bloodcells_dir, top_left, 4,
                                      max_per_class=1, cache_dir=tmp_path, progress=False)
    assert images.x.shape == (4, 3, 32, 32)
    assert list(tmp_path.glob("*.npz")) == []
    for row, path in zip(images.x, images.paths):
        np.testing.assert_array_equal(row, preprocess_image(read_rgb_image(path), top_left, 4))
    with warnings.catch_warnings():                              # asked not to cache: no warning
        warnings.simplefilter("error")
        bloodcells.load_data("TEST_SIMPLE", bloodcells_dir, top_left, 4, max_per_class=1,
                             cache=False, progress=False)


def test_a_set_larger_than_the_cache_limit_is_not_cached(bloodcells_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(numcnn.data.cache, "MAX_CACHE_BYTES", 1000)
    with pytest.warns(UserWarning, match="not caching bloodcells-TEST_SIMPLE.*crop or downscale"):
        images = bloodcells.load_data("TEST_SIMPLE", bloodcells_dir, CentreCrop(128), 4,
                                      max_per_class=1, cache_dir=tmp_path, progress=False)
    assert images.x.shape == (4, 3, 32, 32)                      # 4 * 3 * 32 * 32 bytes > 1000
    assert list(tmp_path.glob("*.npz")) == []
    monkeypatch.setattr(numcnn.data.cache, "MAX_CACHE_BYTES", 1 << 30)
    again = bloodcells.load_data("TEST_SIMPLE", bloodcells_dir, CentreCrop(128), 4,
                                 max_per_class=1, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(again.x, images.x)
    assert len(list(tmp_path.glob("*.npz"))) == 1


# ----------------------------------------------------------------------------
# The blood-cell images: damaged files
# ----------------------------------------------------------------------------

def test_bad_images_are_skipped_and_counted(sample_jpegs, make_split, tmp_path):
    split = make_split(tmp_path / "data", sample_jpegs)
    good = sample_jpegs["MONOCYTE"][0]
    rng = np.random.default_rng(0)
    (split / "EOSINOPHIL" / "corrupt.jpeg").write_bytes(rng.bytes(5000))
    (split / "EOSINOPHIL" / "truncated.jpeg").write_bytes(good.read_bytes()[:2000])
    rgb = io.imread(good)
    gray = (color.rgb2gray(rgb) * 255).astype(np.uint8)
    io.imsave(split / "LYMPHOCYTE" / "gray.jpeg", gray, check_contrast=False)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    io.imsave(split / "MONOCYTE" / "rgba.png", rgba, check_contrast=False)
    io.imsave(split / "NEUTROPHIL" / "small.jpeg", rgb[:200, :300], check_contrast=False)

    with pytest.warns(SkippedImagesWarning) as record:
        images = bloodcells.load_data("TRAIN", tmp_path / "data", CentreCrop(128), 2,
                                      cache_dir=tmp_path / "cache", progress=False)
    assert len(record) == 1                                     # one summary, not one per file
    assert "skipped 5 of 13" in str(record[0].message)
    assert images.x.shape == (8, 3, 64, 64)
    np.testing.assert_array_equal(images.y, np.repeat(np.arange(4), 2))
    reasons = {path.name: reason for path, reason in images.skipped}
    assert sorted(reasons) == ["corrupt.jpeg", "gray.jpeg", "rgba.png", "small.jpeg", "truncated.jpeg"]
    assert "cannot decode" in reasons["corrupt.jpeg"]
    assert "cannot decode" in reasons["truncated.jpeg"]
    assert "grayscale" in reasons["gray.jpeg"]
    assert "RGBA" in reasons["rgba.png"]
    assert "(200, 300, 3)" in reasons["small.jpeg"] and "(240, 320, 3)" in reasons["small.jpeg"]

    with pytest.warns(SkippedImagesWarning, match="skipped 5 of 13"):   # the cache remembers
        cached = bloodcells.load_data("TRAIN", tmp_path / "data", CentreCrop(128), 2,
                                      cache_dir=tmp_path / "cache", progress=False)
    assert cached.skipped == images.skipped


def test_missing_split_or_class_folder_is_named(sample_jpegs, make_split, tmp_path):
    make_split(tmp_path / "data", sample_jpegs, classes=CLASSES[:3])
    with pytest.raises(DataNotFoundError, match="NEUTROPHIL missing"):
        bloodcells.load_data("TRAIN", tmp_path / "data", progress=False)
    with pytest.raises(DataNotFoundError, match=r"split folder .*TEST does not exist"):
        bloodcells.load_data("TEST", tmp_path / "data", progress=False)


# ----------------------------------------------------------------------------
# The blood-cell images: where they are
# ----------------------------------------------------------------------------

@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """No argument, no environment variable, no default place holds the data."""
    monkeypatch.delenv(DATA_ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    return tmp_path


def test_locate_not_found_explains_where_to_get_it(nowhere):
    with pytest.raises(DataNotFoundError) as error:
        bloodcells.locate()
    message = str(error.value)
    for text in ("paultimothymooney/blood-cells", "kaggle datasets download",
                 "dhruvp/wbc-classification", "--data", DATA_ENV_VAR,
                 "dataset2-master/images/TRAIN",
                 str(nowhere / "home" / "data" / "blood-cells")):
        assert text in message
    assert "shared" not in message                              # no folder of the project's CI
    with pytest.raises(FileNotFoundError):                      # DataNotFoundError is one
        bloodcells.load_data("TRAIN", progress=False)


def test_locate_wrong_argument_or_environment_names_it(nowhere, monkeypatch):
    wrong = nowhere / "wrong"
    wrong.mkdir()
    with pytest.raises(DataNotFoundError, match=f"path argument.*{re.escape(str(wrong))}"):
        bloodcells.locate(wrong)
    monkeypatch.setenv(DATA_ENV_VAR, str(wrong))
    with pytest.raises(DataNotFoundError, match=f"{DATA_ENV_VAR} points at {re.escape(str(wrong))}"):
        bloodcells.locate()


@pytest.mark.parametrize("layout", ["dataset2-master/images", "images", "."])
def test_locate_accepts_the_three_layouts(nowhere, layout):
    root = nowhere / "archive"
    (root / layout / "TRAIN").mkdir(parents=True)
    assert bloodcells.locate(root) == root.resolve()
    assert bloodcells.images_dir(root) == (root / layout).resolve()
    assert bloodcells.split_dir("TRAIN", root) == (root / layout / "TRAIN").resolve()


@pytest.mark.parametrize("layout", ["dataset2-master/dataset2-master/images",
                                    "archive/dataset2-master/images", "data/images"])
def test_locate_refuses_other_layouts(nowhere, layout):
    root = nowhere / "archive"
    (root / layout / "TRAIN").mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match="does not hold the blood-cell images"):
        bloodcells.locate(root)


def test_locate_order_environment_then_defaults(nowhere, monkeypatch):
    beside = nowhere / "shared" / "blood-cells"                # ../shared/blood-cells from cwd:
    (beside / "dataset2-master" / "images" / "TRAIN").mkdir(parents=True)   # not a default
    with pytest.raises(DataNotFoundError):
        bloodcells.locate()
    home = nowhere / "home" / "data" / "blood-cells"           # the default: ~/data/blood-cells
    (home / "images" / "TRAIN").mkdir(parents=True)
    assert bloodcells.locate() == home.resolve()
    pointed = nowhere / "elsewhere" / "dataset2-master"       # pointing at dataset2-master itself
    (pointed / "images" / "TEST").mkdir(parents=True)
    monkeypatch.setenv(DATA_ENV_VAR, str(pointed))
    assert bloodcells.locate() == pointed.resolve()          # the variable beats the default
    assert bloodcells.locate(beside) == beside.resolve()     # the argument beats the variable


def test_labels_csv_path(nowhere):
    root = nowhere / "archive"
    (root / "dataset2-master" / "images" / "TRAIN").mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match="labels.csv not found"):
        bloodcells.labels_csv_path(root)
    (root / "dataset-master").mkdir()
    (root / "dataset-master" / "labels.csv").write_text(",Image,Category\n")
    assert bloodcells.labels_csv_path(root) == root.resolve() / "dataset-master" / "labels.csv"


# ----------------------------------------------------------------------------
# PBC
# ----------------------------------------------------------------------------

PER_CLASS_AND_SPLIT = 2


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_rows(path, rows, columns=("class", "file", "split", "md5_of_original")):
    out = text_io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(out.getvalue())


@pytest.fixture
def pbc_copy(pbc_dir, tmp_path):
    """``tmp_path/pbc``: the first 2 images of each class in each split, and their splits.csv."""
    chosen = {}
    for row in sorted(read_rows(pbc_dir / "splits.csv"), key=lambda row: row["file"]):
        key = (row["class"], row["split"])
        if len(chosen.setdefault(key, [])) < PER_CLASS_AND_SPLIT:
            chosen[key].append(row)
    rows = [row for name in pbc.CLASSES for split in pbc.SPLITS for row in chosen[(name, split)]]
    root = tmp_path / "pbc"
    for row in rows:
        (root / "images" / row["class"]).mkdir(parents=True, exist_ok=True)
        shutil.copy2(pbc_dir / "images" / row["class"] / row["file"],
                     root / "images" / row["class"] / row["file"])
    write_rows(root / "splits.csv", rows)
    return root


def expected_files(root, split, classes=pbc.CLASSES):
    """The files of ``split`` as splits.csv lists them: class by class, sorted by name."""
    rows = read_rows(root / "splits.csv")
    return [root / "images" / name / file for name in classes
            for file in sorted(row["file"] for row in rows
                               if row["class"] == name and row["split"] == split)]


def test_pbc_shapes_at_each_size(pbc_copy):
    n = PER_CLASS_AND_SPLIT * len(pbc.CLASSES)
    full = None
    for size in (128, 64, 32):
        images = pbc.load_data("train", pbc_copy, size, progress=False)
        assert isinstance(images, ImageSet)
        assert images.x.shape == (n, 3, size, size) and images.x.dtype == np.float32
        assert images.y.dtype == np.int64 and images.classes == list(pbc.CLASSES)
        np.testing.assert_array_equal(images.y, np.repeat(np.arange(8), PER_CLASS_AND_SPLIT))
        assert 0.0 <= images.x.min() and images.x.max() <= 1.0 and images.x.std() > 0.05
        assert images.skipped == []
        if full is None:
            full = images.x
        else:                                               # block means of the 128-pixel images
            np.testing.assert_allclose(images.x, downscale(full, 128 // size), atol=1e-6)
    for path, row in zip(images.paths, images.x):
        np.testing.assert_array_equal(row, preprocess_image(read_rgb_image(path), None, 4))


def test_pbc_split_is_the_one_given(pbc_copy):
    seen = []
    for split in pbc.SPLITS:
        images = pbc.load_data(split, pbc_copy, 32, progress=False)
        assert images.paths == expected_files(pbc_copy, split)
        assert [pbc.CLASSES[label] for label in images.y] == [p.parent.name for p in images.paths]
        seen += images.paths
    assert len(seen) == len(set(seen)) == len(read_rows(pbc_copy / "splits.csv"))
    assert pbc.class_counts("val", pbc_copy) == dict.fromkeys(pbc.CLASSES, PER_CLASS_AND_SPLIT)


def test_pbc_class_subset_is_relabelled_in_the_order_given(pbc_copy):
    everything = pbc.load_data("test", pbc_copy, 64, progress=False)
    subset = pbc.load_data("test", pbc_copy, 64, classes=["neutrophil", "eosinophil"],
                           progress=False)
    assert subset.classes == ["neutrophil", "eosinophil"]
    np.testing.assert_array_equal(subset.y, np.repeat([0, 1], PER_CLASS_AND_SPLIT))
    assert subset.paths == expected_files(pbc_copy, "test", ["neutrophil", "eosinophil"])
    for row, path in zip(subset.x, subset.paths):
        np.testing.assert_array_equal(row, everything.x[everything.paths.index(path)])


@pytest.mark.parametrize("arguments, message", [
    (dict(size=48), "size must divide 128"),
    (dict(size=0), "size"),
    (dict(split="valid"), "valid"),
    (dict(classes=["dog"]), "classes must be distinct names"),
    (dict(classes=["monocyte", "monocyte"]), "classes must be distinct names"),
    (dict(classes=[]), "classes must be distinct names"),
])
def test_pbc_bad_arguments_are_value_errors(pbc_copy, arguments, message):
    arguments = {"split": "train", **arguments}
    with pytest.raises(ValueError, match=message):
        pbc.load_data(path=pbc_copy, progress=False, **arguments)


def test_pbc_missing_folder_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv(pbc.DATA_ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    for call in (lambda: pbc.load_data("train", tmp_path / "nowhere", progress=False),
                 lambda: pbc.load_data("train", progress=False)):
        with pytest.raises(DataNotFoundError) as error:
            call()
        message = str(error.value)
        for text in ("Mendeley", "doi:10.17632/snkd93bnjr.1", "splits.csv", pbc.DATA_ENV_VAR,
                     "CC BY 4.0"):
            assert text in message
    with pytest.raises(DataNotFoundError, match=re.escape(str(tmp_path / "nowhere"))):
        pbc.load_data("train", tmp_path / "nowhere", progress=False)
    with pytest.raises(DataNotFoundError, match=re.escape(str(Path.home() / "data" / "pbc"))) \
            as error:
        pbc.load_data("train", progress=False)
    assert "shared" not in str(error.value)                    # no folder of the project's CI


def test_pbc_missing_class_folder_is_named(pbc_copy):
    shutil.rmtree(pbc_copy / "images" / "platelet")
    with pytest.raises(DataNotFoundError, match="platelet missing"):
        pbc.load_data("train", pbc_copy, progress=False)


def damage(kind, root):
    """Damage ``root/splits.csv`` one way; return what the error must say."""
    path = root / "splits.csv"
    rows = read_rows(path)
    if kind == "binary":
        path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x81" + bytes(range(256)))
        return "not UTF-8 text"
    if kind == "missing column":
        write_rows(path, rows, columns=("class", "file", "md5_of_original"))
        return re.escape("lacks the column(s) ['split']")
    if kind == "unknown class":
        rows[3]["class"] = "basofil"
        write_rows(path, rows)
        return "line 5: unknown class 'basofil'"
    if kind == "unknown split":
        rows[0]["split"] = "validation"
        write_rows(path, rows)
        return "line 2: unknown split 'validation'"
    if kind == "duplicate row":
        write_rows(path, rows + [rows[7]])
        return f"line {len(rows) + 2}: {rows[7]['class']}/{rows[7]['file']} is listed twice"
    if kind == "short row":
        path.write_text(path.read_text() + "monocyte,MO_1.jpg\n")
        return f"line {len(rows) + 2}: expected 4 columns"
    if kind == "no rows":
        write_rows(path, [])
        return "lists no image"
    if kind == "file that does not exist":
        write_rows(path, rows + [dict(rows[0], file="BA_000000.jpg")])
        return re.escape("1 listed image(s) missing (e.g. ['BA_000000.jpg'])")
    if kind == "image not listed":
        gone = rows.pop(2)
        write_rows(path, rows)
        return re.escape(f"1 image(s) not listed (e.g. [{gone['file']!r}])")
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["binary", "missing column", "unknown class", "unknown split",
                                  "duplicate row", "short row", "no rows",
                                  "file that does not exist", "image not listed"])
def test_pbc_damaged_splits_csv_is_a_data_error_naming_the_problem(pbc_copy, kind):
    message = damage(kind, pbc_copy)
    with pytest.raises(DataError, match=message) as error:
        pbc.load_data("train", pbc_copy, progress=False)
    assert str(pbc_copy / "splits.csv") in str(error.value)
    assert isinstance(error.value, ValueError)


def test_pbc_unreadable_image_is_an_error_or_skipped(pbc_copy):
    broken = expected_files(pbc_copy, "train")[5]
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    with pytest.raises(DataError, match=f"1 PBC image.*{re.escape(str(broken))}.*strict=False"):
        pbc.load_data("train", pbc_copy, 64, progress=False)
    for cache in (True, False):
        with pytest.warns(SkippedImagesWarning, match="skipped 1 of 16"):
            images = pbc.load_data("train", pbc_copy, 64, strict=False, cache=cache,
                                   progress=False)
        assert len(images) == 15 and broken not in images.paths
        assert [path for path, _ in images.skipped] == [broken]
        assert "cannot decode" in images.skipped[0][1]
    other = pbc.load_data("val", pbc_copy, 64, progress=False)  # other splits are unaffected
    assert len(other) == 16 and other.skipped == []


def test_pbc_cache_is_used_and_rebuilt_after_the_content_changes(pbc_copy, tmp_path, monkeypatch):
    settings = dict(split="train", path=pbc_copy, size=64, cache_dir=tmp_path / "cache",
                    progress=False)
    first = pbc.load_data(**settings)
    assert len(list((tmp_path / "cache").glob("pbc-train-all-*.npz"))) == 1
    with monkeypatch.context() as patch:
        forbid_decoding(patch)
        np.testing.assert_array_equal(pbc.load_data(**settings).x, first.x)

    target, replacement = sorted(first.paths[:2], key=lambda path: -path.stat().st_size)
    replace_keeping_name_size_and_mtime(target, replacement.read_bytes())
    after = pbc.load_data(**settings)
    row = first.paths.index(target)
    assert after.paths == first.paths
    assert not np.array_equal(after.x[row], first.x[row])
    np.testing.assert_array_equal(after.x, pbc.load_data(**dict(settings, cache=False)).x)
    np.testing.assert_array_equal(after.x[row], after.x[first.paths.index(replacement)])
    assert len(list((tmp_path / "cache").glob("pbc-train-all-*.npz"))) == 2
