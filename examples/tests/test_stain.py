"""cellstudy.bloodcells.stain: the crop around the stained white cell.

On synthetic images and on real ones.
"""
import numpy as np
import pytest

from numcnn.data import downscale, preprocess_image, read_rgb_image, to_unit_range
from numcnn.datasets import bloodcells

from cellstudy.bloodcells.stain import StainCrop, crop_to_stain, find_stain_centre, stain_mask


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
    np.testing.assert_array_equal(crop_to_stain(blank, 128), blank[56:184, 96:224])


def test_stain_mask_marks_the_purple_pixels_at_a_quarter_of_the_size():
    mask = stain_mask(purple_disk_image(100, 200))
    assert mask.shape == (60, 80) and mask.dtype == bool
    assert mask[25, 50] and not mask[5, 5]
    assert 60 < mask.sum() < 120                                           # pi 5^2 = 79
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        stain_mask(np.zeros((240, 320), np.uint8))


def test_stain_crop_is_a_cacheable_transform():
    crop = StainCrop(144)
    image = purple_disk_image(100, 200)
    np.testing.assert_array_equal(crop(image), crop_to_stain(image, 144))
    assert crop.cache_key == "stain144-v2" and StainCrop(128).cache_key != crop.cache_key
    assert repr(crop) == "StainCrop(144)"
    for bad in (0, -3, 1.5):
        with pytest.raises(ValueError, match="size"):
            StainCrop(bad)


def test_crop_to_stain_keeps_the_purple_cell(sample_jpegs):
    for paths in sample_jpegs.values():
        for path in paths:
            crop = crop_to_stain(read_rgb_image(path), 128).astype(int)
            purple = (crop[..., 2] - crop[..., 0] > 30) & (crop[..., 2] - crop[..., 1] > 50)
            assert purple.sum() > 500, path


def test_loader_with_the_stain_crop_equals_decode_crop_downscale(bloodcells_dir, tmp_path):
    """What the study loads: each JPEG cropped around its cell, then block means."""
    images = bloodcells.load_data("TEST", bloodcells_dir, StainCrop(128), 2, max_per_class=2,
                                  cache_dir=tmp_path, progress=False)
    assert images.x.shape == (8, 3, 64, 64)
    for row, path in zip(images.x, images.paths):
        hwc = crop_to_stain(read_rgb_image(path), 128)
        expected = downscale(to_unit_range(hwc.transpose(2, 0, 1)), 2)
        np.testing.assert_allclose(row, expected, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(row, preprocess_image(read_rgb_image(path),
                                                            StainCrop(128), 2))
    cached = bloodcells.load_data("TEST", bloodcells_dir, StainCrop(128), 2, max_per_class=2,
                                  cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(cached.x, images.x)
    assert len(list(tmp_path.glob("bloodcells-TEST-*-stain128-v2-*.npz"))) == 1
