"""Tests of numcnn.data, the generic image tools: folders, decoding, transforms, augmentation.

The loaders of the real datasets are tested in test_datasets.py; the stain crop
and labels.csv of the blood-cell study in examples/tests/. A few tests here
copy real JPEGs of the blood-cell archive into tmp_path (found through
NUMCNN_BLOODCELLS or ``<repo>/../shared/blood-cells``; they skip when it is absent).
"""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from skimage import transform

import numcnn
from numcnn.data import symmetries as batch_symmetries
from numcnn.data import (SYMMETRY_COUNT, CentreCrop, ImageError, ImageSet, MeanImage,
                         block_sums, centre_crop, colour_jitter, crop_and_flip, crop_around,
                         decode_images, downscale, list_image_files, load_image_folder,
                         predict_symmetric, prepare_image, preprocess_image, random_crop,
                         random_flips, read_rgb_image, subsample_per_class, to_unit_range)
from numcnn.datasets import bloodcells
from numcnn.errors import DataError, DataNotFoundError

CLASSES = bloodcells.CLASSES


# ----------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------

def test_the_cache_folder_follows_the_platform_unless_numcnn_cache_says(tmp_path, monkeypatch):
    import platform

    import platformdirs
    from numcnn.data import default_cache_dir
    assert default_cache_dir() == tmp_path / "default-cache"            # NUMCNN_CACHE wins
    monkeypatch.delenv("NUMCNN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == Path(platformdirs.user_cache_dir("numcnn", appauthor=False))
    if platform.system() == "Linux":                                     # the XDG convention
        assert default_cache_dir() == tmp_path / "xdg" / "numcnn"


# ----------------------------------------------------------------------------
# Folders of images
# ----------------------------------------------------------------------------

def test_generic_image_folder(sample_jpegs, make_split, tmp_path):
    split = make_split(tmp_path, sample_jpegs, classes=("LYMPHOCYTE", "MONOCYTE"))
    (split / "MONOCYTE" / "notes.txt").write_text("not an image")     # ignored
    (split / ".ipynb_checkpoints").mkdir()                            # hidden: ignored
    images = load_image_folder(split, factor=8)
    assert isinstance(images, ImageSet)
    assert images.classes == ["LYMPHOCYTE", "MONOCYTE"]
    assert images.x.shape == (4, 3, 30, 40) and images.x.dtype == np.float32
    assert images.y.tolist() == [0, 0, 1, 1] and images.y.dtype == np.int64
    assert images.skipped == []
    with pytest.raises(ImageError, match="cannot decode"):
        read_rgb_image(split / "MONOCYTE" / "notes.txt")


def test_image_folder_rows_equal_one_image_preprocessed(sample_jpegs, make_split, tmp_path):
    """decode: the loader's row of a file is, bit for bit, that file through preprocess_image."""
    split = make_split(tmp_path, sample_jpegs, classes=("EOSINOPHIL", "NEUTROPHIL"))
    crop = CentreCrop(96)
    for cache in (False, True, True):                          # decoded, written, read back
        images = load_image_folder(split, transform=crop, factor=2, cache=cache,
                                   cache_dir=tmp_path / "cache")
        assert images.x.shape == (4, 3, 48, 48)
        for row, path in zip(images.x, images.paths):
            np.testing.assert_array_equal(row, preprocess_image(read_rgb_image(path), crop, 2))
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1


def test_decode_images_skips_and_names_unusable_files(sample_jpegs, tmp_path):
    good = sample_jpegs["MONOCYTE"][0]
    broken = tmp_path / "broken.jpeg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    sums, kept, skipped = decode_images([broken, good], factor=4)
    assert sums.shape == (1, 3, 60, 80) and sums.dtype == np.uint16 and kept == [1]
    assert skipped[0][0] == broken and "cannot decode" in skipped[0][1]
    np.testing.assert_array_equal(sums[0], prepare_image(read_rgb_image(good), None, 4))
    with pytest.raises(DataError, match="none of the 1 image files"):
        decode_images([broken])
    with pytest.raises(ValueError, match="RGB uint8"):
        preprocess_image(np.zeros((8, 8), np.uint8))


def test_missing_empty_and_extra_class_folders(sample_jpegs, make_split, tmp_path):
    split = make_split(tmp_path, sample_jpegs, classes=CLASSES[:3])
    with pytest.raises(DataNotFoundError, match=f"NEUTROPHIL missing from {re.escape(str(split))}"):
        list_image_files(split, CLASSES)
    (split / "NEUTROPHIL").mkdir()
    with pytest.raises(FileNotFoundError, match=r"NEUTROPHIL holds no image files"):
        list_image_files(split, CLASSES)
    shutil.copy(sample_jpegs["NEUTROPHIL"][0], split / "NEUTROPHIL")
    (split / "BASOPHIL").mkdir()
    with pytest.raises(DataError, match="unexpected folder BASOPHIL.*allow_extra=True"):
        list_image_files(split, CLASSES)
    with pytest.raises(ValueError):                             # DataError is a ValueError
        list_image_files(split, CLASSES)
    classes, paths, labels = list_image_files(split, CLASSES, allow_extra=True)
    assert classes == list(CLASSES) and len(paths) == 7
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 2, 2, 3])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_image_files(tmp_path / "nowhere")


