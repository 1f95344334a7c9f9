"""The crop around the stained white cell: where the cell is in a blood-smear image.

A 320x240 frame of the blood-cell archive holds one white cell, usually but not
always in the middle, among red cells. :class:`StainCrop` cuts a square window
around it, as a per-image transform for :func:`numcnn.datasets.bloodcells.load_data`
(HWC uint8 in, HWC uint8 out), so the network sees the cell and not the frame.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
from skimage import measure, morphology

from numcnn.data import crop_around, downscale

__all__ = ["StainCrop", "stain_mask", "find_stain_centre", "crop_to_stain"]

# The Wright stain colours a white cell's nucleus dark purple/blue, red cells
# pink and the background pale grey. In RGB (0..255) a nucleus pixel has blue
# well above red (b - r around 70-90) and green lowest (b - g around 100),
# while red cells, background and the black corners left by the dataset's
# rotations have b - r and b - g near or below zero. The thresholds below sit
# in between. The mask is computed on a 4x smaller copy (block means): that is
# fast and blurs away specks, and a small closing then joins the lobes of
# eosinophil and neutrophil nuclei so the centroid lands on the whole cell,
# not on one lobe.

STAIN_BLUE_OVER_RED = 30      # b - r above this (0..255 scale) ...
STAIN_BLUE_OVER_GREEN = 50    # ... and b - g above this: purple stain
STAIN_MASK_SCALE = 4          # the mask is found at 1/4 of the resolution
STAIN_CLOSING_RADIUS = 2      # in mask pixels (about 8 full-size pixels)
STAIN_MIN_AREA = 200          # full-size pixels; smaller blobs are not a nucleus


def stain_mask(image: np.ndarray, scale: int = STAIN_MASK_SCALE) -> np.ndarray:
    """Mark the purple (stained) pixels of a blood smear image, at reduced size.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3)
        RGB, uint8 in 0..255 or float in [0, 1] (HWC layout).
    scale : int
        The mask is computed on ``scale`` x ``scale`` block means; rows and
        columns that do not fill a whole block are dropped.

    Returns
    -------
    ndarray of bool, shape (H // scale, W // scale)
        True where ``blue - red > 30`` and ``blue - green > 50`` (0..255 scale),
        after a morphological closing that joins nearby lobes.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got shape {image.shape}")
    height = image.shape[0] // scale * scale
    width = image.shape[1] // scale * scale
    chw = np.ascontiguousarray(image[:height, :width].transpose(2, 0, 1))   # HWC -> CHW
    red, green, blue = downscale(chw, scale)
    if image.dtype.kind == "f":                    # float images are in [0, 1]
        red, green, blue = red * 255, green * 255, blue * 255
    mask = (blue - red > STAIN_BLUE_OVER_RED) & (blue - green > STAIN_BLUE_OVER_GREEN)
    return morphology.closing(mask, morphology.disk(STAIN_CLOSING_RADIUS))


def find_stain_centre(image: np.ndarray,
                      min_area: int = STAIN_MIN_AREA) -> Optional[Tuple[float, float]]:
    """Centre of the largest purple blob: where the white cell's nucleus is.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3)
        RGB, uint8 or float in [0, 1] (HWC layout).
    min_area : int
        Smallest blob, in full-size pixels, accepted as a nucleus.

    Returns
    -------
    (row, col) : tuple of float, or None
        Centroid of the largest connected region of :func:`stain_mask`, in
        full-size pixel coordinates; None when no blob of ``min_area`` pixels
        is found.
    """
    scale = STAIN_MASK_SCALE
    regions = measure.regionprops(measure.label(stain_mask(image, scale)))
    if not regions:
        return None
    largest = max(regions, key=lambda region: region.area)
    if largest.area * scale * scale < min_area:
        return None
    row, col = largest.centroid
    # the centre of mask pixel i covers full-size pixels i*scale .. i*scale + scale - 1
    return row * scale + (scale - 1) / 2, col * scale + (scale - 1) / 2


def crop_to_stain(image: np.ndarray, size: int = 128) -> np.ndarray:
    """Crop a square window around the stained white cell.

    The window is centred on :func:`find_stain_centre` (the largest purple
    blob), zero-padded where it leaves the image (:func:`crop_around`); when no
    blob is found it is centred on the image centre.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3)
        RGB, uint8 or float in [0, 1] (HWC layout).
    size : int
        Side of the window.

    Returns
    -------
    ndarray, shape (size, size, 3)
        Same dtype as ``image``.
    """
    image = np.asarray(image)
    centre = find_stain_centre(image)
    if centre is None:
        centre = ((image.shape[0] - 1) / 2, (image.shape[1] - 1) / 2)
    return crop_around(image, centre, size)


class StainCrop:
    """The transform ``image -> crop_to_stain(image, size)``, with a ``cache_key``.

    Parameters
    ----------
    size : int
        Side of the square window, in full-size pixels (144 in the study).
    """

    #: Bump when the crop's arithmetic changes: cached crops are then rebuilt.
    #: 2: the window stays centred and is zero-padded at the border (1 clamped it).
    version = 2

    def __init__(self, size: int):
        if int(size) != size or size < 1:
            raise ValueError(f"StainCrop: size must be a positive integer; got {size!r}")
        self.size = int(size)

    @property
    def cache_key(self) -> str:
        """``"stain<size>-v<version>"``: names what the crop computes."""
        return f"stain{self.size}-v{self.version}"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return crop_to_stain(image, self.size)

    def __repr__(self):
        return f"StainCrop({self.size})"
