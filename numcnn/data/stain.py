"""Stain, scale and light augmentation for NCHW batches: another laboratory's slides, simulated.

A network trained on one laboratory's slides learns that laboratory's stain,
microscope and camera as much as the cells. The field's answer is to train on
variations of them (Tellez et al., "Whole-slide mitosis detection in H&E
breast histology using PHH3 as a reference to train distilled stain-invariant
convolutional networks", IEEE TMI 2018; "Quantifying the effects of data
augmentation and stain color normalization in convolutional neural networks
for computational pathology", Medical Image Analysis 58, 2019): change the
amount of each stain, the magnification and the light, at random, for every
training image.

**Stains.** By the Beer-Lambert law a stain absorbs light in proportion to how
much of it there is: in *optical density* ``OD = -ln(I)`` (``I`` the light
that passes, in (0, 1]) a pixel is a sum of the stains' colour vectors,
``OD = C @ M``, one row of ``M`` a stain, ``C`` its concentrations. So::

    C = -ln(max(x, 1e-6)) @ inv(M)        per pixel, x in [0, 1] (NCHW: over C)
    C' = C * alpha + beta                 alpha, beta drawn per image and stain
    x' = exp(-(C' @ M))

with no clamp in between, so that with ``alpha = 1, beta = 0`` the round trip
gives ``x`` back (scikit-image's ``rgb2hed``/``hed2rgb`` clamp negative
concentrations, and are not an exact round trip). The basis: both
laboratories' smears are stained with Romanowsky stains (May-Grünwald-Giemsa
for PBC; Wright's or Giemsa's for the blood-cell archive's), whose dyes are a
blue (methylene blue and its azures, purple on nuclei) and eosin (pink on red
cells and granules). So the default is scikit-image's Giemsa basis
(``skimage.color.rgb_from_bex``: methyl blue, eosin, and a third vector
orthogonal to both), not its HED basis, which is for H&E and DAB on tissue
(kept as ``basis="hed"``).

**Scale.** Two laboratories photograph cells at other magnifications; each
image is zoomed about its centre by a factor drawn in a range around 1
(bilinear, the border's pixels repeated where the zoomed-out image ends).

**Light.** Brightness and contrast per image: ``(x - mean) * c + mean + b``.

Everything is vectorised over the batch; every random number comes from the
Generator passed in. :func:`lab_augment` puts them together, with random
crops and flips, as one ``fit(augment=...)`` function that also works on
mean-subtracted images.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np
from skimage.color import colorconv

from .acquisition import camera_jitter
from .augment import check_rgb_batch, random_crop, random_flips

__all__ = ["STAIN_BASES", "MIN_LIGHT", "stain_concentrations", "from_concentrations",
           "change_stains", "stain_jitter", "random_rescale", "brightness_contrast",
           "lab_augment"]

STAIN_BASES = {"giemsa": np.asarray(colorconv.rgb_from_bex, dtype=np.float64),
               "hed": np.asarray(colorconv.rgb_from_hed, dtype=np.float64)}
"""Stain colour vectors (rows, in optical density), from scikit-image: ``"giemsa"`` (methyl
blue, eosin, a third vector orthogonal to both) and ``"hed"`` (haematoxylin, eosin, DAB)."""
MIN_LIGHT = 1e-6
"""The smallest light a pixel may pass (black pixels would have an infinite density)."""


def _basis(basis) -> np.ndarray:
    if isinstance(basis, str):
        if basis not in STAIN_BASES:
            raise ValueError(f"unknown stain basis {basis!r}; choose one of {sorted(STAIN_BASES)} "
                             f"or pass a 3x3 array (rows: the stains' optical densities)")
        return STAIN_BASES[basis]
    matrix = np.asarray(basis, dtype=np.float64)
    if matrix.shape != (3, 3) or not np.isfinite(matrix).all() or \
            abs(np.linalg.det(matrix)) < 1e-6:
        raise ValueError(f"a stain basis must be an invertible 3x3 array; got shape "
                         f"{matrix.shape}")
    return matrix


def stain_concentrations(x: np.ndarray, basis="giemsa") -> np.ndarray:
    """Each pixel's amount of each stain: ``-ln(max(x, MIN_LIGHT)) @ inv(basis)`` over the
    channels. ``x`` (N, 3, H, W) in [0, 1] -> (N, 3, H, W), not clamped (may be negative)."""
    x = check_rgb_batch(x, "stain_concentrations")
    density = -np.log(np.maximum(x, MIN_LIGHT))
    return np.einsum("nchw,cs->nshw", density, np.linalg.inv(_basis(basis))).astype(x.dtype)


def from_concentrations(concentrations: np.ndarray, basis="giemsa") -> np.ndarray:
    """The image of stain ``concentrations`` (N, 3, H, W): ``exp(-(C @ basis))``, clipped to
    [0, 1] (more light than comes in cannot pass)."""
    density = np.einsum("nshw,sc->nchw", concentrations, _basis(basis))
    return np.clip(np.exp(-density), 0.0, 1.0).astype(concentrations.dtype)


def change_stains(x: np.ndarray, scale: np.ndarray, shift: np.ndarray, basis="giemsa"
                  ) -> np.ndarray:
    """``x`` with each stain's concentration ``C * scale + shift``.

    ``scale`` and ``shift`` broadcast against (N, 3, 1, 1): one number per stain,
    or per image and stain. With ``scale = 1, shift = 0`` it returns ``x`` (up to
    float rounding, and pixels darker than :data:`MIN_LIGHT`).
    """
    concentrations = stain_concentrations(x, basis)
    scale = np.asarray(scale, dtype=x.dtype).reshape(-1, 3, 1, 1)
    shift = np.asarray(shift, dtype=x.dtype).reshape(-1, 3, 1, 1)
    return from_concentrations(concentrations * scale + shift, basis)


def stain_jitter(x: np.ndarray, rng: np.random.Generator, scale: float = 0.1,
                 shift: float = 0.1, basis="giemsa") -> np.ndarray:
    """Change each image's amount of each stain at random (Tellez et al.'s HED jitter, in
    the Giemsa basis by default).

    For image ``n`` and stain ``s``: ``C[n, s] * alpha + beta`` with
    ``alpha ~ Uniform(1 - scale, 1 + scale)``, ``beta ~ Uniform(-shift, shift)``
    (draws ``6 N`` uniforms). ``x`` (N, 3, H, W) in [0, 1]; returns a new array.
    """
    x = check_rgb_batch(x, "stain_jitter")
    if not 0 <= scale < 1 or not 0 <= shift:
        raise ValueError(f"stain_jitter: scale must be in [0, 1) and shift >= 0; got "
                         f"{scale!r}, {shift!r}")
    n = len(x)
    alpha = rng.uniform(1 - scale, 1 + scale, size=(n, 3, 1, 1))
    beta = rng.uniform(-shift, shift, size=(n, 3, 1, 1))
    return change_stains(x, alpha, beta, basis)


def random_rescale(x: np.ndarray, rng: np.random.Generator, low: float = 0.9,
                   high: float = 1.1) -> np.ndarray:
    """Zoom each image about its centre by a factor drawn from ``Uniform(low, high)``.

    Bilinear; output pixel ``(i, j)`` reads the input at ``((i - ci) / f + ci,
    (j - cj) / f + cj)``, clamped to the image (a zoomed-out image's border
    pixels are repeated out to its edge). ``x`` (N, C, H, W); returns a new
    array of the same shape and dtype. Draws ``N`` uniforms.
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"random_rescale expects an (N, C, H, W) batch; got {x.shape}")
    if not 0 < low <= high:
        raise ValueError(f"random_rescale: need 0 < low <= high; got {low!r}, {high!r}")
    N, C, H, W = x.shape
    factor = rng.uniform(low, high, size=(N, 1, 1))
    rows = (np.arange(H)[None, :, None] - (H - 1) / 2) / factor + (H - 1) / 2    # (N, H, 1)
    cols = (np.arange(W)[None, None, :] - (W - 1) / 2) / factor + (W - 1) / 2    # (N, 1, W)
    rows = np.clip(rows, 0, H - 1)
    cols = np.clip(cols, 0, W - 1)
    top = np.minimum(np.floor(rows).astype(np.intp), H - 2) if H > 1 else np.zeros_like(
        rows, dtype=np.intp)
    left = np.minimum(np.floor(cols).astype(np.intp), W - 2) if W > 1 else np.zeros_like(
        cols, dtype=np.intp)
    dy = (rows - top).astype(x.dtype)                                             # (N, H, 1)
    dx = (cols - left).astype(x.dtype)                                            # (N, 1, W)
    below = np.minimum(top + 1, H - 1)
    right = np.minimum(left + 1, W - 1)
    out = np.empty_like(x)
    for k in range(N):    # bilinear is separable: between two rows, then two columns
        between_rows = (x[k][:, top[k, :, 0]] * (1 - dy[k])
                        + x[k][:, below[k, :, 0]] * dy[k])                        # (C, H, W)
        out[k] = (between_rows[:, :, left[k, 0]] * (1 - dx[k])
                  + between_rows[:, :, right[k, 0]] * dx[k])
    return out


