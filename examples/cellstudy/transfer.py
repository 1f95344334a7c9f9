"""Per-image transforms that bring one laboratory's cells to another's scale and window.

Both are transforms for the numcnn loaders (HWC uint8 in and out, with a
``cache_key``), so the rescaled images are decoded once and cached:

- :class:`ScaledToWindow` shrinks (or grows) a centred-cell image by a factor
  and sets it in the middle of a square window, the margin filled with the
  image's own background colour (the median of its border pixels): a PBC
  image seen at the blood-cell archive's scale, in the study's 144-pixel window;
- :class:`ScaledStainCrop` cuts a window around the stained cell of a frame
  (as :class:`cellstudy.stain.StainCrop`) and resizes it to a given size: a
  blood-cell frame seen at PBC's scale, as PBC's 128x128 images are.
"""

from __future__ import annotations

import numpy as np
from skimage.transform import resize

from .stain import crop_to_stain

__all__ = ["ScaledToWindow", "ScaledStainCrop"]


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
