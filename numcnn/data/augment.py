"""Data augmentation for NCHW batches: random crops, flips and quarter turns,
colour jitter, and the eight symmetries of a square for test-time averaging.

>>> rng = np.random.default_rng(0)
>>> x = np.zeros((8, 3, 72, 72), dtype=np.float32)
>>> random_crop(x, 64, rng).shape, centre_crop(x, 64).shape
((8, 3, 64, 64), (8, 3, 64, 64))

All randomness comes from the ``numpy.random.Generator`` the caller passes in,
so one seed makes a whole run reproducible; nothing here touches the global
``np.random`` state.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

__all__ = ["random_flips", "colour_jitter", "symmetries", "SYMMETRY_COUNT", "random_crop",
           "centre_crop", "crop_and_flip", "predict_symmetric"]

SYMMETRY_COUNT = 8          # symmetries of a square: 4 quarter turns, each with or without a mirror
"""The symmetries of a square: 4 quarter turns, each with or without a mirror."""


def random_flips(x: np.ndarray, rng: np.random.Generator, horizontal: bool = True,
                 vertical: bool = True, rotate90: bool = False) -> np.ndarray:
    """Flip (and optionally rotate) each image of a batch at random.

    Each image independently is mirrored left-right with probability 1/2,
    upside-down with probability 1/2 and, with ``rotate90``, turned by 0, 90,
    180 or 270 degrees with probability 1/4 each. Flips plus quarter turns
    give all 8 symmetries of a square; for images with no "up" (a microscope
    slide, a satellite picture) every one of them is a valid training image.

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

    Stained slides differ in stain and illumination from one to the next; this is a
    cheap model of that, so that the network does not learn one slide's exact
    shade. Colour augmentation of this kind is what helped most when
    pathology networks met images from other labs (Tellez et al., "Quantifying
    the effects of data augmentation and stain color normalization in
    convolutional neural networks for computational pathology", Medical Image
    Analysis 58, 2019). Keep ``s`` small where colour itself tells the
    classes apart.

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


def check_rgb_batch(x: np.ndarray, where: str) -> np.ndarray:
    """``x`` as an array, checked to be an (N, 3, H, W) batch of floating-point RGB images."""
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{where} expects an RGB batch of shape (N, 3, H, W); got {x.shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"{where} expects floating-point images in [0, 1]; got dtype {x.dtype}")
    return x


def _check_crop(x: np.ndarray, size: int, where: str) -> None:
    """Raise ValueError unless ``x`` is an NCHW batch at least ``size`` x ``size``."""
    if x.ndim != 4:
        raise ValueError(f"{where} expects an (N, C, H, W) batch, got shape {x.shape}")
    if int(size) != size or size < 1:
        raise ValueError(f"{where}: size must be a positive integer, got {size!r}")
    if size > x.shape[2] or size > x.shape[3]:
        raise ValueError(f"{where}: cannot cut {size}x{size} out of images of "
                         f"{x.shape[2]}x{x.shape[3]} (batch shape {x.shape})")


def random_crop(x: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Cut a ``size`` x ``size`` window at a random place out of each image.

    Every image gets its own offset, drawn uniformly from all the positions
    where the window fits: from a 72x72 image, a 64x64 window has 9 x 9 = 81.
    The cell moves by up to 8 pixels, which teaches the network that where
    the cell sits in the window does not matter.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    size : int
        Side of the window, at most min(H, W).
    rng : numpy.random.Generator
        Source of the offsets (draws ``2 * N`` integers).

    Returns
    -------
    ndarray, shape (N, C, size, size)
        A new, contiguous array of the same dtype.
    """
    _check_crop(x, size, "random_crop")
    n, _, height, width = x.shape
    tops = rng.integers(0, height - size + 1, size=n)
    lefts = rng.integers(0, width - size + 1, size=n)
    out = np.empty(x.shape[:2] + (size, size), dtype=x.dtype)
    for i in range(n):                      # 64 small copies per batch: cheap and clear
        out[i] = x[i, :, tops[i]:tops[i] + size, lefts[i]:lefts[i] + size]
    return out


def centre_crop(x: np.ndarray, size: int) -> np.ndarray:
    """Cut the central ``size`` x ``size`` window out of each image.

    The evaluation twin of :func:`random_crop`: when the window does not sit
    exactly in the middle (an odd margin), it starts at ``(H - size) // 2``.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    size : int
        Side of the window, at most min(H, W).

    Returns
    -------
    ndarray, shape (N, C, size, size)
        A new, contiguous array of the same dtype.
    """
    _check_crop(x, size, "centre_crop")
    top = (x.shape[2] - size) // 2
    left = (x.shape[3] - size) // 2
    return np.ascontiguousarray(x[:, :, top:top + size, left:left + size])


def crop_and_flip(size: Optional[int], rotate90: bool = True, colour: float = 0.0
                  ) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    """The training augmentation as one function for ``Sequential.fit(augment=...)``.

    Parameters
    ----------
    size : int or None
        Side of the random crop; None keeps the whole image (flips only).
    rotate90 : bool
        Also turn by a random multiple of 90 degrees (square images only).
    colour : float
        Strength of :func:`numcnn.data.augment.colour_jitter` (0: none).

    Returns
    -------
    callable
        ``augment(xb, rng) -> xb``: :func:`random_crop` (if ``size``), then
        :func:`random_flips` left-right, up-down and,
        with ``rotate90``, quarter turns, then the colour jitter (if
        ``colour``). All randomness comes from ``rng`` (the model passes its
        own Generator), in that order.
    """
    def augment(xb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if size is not None:
            xb = random_crop(xb, size, rng)
        xb = random_flips(xb, rng, horizontal=True, vertical=True, rotate90=rotate90)
        if colour:
            xb = colour_jitter(xb, rng, colour)
        return xb
    return augment


def predict_symmetric(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities averaged over the 8 symmetries of each square image.

    ``mean over g of model.predict(g(x))`` for the four quarter turns ``g``,
    each with and without a left-right mirror
    (:func:`symmetries`). A network trained on randomly
    flipped and turned images answers each view a little differently; the
    average is steadier than any single view (test-time augmentation). It
    costs 8 forward passes per image.

    Parameters
    ----------
    model : numcnn.Sequential
        Anything with ``predict(x, batch_size) -> (N, K)`` probabilities.
    x : ndarray, shape (N, C, S, S)
        What the network sees (already cropped and mean-subtracted).
    batch_size : int
        Images per forward pass.

    Returns
    -------
    ndarray, shape (N, K), float32
        Rows sum to 1 (up to rounding).
    """
    views = [model.predict(view, batch_size=batch_size) for view in symmetries(x)]
    return np.mean(views, axis=0, dtype=np.float32)
