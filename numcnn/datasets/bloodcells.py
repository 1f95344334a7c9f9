"""The blood-cell images: Kaggle ``paultimothymooney/blood-cells`` (from BCCD, MIT licence).

Four classes of white blood cells, one 320x240 RGB JPEG (HWC ``(240, 320, 3)``)
per image, centred on the cell. TRAIN (9,957 images) and TEST (2,487) are
augmentations (turns, flips, shifts) of different original smear images;
TEST_SIMPLE (71) holds TEST's originals, one image each.

>>> from numcnn.datasets import bloodcells
>>> train = bloodcells.load_data("TRAIN", factor=8)          # doctest: +SKIP
>>> train.x.shape, train.classes                              # doctest: +SKIP
((9957, 3, 30, 40), ['EOSINOPHIL', 'LYMPHOCYTE', 'MONOCYTE', 'NEUTROPHIL'])

Where it is: the ``path`` argument (``--data`` in the examples), else the
environment variable ``NUMCNN_BLOODCELLS``, else ``~/data/blood-cells``. The folder may be the
unpacked Kaggle archive (holding ``dataset2-master/images/TRAIN``), a clone of
the GitHub repository ``dhruvp/wbc-classification`` (holding ``images/TRAIN``),
or the ``images`` folder itself.

The cache: decoded images are kept as exact integer block sums in one ``.npz``
per split and setting (:mod:`numcnn.data.cache`, keyed on the files' bytes and
on the transform's ``cache_key``), so the second load takes about a second.
Whole frames at ``factor=1`` (2.9 GB for all 12,444) are not cached: pass a
cropping ``transform`` or a ``factor``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from ..data.cache import load_or_decode
from ..data.decode import prepare_image, warn_skipped
from ..data.images import ImageSet, list_image_files, subsample_per_class
from ..data.transforms import to_unit_range
from ..errors import DataNotFoundError
from .. import validation
from .locate import locate_dataset

__all__ = ["CLASSES", "SPLITS", "IMAGE_SHAPE", "DATA_ENV_VAR", "default_data_dirs", "locate",
           "images_dir", "split_dir", "labels_csv_path", "count_per_class", "load_data"]

CLASSES = ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL")   # labels 0..3
"""The four classes, in label order (labels 0..3)."""
SPLITS = ("TRAIN", "TEST", "TEST_SIMPLE")
"""The splits of the archive, one folder each."""
IMAGE_SHAPE = (240, 320, 3)           # HWC of every JPEG in the archive
"""HWC shape of every JPEG in the archive."""
DATA_ENV_VAR = "NUMCNN_BLOODCELLS"
"""The environment variable that may say where the images are."""
SOURCE_URL = "https://www.kaggle.com/datasets/paultimothymooney/blood-cells"
"""Where the archive can be downloaded."""

#: Where the images/ folder may sit inside the folder the user points at.
_IMAGES_SUBFOLDERS = ("dataset2-master/images", "images", ".")
#: Where labels.csv (the label list of the original smears) may sit.
_LABELS_CSV_PLACES = ("dataset-master/labels.csv", "labels.csv")

HOW_TO_GET = f"""Get the blood-cell images from one of:
  * Kaggle, dataset paultimothymooney/blood-cells
      https://www.kaggle.com/datasets/paultimothymooney/blood-cells
      kaggle datasets download paultimothymooney/blood-cells -p ~/data/blood-cells --unzip
  * GitHub, repository dhruvp/wbc-classification (the same images/ tree)
      git clone https://github.com/dhruvp/wbc-classification ~/data/blood-cells
