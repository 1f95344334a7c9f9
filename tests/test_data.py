"""Tests of numcnn.data: image folders, preprocessing, augmentation, the blood-cell set.

Real-data tests use small subsets (max_per_class) of the blood-cell archive,
found through NUMCNN_BLOODCELLS or ``<repo>/../shared/blood-cells``; they skip
when it is absent. Damaged-file tests copy a few real JPEGs into tmp_path.
"""

import os
import re
import shutil
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from skimage import color, io, transform

import numcnn
from numcnn.data import symmetries as batch_symmetries
from numcnn.data import (CLASSES, DATA_ENV_VAR, ImageError, ImageSet, MeanImage,
                         SkippedImagesWarning, block_sums, class_count_table,
                         count_per_class, crop_to_stain, downscale, find_stain_centre,
                         images_dir, labels_csv_path, list_image_files, load_bloodcells,
                         load_image_folder, locate_bloodcells, random_flips,
                         SYMMETRY_COUNT, colour_jitter, predict_symmetric,
                         read_original_labels, read_rgb_image, subsample_per_class,
                         to_unit_range)

REPO_ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bloodcells_dir():
    """The real archive: $NUMCNN_BLOODCELLS, else <repo>/../shared/blood-cells."""
    place = Path(os.environ.get(DATA_ENV_VAR) or REPO_ROOT.parent / "shared" / "blood-cells")
    try:
        return locate_bloodcells(place)
    except FileNotFoundError:
        pytest.skip(f"blood-cell archive not found at {place} (set {DATA_ENV_VAR} to run these tests)")


@pytest.fixture(scope="module")
def sample_jpegs(bloodcells_dir):
    """Two real JPEG paths per class (from TEST_SIMPLE), as {class: [Path, Path]}."""
    folder = images_dir(bloodcells_dir) / "TEST_SIMPLE"
    return {name: sorted((folder / name).glob("*.jpeg"))[:2] for name in CLASSES}


def make_split(root, sample_jpegs, classes=CLASSES):
    """Build root/images/TRAIN/CLASS/ with copies of two real JPEGs per class."""
    split = root / "images" / "TRAIN"
    for name in classes:
        (split / name).mkdir(parents=True)
        for path in sample_jpegs[name]:
            shutil.copy(path, split / name / path.name)
    return split


@pytest.fixture(autouse=True)
def no_stray_environment(monkeypatch):
    """Tests choose their own cache and data places."""
    monkeypatch.delenv("NUMCNN_CACHE", raising=False)


# ----------------------------------------------------------------------------
# Loading the real data
# ----------------------------------------------------------------------------

