"""Per-image colour normalisation: one image's stain, brought to a common scale.

Two laboratories stain and photograph cells differently: the same cell comes
out pinker, darker or bluer. :func:`normalise_colour` removes what a single
image can say about that, before anything else: each channel of each image
is shifted to mean 0.5 and scaled to a spread of 0.2, so what is left is
where the colours differ within the image (the nucleus against the
cytoplasm and the background), not the slide's overall shade. It uses the
image alone: no statistics of another dataset.
"""

from __future__ import annotations

import numpy as np

__all__ = ["normalise_colour"]

TARGET_MEAN = 0.5
TARGET_SPREAD = 0.2


def normalise_colour(x):
    """Each image's channels to mean 0.5 and standard deviation 0.2; NCHW float32 in, out."""
    x = np.asarray(x, dtype=np.float32)
    mean = x.mean(axis=(2, 3), keepdims=True, dtype=np.float64)
    spread = x.std(axis=(2, 3), keepdims=True, dtype=np.float64)
    return ((x - mean) / np.maximum(spread, 1e-3) * TARGET_SPREAD + TARGET_MEAN).astype(np.float32)