def test_subsample_per_class():
    labels = np.repeat([0, 1, 2], [10, 2, 5])
    kept = subsample_per_class(labels, 3, seed=4)
    assert np.bincount(labels[kept]).tolist() == [3, 2, 3]
    assert np.all(np.diff(kept) > 0)                            # original order kept
    np.testing.assert_array_equal(kept, subsample_per_class(labels, 3, seed=4))


# ----------------------------------------------------------------------------
# Transforms
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


def test_crop_around_stays_centred_and_pads_with_zeros():
    image = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3) + 1     # no zero pixel
    inside = crop_around(image, (3, 4), 4)
    np.testing.assert_array_equal(inside, image[1:5, 2:6])
    corner = crop_around(image, (0, 7), 4)                     # centred on the corner pixel
    assert corner.shape == (4, 4, 3) and corner.dtype == np.uint8
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
    np.testing.assert_array_equal(corner, padded[4 - 2:4 + 2, 4 + 5:4 + 9])
    assert (corner[:2] == 0).all() and (corner[:, 3:] == 0).all()
    np.testing.assert_array_equal(corner[2:, :3], image[:2, 5:])


def test_centre_crop_transform_is_the_middle_window_with_a_cache_key():
    image = np.random.default_rng(3).integers(1, 256, size=(240, 320, 3), dtype=np.uint8)
    crop = CentreCrop(128)
    np.testing.assert_array_equal(crop(image), image[56:184, 96:224])
    assert crop.cache_key == "centre128-v1" and CentreCrop(64).cache_key != crop.cache_key
    small = CentreCrop(8)(image[:4, :6])                       # larger than the image: padded
    assert small.shape == (8, 8, 3) and (small[:2] == 0).all() and (small[-2:] == 0).all()
    assert (small[:, :2] == 0).all()
    np.testing.assert_array_equal(small[2:6, 2:8], image[:4, :6])
    assert repr(crop) == "CentreCrop(128)"
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="size"):
            CentreCrop(bad)


def test_prepare_and_preprocess_image_follow_the_loader_steps():
    image = np.random.default_rng(4).integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    sums = prepare_image(image, CentreCrop(8), 2)
    chw = image[2:10, 4:12].transpose(2, 0, 1)                  # HWC -> CHW
    np.testing.assert_array_equal(sums, block_sums(np.ascontiguousarray(chw), 2))
    x = preprocess_image(image, CentreCrop(8), 2)
    assert x.shape == (3, 4, 4) and x.dtype == np.float32
    np.testing.assert_array_equal(x, to_unit_range(sums, 255 * 4))
    np.testing.assert_allclose(x, downscale(chw / 255.0, 2), atol=1e-7)


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
    """A model ending in logits (0.2: no final Softmax); ``predict`` gives probabilities."""
    from numcnn.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU
    return numcnn.Sequential([Conv2D(3, 4, 3, padding=1), ReLU(), MaxPool2D(2), Flatten(),
                              Dense(4 * 4 * 4, 3)], seed=seed, input_shape=(3, 8, 8))


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


def test_crops_reject_windows_larger_than_the_images():
    x = np.zeros((2, 3, 10, 12), np.float32)
    with pytest.raises(ValueError, match="cannot cut 11x11 out of images of 10x12"):
        random_crop(x, 11, np.random.default_rng(0))
    with pytest.raises(ValueError, match="centre_crop.*N, C, H, W"):
        centre_crop(x[0], 4)
    assert centre_crop(x, 7).shape == (2, 3, 7, 7)                 # odd margins: floor
    whole = crop_and_flip(None, rotate90=False)(x, np.random.default_rng(0))
    assert whole.shape == x.shape                                   # flips only
