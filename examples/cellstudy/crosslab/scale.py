"""One laboratory's cells at another's scale: the ruler, and the transforms that rescale.

Two laboratories photograph cells at different magnifications and crop them
differently: a lymphocyte is about 53 pixels across in the blood-cell
archive's 320x240 frames and about 61 in PBC's 128x128 images. A model
trained on one sees the other's cells at the wrong size unless the images are
rescaled. The factor is measured on each dataset's *training* images, never
by trying scales on the images a model is tested on.

The measure: the stained region of a lymphocyte (its nucleus fills nearly
all of the cell in both laboratories' stains), found as in
:mod:`cellstudy.bloodcells.stain` (blue well above red and green, a closing that joins
lobes), its area turned into the diameter of a disc of that area; the median
over a dataset's training lymphocytes is that dataset's typical cell
diameter. Other classes are not used: a lobed nucleus (neutrophils,
eosinophils) is captured whole in one stain and lobe by lobe in the other.

The transforms are per-image transforms for the numcnn loaders (HWC uint8 in
and out, with a ``cache_key``), so the rescaled images are decoded once and
cached:

- :class:`ScaledToWindow` shrinks (or grows) a centred-cell image by a factor
  and sets it in the middle of a square window, the margin filled with the
  image's own background colour (the median of its border pixels): a PBC
  image seen at the blood-cell archive's scale, in the study's 144-pixel window;
- :class:`ScaledStainCrop` cuts a window around the stained cell of a frame
  (as :class:`cellstudy.bloodcells.stain.StainCrop`) and resizes it to a given
  size: a blood-cell frame seen at PBC's scale, as PBC's 128x128 images are.
"""

from __future__ import annotations

import numpy as np
from skimage import measure
from skimage.transform import resize

from numcnn.data import downscale, read_rgb_image

from ..bloodcells.stain import crop_to_stain, stain_mask

__all__ = ["stained_diameter", "typical_diameter", "scale_between", "MASK_SCALE",
           "ScaledToWindow", "ScaledStainCrop", "images_in_window", "rescaled_for_predict"]

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


def scale_between(bloodcell_lymphocytes, pbc_lymphocytes, say):
    """PBC pixels per blood-cell pixel: the ratio of the two datasets' lymphocyte diameters.

    Both lists are image files of *training* lymphocytes. Returns ``(ratio, facts)``,
    ``facts`` for results.json; ``say`` prints the measure.
    """
    bc = typical_diameter(bloodcell_lymphocytes)
    pb = typical_diameter(pbc_lymphocytes)
    ratio = pb[0] / bc[0]
    say(f"typical lymphocyte diameter (training images): blood-cell archive {bc[0]:.1f} px "
        f"(quartiles {bc[1][0]:.1f}-{bc[1][1]:.1f}, {bc[2]} cells), PBC {pb[0]:.1f} px "
        f"({pb[1][0]:.1f}-{pb[1][1]:.1f}, {pb[2]} cells): a PBC pixel is {1 / ratio:.3f} "
        f"blood-cell pixels")
    return ratio, {"bloodcells_px": bc, "pbc_px": pb, "pbc_px_per_bloodcell_px": ratio}


def images_in_window(x, transform, factor):
    """Loaded images (NCHW float32 in [0, 1], exact multiples of 1/255) through a per-image
    transform (HWC uint8 in and out), then block means by ``factor``: NCHW float32 in [0, 1]."""
    out = []
    for image in x:
        pixels = np.rint(image.transpose(1, 2, 0) * 255).astype(np.uint8)     # CHW -> HWC
        made = np.ascontiguousarray(transform(pixels).transpose(2, 0, 1), np.float32)
        out.append(downscale(made, factor) / 255)
    return np.stack(out).astype(np.float32)


def rescaled_for_predict(image, scale, window):
    """An image of any laboratory at the blood-cell archive's scale, at least ``window`` square.

    ``scale`` is the image's linear magnification relative to the archive's
    frames (1.0 for them): the image is resized by ``1 / scale``. A result
    smaller than the window is set in its middle on its own background colour
    (the median of its border), as :class:`ScaledToWindow` does for training.
    """
    height, width = image.shape[:2]
    if scale != 1:
        size = (max(1, round(height / scale)), max(1, round(width / scale)))
        image = np.clip(np.rint(resize(image, size, order=1, anti_aliasing=scale > 1,
                                       preserve_range=True)), 0, 255).astype(np.uint8)
        height, width = size
    if height >= window and width >= window:
        return image
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    out = np.empty((max(height, window), max(width, window), 3), np.uint8)
    out[:] = np.median(border, axis=0).astype(np.uint8)
    top, left = (out.shape[0] - height) // 2, (out.shape[1] - width) // 2
    out[top:top + height, left:left + width] = image
    return out


def _resized(image, side):
    """``image`` (HWC uint8) resized to ``side`` x ``side``, anti-aliased, back to uint8."""
    out = resize(image, (side, side), order=1, anti_aliasing=True, preserve_range=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


class ScaledToWindow:
    """Resize a square image by ``factor``, then centre it in a ``window`` x ``window`` square."""

    version = 1

    def __init__(self, factor, window):
        self.factor, self.window = float(factor), int(window)

    @property
    def cache_key(self):
        """Names the factor, the window and the version."""
        return f"scaled{self.factor:.4f}-window{self.window}-v{self.version}"

    def __call__(self, image):
        side = max(1, round(image.shape[0] * self.factor))
        small = _resized(image, side)
        border = np.concatenate([small[0], small[-1], small[:, 0], small[:, -1]])
        out = np.empty((self.window, self.window, 3), np.uint8)
        out[:] = np.median(border, axis=0).astype(np.uint8)
        top = (self.window - side) // 2
        if top >= 0:
            out[top:top + side, top:top + side] = small
        else:                                   # larger than the window: its centre
            out[:] = small[-top:-top + self.window, -top:-top + self.window]
        return out

    def __repr__(self):
        return f"ScaledToWindow({self.factor:.4f}, {self.window})"


class ScaledStainCrop:
    """A ``window`` x ``window`` crop around the stained cell, resized to ``size`` x ``size``."""

    version = 1

    def __init__(self, window, size):
        self.window, self.size = int(window), int(size)

    @property
    def cache_key(self):
        """Names the window, the size and the version."""
        return f"stain{self.window}-to{self.size}-v{self.version}"

    def __call__(self, image):
        return _resized(crop_to_stain(image, self.window), self.size)

    def __repr__(self):
        return f"ScaledStainCrop({self.window}, {self.size})"
