"""The blood-cell recipe's small steps: crops for training and evaluation,
test-time averaging over the symmetries of a square, and the loader's
preprocessing for one image (to predict on new files).

Layouts: batches are NCHW ``(N, C, H, W)``; a decoded image is HWC ``(H, W, 3)``
uint8 and :func:`preprocess_image` returns CHW ``(3, H', W')`` float32.

>>> rng = np.random.default_rng(0)
>>> x = np.zeros((8, 3, 72, 72), dtype=np.float32)
>>> random_crop(x, 64, rng).shape, centre_crop(x, 64).shape
((8, 3, 64, 64), (8, 3, 64, 64))
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from .augment import colour_jitter, random_flips, symmetries
from .preprocess import block_sums, crop_to_stain, to_unit_range

__all__ = ["random_crop", "centre_crop", "crop_and_flip", "predict_symmetric",
           "preprocess_image"]


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
        Strength of :func:`~numcnn.data.augment.colour_jitter` (0: none).

    Returns
    -------
    callable
        ``augment(xb, rng) -> xb``: :func:`random_crop` (if ``size``), then
        :func:`~numcnn.data.augment.random_flips` left-right, up-down and,
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
    (:func:`~numcnn.data.augment.symmetries`). A network trained on randomly
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


def preprocess_image(image: np.ndarray, crop: Optional[int], factor: int) -> np.ndarray:
    """Turn one decoded image into what :func:`load_bloodcells` makes of it.

    The same steps, in the same order, with the same arithmetic: crop a
    ``crop`` x ``crop`` window around the stained cell
    (:func:`~numcnn.data.preprocess.crop_to_stain`, skipped if ``crop`` is
    None), change HWC to CHW, sum ``factor`` x ``factor`` blocks exactly in
    integers, and divide once into [0, 1]. The result equals the loader's row
    for that file bit for bit.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
        As :func:`~numcnn.data.images.read_rgb_image` returns it (HWC).
    crop : int or None
        Side of the stain crop, at most min(H, W); None keeps the whole image.
    factor : int
        Downscale factor; must divide ``crop`` (or H and W).

    Returns
    -------
    ndarray, shape (3, H', W'), float32 in [0, 1]
        CHW; add a batch axis (``x[None]``) to feed a model.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"preprocess_image expects an RGB uint8 image of shape (H, W, 3), "
                         f"got shape {image.shape} and dtype {image.dtype}")
    if crop is not None:
        image = crop_to_stain(image, size=crop)
    chw = np.ascontiguousarray(image.transpose(2, 0, 1))   # HWC -> CHW
    return to_unit_range(block_sums(chw, factor), 255 * factor * factor)
