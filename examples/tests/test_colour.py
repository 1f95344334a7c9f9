"""Per-image colour normalisation (the transfer study's remedy R2): what it promises."""
import numpy as np
import pytest

from cellstudy.shared.evaluation import TARGET_MEAN, TARGET_SPREAD, normalise_colour


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return rng.uniform(0.1, 0.9, (5, 3, 12, 16)).astype(np.float32)


def test_every_channel_of_every_image_gets_the_target_mean_and_spread(images):
    out = normalise_colour(images)
    assert out.dtype == np.float32 and out.shape == images.shape
    np.testing.assert_allclose(out.mean(axis=(2, 3)), TARGET_MEAN, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(2, 3)), TARGET_SPREAD, atol=1e-5)


def test_a_slide_wide_change_of_stain_and_brightness_is_removed(images):
    # Another laboratory's slide: each channel of each image darker or lighter, shifted.
    gain = np.array([0.7, 1.2, 0.9], dtype=np.float32)[None, :, None, None]
    shift = np.array([0.05, -0.1, 0.02], dtype=np.float32)[None, :, None, None]
    np.testing.assert_allclose(normalise_colour(images * gain + shift), normalise_colour(images),
                               atol=1e-5)


def test_what_differs_within_an_image_is_kept(images):
    # The nucleus stays darker than the cytoplasm: the order of the pixels is unchanged.
    out = normalise_colour(images)
    for image, normalised in zip(images, out):
        for channel, kept in zip(image, normalised):
            assert (np.argsort(channel, axis=None) == np.argsort(kept, axis=None)).all()


def test_a_flat_channel_does_not_divide_by_zero():
    flat = np.full((1, 3, 4, 4), 0.3, dtype=np.float32)
    out = normalise_colour(flat)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, TARGET_MEAN, atol=1e-6)