Unpack it so that <folder>/dataset2-master/images/TRAIN/EOSINOPHIL/*.jpeg exists
(for the GitHub clone: <folder>/images/TRAIN/...), then tell numcnn where <folder> is:
  1. pass it: bloodcells.load_data(path="<folder>"), or --data <folder> in the examples;
  2. or set the environment variable: export {DATA_ENV_VAR}=<folder>;
  3. or put it at the default place: ~/data/blood-cells."""


def default_data_dirs() -> List[Path]:
    """``~/data/blood-cells``."""
    return [Path.home() / "data" / "blood-cells"]


def _images_folder(root: Path) -> Optional[Path]:
    """The folder holding TRAIN/ (or another split) under ``root``, or None."""
    for subfolder in _IMAGES_SUBFOLDERS:
        candidate = root / subfolder
        if any((candidate / split).is_dir() for split in SPLITS):
            return candidate.resolve()
    return None


def locate(path=None) -> Path:
    """The folder that holds the images (absolute); :class:`DataNotFoundError` saying where to get them."""
    return locate_dataset(path, DATA_ENV_VAR, default_data_dirs(),
                          lambda folder: _images_folder(folder) is not None,
                          "blood-cell images", HOW_TO_GET)


def images_dir(path=None) -> Path:
    """The folder holding TRAIN/, TEST/ and TEST_SIMPLE/."""
    return _images_folder(locate(path))


def split_dir(split: str, path=None) -> Path:
    """The folder of one split, e.g. ``.../dataset2-master/images/TRAIN``."""
    validation.one_of(split, "split", "bloodcells", SPLITS)
    folder = images_dir(path) / split
    if not folder.is_dir():
        raise DataNotFoundError(f"the blood-cell split folder {folder} does not exist "
                                f"(the archive holds {', '.join(SPLITS)})")
    return folder


def labels_csv_path(path=None) -> Path:
    """``labels.csv``, the label list of the original smears; DataNotFoundError if absent."""
    root = locate(path)
    places = [root / place for place in _LABELS_CSV_PLACES]
    for place in places:
        if place.is_file():
            return place
    raise DataNotFoundError("labels.csv not found; looked at: " + ", ".join(map(str, places)))


def count_per_class(split: str = "TRAIN", path=None) -> Dict[str, int]:
    """``{class: number of image files}`` of one split, without decoding them."""
    _, _, labels = list_image_files(split_dir(split, path), CLASSES)
    counts = np.bincount(labels, minlength=len(CLASSES))
    return {name: int(count) for name, count in zip(CLASSES, counts)}


def load_data(split: str = "TRAIN", path=None, transform: Optional[Callable] = None,
              factor: int = 1, max_per_class: Optional[int] = None, seed: int = 0,
              cache_dir=None, cache: bool = True, progress: bool = True,
              allow_extra: bool = False) -> ImageSet:
    """One split of the blood-cell images as NCHW float32 in [0, 1].

    Each JPEG is decoded (HWC uint8, 240x320), passed through ``transform``
    (e.g. a crop; still HWC), turned into CHW and downscaled by ``factor``
    (block mean).

    Parameters
    ----------
    split : {"TRAIN", "TEST", "TEST_SIMPLE"}
    path : str or Path, optional
        Where the data is; see the module's docstring.
    transform : callable, optional
        ``transform(image) -> image`` on each HWC uint8 image. To be cached it
        needs a ``cache_key`` string (e.g. :class:`numcnn.data.CentreCrop`).
    factor : int
        Downscale factor; must divide the (transformed) height and width.
        ``factor=8`` without a transform gives 30x40 images.
    max_per_class : int, optional
        A seeded random subset of at most this many images per class (the
        file lists are sorted first, so the subset is reproducible).
    seed : int
        Seed of that subset.
    cache_dir, cache
        Where to cache (default ``$NUMCNN_CACHE`` or ``~/.cache/numcnn``), or not at all.
    progress : bool
        Show a progress bar while decoding.
    allow_extra : bool
        Ignore sub-folders of the split that are not one of :data:`CLASSES`.

    Returns
    -------
    ImageSet
        ``x`` (N, 3, H, W) float32 in [0, 1]; ``y`` (N,) int64 with
        ``CLASSES[y]`` the class; ``classes``; ``paths``; ``skipped`` (files
        left out, with the reason; a warning summarises them).

    Raises
    ------
    DataNotFoundError
        No data where it was looked for (the message says where to get it),
        or a missing split or class folder.
    DataError
        An empty or unexpected class folder, or no usable image.
    ValueError
        A ``factor`` that does not divide the (transformed) images, or bad
        arguments (before anything is decoded).
    """
    where = "bloodcells.load_data"
    factor = validation.positive_int(factor, "factor", where)
    if max_per_class is not None:
        validation.positive_int(max_per_class, "max_per_class", where)
    shape = prepare_image(np.zeros(IMAGE_SHAPE, np.uint8), transform, 1).shape if transform \
        else (3,) + IMAGE_SHAPE[:2]
    if shape[1] % factor or shape[2] % factor:
        raise ValueError(f"{where}: factor {factor} must divide the image size "
                         f"{shape[1]}x{shape[2]} (after the transform)")
    folder = split_dir(split, path)
    _, paths, labels = list_image_files(folder, CLASSES, allow_extra)
    if max_per_class is not None:
        chosen = subsample_per_class(labels, max_per_class, seed)
        paths, labels = [paths[i] for i in chosen], labels[chosen]
    subset = "all" if max_per_class is None else f"max{max_per_class}-seed{seed}"
    sums, kept_labels, kept, skipped = load_or_decode(
        folder, paths, labels, f"bloodcells-{split}-{subset}", transform, factor, IMAGE_SHAPE,
        cache_dir=cache_dir, cache=cache, progress=progress, description=f"decoding {split}")
    warn_skipped(skipped, len(paths), folder)
    return ImageSet(x=to_unit_range(sums, 255 * factor * factor), y=kept_labels,
                    classes=list(CLASSES), paths=kept, skipped=skipped)