def brightness_contrast(x: np.ndarray, rng: np.random.Generator, brightness: float = 0.1,
                        contrast: float = 0.1) -> np.ndarray:
    """``(x - m) * c + m + b`` per image, ``m`` the image's mean,
    ``c ~ Uniform(1 - contrast, 1 + contrast)``, ``b ~ Uniform(-brightness, brightness)``.
    Draws ``2 N`` uniforms; returns a new array."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"brightness_contrast expects an (N, C, H, W) batch; got {x.shape}")
    if not 0 <= contrast < 1 or not 0 <= brightness:
        raise ValueError(f"brightness_contrast: contrast must be in [0, 1) and brightness >= 0; "
                         f"got {contrast!r}, {brightness!r}")
    n = len(x)
    gain = rng.uniform(1 - contrast, 1 + contrast, size=(n, 1, 1, 1)).astype(x.dtype)
    offset = rng.uniform(-brightness, brightness, size=(n, 1, 1, 1)).astype(x.dtype)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return (x - mean) * gain + mean + offset


def lab_augment(size: Optional[int], mean_image: Optional[np.ndarray] = None,
                stain: Tuple[float, float] = (0.1, 0.1), rescale: Tuple[float, float] = (0.9, 1.1),
                light: Tuple[float, float] = (0.1, 0.1), basis="giemsa", rotate90: bool = True,
                camera: Optional[dict] = None) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    """Stains, light, scale (and the camera), a random crop and flips: one ``fit(augment=...)``.

    Parameters
    ----------
    size : int or None
        Side of the random crop (None: no crop).
    mean_image : ndarray (3, H, W), optional
        The batches are mean-subtracted (``x - mean_image``): the stain and light
        changes act on ``x`` in [0, 1], so the mean is added back first and
        subtracted again after.
    stain : (scale, shift)
        :func:`stain_jitter`'s strengths.
    rescale : (low, high)
        :func:`random_rescale`'s range of factors.
    light : (brightness, contrast)
        :func:`brightness_contrast`'s strengths.
    camera : dict, optional
        Keyword arguments of :func:`numcnn.data.acquisition.camera_jitter` (blur, noise,
        JPEG quality), applied after the rescale; its output is clipped to [0, 1] (the
        light step's may leave it); None: no camera changes.

    The order, each step drawing from the model's Generator: stains, light,
    rescale, camera (with ``camera``), crop, flips (and quarter turns with ``rotate90``).
    """
    unknown = sorted(set(camera or {}) - {"blur", "noise", "quality"})
    if unknown:
        raise ValueError(f"lab_augment camera: unknown setting {unknown[0]!r}; it takes blur, "
                         f"noise and quality")
    scale, shift = stain
    low, high = rescale
    brightness, contrast = light

    def augment(xb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raw = xb if mean_image is None else xb + mean_image
        raw = stain_jitter(np.clip(raw, 0.0, 1.0), rng, scale, shift, basis)
        raw = brightness_contrast(raw, rng, brightness, contrast)
        raw = random_rescale(raw, rng, low, high)
        if camera is not None:
            raw = camera_jitter(raw, rng, **camera)
        xb = raw if mean_image is None else raw - mean_image
        if size is not None:
            xb = random_crop(xb, size, rng)
        return random_flips(xb, rng, horizontal=True, vertical=True, rotate90=rotate90)
    return augment