def test_load_shapes_dtypes_range_and_label_order(bloodcells_dir):
    images = load_bloodcells(bloodcells_dir, "TRAIN", crop=128, factor=2,
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
    images = load_bloodcells(bloodcells_dir, "TEST", crop=None, factor=4,
                             max_per_class=2, cache=False, progress=False)
    assert images.x.shape == (8, 3, 60, 80)


def test_loader_equals_decode_crop_downscale(bloodcells_dir):
    images = load_bloodcells(bloodcells_dir, "TEST", crop=128, factor=2,
                             max_per_class=2, cache=False, progress=False)
    for row, path in zip(images.x, images.paths):
        hwc = crop_to_stain(read_rgb_image(path), 128)
        expected = downscale(to_unit_range(hwc.transpose(2, 0, 1)), 2)
        np.testing.assert_allclose(row, expected, rtol=0, atol=1e-6)


def test_subset_is_seeded_and_sorted(bloodcells_dir):
    def subset(seed):
        return load_bloodcells(bloodcells_dir, "TEST_SIMPLE", crop=None, factor=8,
                               max_per_class=3, seed=seed, cache=False, progress=False).paths
    assert subset(1) == subset(1)
    assert subset(1) != subset(2)
    names = [path.name for path in subset(1)[9:]]               # the 3 neutrophils
    assert names == sorted(names)


def test_count_per_class_matches_a_directory_listing(bloodcells_dir):
    folder = images_dir(bloodcells_dir) / "TEST"
    expected = {name: len([f for f in os.listdir(folder / name) if f.endswith(".jpeg")])
                for name in CLASSES}
    assert count_per_class("TEST", bloodcells_dir) == expected
    table = class_count_table(("TRAIN", "TEST"), bloodcells_dir)
    assert table.splitlines()[0].split() == ["class", "TRAIN", "TEST"]
    assert table.splitlines()[-1].split()[2] == str(sum(expected.values()))


def test_unknown_split_is_an_error(bloodcells_dir):
    with pytest.raises(ValueError, match="VALID"):
        load_bloodcells(bloodcells_dir, "VALID", progress=False, cache=False)


# ----------------------------------------------------------------------------
# The cache
# ----------------------------------------------------------------------------

def test_cache_hit_gives_identical_arrays(bloodcells_dir, tmp_path):
    settings = dict(split="TEST", crop=128, factor=2, max_per_class=3, seed=0, progress=False)
    first = load_bloodcells(bloodcells_dir, cache_dir=tmp_path, **settings)
    cache_files = list(tmp_path.glob("*.npz"))
    assert len(cache_files) == 1
    second = load_bloodcells(bloodcells_dir, cache_dir=tmp_path, **settings)
    uncached = load_bloodcells(bloodcells_dir, cache=False, **settings)
    for other in (second, uncached):
        np.testing.assert_array_equal(first.x, other.x)         # exactly, bit for bit
        np.testing.assert_array_equal(first.y, other.y)
        assert other.x.dtype == np.float32 and other.y.dtype == np.int64
        assert first.paths == other.paths
    load_bloodcells(bloodcells_dir, cache_dir=tmp_path, **dict(settings, factor=4))
    assert len(list(tmp_path.glob("*.npz"))) == 2               # other settings, other file


def test_corrupt_cache_is_rebuilt_with_a_warning(bloodcells_dir, tmp_path):
    settings = dict(split="TEST_SIMPLE", crop=128, factor=4, max_per_class=2, progress=False)
    good = load_bloodcells(bloodcells_dir, cache_dir=tmp_path, **settings)
    (cache_file,) = tmp_path.glob("*.npz")
    cache_file.write_bytes(cache_file.read_bytes()[:1000])      # truncated
    with pytest.warns(UserWarning, match="unreadable.*rebuilding"):
        rebuilt = load_bloodcells(bloodcells_dir, cache_dir=tmp_path, **settings)
    np.testing.assert_array_equal(good.x, rebuilt.x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                          # now a clean hit
        load_bloodcells(bloodcells_dir, cache_dir=tmp_path, **settings)


def test_unwritable_cache_only_warns(bloodcells_dir, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.warns(UserWarning, match="could not write the cache"):
        images = load_bloodcells(bloodcells_dir, "TEST_SIMPLE", crop=128, factor=4,
                                 max_per_class=1, cache_dir=not_a_folder, progress=False)
    assert len(images) == 4


# ----------------------------------------------------------------------------
# Damaged files and folder errors
# ----------------------------------------------------------------------------

def test_bad_images_are_skipped_and_counted(sample_jpegs, tmp_path):
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
        images = load_bloodcells(tmp_path / "data", "TRAIN", crop=128, factor=2,
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
        cached = load_bloodcells(tmp_path / "data", "TRAIN", crop=128, factor=2,
                                 cache_dir=tmp_path / "cache", progress=False)
    assert cached.skipped == images.skipped


def test_generic_image_folder(sample_jpegs, tmp_path):
    split = make_split(tmp_path, sample_jpegs, classes=("LYMPHOCYTE", "MONOCYTE"))
    (split / "MONOCYTE" / "notes.txt").write_text("not an image")     # ignored
    (split / ".ipynb_checkpoints").mkdir()                            # hidden: ignored
    images = load_image_folder(split, factor=8)
    assert images.classes == ["LYMPHOCYTE", "MONOCYTE"]
    assert images.x.shape == (4, 3, 30, 40) and images.x.dtype == np.float32
    with pytest.raises(ImageError, match="cannot decode"):
        read_rgb_image(split / "MONOCYTE" / "notes.txt")


def test_missing_empty_and_extra_class_folders(sample_jpegs, tmp_path):
    split = make_split(tmp_path, sample_jpegs, classes=CLASSES[:3])
    with pytest.raises(FileNotFoundError, match=f"NEUTROPHIL missing from {re.escape(str(split))}"):
        list_image_files(split, CLASSES)
    (split / "NEUTROPHIL").mkdir()
    with pytest.raises(FileNotFoundError, match=r"NEUTROPHIL holds no image files"):
        list_image_files(split, CLASSES)
    shutil.copy(sample_jpegs["NEUTROPHIL"][0], split / "NEUTROPHIL")
    (split / "BASOPHIL").mkdir()
    with pytest.raises(ValueError, match="unexpected folder BASOPHIL.*allow_extra=True"):
        list_image_files(split, CLASSES)
    classes, paths, labels = list_image_files(split, CLASSES, allow_extra=True)
    assert classes == list(CLASSES) and len(paths) == 7
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 2, 2, 3])


def test_subsample_per_class():
    labels = np.repeat([0, 1, 2], [10, 2, 5])
    kept = subsample_per_class(labels, 3, seed=4)
    assert np.bincount(labels[kept]).tolist() == [3, 2, 3]
    assert np.all(np.diff(kept) > 0)                            # original order kept
    np.testing.assert_array_equal(kept, subsample_per_class(labels, 3, seed=4))


# ----------------------------------------------------------------------------
# Locating the archive
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
    with pytest.raises(FileNotFoundError) as error:
        locate_bloodcells()
    message = str(error.value)
    for text in ("paultimothymooney/blood-cells", "kaggle datasets download",
                 "dhruvp/wbc-classification", "--data", DATA_ENV_VAR,
                 "dataset2-master/images/TRAIN",
                 str(nowhere / "shared" / "blood-cells"),
                 str(nowhere / "home" / "data" / "blood-cells")):
        assert text in message


def test_locate_wrong_argument_or_environment_names_it(nowhere, monkeypatch):
    wrong = nowhere / "wrong"
    wrong.mkdir()
    with pytest.raises(FileNotFoundError, match=f"data_dir argument.*{re.escape(str(wrong))}"):
        locate_bloodcells(wrong)
    monkeypatch.setenv(DATA_ENV_VAR, str(wrong))
    with pytest.raises(FileNotFoundError, match=f"{DATA_ENV_VAR} points at {re.escape(str(wrong))}"):
        locate_bloodcells()


@pytest.mark.parametrize("layout", ["dataset2-master/images", "images",
                                    "dataset2-master/dataset2-master/images"])
def test_locate_accepts_archive_layouts(nowhere, layout):
    root = nowhere / "archive"
    (root / layout / "TRAIN").mkdir(parents=True)
    assert locate_bloodcells(root) == root.resolve()


def test_locate_order_environment_then_defaults(nowhere, monkeypatch):
    default = nowhere / "shared" / "blood-cells"               # ../shared/blood-cells from cwd
    (default / "dataset2-master" / "images" / "TRAIN").mkdir(parents=True)
    assert locate_bloodcells() == default.resolve()
    pointed = nowhere / "elsewhere" / "dataset2-master"       # pointing at dataset2-master itself
    (pointed / "images" / "TEST").mkdir(parents=True)
    monkeypatch.setenv(DATA_ENV_VAR, str(pointed))
    assert locate_bloodcells() == pointed.resolve()


# ----------------------------------------------------------------------------
# labels.csv
# ----------------------------------------------------------------------------

def test_original_labels_on_the_real_file(bloodcells_dir):
    path = labels_csv_path(bloodcells_dir)
    labels = read_original_labels(path)

    # The same counts by another route: raw bytes, CRLF split, a regex per line.
    lines = path.read_bytes().decode().split("\r\n")[1:]
    expected_counts, expected_unknown, multi, empty = Counter(), Counter(), 0, 0
    for line in filter(None, lines):
        category = re.fullmatch(r",\d+,(.*)", line).group(1)
        names = set(re.findall(r"[A-Z]+", category))
        if not names:
            empty += 1
        elif len(names) > 1:
            multi += 1
        elif names <= set(CLASSES):
            expected_counts[names.pop()] += 1
        else:
            expected_unknown[names.pop()] += 1
    assert labels.counts == expected_counts
    assert labels.unknown == expected_unknown
    assert labels.n_multi_label == multi
    assert labels.empty == empty
    assert labels.bad_lines == []
    assert labels.n_rows == len(list(filter(None, lines)))
    assert "BASOPHIL" in labels.unknown and "NEUTROPHIL" in labels.summary()


def test_original_labels_on_a_messy_file(tmp_path):
    rows = [",Image,Category",
            ",0,NEUTROPHIL",
            ",1,",
            ',2,"EOSINOPHIL, EOSINOPHIL"',
            ',3,"NEUTROPHIL,LYMPHOCYTE"',
            ',4,"NEUTROPHIL, LYMPHOCYTE"',
            ",5,BASOPHIL",
            ",6",                                   # too few columns
            "",
            ",8,MONOCYTE,extra",                    # too many columns
            ",9, eosinophil "]
    path = tmp_path / "labels.csv"
    path.write_bytes("\r\n".join(rows).encode())    # CRLF, no newline at the end
    with pytest.warns(UserWarning, match=r"labels\.csv.*line\(s\) 8, 10"):
        labels = read_original_labels(path)
    assert labels.counts == Counter({"NEUTROPHIL": 1, "EOSINOPHIL": 2})
    assert labels.unknown == Counter({"BASOPHIL": 1})
    assert labels.multi_label == Counter({"NEUTROPHIL, LYMPHOCYTE": 2})
    assert labels.empty == 1
    assert [number for number, _ in labels.bad_lines] == [8, 10]
    assert labels.n_rows == 7


# ----------------------------------------------------------------------------
# Preprocessing
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_downscale_equals_skimage(dtype):
    x = np.random.default_rng(0).random((2, 3, 12, 18)).astype(dtype)
    for factor in (1, 2, 3, 6):
        expected = transform.downscale_local_mean(x, (1, 1, factor, factor))
        result = downscale(x, factor)
        assert result.shape == (2, 3, 12 // factor, 18 // factor) and result.dtype == dtype
        np.testing.assert_allclose(result, expected, rtol=1e-6, atol=1e-7)


def test_downscale_rejects_indivisible_shapes():
    with pytest.raises(ValueError, match=r"\(1, 3, 10, 12\).*factor 4.*H=10"):
        downscale(np.zeros((1, 3, 10, 12), np.float32), 4)


def test_block_sums_are_exact_block_means():
    x = np.random.default_rng(1).integers(0, 256, size=(2, 3, 8, 8), dtype=np.uint8)
    sums = block_sums(x, 4)
    assert sums.dtype == np.uint16
    np.testing.assert_array_equal(sums / 16, downscale(x.astype(np.float64), 4))
    assert block_sums(x, 1).dtype == np.uint8
    np.testing.assert_allclose(to_unit_range(sums, 255 * 16), downscale(x / 255.0, 4), atol=1e-7)


def test_mean_image_centres_the_training_set():
    rng = np.random.default_rng(2)
    x_train = rng.random((50, 3, 4, 5), dtype=np.float32) + np.arange(5, dtype=np.float32)
    centre = MeanImage()
    centred = centre.fit_transform(x_train)
    assert centre.mean.shape == (3, 4, 5) and centred.dtype == np.float32
    np.testing.assert_allclose(centred.mean(axis=0), 0, atol=1e-6)
    x_test = rng.random((7, 3, 4, 5), dtype=np.float32)
    np.testing.assert_allclose(centre.transform(x_test), x_test - centre.mean)
    with pytest.raises(ValueError, match=r"\(3, 4, 5\).*\(7, 3, 5, 4\)"):
        centre.transform(np.zeros((7, 3, 5, 4), np.float32))
    with pytest.raises(RuntimeError):
        MeanImage().transform(x_test)


def purple_disk_image(row, col, radius=20):
    """A pale synthetic smear (240x320 HWC uint8) with one purple disk."""
    image = np.full((240, 320, 3), (225, 215, 210), np.uint8)
    rows, cols = np.mgrid[:240, :320]
    image[(rows - row) ** 2 + (cols - col) ** 2 <= radius ** 2] = (110, 60, 190)
    return image


def test_crop_to_stain_on_synthetic_images():
    centre = find_stain_centre(purple_disk_image(100, 200))
    assert abs(centre[0] - 100) <= 1 and abs(centre[1] - 200) <= 1
    crop = crop_to_stain(purple_disk_image(100, 200), 128)
    assert crop.shape == (128, 128, 3) and crop.dtype == np.uint8
    np.testing.assert_array_equal(crop[64, 64], (110, 60, 190))          # disk in the middle
    near_corner = purple_disk_image(15, 310)
    corner = crop_to_stain(near_corner, 128)                               # still centred on
    np.testing.assert_array_equal(corner[64, 64], (110, 60, 190))         # the cell, and
    row, col = (int(round(c - 64)) for c in find_stain_centre(near_corner))
    padded = np.pad(near_corner, ((128, 128), (128, 128), (0, 0)))         # black outside
    np.testing.assert_array_equal(corner, padded[row + 128:row + 256, col + 128:col + 256])
    assert (corner[:30] == 0).all() and (corner[:, -30:] == 0).all()
    floats = crop_to_stain(purple_disk_image(100, 200) / 255.0, 128)       # float input too
    np.testing.assert_array_equal(floats * 255, crop.astype(np.float64))
    blank = np.full((240, 320, 3), 220, np.uint8)
    assert find_stain_centre(blank) is None
    assert crop_to_stain(blank, 128).shape == (128, 128, 3)                # image centre


def test_crop_to_stain_keeps_the_purple_cell(sample_jpegs):
    for paths in sample_jpegs.values():
        for path in paths:
            crop = crop_to_stain(read_rgb_image(path), 128).astype(int)
            purple = (crop[..., 2] - crop[..., 0] > 30) & (crop[..., 2] - crop[..., 1] > 50)
            assert purple.sum() > 500, path


# ----------------------------------------------------------------------------
# Augmentation
# ----------------------------------------------------------------------------

def symmetries(image):
    """The 8 flips/rotations of a square CHW image."""
    turns = [np.rot90(image, k, axes=(1, 2)) for k in range(4)]
    return turns + [turn[:, :, ::-1] for turn in turns]


def test_random_flips_are_seeded_and_only_move_pixels():
    x = np.random.default_rng(3).random((16, 3, 6, 6), dtype=np.float32)
    before = x.copy()
    first = random_flips(x, np.random.default_rng(7), rotate90=True)
    again = random_flips(x, np.random.default_rng(7), rotate90=True)
    other = random_flips(x, np.random.default_rng(8), rotate90=True)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    np.testing.assert_array_equal(x, before)                               # input untouched
    assert first.shape == x.shape and first.dtype == x.dtype
    for original, flipped in zip(x, first):
        np.testing.assert_array_equal(np.sort(original, axis=None), np.sort(flipped, axis=None))
        assert any(np.array_equal(flipped, candidate) for candidate in symmetries(original))


def test_symmetries_give_each_of_the_eight_views_once():
    x = np.random.default_rng(5).random((3, 2, 5, 5), dtype=np.float32)
    views = list(batch_symmetries(x))
    assert len(views) == SYMMETRY_COUNT == 8
    np.testing.assert_array_equal(views[0], x)
    for view in views:
        assert view.shape == x.shape and view.flags.c_contiguous
    for n in range(len(x)):
        expected = symmetries(x[n])
        for view in views:                                   # each view is one symmetry ...
            assert sum(np.array_equal(view[n], e) for e in expected) == 1
        for e in expected:                                   # ... and each symmetry is a view
            assert sum(np.array_equal(view[n], e) for view in views) == 1
    with pytest.raises(ValueError, match="square"):
        list(batch_symmetries(x[:, :, :4, :]))


def test_colour_jitter_is_a_seeded_gain_and_shift_per_image_and_channel():
    x = np.random.default_rng(6).standard_normal((40, 3, 4, 4)).astype(np.float32)
    before = x.copy()
    out = colour_jitter(x, np.random.default_rng(1), 0.1)
    np.testing.assert_array_equal(out, colour_jitter(x, np.random.default_rng(1), 0.1))
    assert not np.array_equal(out, colour_jitter(x, np.random.default_rng(2), 0.1))
    np.testing.assert_array_equal(x, before)
    assert out.dtype == np.float32 and out.shape == x.shape
    # recover gain and shift of every (image, channel) by least squares: exact affine maps
    gains, shifts = np.empty((40, 3)), np.empty((40, 3))
    for n in range(40):
        for c in range(3):
            a = np.stack([x[n, c].ravel(), np.ones(16)], axis=1).astype(np.float64)
            (gains[n, c], shifts[n, c]), residual, *_ = np.linalg.lstsq(a, out[n, c].ravel(),
                                                                       rcond=None)
            assert residual.size == 0 or residual[0] < 1e-9
    assert 0.9 - 1e-6 <= gains.min() and gains.max() <= 1.1 + 1e-6
    assert -0.05 - 1e-6 <= shifts.min() and shifts.max() <= 0.05 + 1e-6
    assert gains.std() > 0.03 and shifts.std() > 0.015       # really random, not a constant
    assert len(np.unique(gains.round(6))) == 120             # each image and channel its own
    np.testing.assert_array_equal(colour_jitter(x, np.random.default_rng(1), 0.0), x)


def test_colour_jitter_rejects_bad_input():
    x = np.zeros((2, 3, 4, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="strength"):
        colour_jitter(x, np.random.default_rng(0), 1.0)
    with pytest.raises(TypeError, match="floating"):
        colour_jitter(x.astype(np.uint8), np.random.default_rng(0), 0.1)
    with pytest.raises(ValueError, match="N, C, H, W"):
        colour_jitter(x[0], np.random.default_rng(0), 0.1)
    with pytest.raises(TypeError, match="Generator"):
        colour_jitter(x, np.random, 0.1)


def _small_classifier(seed=0):
    from numcnn.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Softmax
    return numcnn.Sequential([Conv2D(3, 4, 3, padding=1), ReLU(), MaxPool2D(2), Flatten(),
                              Dense(4 * 4 * 4, 3), Softmax()], seed=seed, input_shape=(3, 8, 8))


def test_predict_symmetric_is_the_mean_over_views_and_ignores_orientation():
    model = _small_classifier()
    x = np.random.default_rng(9).standard_normal((5, 3, 8, 8)).astype(np.float32)
    averaged = predict_symmetric(model, x, batch_size=2)
    expected = np.mean([model.predict(view) for view in batch_symmetries(x)], axis=0)
    np.testing.assert_allclose(averaged, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(averaged.sum(axis=1), 1.0, rtol=1e-5)
    assert averaged.dtype == np.float32
    # the same cell, turned or mirrored, gets the same answer (a single view does not)
    turned = np.ascontiguousarray(np.rot90(x, 1, axes=(2, 3))[:, :, :, ::-1])
    np.testing.assert_allclose(predict_symmetric(model, turned), averaged, rtol=1e-4, atol=1e-6)
    assert not np.allclose(model.predict(turned), model.predict(x), rtol=1e-4, atol=1e-6)


def test_random_flips_options_and_errors():
    x = np.random.default_rng(4).random((32, 3, 4, 6), dtype=np.float32)
    only_left_right = random_flips(x, np.random.default_rng(0), vertical=False)
    flipped = np.array([not np.array_equal(a, b) for a, b in zip(x, only_left_right)])
    assert 0 < flipped.sum() < 32
    np.testing.assert_array_equal(only_left_right[flipped], x[flipped][:, :, :, ::-1])
    with pytest.raises(ValueError, match="square"):
        random_flips(x, np.random.default_rng(0), rotate90=True)
    with pytest.raises(TypeError, match="Generator"):
        random_flips(x, np.random)
