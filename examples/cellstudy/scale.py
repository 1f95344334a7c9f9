"""How large a cell is, in pixels, in each dataset: the ruler for moving images between them.

Two laboratories photograph cells at different magnifications and crop them
differently: a lymphocyte is about 53 pixels across in the blood-cell
archive's 320x240 frames and about 61 in PBC's 128x128 images. A model
trained on one sees the other's cells at the wrong size unless the images are
rescaled. The factor is measured on each dataset's *training* images, never
by trying scales on the images a model is tested on.

The measure: the stained region of a lymphocyte (its nucleus fills nearly
all of the cell in both laboratories' stains), found as in
:mod:`cellstudy.stain` (blue well above red and green, a closing that joins
lobes), its area turned into the diameter of a disc of that area; the median
over a dataset's training lymphocytes is that dataset's typical cell
diameter. Other classes are not used: a lobed nucleus (neutrophils,
eosinophils) is captured whole in one stain and lobe by lobe in the other.
"""

from __future__ import annotations

import numpy as np
from skimage import measure

from numcnn.data import read_rgb_image

from .stain import stain_mask

__all__ = ["stained_diameter", "typical_diameter", "MASK_SCALE"]

MASK_SCALE = 2      # the stain mask at half resolution: fine enough for 50-pixel cells


def stained_diameter(image):
    """Diameter (pixels) of the disc with the area of the largest stained region; NaN if none."""
    regions = measure.regionprops(measure.label(stain_mask(image, MASK_SCALE)))
    if not regions:
        return float("nan")
    largest = max(regions, key=lambda region: region.area)
    return float(largest.equivalent_diameter_area * MASK_SCALE)


def typical_diameter(paths):
    """``(median, quartiles, count)`` of :func:`stained_diameter` over image files."""
    diameters = np.array([stained_diameter(read_rgb_image(path)) for path in paths])
    diameters = diameters[np.isfinite(diameters)]
    return float(np.median(diameters)), np.percentile(diameters, [25, 75]).tolist(), len(diameters)
