"""Camera augmentation for NCHW batches: another laboratory's optics, sensor and file format.

A stain augmentation (:mod:`numcnn.data.stain`) changes an image's colours; it
cannot teach a network trained on sharp, losslessly kept images what a softer
lens, a noisier sensor or a small JPEG file does to a cell. Three changes do,
each drawn per image from the model's Generator:

**Blur.** A Gaussian point spread of standard deviation ``sigma ~ Uniform(0,
blur)`` pixels, the same in every channel (``skimage.filters.gaussian``, the
border reflected). ``sigma = 0`` leaves the image as it is.

**Noise.** Each pixel plus ``Normal(0, s)``, ``s ~ Uniform(0, noise)`` per
image: a sensor's shot and read noise, roughly.

**JPEG.** The image written as a JPEG of quality ``q``, an integer drawn in
``low..high`` (Pillow's encoder, 4:2:0 chroma subsampling as cameras write
it), and read back: 8x8 blocks, lost fine detail, colour blurred at half
resolution. The pixels are clipped to [0, 1] and rounded to 8 bits on the
way, as any file's are.

In the order light meets them: the lens blurs, the sensor adds its noise,
the file is written last. Images are in
[0, 1]; the output is clipped to [0, 1]. :func:`camera_jitter` does all
three on a batch; ``numcnn.data.stain.lab_augment(camera=...)`` puts it in a
``fit(augment=...)`` function with the stains, the light and the scale.
"""

from __future__ import annotations

import io
from typing import Optional, Tuple

import numpy as np
from skimage.filters import gaussian

from .augment import check_rgb_batch

__all__ = ["random_blur", "random_noise", "jpeg_round_trip", "random_jpeg", "camera_jitter"]


def random_blur(x: np.ndarray, rng: np.random.Generator, blur: float) -> np.ndarray:
    """Each image blurred by a Gaussian of ``sigma ~ Uniform(0, blur)`` pixels.

    ``x`` (N, 3, H, W); returns a new array of its shape and dtype. Draws ``N`` uniforms
    (also when ``blur`` is 0, so that one seed's later draws do not depend on it).
    """
    x = check_rgb_batch(x, "random_blur")
    if not 0 <= blur < np.inf:
        raise ValueError(f"random_blur: blur must be a finite sigma >= 0; got {blur!r}")
    sigmas = rng.uniform(0.0, blur, size=len(x))
    out = np.array(x, copy=True)
    for k, sigma in enumerate(sigmas):
        if sigma > 0:
            out[k] = gaussian(x[k], sigma=float(sigma), mode="reflect", channel_axis=0,
                              preserve_range=True)
    return out


def random_noise(x: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Each pixel plus ``Normal(0, s)``, ``s ~ Uniform(0, noise)`` per image.

    Returns a new array of ``x``'s shape and dtype. Draws ``N`` uniforms, then ``x.size``
    normals.
    """
    x = check_rgb_batch(x, "random_noise")
    if not 0 <= noise < np.inf:
        raise ValueError(f"random_noise: noise must be a finite spread >= 0; got {noise!r}")
    spread = rng.uniform(0.0, noise, size=(len(x), 1, 1, 1))
    return (x + spread * rng.standard_normal(x.shape, dtype=np.float32)).astype(x.dtype, copy=False)


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """One (3, H, W) image written as a JPEG of ``quality`` (1-95) and read back, its
    pixels clipped to [0, 1] and rounded to 8 bits first.

    Returns float32 (3, H, W) in [0, 1], the 8-bit pixels of the decoded file / 255.
    """
    from PIL import Image   # Pillow: installed with scikit-image, which needs it

    if not 1 <= quality <= 95:
        raise ValueError(f"jpeg_round_trip: quality must be in 1..95; got {quality!r}")
    pixels = np.clip(np.rint(np.moveaxis(image, 0, -1) * 255.0), 0, 255).astype(np.uint8)
    file = io.BytesIO()
    Image.fromarray(pixels).save(file, format="JPEG", quality=int(quality),
                                 subsampling="4:2:0")
    file.seek(0)
    with Image.open(file) as decoded:
        back = np.asarray(decoded.convert("RGB"), dtype=np.float32)
    return np.moveaxis(back, -1, 0) / np.float32(255.0)


def random_jpeg(x: np.ndarray, rng: np.random.Generator, quality: Tuple[int, int]
                ) -> np.ndarray:
    """Each image through :func:`jpeg_round_trip` at a quality drawn from ``low..high``.

    ``quality`` (low, high), integers in 1..95, both included. Draws ``N`` integers (none
    when ``low == high``: a fixed quality leaves the Generator as it was).
    """
    x = check_rgb_batch(x, "random_jpeg")
    low, high = quality
    if not 1 <= low <= high <= 95:
        raise ValueError(f"random_jpeg: need 1 <= low <= high <= 95; got {quality!r}")
    qualities = rng.integers(low, high, endpoint=True, size=len(x))
    out = np.empty_like(x)
    for k, q in enumerate(qualities):
        out[k] = jpeg_round_trip(x[k], int(q))      # it clips to [0, 1] itself
    return out


def camera_jitter(x: np.ndarray, rng: np.random.Generator, blur: float = 1.0,
                  noise: float = 0.02, quality: Optional[Tuple[int, int]] = (30, 95)
                  ) -> np.ndarray:
    """Blur, noise and (``quality`` not None) a JPEG round trip, each drawn per image.

    ``x`` (N, 3, H, W), in [0, 1] or near it; returns a new array clipped to [0, 1] (light
    beyond the sensor's range saturates, as in a camera). With ``blur = 0``,
    ``noise = 0`` and ``quality = None`` the output is the input, through the same code.
    """
    out = random_noise(random_blur(x, rng, blur), rng, noise)
    if quality is not None:
        out = random_jpeg(out, rng, quality)
    return np.clip(out, 0.0, 1.0, out=out)
