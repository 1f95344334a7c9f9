"""The camera augmentation: blur, sensor noise and a JPEG round trip, each drawn per image."""
import numpy as np
import pytest

from numcnn.data import (camera_jitter, jpeg_round_trip, lab_augment, random_blur, random_jpeg,
                         random_noise)


def _batch(n=4, side=32, seed=0):
    return np.random.default_rng(seed).uniform(0.1, 0.9, (n, 3, side, side)).astype(np.float32)


def _symmetries(image):
    """The 8 flips and quarter turns of a (C, H, W) image."""
    turns = [np.rot90(image, k, axes=(1, 2)) for k in range(4)]
    return turns + [view[:, :, ::-1] for view in turns]


def test_the_identity_setting_returns_the_input_through_the_same_code():
    x = _batch()
    out = camera_jitter(x, np.random.default_rng(1), blur=0.0, noise=0.0, quality=None)
    assert out.dtype == np.float32 and out is not x
    np.testing.assert_allclose(out, x, atol=1e-5)


def test_blur_spreads_a_point_by_the_drawn_sigma():
    x = np.zeros((5, 3, 41, 41), np.float32)
    x[:, :, 20, 20] = 1.0
    out = random_blur(x, np.random.default_rng(3), blur=2.0)
    sigmas = np.random.default_rng(3).uniform(0.0, 2.0, size=5)    # the draws it made
    offsets = np.arange(41) - 20.0
    for k, sigma in enumerate(sigmas):
        plane = out[k, 1]
        assert plane.sum() == pytest.approx(1.0, abs=1e-4)          # light is kept
        variance = (plane.sum(axis=1) * offsets ** 2).sum() / plane.sum()
        if sigma > 0.5:         # below that the sampled Gaussian is not a Gaussian's variance
            assert variance == pytest.approx(sigma ** 2, rel=0.03)
        np.testing.assert_allclose(out[k, 0], out[k, 2], atol=1e-7)   # every channel alike


def test_blur_keeps_a_flat_image_and_zero_blur_keeps_every_image():
    flat = np.full((3, 3, 16, 16), 0.4, np.float32)
    np.testing.assert_allclose(random_blur(flat, np.random.default_rng(0), 1.5), flat, atol=1e-6)
    x = _batch()
    np.testing.assert_array_equal(random_blur(x, np.random.default_rng(0), 0.0), x)


def test_each_step_draws_the_same_numbers_whatever_its_strength():
    x = _batch(n=6)
    for step, strength in ((random_blur, 0.0), (random_noise, 0.0)):
        rng = np.random.default_rng(5)
        step(x, rng, strength)
        after = rng.uniform()
        rng = np.random.default_rng(5)
        step(x, rng, 1.0)
        assert rng.uniform() == after, step.__name__


def test_noise_has_the_drawn_spread():
    x = np.full((4, 3, 64, 64), 0.5, np.float32)
    out = random_noise(x, np.random.default_rng(7), noise=0.05)
    spreads = np.random.default_rng(7).uniform(0.0, 0.05, size=4)
    for k, spread in enumerate(spreads):
        assert (out[k] - x[k]).std() == pytest.approx(spread, rel=0.05)
        assert abs((out[k] - x[k]).mean()) < 0.1 * spread + 1e-6
    assert out.dtype == np.float32


def test_a_jpeg_round_trip_rounds_to_8_bits_and_loses_more_at_low_quality():
    rows = np.linspace(0, 1, 48, dtype=np.float32)
    smooth = np.stack([np.add.outer(rows, rows) / 2, np.outer(rows, rows),
                       np.full((48, 48), 0.6, np.float32)])
    good = jpeg_round_trip(smooth, 95)
    assert good.shape == smooth.shape and good.dtype == np.float32
    np.testing.assert_allclose(good * 255, np.rint(good * 255), atol=1e-3)   # 8-bit levels
    assert np.abs(good - smooth).max() < 0.05
    textured = np.repeat(_batch(n=1, side=48, seed=2)[0, :1], 3, axis=0)   # grey: luma only
    loss = [np.abs(jpeg_round_trip(textured, q) - textured).mean() for q in (20, 95)]
    assert loss[0] > 1.5 * loss[1]
    flat = np.full((3, 16, 16), 100 / 255, np.float32)
    np.testing.assert_allclose(jpeg_round_trip(flat, 20), flat, atol=2 / 255)


def test_random_jpeg_draws_a_quality_per_image_within_the_range():
    x = _batch(n=8)
    out = random_jpeg(x, np.random.default_rng(4), (30, 30))
    expected = np.stack([jpeg_round_trip(image, 30) for image in x])
    np.testing.assert_array_equal(out, expected)
    mixed = random_jpeg(x, np.random.default_rng(4), (20, 95))
    qualities = np.random.default_rng(4).integers(20, 95, endpoint=True, size=8)
    np.testing.assert_array_equal(mixed[3], jpeg_round_trip(x[3], int(qualities[3])))


def test_the_same_seed_gives_the_same_batch():
    x = _batch(n=5)
    first = camera_jitter(x, np.random.default_rng(11), blur=1.5, noise=0.03, quality=(20, 95))
    again = camera_jitter(x, np.random.default_rng(11), blur=1.5, noise=0.03, quality=(20, 95))
    other = camera_jitter(x, np.random.default_rng(12), blur=1.5, noise=0.03, quality=(20, 95))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.min() >= 0.0 and first.max() <= 1.0


def test_lab_augment_adds_the_camera():
    mean = np.full((3, 32, 32), 0.5, np.float32)
    x = _batch() - mean
    settings = dict(stain=(0.0, 0.0), rescale=(1.0, 1.0), light=(0.0, 0.0))
    plain = lab_augment(None, mean, **settings)(x, np.random.default_rng(2))
    same = lab_augment(None, mean, camera={"blur": 0.0, "noise": 0.0, "quality": None},
                       **settings)(x, np.random.default_rng(2))
    for k in range(len(x)):   # an identity camera changes nothing (its draws move the flips)
        assert any(np.allclose(view, same[k], atol=1e-5) for view in _symmetries(plain[k]))
    camera = lab_augment(None, mean, camera={"blur": 1.5, "noise": 0.03, "quality": (20, 95)},
                         **settings)(x, np.random.default_rng(2))
    assert camera.shape == x.shape and camera.dtype == np.float32
    for k in range(len(x)):   # blurred, noisy, compressed: no flip of the plain image
        assert not any(np.allclose(view, camera[k], atol=1e-3) for view in _symmetries(plain[k]))
    with pytest.raises(ValueError, match="lab_augment camera: unknown setting 'sigma'"):
        lab_augment(None, mean, camera={"sigma": 1.0})


@pytest.mark.parametrize("call, words", [
    (lambda: random_blur(_batch(), np.random.default_rng(0), -1.0), "blur must be"),
    (lambda: random_noise(_batch(), np.random.default_rng(0), np.inf), "noise must be"),
    (lambda: random_jpeg(_batch(), np.random.default_rng(0), (0, 50)), "1 <= low <= high <= 95"),
    (lambda: random_jpeg(_batch(), np.random.default_rng(0), (60, 50)), "1 <= low <= high"),
    (lambda: jpeg_round_trip(_batch()[0], 100), "quality must be in 1..95"),
    (lambda: camera_jitter(np.zeros((2, 1, 8, 8), np.float32), np.random.default_rng(0)),
     "(N, 3, H, W)"),
])
def test_bad_settings_are_named(call, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        call()
