"""The blood-cell dataset (Kaggle ``paultimothymooney/blood-cells``, from BCCD).

Where it is
-----------
The archive unpacks to a folder (the "archive root") holding::

    dataset2-master/images/{TRAIN,TEST,TEST_SIMPLE}/{EOSINOPHIL,...}/*.jpeg
    dataset-master/labels.csv

:func:`locate_bloodcells` finds that folder: the ``data_dir`` argument
(``--data`` in ``examples/bloodcells.py``), else the environment variable
``NUMCNN_BLOODCELLS``, else ``../shared/blood-cells`` from the current
directory, else ``~/data/blood-cells``. It also accepts ``dataset2-master``
itself, or a clone of the GitHub repository ``dhruvp/wbc-classification``
(which holds ``images/TRAIN`` at its top).

What it holds
-------------
Every image is a 320x240 RGB JPEG (HWC (240, 320, 3)) centred on one white
cell. TRAIN (9,957) and TEST (2,487) are augmentations of different original
smears; TEST_SIMPLE (71) holds TEST's originals. ``labels.csv`` is the raw
label list of the originals, see :func:`read_original_labels`.

:func:`load_bloodcells` decodes a split, optionally crops a window around the
stained cell, downscales, and returns NCHW float32 in [0, 1]. The result is
cached as exact integer block sums in one ``.npz`` file, so the second load
takes about a second.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .images import (ImageSet, _image_files_in, decode_images, list_image_files,
                     subsample_per_class, warn_skipped)
from .preprocess import crop_to_stain, downscale, to_unit_range

__all__ = [
    "CLASSES",
    "SPLITS",
    "IMAGE_SHAPE",
    "DATA_ENV_VAR",
    "CACHE_ENV_VAR",
    "default_data_dirs",
    "locate_bloodcells",
    "images_dir",
    "split_dir",
    "labels_csv_path",
    "count_per_class",
    "class_count_table",
    "OriginalLabels",
    "read_original_labels",
    "default_cache_dir",
    "load_bloodcells",
    "original_cell_counts",
    "cell_groups",
]

CLASSES = ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL")   # labels 0..3
SPLITS = ("TRAIN", "TEST", "TEST_SIMPLE")
IMAGE_SHAPE = (240, 320, 3)           # HWC of every JPEG in the archive

DATA_ENV_VAR = "NUMCNN_BLOODCELLS"
CACHE_ENV_VAR = "NUMCNN_CACHE"

# Where the images/ folder may sit inside the folder the user points at:
# the Kaggle archive (also with its folders nested twice), dataset2-master
# itself, a clone of dhruvp/wbc-classification (two layouts over its history),
# or the images folder itself.
_IMAGES_SUBFOLDERS = (
    "dataset2-master/images",
    "dataset2-master/dataset2-master/images",
    "images",
    "_inputs/images",
    ".",
)
_LABELS_CSV_PLACES = (
    "dataset-master/labels.csv",
    "dataset-master/dataset-master/labels.csv",
    "labels.csv",
    "_inputs/labels.csv",
)

# Bump when decoding, cropping or the cache layout change: old caches are then ignored.
CACHE_VERSION = 2  # 2: stain crops are centred and zero-padded, not clamped


# ----------------------------------------------------------------------------
# Locating the archive
# ----------------------------------------------------------------------------

def default_data_dirs() -> List[Path]:
    """The places checked when neither an argument nor NUMCNN_BLOODCELLS is given.

    Returns
    -------
    list of Path
        ``../shared/blood-cells`` from the current directory, then
        ``~/data/blood-cells``, in that order.
    """
    return [Path.cwd().parent / "shared" / "blood-cells",
            Path.home() / "data" / "blood-cells"]


def _find_images_folder(root: Path) -> Optional[Path]:
    """The folder holding TRAIN/ (or another split) under ``root``, or None."""
    for subfolder in _IMAGES_SUBFOLDERS:
        candidate = root / subfolder
        if any((candidate / split).is_dir() for split in SPLITS):
            return candidate.resolve()
    return None


def _how_to_get_the_data(tried: Sequence[Tuple[str, Path]]) -> str:
    """The help text of the 'not found' error: where to download, unpack, point."""
    tried_lines = "\n".join(f"      {how}: {path}" for how, path in tried)
    return f"""
