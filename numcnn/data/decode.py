"""Decode image files into NCHW arrays: one image, then many.

Every image goes through the same steps, in :func:`prepare_image`: decode
(HWC uint8, as the file stores it), an optional per-image ``transform`` (a
crop, still HWC), the one layout change HWC -> CHW, and exact integer sums of
``factor`` x ``factor`` blocks. :func:`decode_images` applies them to a list
of files, skipping (and naming) those that cannot be used: a long run should
not die on image 9,000. Dividing the sums once by ``255 * factor**2`` gives
float32 in [0, 1] (:func:`numcnn.data.transforms.to_unit_range`), so a
single image preprocessed for prediction equals the loader's row for it, bit
for bit (:func:`preprocess_image`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from tqdm.auto import tqdm

from ..errors import DataError
from .images import ImageError, SkippedImagesWarning, read_rgb_image
from .transforms import block_sums, to_unit_range

__all__ = ["prepare_image", "preprocess_image", "decode_images", "warn_skipped"]


def prepare_image(image: np.ndarray, transform: Optional[Callable] = None,
                  factor: int = 1) -> np.ndarray:
    """One decoded image -> its CHW integer block sums, the loaders' steps.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
        HWC, as :func:`numcnn.data.images.read_rgb_image` returns it.
    transform : callable, optional
        ``transform(image) -> image``, both HWC uint8 (e.g. a crop).
    factor : int
        Downscale factor; must divide the (transformed) height and width.

    Returns
    -------
    ndarray, shape (3, H', W'), unsigned int
        Exact sums of ``factor`` x ``factor`` blocks (uint8 for factor 1).
    """
    if transform is not None:
        image = transform(image)
    chw = np.ascontiguousarray(np.asarray(image).transpose(2, 0, 1))   # HWC -> CHW: the one layout change
    return block_sums(chw, factor)


def preprocess_image(image: np.ndarray, transform: Optional[Callable] = None,
                     factor: int = 1) -> np.ndarray:
    """One decoded image as a loader returns it: CHW float32 in [0, 1].

    :func:`prepare_image` divided by ``255 * factor**2``; equal, bit for bit,
    to the loader's row for the same file. Add a batch axis (``x[None]``) to
    feed a model.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"preprocess_image expects an RGB uint8 image of shape (H, W, 3), "
                         f"got shape {image.shape} and dtype {image.dtype}")
    return to_unit_range(prepare_image(image, transform, factor), 255 * factor * factor)


def decode_images(paths: Sequence, expected_shape: Optional[Tuple[int, int, int]] = None,
                  transform: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                  factor: int = 1, progress: bool = False,
                  description: str = "decoding") -> Tuple[np.ndarray, List[int], List[Tuple[Path, str]]]:
    """Decode image files into one NCHW array of exact integer block sums.

    Each file goes through :func:`prepare_image`. Unusable files are skipped.

    Parameters
    ----------
    paths : sequence of str or Path
        Image files.
    expected_shape : (H, W, 3) tuple, optional
        Shape every decoded image must have; others are skipped. If None, the
        first usable image sets the shape for the rest.
    transform : callable, optional
        ``transform(image) -> image``, both HWC uint8.
    factor : int
        Downscale factor; must divide the (transformed) height and width.
    progress : bool
        Show a tqdm progress bar.
    description : str
        Label of the progress bar.

    Returns
    -------
    sums : ndarray, shape (M, 3, H', W'), unsigned int
        Block sums of the M usable images (uint8 for factor 1, uint16 for
        2..16). Divide by ``255 * factor**2`` for values in [0, 1].
    kept : list of int
        Index into ``paths`` of each row of ``sums``.
    skipped : list of (Path, str)
        Files left out, with the reason.

    Raises
    ------
    DataError
        If no file at all could be used.
    """
    sums = None
    kept: List[int] = []
    skipped: List[Tuple[Path, str]] = []
    for index, path in enumerate(tqdm(paths, desc=description, unit="img", disable=not progress)):
        try:
            image = read_rgb_image(path, expected_shape)
        except ImageError as error:
            skipped.append((Path(path), str(error)))
            continue
        image_sums = prepare_image(image, transform, factor)
        if sums is None:                                  # first usable image: allocate once
            sums = np.empty((len(paths),) + image_sums.shape, dtype=image_sums.dtype)
        elif image_sums.shape != sums.shape[1:]:
            skipped.append((Path(path), f"image of shape {image.shape} differs from the first "
                                        f"usable image, expected {tuple(sums.shape[1:])} after processing"))
            continue
        sums[len(kept)] = image_sums
        kept.append(index)
    if sums is None:
        reasons = "; ".join(f"{path}: {reason}" for path, reason in skipped[:3])
        raise DataError(f"none of the {len(paths)} image files could be used ({reasons})")
    return sums[:len(kept)], kept, skipped


def warn_skipped(skipped: Sequence[Tuple[Path, str]], total: int, where, shown: int = 5,
                 stacklevel: int = 2) -> None:
    """Emit one :class:`SkippedImagesWarning` summarising the skipped files (if any).

    Parameters
    ----------
    skipped : sequence of (Path, str)
        Files left out, with the reason.
    total : int
        Number of files that were tried.
    where : str or Path
        The folder (or set) they came from, for the message.
    shown : int
        How many files to name in the message.
    stacklevel : int
        As in ``warnings.warn``, counted from the function that calls this one:
        2 points the warning at that function's caller.
    """
    if not skipped:
        return
    lines = [f"  {path}: {reason}" for path, reason in skipped[:shown]]
    if len(skipped) > shown:
        lines.append(f"  ... and {len(skipped) - shown} more (see ImageSet.skipped)")
    warnings.warn(
        f"skipped {len(skipped)} of {total} image files in {where}:\n" + "\n".join(lines),
        SkippedImagesWarning, stacklevel=stacklevel + 1,
    )
