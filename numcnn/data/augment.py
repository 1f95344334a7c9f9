"""Data augmentation for NCHW batches: random flips and quarter turns.

All randomness comes from the ``numpy.random.Generator`` the caller passes in,
so one seed makes a whole run reproducible; nothing here touches the global
``np.random`` state.
"""

from __future__ import annotations

import numpy as np

__all__ = ["random_flips"]


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
