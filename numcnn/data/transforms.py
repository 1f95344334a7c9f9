"""Preprocessing: crops of one image, downscale, scale to [0, 1], mean-image subtraction.

Layouts
-------
* A decoded image is HWC: ``(H, W, 3)`` uint8, as the JPEG stores it.
* A batch is NCHW: ``(N, C, H, W)`` float32 in [0, 1], what the layers expect.

The loaders in this package turn one into the other, once, with
``image.transpose(2, 0, 1)`` followed by :func:`block_sums` and
:func:`to_unit_range`. Everything after that point is NCHW.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
__all__ = [
    "downscale",
    "block_sums",
    "to_unit_range",
    "MeanImage",
    "crop_around",
    "CentreCrop",
]


# ----------------------------------------------------------------------------
# Downscaling by an integer factor
# ----------------------------------------------------------------------------

def _check_factor(shape: Tuple[int, ...], factor: int) -> None:
    """Raise ValueError unless ``factor`` divides the last two axes (H, W)."""
    if int(factor) != factor or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    if len(shape) < 2:
        raise ValueError(f"expected an array (..., H, W), got shape {shape}")
    height, width = shape[-2], shape[-1]
    if height % factor or width % factor:
        raise ValueError(
            f"cannot downscale shape {shape} by factor {factor}: "
            f"H={height} and W={width} must both be divisible by {factor}"
        )


def _sum_blocks(x: np.ndarray, factor: int, dtype) -> np.ndarray:
    """Sum each factor x factor block of ``(..., H, W)``, accumulating in ``dtype``.

    Two reshape-sums, rows first, then columns. (One reshape to
    ``(..., H/f, f, W/f, f)`` summed over both small axes gives the same
    numbers but runs about 3x slower in NumPy.)
    """
    *lead, height, width = x.shape
    rows = x.reshape(*lead, height // factor, factor, width).sum(axis=-2, dtype=dtype)
    return rows.reshape(*lead, height // factor, width // factor, factor).sum(axis=-1, dtype=dtype)


def downscale(x: np.ndarray, factor: int) -> np.ndarray:
    """Shrink images by an integer factor, averaging each factor x factor block.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
        Float images (any leading axes work; the last two are H, W).
    factor : int
        Downscale factor; must divide both H and W.

    Returns
    -------
    ndarray, shape (N, C, H // factor, W // factor)
        Block means, same float dtype as ``x`` (float64 for integer input).
        Equal (up to rounding) to
        ``skimage.transform.downscale_local_mean(x, (1, 1, factor, factor))``,
        but computed with ``reshape`` and ``sum``, which is much faster.

    Raises
    ------
    ValueError
        If H or W is not divisible by ``factor``.
    """
    x = np.asarray(x)
    _check_factor(x.shape, factor)
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    return _sum_blocks(x, factor, dtype) / dtype.type(factor * factor)


def block_sums(x: np.ndarray, factor: int) -> np.ndarray:
    """Sum each factor x factor block of an integer image, exactly.

    The integer twin of :func:`downscale`: the loaders keep these exact sums
    (which is what the cache stores) and divide once at the end, see
    :func:`to_unit_range`. ``block_sums(x, f) / (f * f)`` is the block mean.

    Parameters
    ----------
    x : ndarray of unsigned integers, shape (..., H, W)
        E.g. one CHW image ``(3, H, W)`` or an NCHW batch, uint8.
    factor : int
        Block size; must divide both H and W.

    Returns
    -------
    ndarray, shape (..., H // factor, W // factor)
        Sums, in the smallest unsigned dtype that holds ``max(x) * factor**2``
        for the input dtype (uint8 stays uint8 for factor 1, uint16 up to 16).
    """
    x = np.asarray(x)
    if x.dtype.kind != "u":
        raise TypeError(f"block_sums needs unsigned integer pixels, got dtype {x.dtype}")
    _check_factor(x.shape, factor)
    largest_sum = int(np.iinfo(x.dtype).max) * factor * factor
    sum_dtype = np.min_scalar_type(largest_sum)
    return _sum_blocks(x, factor, sum_dtype)


def to_unit_range(x: np.ndarray, max_value: float = 255) -> np.ndarray:
    """Scale integer pixels (or block sums) to float32 in [0, 1].

    Parameters
    ----------
    x : ndarray, any shape (NCHW for a batch)
        Non-negative values, at most ``max_value``.
    max_value : float
        The value that maps to 1.0: 255 for uint8 pixels, ``255 * factor**2``
        for :func:`block_sums` of uint8 pixels.

    Returns
    -------
    ndarray, same shape, float32
        ``x / max_value``, correctly rounded to float32.
    """
    out = np.asarray(x).astype(np.float32)
    out /= np.float32(max_value)
    return out


# ----------------------------------------------------------------------------
# Mean-image subtraction
# ----------------------------------------------------------------------------

class MeanImage:
    """Subtract the average training image from every image.

    This is the study's "average background" subtraction: the mean over the
    training set of each pixel and channel, shape (C, H, W), learned by
    :meth:`fit` on the training images only and then subtracted from train,
    validation and test images alike.

    Attributes
    ----------
    mean : ndarray, shape (C, H, W), float32, or None before ``fit``.

    Examples
    --------
    >>> centre = MeanImage().fit(x_train)           # x_train: (N, C, H, W)
    >>> x_train = centre.transform(x_train)
    >>> x_test = centre.transform(x_test)
    """

    def __init__(self, mean: Optional[np.ndarray] = None):
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)

    def fit(self, x: np.ndarray) -> "MeanImage":
        """Learn the mean image of a training batch.

        Parameters
        ----------
        x : ndarray, shape (N, C, H, W)

        Returns
        -------
        self
        """
        x = np.asarray(x)
        if x.ndim != 4 or len(x) == 0:
            raise ValueError(f"MeanImage.fit expects a non-empty (N, C, H, W) batch, got shape {x.shape}")
        self.mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)  # accumulate in float64
        return self

    def transform(self, x: np.ndarray, copy: bool = True) -> np.ndarray:
        """Subtract the mean image.

        Parameters
        ----------
        x : ndarray, shape (N, C, H, W), float32
        copy : bool
            If False, subtract in place (saves memory on large sets; ``x``
            must then be a float32 array).

        Returns
        -------
        ndarray, shape (N, C, H, W), float32
        """
        if self.mean is None:
            raise RuntimeError("MeanImage.transform called before fit")
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1:] != self.mean.shape:
            raise ValueError(
                f"MeanImage was fitted on images of shape (C, H, W) = {self.mean.shape}, "
                f"got a batch of shape {x.shape}"
            )
        if copy:
            return x.astype(np.float32) - self.mean
        x -= self.mean
        return x

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        """``fit(x)`` then ``transform(x)``."""
        return self.fit(x).transform(x)


# ----------------------------------------------------------------------------
# Crops of one decoded image (HWC), before the layout change
# ----------------------------------------------------------------------------

def crop_around(image: np.ndarray, centre: Tuple[float, float], size: int) -> np.ndarray:
    """Cut a size x size window centred on ``centre``; where it leaves the image, zeros.

    The window stays centred even at the border, so an object near the edge of
    a picture still sits in the middle of its crop (the missing part is black).

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        HWC image, any dtype.
    centre : (row, col)
        Centre of the window, in pixels.
    size : int
        Side of the square window.

    Returns
    -------
    ndarray, shape (size, size, C)
        A new array of the image's dtype.
    """
    height, width = image.shape[:2]
    top = int(round(centre[0] - size / 2))
    left = int(round(centre[1] - size / 2))
    window = np.zeros((size, size) + image.shape[2:], dtype=image.dtype)
    rows = slice(max(top, 0), min(top + size, height))       # the part inside the image
    cols = slice(max(left, 0), min(left + size, width))
    window[rows.start - top:rows.stop - top, cols.start - left:cols.stop - left] = image[rows, cols]
    return window


class CentreCrop:
    """A per-image transform for the loaders: the central ``size`` x ``size`` window.

    ``CentreCrop(size)(image)`` takes an HWC image and returns its central
    window, HWC, zero-padded where the image is smaller. Like every transform
    a loader caches, it has a ``cache_key``: a string that changes whenever
    what it computes changes, so cached arrays are never served for another
    transform.
    """

    version = 1

    def __init__(self, size: int):
        if int(size) != size or size < 1:
            raise ValueError(f"CentreCrop: size must be a positive integer; got {size!r}")
        self.size = int(size)

    @property
    def cache_key(self) -> str:
        """``"centre<size>-v<version>"``."""
        return f"centre{self.size}-v{self.version}"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        return crop_around(image, ((image.shape[0] - 1) / 2, (image.shape[1] - 1) / 2), self.size)

    def __repr__(self):
        return f"CentreCrop({self.size})"
