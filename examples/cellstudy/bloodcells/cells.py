"""Which images of the blood-cell archive are copies of one original cell.

TRAIN and TEST are augmentations (turns, flips, shifts) of a few hundred
original cells, and the file names carry no cell id. :func:`cell_groups`
estimates one from the pixels (:mod:`cellstudy.bloodcells.duplicates`), for a validation
split that holds out whole cells and for intervals over cells rather than
images; :func:`original_cell_counts` reads from the file names how many
originals each class was made from.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path
from typing import List, Optional

import numpy as np

from numcnn.data import ImageSet, default_cache_dir, downscale, image_files_in
from numcnn.errors import DataError
from numcnn.files import write_atomically

from .duplicates import group_per_class

__all__ = ["original_cell_counts", "cell_groups", "training_cells", "test_cells", "GROUPS_SIDE"]

# The archive's augmented files are named "_<position>_<random>.jpeg": <position> is
# the image's place in an augmentation batch that held every original cell of its
# class once, so there are as many positions as originals (TEST: 13, 6, 4 and 48,
# exactly the cells of TEST_SIMPLE). The position is not a cell id: images of one
# position are not one cell.
_AUGMENTED_NAME = re.compile(r"^_(\d+)_\d+\.[A-Za-z]+$")
GROUPS_VERSION = 1    # bump when cellstudy.bloodcells.duplicates changes how groups are found
GROUPS_SIDE = 72      # cells are matched on images at most this wide (block means)


def _matching_resolution(x: np.ndarray) -> np.ndarray:
    """``x`` shrunk by the smallest whole factor that leaves sides <= GROUPS_SIDE.

    The cells are told apart by their shape and neighbours, not by detail.
    This makes the default 144-pixel crop match at 72 pixels whether it was
    loaded at factor 1 or 2 (so both share one cached set of groups and hold
    out the same cells); other crops and factors need not land on the same
    size. Images with no such factor that keeps 16 pixels are used as they are.
    """
    height, width = x.shape[-2:]
    for factor in range(1, max(height, width) + 1):
        if height % factor == 0 and width % factor == 0 and max(height, width) // factor <= GROUPS_SIDE:
            break
    if factor == 1 or min(height, width) // factor < 16:
        return x
    return downscale(x, factor)


def original_cell_counts(images: ImageSet) -> List[int]:
    """How many original cells each class of an augmented split was made from.

    Counted as the number of distinct batch positions in the file names
    (``_<position>_<random>.jpeg``) of the class folder (all its files so named,
    so that a subset counts like the whole folder) and of the images
    themselves, capped by the number of images of the class in ``images``.

    Parameters
    ----------
    images : ImageSet
        A split of :func:`numcnn.datasets.bloodcells.load_data` (TRAIN or TEST).

    Returns
    -------
    list of int, one per class in label order

    Raises
    ------
    ValueError
        If a file name does not follow the archive's pattern (then the count of
        originals cannot be read from the names).
    """
    counts = []
    for label in range(len(images.classes)):
        paths = [Path(path) for path, y in zip(images.paths, images.y) if y == label]
        positions = set()
        for path in paths:
            position = _batch_position(path.name)
            if position is None:
                raise ValueError(f"{path}: not named like the archive's augmented images "
                                 f"('_<position>_<number>.jpeg'), so the number of original "
                                 f"cells cannot be read from the file names")
            positions.add(position)
        for folder in {path.parent for path in paths if path.parent.is_dir()}:
            listed = map(_batch_position, (file.name for file in image_files_in(folder)))
            positions.update(position for position in listed
                             if position is not None)   # other files (e.g. unreadable): ignored
        counts.append(min(len(positions), len(paths)))
    return counts


def _batch_position(name: str) -> Optional[int]:
    """The ``<position>`` of ``_<position>_<random>.jpeg``, or None for other names."""
    match = _AUGMENTED_NAME.match(name)
    return None if match is None else int(match.group(1))


def cell_groups(images: ImageSet, cache_dir=None, cache: bool = True,
                progress: bool = True) -> np.ndarray:
    """An estimated original-cell id for every image of an augmented split.

    Each class is cut into :func:`original_cell_counts` groups of turned,
    mirrored and shifted copies by :func:`cellstudy.bloodcells.duplicates.group_per_class`
    (on the stain crops, so the images should be loaded with a crop), shrunk
    by block means to at most 72 pixels a side (so the default 144-pixel crop
    finds the same groups at factor 1 as at factor 2). The result is cached
    next to the decoded images (about a minute for TRAIN).

    Parameters
    ----------
    images : ImageSet
        From :func:`numcnn.datasets.bloodcells.load_data` with a stain crop.
    cache_dir : str or Path, optional
        Default :func:`default_cache_dir`.
    cache : bool
        Read and write the cache.
    progress : bool
        Say when the groups are being computed.

    Returns
    -------
    ndarray, shape (N,), int64
        Group of each image; groups never mix classes.
    """
    counts = original_cell_counts(images)
    x = _matching_resolution(images.x)
    digest = hashlib.sha256(json.dumps({"version": GROUPS_VERSION, "counts": counts,
                                        "shape": list(x.shape)}).encode())
    for path, label in zip(images.paths, images.y):
        digest.update(f"{Path(path).parent.name}/{Path(path).name}\t{label}\n"
                      .encode("utf-8", "surrogateescape"))       # any bytes of a name
    digest.update(np.ascontiguousarray(x).data)            # the pixels themselves
    file = Path(cache_dir or default_cache_dir()) / f"bloodcells-cellgroups-{digest.hexdigest()[:16]}.npy"
    if cache and file.exists():
        try:
            groups = np.load(file)
            if groups.shape == (len(images),):
                return groups
            warnings.warn(f"cache file {file} holds {groups.shape} groups for {len(images)} "
                          f"images; rebuilding it", stacklevel=2)
        except (OSError, ValueError) as error:
            warnings.warn(f"damaged cache file {file} ({error}); rebuilding it", stacklevel=2)
    if progress:
        print(f"finding the original cells of {len(images)} images "
              f"({dict(zip(images.classes, counts))} cells; about a minute, then cached)")
    groups = group_per_class(x, images.y, counts)
    if cache:
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(file, lambda handle: np.save(handle, groups))
        except OSError as error:
            warnings.warn(f"could not write the cache file {file} ({error}); continuing "
                          f"without it", stacklevel=2)
    return groups


def training_cells(images: ImageSet, cache_dir=None, progress: bool = True) -> np.ndarray:
    """:func:`cell_groups` of a training split, which must give each class 2 cells or more.

    Raises
    ------
    DataError
        When the file names do not count the cells (not the archive's naming),
        or a class has fewer than 2 cells, so none can be held out whole; the
        message names the way out (``--validation images``).
    """
    try:
        groups = cell_groups(images, cache_dir=cache_dir, progress=progress)
    except ValueError as error:
        raise DataError(f"{error}\n(--validation images splits by image instead)") from None
    for label, name in enumerate(images.classes):
        if len(np.unique(groups[images.y == label])) < 2:
            raise DataError(f"TRAIN/{name}: the file names give fewer than 2 original cells "
                            f"(distinct batch positions '_<position>_'), so none can be held out "
                            f"whole for validation\n(--validation images splits by image instead)")
    return groups


def test_cells(images: ImageSet, cache_dir=None, progress: bool = True) -> Optional[np.ndarray]:
    """:func:`cell_groups` of a test split, or None (with a warning) where names do not count them."""
    try:
        return cell_groups(images, cache_dir=cache_dir, progress=progress)
    except ValueError as error:        # e.g. file names that do not count the cells
        warnings.warn(f"no interval over TEST's cells: {error}", stacklevel=2)
        return None