Get the blood-cell images from one of:
  * Kaggle, dataset paultimothymooney/blood-cells
      https://www.kaggle.com/datasets/paultimothymooney/blood-cells
      kaggle datasets download paultimothymooney/blood-cells -p ~/data/blood-cells --unzip
    (or download blood-cells.zip in the browser and unzip it into ~/data/blood-cells)
  * GitHub, repository dhruvp/wbc-classification (the same images/ tree)
      git clone https://github.com/dhruvp/wbc-classification ~/data/blood-cells
Unpack it so that <folder>/dataset2-master/images/TRAIN/EOSINOPHIL/*.jpeg exists
(for the GitHub clone: <folder>/images/TRAIN/...), then tell numcnn where <folder> is,
in one of three ways:
  1. pass it explicitly: load_bloodcells(data_dir="<folder>"), or
     python examples/bloodcells.py --data <folder>
  2. set the environment variable: export {DATA_ENV_VAR}=<folder>
  3. put it at one of the default places, checked in this order:
       ../shared/blood-cells (from the current directory), then ~/data/blood-cells
Places tried:
{tried_lines}"""


def _checked_root(path: Path, how: str) -> Path:
    """Return ``path`` if it holds the images, else raise FileNotFoundError."""
    if _find_images_folder(path) is None:
        raise FileNotFoundError(
            f"{how} points at {path}, which does not hold the blood-cell images "
            f"(no TRAIN/TEST folder in any of: {', '.join(_IMAGES_SUBFOLDERS)})."
            + _how_to_get_the_data([(how, path)])
        )
    return path.resolve()


def locate_bloodcells(data_dir=None) -> Path:
    """Find the blood-cell archive on disk.

    Parameters
    ----------
    data_dir : str or Path, optional
        The archive root (holding ``dataset2-master/`` and ``dataset-master/``),
        or ``dataset2-master`` itself, or a clone of ``dhruvp/wbc-classification``.

    Returns
    -------
    Path
        The folder that was found (absolute). Use :func:`images_dir`,
        :func:`split_dir` and :func:`labels_csv_path` to get inside it.

    Raises
    ------
    FileNotFoundError
        Nothing found. The message says where to download the archive, where
        to unpack it, and the three ways to point at it, with the paths tried.

    Notes
    -----
    Search order: ``data_dir``; else the environment variable
    ``NUMCNN_BLOODCELLS``; else ``../shared/blood-cells`` relative to the
    current directory; else ``~/data/blood-cells``. A ``data_dir`` or
    environment variable that points at the wrong place is an error, not a
    reason to look elsewhere.
    """
    if data_dir is not None:
        return _checked_root(Path(data_dir).expanduser(), "the data_dir argument (--data)")
    from_environment = os.environ.get(DATA_ENV_VAR)
    if from_environment:
        return _checked_root(Path(from_environment).expanduser(),
                             f"the environment variable {DATA_ENV_VAR}")
    tried = []
    for place in default_data_dirs():
        if _find_images_folder(place) is not None:
            return place.resolve()
        tried.append(("default place", place.resolve()))
    raise FileNotFoundError(
        f"blood-cell images not found: no data_dir given, {DATA_ENV_VAR} is not set, "
        f"and no default place holds them." + _how_to_get_the_data(tried)
    )


def images_dir(data_dir=None) -> Path:
    """The folder holding TRAIN/, TEST/ and TEST_SIMPLE/ (see :func:`locate_bloodcells`)."""
    return _find_images_folder(locate_bloodcells(data_dir))


def split_dir(split: str, data_dir=None) -> Path:
    """The folder of one split, e.g. ``.../dataset2-master/images/TRAIN``.

    Parameters
    ----------
    split : {"TRAIN", "TEST", "TEST_SIMPLE"}
    data_dir : str or Path, optional
        See :func:`locate_bloodcells`.

    Returns
    -------
    Path
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {SPLITS}")
    folder = images_dir(data_dir) / split
    if not folder.is_dir():
        raise FileNotFoundError(f"split folder {folder} does not exist")
    return folder


def labels_csv_path(data_dir=None) -> Path:
    """Path of ``labels.csv``, the original (pre-augmentation) label list.

    Raises
    ------
    FileNotFoundError
        Naming every place looked at.
    """
    root = locate_bloodcells(data_dir)
    places = [root / place for place in _LABELS_CSV_PLACES]
    for place in places:
        if place.is_file():
            return place
    raise FileNotFoundError("labels.csv not found; looked at: " + ", ".join(map(str, places)))


# ----------------------------------------------------------------------------
# Counting files per class (no decoding)
# ----------------------------------------------------------------------------

def count_per_class(split: str = "TRAIN", data_dir=None) -> Dict[str, int]:
    """Number of image files per class in one split, without decoding them.

    Parameters
    ----------
    split : {"TRAIN", "TEST", "TEST_SIMPLE"}
    data_dir : str or Path, optional
        See :func:`locate_bloodcells`.

    Returns
    -------
    dict
        ``{class name: number of files}`` in label order (:data:`CLASSES`).
    """
    _, _, labels = list_image_files(split_dir(split, data_dir), CLASSES)
    counts = np.bincount(labels, minlength=len(CLASSES))
    return {name: int(count) for name, count in zip(CLASSES, counts)}


def class_count_table(splits: Sequence[str] = ("TRAIN", "TEST"), data_dir=None) -> str:
    """A text table of the number of images per class and split.

    Returns
    -------
    str
        One row per class plus a total row, one column per split, e.g.::

            class         TRAIN   TEST
            EOSINOPHIL     2497    623
            ...
    """
    counts = {split: count_per_class(split, data_dir) for split in splits}
    lines = [f"{'class':<12}" + "".join(f"{split:>13}" for split in splits)]
    for name in CLASSES:
        lines.append(f"{name:<12}" + "".join(f"{counts[split][name]:>13}" for split in splits))
    lines.append(f"{'total':<12}" + "".join(f"{sum(counts[split].values()):>13}" for split in splits))
    return "\n".join(lines)


# ----------------------------------------------------------------------------
# labels.csv: the original, imbalanced labels
# ----------------------------------------------------------------------------

@dataclass
class OriginalLabels:
    """What ``labels.csv`` says about the original smear images.

    Attributes
    ----------
    counts : Counter
        Rows naming one of :data:`CLASSES`, per class. A class written twice
        ("EOSINOPHIL, EOSINOPHIL": two cells of one kind) counts once, for it.
    unknown : Counter
        Rows naming one class outside :data:`CLASSES` (e.g. BASOPHIL).
    multi_label : Counter
        Rows naming two or more different classes, keyed by the names joined
        with ", " in the order written, e.g. "NEUTROPHIL, LYMPHOCYTE".
    empty : int
        Rows with an empty category.
    bad_lines : list of (int, str)
        Line numbers (1-based, the header is line 1) that could not be read,
        with the reason; they are counted nowhere else.
    """

    counts: Counter = field(default_factory=Counter)
    unknown: Counter = field(default_factory=Counter)
    multi_label: Counter = field(default_factory=Counter)
    empty: int = 0
    bad_lines: List[Tuple[int, str]] = field(default_factory=list)

    @property
    def n_multi_label(self) -> int:
        """Number of rows with two or more different classes."""
        return sum(self.multi_label.values())

    @property
    def n_rows(self) -> int:
        """Number of rows read (every readable row falls in exactly one group)."""
        return (sum(self.counts.values()) + sum(self.unknown.values())
                + self.n_multi_label + self.empty)

    def summary(self) -> str:
        """The label counts as a small text table, largest class first."""
        lines = [f"{name:<12}{count:>6}" for name, count in self.counts.most_common()]
        lines += [f"{name:<12}{count:>6}  (not one of the four classes)"
                  for name, count in self.unknown.most_common()]
        lines.append(f"{'multi-label':<12}{self.n_multi_label:>6}  ({dict(self.multi_label)})")
        lines.append(f"{'empty':<12}{self.empty:>6}")
        if self.bad_lines:
            lines.append(f"{'unreadable':<12}{len(self.bad_lines):>6}")
        lines.append(f"{'rows':<12}{self.n_rows:>6}")
        return "\n".join(lines)


def _class_names(category: str) -> List[str]:
    """'NEUTROPHIL,EOSINOPHIL ' -> ['NEUTROPHIL', 'EOSINOPHIL']: split, strip, drop repeats."""
    names = []
    for name in category.split(","):
        name = name.strip().upper()
        if name and name not in names:
            names.append(name)
    return names


def read_original_labels(path=None) -> OriginalLabels:
    """Parse ``labels.csv`` and count its categories.

    The file, as published, has CRLF line ends, a header ``,Image,Category``
    (the first column is an unnamed, empty index), empty categories,
    multi-labels (``"EOSINOPHIL, EOSINOPHIL"``, ``"NEUTROPHIL,LYMPHOCYTE"``,
    spaces or not) and a few BASOPHIL rows.

    Parameters
    ----------
    path : str or Path, optional
        The CSV file; default: :func:`labels_csv_path` of the located archive.

    Returns
    -------
    OriginalLabels
        Counts per class, unknown classes, multi-label rows, empty rows and
        unreadable lines. ``print(labels.summary())`` shows them as a table.

    Warns
    -----
    UserWarning
        Once, naming the file and the line numbers of rows that have the
        wrong number of columns; those rows are skipped and listed in
        ``bad_lines``.
    """
    path = labels_csv_path() if path is None else Path(path)
    result = OriginalLabels()
    with open(path, newline="", encoding="utf-8-sig") as file:   # newline="": csv handles CRLF
        reader = csv.reader(file)
        header = next(reader, None)
        if header is None or "category" not in [name.strip().lower() for name in header]:
            raise ValueError(f"{path}: expected a header row with a 'Category' column, got {header}")
        category_column = [name.strip().lower() for name in header].index("category")
        for row in reader:
            if not row:                                   # a blank line is not a row
                continue
            if len(row) != len(header):
                result.bad_lines.append(
                    (reader.line_num, f"{len(row)} columns, expected {len(header)}: {row}"))
                continue
            _count_category(result, row[category_column])
    if result.bad_lines:
        numbers = ", ".join(str(number) for number, _ in result.bad_lines)
        warnings.warn(f"{path}: skipped {len(result.bad_lines)} unreadable row(s) with the wrong "
                      f"number of columns, at line(s) {numbers}", stacklevel=2)
    return result


def _count_category(result: OriginalLabels, category: str) -> None:
    """Add one row's category to the right counter of ``result``."""
    names = _class_names(category)
    if not names:
        result.empty += 1
    elif len(names) > 1:
        result.multi_label[", ".join(names)] += 1
    elif names[0] in CLASSES:
        result.counts[names[0]] += 1
    else:
        result.unknown[names[0]] += 1


# ----------------------------------------------------------------------------
# The cache: exact integer block sums in one .npz per setting
# ----------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """``$NUMCNN_CACHE`` if set, else ``~/.cache/numcnn``."""
    from_environment = os.environ.get(CACHE_ENV_VAR)
    if from_environment:
        return Path(from_environment).expanduser()
    return Path.home() / ".cache" / "numcnn"


def _relative_names(folder: Path, paths: Sequence[Path]) -> List[str]:
    """'CLASS/file.jpeg' for each path: what the cache stores (survives moving the data)."""
    return [path.relative_to(folder).as_posix() for path in paths]


def _cache_key(settings: dict, folder: Path, paths: Sequence[Path]) -> str:
    """A hash of the settings and of the file list (names and sizes)."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for name, path in zip(_relative_names(folder, paths), paths):
        digest.update(f"{name}\t{path.stat().st_size}\n".encode())
    return digest.hexdigest()


def _cache_file(cache_dir: Path, settings: dict, key: str) -> Path:
    """A readable file name: split, crop, factor, subset, and part of the key."""
    crop = settings["crop"] or "none"
    if settings["max_per_class"] is None:
        subset = "all"
    else:
        subset = f"max{settings['max_per_class']}-seed{settings['seed']}"
    name = f"bloodcells-{settings['split']}-crop{crop}-f{settings['factor']}-{subset}-{key[:12]}.npz"
    return Path(cache_dir) / name


def _write_atomically(file: Path, write) -> None:
    """Call ``write(handle)`` on a temporary file next to ``file``, then rename it to ``file``.

    A reader never sees half a file; OSError (read-only or full disk) propagates.
    """
    file.parent.mkdir(parents=True, exist_ok=True)
    temporary = file.with_name(f"{file.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            write(handle)
        os.replace(temporary, file)
    finally:
        if temporary.exists():                    # only left behind if writing failed
            temporary.unlink()


def _write_cache_or_warn(file: Path, write) -> None:
    """:func:`_write_atomically`; a read-only or full disk only warns: a cache must not lose a run."""
    try:
        _write_atomically(file, write)
    except OSError as error:
        warnings.warn(f"could not write the cache file {file} ({error}); continuing without it",
                      stacklevel=3)


def _save_cache(file: Path, key: str, sums: np.ndarray, labels: np.ndarray,
                names: List[str], skipped_names: List[str], skipped_reasons: List[str]) -> None:
    """Write the cache of decoded images atomically (only a warning if that fails)."""
    _write_cache_or_warn(file, lambda handle: np.savez(
        handle, key=np.array(key), sums=sums, labels=labels,
        names=np.array(names, dtype=str),
        skipped_names=np.array(skipped_names, dtype=str),
        skipped_reasons=np.array(skipped_reasons, dtype=str)))


def _load_cache(file: Path, key: str) -> dict:
    """Read a cache file back; ValueError if it is damaged or does not match ``key``."""
    try:
        with np.load(file, allow_pickle=False) as data:
            stored = {name: data[name] for name in
                      ("key", "sums", "labels", "names", "skipped_names", "skipped_reasons")}
    except Exception as error:  # a damaged zip fails in many ways; all mean "rebuild"
        raise ValueError(f"cache file {file} is unreadable ({type(error).__name__}: {error})") from error
    if str(stored["key"]) != key:
        raise ValueError(f"cache file {file} was written for other settings or files")
    n = len(stored["labels"])
    if len(stored["sums"]) != n or len(stored["names"]) != n:
        raise ValueError(f"cache file {file} is inconsistent: {len(stored['sums'])} images, "
                         f"{n} labels, {len(stored['names'])} names")
    return stored


# ----------------------------------------------------------------------------
# Loading a split
# ----------------------------------------------------------------------------

def _check_crop_and_factor(crop: Optional[int], factor: int) -> None:
    """Fail before decoding anything if the crop size or factor cannot work."""
    if int(factor) != factor or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    height, width = IMAGE_SHAPE[:2]
    if crop is None:
        if height % factor or width % factor:
            raise ValueError(f"factor {factor} must divide the image size {height}x{width}")
        return
    if int(crop) != crop or not 1 <= crop <= min(height, width):
        raise ValueError(f"crop must be an integer from 1 to {min(height, width)} (or None), got {crop!r}")
    if crop % factor:
        raise ValueError(f"factor {factor} must divide the crop size {crop}")


def load_bloodcells(data_dir=None, split: str = "TRAIN", crop: Optional[int] = 128,
                    factor: int = 2, max_per_class: Optional[int] = None, seed: int = 0,
                    cache_dir=None, cache: bool = True, progress: bool = True,
                    allow_extra: bool = False) -> ImageSet:
    """Load one split of the blood-cell images as NCHW float32 in [0, 1].

    Each JPEG is decoded (HWC uint8, 240x320), cropped to a ``crop`` x ``crop``
    window around the stained white cell (:func:`~numcnn.data.preprocess.crop_to_stain`),
    turned into CHW, and downscaled by ``factor`` (block mean).

    Parameters
    ----------
    data_dir : str or Path, optional
        Where the archive is; see :func:`locate_bloodcells`.
    split : {"TRAIN", "TEST", "TEST_SIMPLE"}
    crop : int or None
        Side of the stain crop; None keeps the whole 240x320 image.
    factor : int
        Downscale factor: crop=128, factor=2 gives 64x64 images; crop=None,
        factor=4 gives 60x80.
    max_per_class : int, optional
        Keep a seeded random subset of at most this many images per class
        (the file lists are sorted first, so the subset is reproducible).
    seed : int
        Seed of that subset (unused without ``max_per_class``).
    cache_dir : str or Path, optional
        Where to keep the cache; default :func:`default_cache_dir`
        (``$NUMCNN_CACHE`` or ``~/.cache/numcnn``).
    cache : bool
        Read and write the cache (True) or always decode (False).
    progress : bool
        Show a tqdm progress bar while decoding.
    allow_extra : bool
        Ignore sub-folders of the split that are not one of :data:`CLASSES`
        instead of raising ValueError.

    Returns
    -------
    ImageSet
        ``x`` (N, 3, H, W) float32 in [0, 1]; ``y`` (N,) int64 with
        ``CLASSES[y]`` the class; ``classes``; ``paths``; ``skipped`` (files
        left out, with the reason; a warning summarises them).

    Notes
    -----
    The cache file is keyed by split, crop, factor, max_per_class, seed, a
    version number and the list of file names and sizes, so changed data is
    never served from an old cache. It stores the integer block sums, which
    makes a cached result identical, bit for bit, to a freshly decoded one.
    A damaged cache file is rebuilt, with a warning.
    """
    _check_crop_and_factor(crop, factor)
    folder = split_dir(split, data_dir)
    _, paths, labels = list_image_files(folder, CLASSES, allow_extra)
    if max_per_class is not None:
        chosen = subsample_per_class(labels, max_per_class, seed)
        paths = [paths[i] for i in chosen]
        labels = labels[chosen]
    settings = {"version": CACHE_VERSION, "split": split, "crop": crop, "factor": factor,
                "max_per_class": max_per_class,
                "seed": None if max_per_class is None else seed}   # the seed matters only for subsets

    if not cache:
        return _decode_split(folder, paths, labels, crop, factor, progress)[0]

    key = _cache_key(settings, folder, paths)
    file = _cache_file(Path(cache_dir) if cache_dir is not None else default_cache_dir(), settings, key)
    if file.exists():
        try:
            return _image_set_from_cache(_load_cache(file, key), folder, factor)
        except ValueError as error:
            warnings.warn(f"{error}; rebuilding it", stacklevel=2)
    images, sums = _decode_split(folder, paths, labels, crop, factor, progress)
    _save_cache(file, key, sums, images.y, _relative_names(folder, images.paths),
                _relative_names(folder, [path for path, _ in images.skipped]),
                [reason for _, reason in images.skipped])
    return images


def _decode_split(folder: Path, paths: List[Path], labels: np.ndarray, crop: Optional[int],
                  factor: int, progress: bool) -> Tuple[ImageSet, np.ndarray]:
    """Decode the files; return the ImageSet and the integer sums it was made from."""
    transform = None if crop is None else functools.partial(crop_to_stain, size=crop)
    sums, kept, skipped = decode_images(paths, IMAGE_SHAPE, transform, factor, progress,
                                        description=f"decoding {folder.name}")
    warn_skipped(skipped, len(paths), folder, stacklevel=3)
    images = ImageSet(x=to_unit_range(sums, 255 * factor * factor), y=labels[kept],
                      classes=list(CLASSES), paths=[paths[i] for i in kept], skipped=skipped)
    return images, sums


def _image_set_from_cache(stored: dict, folder: Path, factor: int) -> ImageSet:
    """Rebuild the ImageSet from a cache file's arrays, exactly as decoding would."""
    skipped = [(folder / str(name), str(reason))
               for name, reason in zip(stored["skipped_names"], stored["skipped_reasons"])]
    paths = [folder / str(name) for name in stored["names"]]
    warn_skipped(skipped, len(paths) + len(skipped), folder, stacklevel=3)
    return ImageSet(x=to_unit_range(stored["sums"], 255 * factor * factor),
                    y=stored["labels"].astype(np.int64), classes=list(CLASSES),
                    paths=paths, skipped=skipped)


# ----------------------------------------------------------------------------
# Which images are the same cell
# ----------------------------------------------------------------------------

# The archive's augmented files are named "_<position>_<random>.jpeg": <position> is
# the image's place in an augmentation batch that held every original cell of its
# class once, so there are as many positions as originals (TEST: 13, 6, 4 and 48,
# exactly the cells of TEST_SIMPLE). The position is not a cell id (GUIDE section 6).
_AUGMENTED_NAME = re.compile(r"^_(\d+)_\d+\.[A-Za-z]+$")
GROUPS_VERSION = 1    # bump when numcnn.data.groups changes how groups are found
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
        A split loaded by :func:`load_bloodcells` (TRAIN or TEST).

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
            listed = map(_batch_position, (file.name for file in _image_files_in(folder)))
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
    mirrored and shifted copies by :func:`numcnn.data.groups.group_per_class`
    (on the stain crops, so the images should be loaded with a crop), shrunk
    by block means to at most 72 pixels a side (so the default 144-pixel crop
    finds the same groups at factor 1 as at factor 2). The result is cached
    next to the decoded images (about a minute for TRAIN).

    Parameters
    ----------
    images : ImageSet
        From :func:`load_bloodcells` with a stain crop.
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
    from .groups import group_per_class

    counts = original_cell_counts(images)
    x = _matching_resolution(images.x)
    digest = hashlib.sha256(json.dumps({"version": GROUPS_VERSION, "counts": counts,
                                        "shape": list(x.shape)}).encode())
    for path, label in zip(images.paths, images.y):
        digest.update(f"{Path(path).parent.name}/{Path(path).name}\t{label}\n".encode())
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
        _write_cache_or_warn(file, lambda handle: np.save(handle, groups))
    return groups
