"""Data augmentation for NCHW batches: random flips and quarter turns, colour
jitter, and the eight symmetries of a square for test-time averaging.

All randomness comes from the ``numpy.random.Generator`` the caller passes in,
so one seed makes a whole run reproducible; nothing here touches the global
``np.random`` state.
"""

from __future__ import annotations

import numpy as np

__all__ = ["random_flips", "colour_jitter", "symmetries", "SYMMETRY_COUNT"]

SYMMETRY_COUNT = 8          # symmetries of a square: 4 quarter turns, each with or without a mirror


def random_flips(x: np.ndarray, rng: np.random.Generator, horizontal: bool = True,
                 vertical: bool = True, rotate90: bool = False) -> np.ndarray:
    """Flip (and optionally rotate) each image of a batch at random.

    Each image independently is mirrored left-right with probability 1/2,
    upside-down with probability 1/2 and, with ``rotate90``, turned by 0, 90,
    180 or 270 degrees with probability 1/4 each. Flips plus quarter turns
    give all 8 symmetries of a square; a blood smear has no "up", so every one
    of them is a valid training image.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
        Batch in NCHW layout, any dtype.
    rng : numpy.random.Generator
        Source of randomness, e.g. ``np.random.default_rng(seed)``.
    horizontal : bool
        Allow left-right flips (reverse the W axis).
    vertical : bool
        Allow up-down flips (reverse the H axis).
    rotate90 : bool
        Allow quarter turns in the (H, W) plane; needs square images (H == W).

    Returns
    -------
    ndarray, shape (N, C, H, W)
        A new array, same dtype; ``x`` is not modified. Each image holds the
        same pixel values as before, only moved.

    Raises
    ------
    TypeError
        If ``rng`` is not a ``numpy.random.Generator``.
    ValueError
        If ``x`` is not 4-D, or ``rotate90`` is asked for non-square images.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"random_flips expects an (N, C, H, W) batch, got shape {x.shape}")
    n, _, height, width = x.shape
    if rotate90 and height != width:
        raise ValueError(f"rotate90 needs square images, got H={height}, W={width} (shape {x.shape})")

    out = x.copy()
    if horizontal:
        flip = rng.random(n) < 0.5
        out[flip] = out[flip][:, :, :, ::-1]          # reverse W
    if vertical:
        flip = rng.random(n) < 0.5
        out[flip] = out[flip][:, :, ::-1, :]          # reverse H
    if rotate90:
        quarter_turns = rng.integers(0, 4, size=n)
        for turns in (1, 2, 3):
            chosen = quarter_turns == turns
            out[chosen] = np.rot90(out[chosen], k=turns, axes=(2, 3))
    return out


def colour_jitter(x: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Change each image's contrast and brightness a little, per colour channel.

    For image ``n`` and channel ``c`` (R, G or B), with ``s = strength``::

        out[n, c] = gain[n, c] * x[n, c] + shift[n, c],
        gain ~ Uniform(1 - s, 1 + s),   shift ~ Uniform(-s / 2, s / 2)

    Smears differ in stain and illumination from slide to slide; this is a
    cheap model of that, so that the network does not learn one slide's exact
    shade. Colour augmentation of this kind is what helped most when
    pathology networks met images from other labs (Tellez et al., "Quantifying
    the effects of data augmentation and stain color normalization in
    convolutional neural networks for computational pathology", Medical Image
    Analysis 58, 2019). Keep ``s`` small: the colour of the granules is what
    tells an eosinophil from a neutrophil.

    Works on any scaling of the images: applied to mean-subtracted images, the
    gain scales each channel's contrast around the average image.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), floating point
    rng : numpy.random.Generator
        Source of the gains and shifts (draws ``2 * N * C`` uniforms).
    strength : float
        ``s`` above, in [0, 1); 0 returns an unchanged copy (and draws nothing).

    Returns
    -------
    ndarray, shape (N, C, H, W)
        A new array of the same dtype; ``x`` is not modified.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"colour_jitter expects an (N, C, H, W) batch, got shape {x.shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"colour_jitter expects floating-point images, got dtype {x.dtype}")
    if not 0 <= strength < 1:
        raise ValueError(f"colour_jitter: strength must be in [0, 1), got {strength!r}")
    if strength == 0:
        return x.copy()
    n, c = x.shape[:2]
    gain = rng.uniform(1 - strength, 1 + strength, size=(n, c, 1, 1)).astype(x.dtype)
    shift = rng.uniform(-strength / 2, strength / 2, size=(n, c, 1, 1)).astype(x.dtype)
    return x * gain + shift


def symmetries(x: np.ndarray):
    """The batch seen in each of the 8 symmetries of a square, one after another.

    Yields ``x`` turned by 0, 1, 2 and 3 quarter turns, each as it is and
    mirrored left-right: every orientation that :func:`random_flips` with
    ``rotate90=True`` shows during training. Averaging a model's class
    probabilities over the eight views ("test-time augmentation") gives a
    prediction that does not depend on how the slide lay under the microscope.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W) with H == W

    Yields
    ------
    ndarray, shape (N, C, H, W)
        ``SYMMETRY_COUNT`` (8) contiguous arrays; the first is a copy of ``x``.
    """
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[2] != x.shape[3]:
        raise ValueError(f"symmetries expects a batch of square images (N, C, S, S), "
                         f"got shape {x.shape}")
    for turns in range(4):
        turned = np.rot90(x, k=turns, axes=(2, 3))
        yield np.ascontiguousarray(turned)
        yield np.ascontiguousarray(turned[:, :, :, ::-1])       # mirrored left-right
