"""Stain, scale and light augmentation (numcnn.data.stain) against its definition."""
import numpy as np
import pytest
from skimage.color import bex_from_rgb, hed_from_rgb, separate_stains

from numcnn.data import stain


@pytest.fixture
def smear(rng):
    """A batch that looks like stained smears: a pink background, purple blobs."""
    x = np.empty((4, 3, 24, 32), np.float32)
    x[:, 0], x[:, 1], x[:, 2] = 0.85, 0.70, 0.80                   # pinkish background
    yy, xx = np.mgrid[:24, :32]
    for n in range(4):
        blob = (yy - 12 - n) ** 2 + (xx - 16 + n) ** 2 < 36
        x[n, :, blob] = np.array([0.45, 0.25, 0.60], np.float32)   # a purple nucleus
    noise = rng.normal(0, 0.02, x.shape).astype(np.float32)
    return np.clip(x + noise, 0.01, 1.0)


def test_the_identity_setting_returns_the_input_through_the_same_code(smear, rng):
    """Zero strengths still run every step (the draws, the stain round trip, the resampling)."""
    assert np.allclose(stain.stain_jitter(smear, rng, scale=0.0, shift=0.0), smear, atol=1e-5)
    assert np.allclose(stain.random_rescale(smear, rng, 1.0, 1.0), smear, atol=1e-6)
    assert np.allclose(stain.brightness_contrast(smear, rng, 0.0, 0.0), smear, atol=1e-6)
    for basis in ("giemsa", "hed"):
        back = stain.from_concentrations(stain.stain_concentrations(smear, basis), basis)
        assert np.abs(back - smear).max() < 1e-5
    mean = smear.mean(axis=0)
    identity = stain.lab_augment(None, mean, stain=(0.0, 0.0), rescale=(1.0, 1.0),
                                 light=(0.0, 0.0), rotate90=False)
    out = identity(smear - mean, np.random.default_rng(3))
    flips = np.random.default_rng(3)                              # the same draws, flips only
    for _ in range(3):                                            # stains, light, rescale
        flips.uniform(size=4 * 6 if _ == 0 else 4 * (2 if _ == 1 else 1))
    want = stain.random_flips(smear - mean, flips, horizontal=True, vertical=True)
    assert np.abs(out - want).max() < 1e-5


@pytest.mark.parametrize("basis, matrix", [("giemsa", bex_from_rgb), ("hed", hed_from_rgb)])
def test_concentrations_agree_with_scikit_image_where_they_are_not_negative(smear, basis, matrix):
    """scikit-image divides the densities by -ln(1e-6) and clamps negative concentrations;
    where nothing is clamped the two agree, up to that constant."""
    ours = stain.stain_concentrations(smear, basis).transpose(0, 2, 3, 1).reshape(-1, 3)
    theirs = separate_stains(smear.transpose(0, 2, 3, 1), matrix).reshape(-1, 3)
    kept = (theirs > 0).all(axis=1)
    assert kept.sum() > 100                                       # the test looks at pixels
    np.testing.assert_allclose(ours[kept], theirs[kept] * -np.log(1e-6), rtol=1e-4, atol=1e-4)


def test_a_known_stain_change_is_undone(smear):
    scale = np.array([1.3, 0.8, 1.1])
    shift = np.array([0.05, -0.02, 0.0])
    changed = stain.change_stains(smear, scale, shift)
    assert np.abs(changed - smear).max() > 0.05                   # it did change the colours
    undone = stain.change_stains(changed, 1 / scale, -shift / scale)
    assert np.abs(undone - smear).max() < 1e-4


def test_more_of_the_blue_stain_darkens_the_nucleus_most(smear):
    """The Giemsa basis' first stain is the blue: more of it darkens the purple nucleus
    (where there is much of it) more than twice as much as the pale background."""
    more_blue = stain.change_stains(smear, [1.5, 1.0, 1.0], [0.0, 0.0, 0.0])
    nucleus = (smear[0, 1] < 0.4)
    darker = smear[0].mean(axis=0) - more_blue[0].mean(axis=0)
    assert darker[nucleus].mean() > 2 * darker[~nucleus].mean() > 0


def test_the_same_seed_gives_the_same_batch_and_another_seed_another(smear):
    augment = stain.lab_augment(20, None)
    a = augment(smear, np.random.default_rng(7))
    b = augment(smear, np.random.default_rng(7))
    c = augment(smear, np.random.default_rng(8))
    assert a.shape == (4, 3, 20, 20) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_a_zoom_moves_pixels_away_from_the_centre(rng):
    x = np.zeros((1, 1, 21, 21), np.float32)
    x[0, 0, 10, 14] = 1.0                                          # 4 right of the centre
    zoomed = stain.random_rescale(x, np.random.default_rng(0), 1.5, 1.5)
    assert np.unravel_index(zoomed[0, 0].argmax(), (21, 21)) == (10, 16)   # 4 * 1.5 = 6
    assert stain.random_rescale(x, rng, 0.5, 0.5)[0, 0, 10, 12] > 0.4      # 4 * 0.5 = 2


def test_bad_arguments_are_named():
    x = np.zeros((2, 3, 4, 4), np.float32)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown stain basis 'wright'"):
        stain.stain_jitter(x, rng, basis="wright")
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        stain.stain_jitter(np.zeros((2, 1, 4, 4), np.float32), rng)
    with pytest.raises(ValueError, match="low <= high"):
        stain.random_rescale(x, rng, 1.2, 0.8)
