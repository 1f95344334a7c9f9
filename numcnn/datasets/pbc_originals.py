"""PBC as its authors publish it: the original images, checked and prepared.

The public archive ``PBC_dataset_normal_DIB.zip`` (Acevedo et al., Data in
Brief 30 (2020) 105474, Mendeley Data doi:10.17632/snkd93bnjr.1, licence
CC BY 4.0: credit the authors and the article wherever the data or results
from it are shown) unpacks to::

    PBC_dataset_normal_DIB/<class>/<file>.jpg     RGB JPEGs, 360x363 (W x H), 250 of
                                                 them 366x369 and a few 360x360

This module holds what :func:`numcnn.datasets.pbc.load_data` needs to read
that layout:

- :func:`prepare_original`: one original (HWC uint8) -> the 128x128 image the
  prepared copy holds: the central 200x200 pixels, resized with Pillow's
  bicubic filter. The prepared copy's images are exactly this, saved as JPEG
  quality 90: encoding the result the same way gives back their pixels bit
  for bit; without that lossy step a prepared original differs from the
  prepared copy's image by JPEG rounding only (a mean absolute difference of
  about 0.006-0.019 in [0, 1]).
- :class:`PrepareOriginal`: the same as a per-image ``transform`` with a
  ``cache_key``, as the loaders and :mod:`numcnn.data.cache` expect.
- :func:`find_originals_folder`: where the class folders are, given the
  folder itself or the one holding it.
- :func:`check_md5`: every file's bytes against the MD5 its split table gives.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from ..errors import DataError

__all__ = ["ORIGINALS_FOLDER", "CROP_SIZE", "PREPARED_SIZE", "prepare_original",
           "PrepareOriginal", "find_originals_folder", "file_md5", "check_md5"]

ORIGINALS_FOLDER = "PBC_dataset_normal_DIB"
"""The folder the public archive unpacks to (it holds one folder per class)."""
CROP_SIZE = 200
"""Side of the central window cut from each original, in pixels."""
PREPARED_SIZE = 128
"""Side of a prepared image, in pixels."""
_CHUNK = 1 << 20


def prepare_original(image: np.ndarray, offset: Tuple[int, int] = (0, 0)) -> np.ndarray:
    """One original image -> its central 200x200 pixels resized to 128x128 (bicubic).

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
        HWC, as decoded from the original JPEG (e.g. 363 x 360 x 3).
    offset : (int, int)
        Rows and columns to move the window by (down, right). (0, 0), the
        default, is the preparation of the prepared copy; anything else is for
        experiments (a window a few pixels off shows how much the centring
        matters).

    Returns
    -------
    ndarray, shape (128, 128, 3), uint8
        HWC.

    Notes
    -----
    The window starts at row ``(H - 200) // 2`` and column ``(W - 200) // 2``
    (rounded down where the margin is odd: rows 81-280 of a 363-row
    original), and Pillow's ``Image.resize((128, 128), BICUBIC)`` reduces it
    (a cubic kernel with a = -0.5, widened by the reduction factor 200/128 so
    that it also averages, in Pillow's 8-bit fixed-point arithmetic). This is
    the recipe that reproduces the prepared copy; the same cut and resize
    done with scikit-image's or PyTorch's bicubic, or the window one row
    lower, do not.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"prepare_original expects an RGB uint8 image of shape (H, W, 3), "
                         f"got shape {image.shape} and dtype {image.dtype}")
    height, width = image.shape[:2]
    top = (height - CROP_SIZE) // 2 + int(offset[0])
    left = (width - CROP_SIZE) // 2 + int(offset[1])
    if top < 0 or left < 0 or top + CROP_SIZE > height or left + CROP_SIZE > width:
        raise ValueError(f"prepare_original: a {CROP_SIZE}x{CROP_SIZE} window at row {top}, "
                         f"column {left} (offset {tuple(offset)}) leaves the image of shape "
                         f"{image.shape}; a PBC original is about 360x363")
    window = Image.fromarray(image[top:top + CROP_SIZE, left:left + CROP_SIZE])
    resized = window.resize((PREPARED_SIZE, PREPARED_SIZE), Image.Resampling.BICUBIC)
    return np.asarray(resized)


class PrepareOriginal:
    """:func:`prepare_original` as a per-image transform the loaders can cache.

    ``PrepareOriginal()(image)`` takes an original (HWC uint8) and returns its
    prepared 128x128 image (HWC uint8). Its ``cache_key`` changes whenever
    what it computes changes (the offset, or a new ``version`` of the recipe).
    """

    version = 1

    def __init__(self, offset: Tuple[int, int] = (0, 0)):
        self.offset = (int(offset[0]), int(offset[1]))

    @property
    def cache_key(self) -> str:
        """``"pbc-original-v<version>"``, with the offset when there is one."""
        shift = "" if self.offset == (0, 0) else f"-offset{self.offset[0]}_{self.offset[1]}"
        return f"pbc-original-v{self.version}{shift}"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return prepare_original(image, self.offset)

    def __repr__(self):
        return f"PrepareOriginal(offset={self.offset})"


def find_originals_folder(folder, classes: Iterable[str]) -> Optional[Path]:
    """The folder holding the class folders of the public layout, or None.

    Parameters
    ----------
    folder : str or Path
        ``PBC_dataset_normal_DIB`` itself (under any name: a folder holding at
        least one of ``classes``), or the folder that holds it.
    classes : iterable of str
        The class folders' names.

    Returns
    -------
    Path or None
        The folder with the class folders; None if ``folder`` is neither.
    """
    folder = Path(folder)
    for candidate in (folder / ORIGINALS_FOLDER, folder):
        if candidate.is_dir() and any((candidate / name).is_dir() for name in classes):
            return candidate
    return None


def file_md5(path) -> str:
    """The MD5 of a file's bytes (hex), as the split table gives it."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def check_md5(paths: Sequence[Path], expected: Sequence[str], table: str, shown: int = 3) -> None:
    """Check that every file's bytes have the MD5 the split table gives.

    Parameters
    ----------
    paths : sequence of Path
        Original image files.
    expected : sequence of str
        The MD5 (hex) of each, from the table.
    table : str
        The table's name, for the message.
    shown : int
        How many differing files to name in the message.

    Raises
    ------
    DataError
        One or more files differ, each named with both checksums: a damaged,
        changed or replaced file is never used as if it were the original.
    """
    differ = [(Path(path), md5, file_md5(path)) for path, md5 in zip(paths, expected)]
    differ = [(path, md5, found) for path, md5, found in differ if found != md5.lower()]
    if not differ:
        return
    named = "; ".join(f"{path} has MD5 {found}, {table} expects {md5}"
                      for path, md5, found in differ[:shown])
    more = f"; and {len(differ) - shown} more" if len(differ) > shown else ""
    raise DataError(f"{len(differ)} of {len(paths)} PBC original(s) differ from the published "
                    f"files ({named}{more}). A damaged, changed or replaced file is not the "
                    f"original image: unpack it again from {ORIGINALS_FOLDER}.zip. (A prepared "
                    f"128x128 copy is read from the folder holding its images/ and splits.csv.)")
