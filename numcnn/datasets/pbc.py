"""The PBC dataset: 17,092 peripheral blood cells of eight classes, with a fixed split.

Acevedo, Merino, Alférez, Molina, Boldú and Rodellar, "A dataset of microscopic
peripheral blood cell images for development of automatic recognition
systems", Data in Brief 30 (2020) 105474, Mendeley Data
doi:10.17632/snkd93bnjr.1, licence CC BY 4.0 (credit the authors and the
article wherever the data or results from it are shown). Normal cells of
healthy donors, Hospital Clinic of Barcelona, CellaVision DM96,
May-Grünwald-Giemsa stain; the source of MedMNIST's BloodMNIST.

The copy this loader reads is laid out as::

    <folder>/images/<class>/<file>.jpg     128x128 RGB JPEGs (the central 200x200
                                          of each original, resized as MedMNIST does)
    <folder>/splits.csv                    class,file,split,md5_of_original

``splits.csv`` puts every image in ``train`` (11,967), ``val`` (1,710) or
``test`` (3,415): use it as it is, so that results are comparable.

>>> from numcnn.datasets import pbc
>>> train = pbc.load_data("train", size=64)                   # doctest: +SKIP
>>> train.x.shape                                             # doctest: +SKIP
(11967, 3, 64, 64)

Where it is: the ``path`` argument, else ``$NUMCNN_PBC``, else ``../shared/pbc``
from the current directory, else ``~/data/pbc``. Decoded images are cached as
integer block sums (uint8 at 128 pixels: 0.8 GB for all of them, where float32
would take 3.4 GB), keyed on the files' bytes.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import validation
from ..data.cache import load_or_decode
from ..data.decode import warn_skipped
from ..data.images import ImageSet, find_class_folders, image_files_in, subsample_per_class
from ..data.transforms import to_unit_range
from ..errors import DataError
from .locate import locate_dataset

__all__ = ["CLASSES", "SPLITS", "IMAGE_SIZE", "DATA_ENV_VAR", "CITATION", "default_data_dirs",
           "locate", "read_splits", "load_data", "class_counts"]

CLASSES = ("basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte",
           "neutrophil", "platelet")
"""The eight classes, in label order (``ig``: immature granulocytes)."""
SPLITS = ("train", "val", "test")
"""The splits of ``splits.csv``."""
IMAGE_SIZE = 128
"""Side of the stored images, in pixels."""
DATA_ENV_VAR = "NUMCNN_PBC"
"""The environment variable that may say where the dataset is."""
CITATION = ("Acevedo A, Merino A, Alférez S, Molina Á, Boldú L, Rodellar J. A dataset of "
            "microscopic peripheral blood cell images for development of automatic recognition "
            "systems. Data in Brief 30 (2020) 105474. doi:10.17632/snkd93bnjr.1 (CC BY 4.0)")
"""How to credit the dataset (its licence requires it)."""
_SPLITS_COLUMNS = ("class", "file", "split")

HOW_TO_GET = f"""Get the PBC dataset (Acevedo et al. 2020, CC BY 4.0) from Mendeley Data,
doi:10.17632/snkd93bnjr.1, and lay it out as <folder>/images/<class>/<file>.jpg
(128x128, the central 200x200 of each original resized) with <folder>/splits.csv
(class,file,split,...). Then tell numcnn where <folder> is: pass it
(pbc.load_data(path="<folder>"), --data in the examples), or set {DATA_ENV_VAR},
or put it at ../shared/pbc (from the current directory) or ~/data/pbc."""


def default_data_dirs() -> List[Path]:
    """``../shared/pbc`` from the current directory, then ``~/data/pbc``."""
    return [Path.cwd().parent / "shared" / "pbc", Path.home() / "data" / "pbc"]


def locate(path=None) -> Path:
    """The folder holding ``images/`` and ``splits.csv`` (absolute)."""
    return locate_dataset(path, DATA_ENV_VAR, default_data_dirs(),
                          lambda folder: (folder / "images").is_dir()
                          and (folder / "splits.csv").is_file(),
                          "PBC images", HOW_TO_GET)


def read_splits(path=None) -> Dict[Tuple[str, str], str]:
    """``{(class, file): split}`` from ``splits.csv``, checked row by row.

    Raises
    ------
    DataError
        The file is not UTF-8 text, lacks a column, names an unknown class
        or split, or lists one image twice; the message gives the line.
    """
    file = locate(path) / "splits.csv"
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"{file} is not UTF-8 text ({error}): is it damaged?") from None
    reader = csv.DictReader(text.splitlines())
    missing = [column for column in _SPLITS_COLUMNS if column not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"{file}: the header {reader.fieldnames} lacks the column(s) {missing}; "
                        f"expected {', '.join(_SPLITS_COLUMNS)}, ...")
    splits: Dict[Tuple[str, str], str] = {}
    for row in reader:
        line = reader.line_num
        if None in row.values() or None in row:
            raise DataError(f"{file}, line {line}: expected {len(reader.fieldnames)} columns; "
                            f"got {row}")
        name, image, split = row["class"], row["file"], row["split"]
        if name not in CLASSES:
            raise DataError(f"{file}, line {line}: unknown class {name!r} (expected one of {CLASSES})")
        if split not in SPLITS:
            raise DataError(f"{file}, line {line}: unknown split {split!r} (expected one of {SPLITS})")
        if (name, image) in splits:
            raise DataError(f"{file}, line {line}: {name}/{image} is listed twice")
        splits[(name, image)] = split
    if not splits:
        raise DataError(f"{file} lists no image")
    return splits


def _files_of_split(root: Path, split: str, classes: Sequence[str]):
    """The files of ``split`` for ``classes``, checked against the folders; (paths, labels)."""
    splits = read_splits(root)
    images = root / "images"
    find_class_folders(images, CLASSES)
    paths, labels = [], []
    for label, name in enumerate(classes):
        on_disk = {path.name: path for path in image_files_in(images / name)}
        listed = {image for (cls, image) in splits if cls == name}
        absent = sorted(listed - set(on_disk))
        unlisted = sorted(set(on_disk) - listed)
        if absent or unlisted:
            raise DataError(f"{root / 'splits.csv'} does not match {images / name}: "
                            f"{len(absent)} listed image(s) missing (e.g. {absent[:3]}), "
                            f"{len(unlisted)} image(s) not listed (e.g. {unlisted[:3]})")
        chosen = sorted(image for image in listed if splits[(name, image)] == split)
        paths += [on_disk[image] for image in chosen]
        labels += [label] * len(chosen)
    return paths, np.array(labels, dtype=np.int64)


def load_data(split: str = "train", path=None, size: int = IMAGE_SIZE,
              classes: Optional[Sequence[str]] = None, max_per_class: Optional[int] = None,
              seed: int = 0, cache_dir=None, cache: bool = True, progress: bool = True,
              strict: bool = True) -> ImageSet:
    """One split of PBC as NCHW float32 in [0, 1], at ``size`` x ``size`` pixels.

    Parameters
    ----------
    split : {"train", "val", "test"}
        As ``splits.csv`` says.
    path : str or Path, optional
        Where the data is; see the module's docstring.
    size : int
        128 (the stored size) or a divisor of it (64, 32, ...), reached by
        block means.
    classes : sequence of str, optional
        A subset of :data:`CLASSES` (e.g. the four white-cell classes that
        another dataset shares), labelled 0.. in the order given. Default: all
        eight, in :data:`CLASSES` order.
    max_per_class : int, optional
        A seeded random subset of at most this many images per class of the
        split (quick runs and tests; results on a subset are not comparable).
    seed : int
        Seed of that subset.
    cache_dir, cache, progress
        As in :func:`numcnn.datasets.bloodcells.load_data`.
    strict : bool
        An unreadable image is an error (True, the default: the split is fixed
        and a silent gap would change it), or is skipped with a warning.

    Returns
    -------
    ImageSet
        ``x`` (N, 3, size, size) float32, ``y`` (N,) int64, ``classes``,
        ``paths`` and ``skipped``.

    Raises
    ------
    DataNotFoundError
        No data where it was looked for, or a missing class folder.
    DataError
        A damaged or mismatched ``splits.csv``; with ``strict``, an unreadable image.
    """
    where = "pbc.load_data"
    validation.one_of(split, "split", where, SPLITS)
    size = validation.positive_int(size, "size", where)
    if IMAGE_SIZE % size:
        raise ValueError(f"{where}: size must divide {IMAGE_SIZE} (128, 64, 32, ...); got {size}")
    classes = list(CLASSES if classes is None else classes)
    unknown = [name for name in classes if name not in CLASSES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(f"{where}: classes must be distinct names from {CLASSES}; got {classes}")
    if max_per_class is not None:
        validation.positive_int(max_per_class, "max_per_class", where)
    root = locate(path)
    paths, labels = _files_of_split(root, split, classes)
    subset = "" if max_per_class is None else f"-max{max_per_class}-seed{seed}"
    if max_per_class is not None:
        chosen = subsample_per_class(labels, max_per_class, seed)
        paths, labels = [paths[i] for i in chosen], labels[chosen]
    factor = IMAGE_SIZE // size
    sums, kept_labels, kept, skipped = load_or_decode(
        root / "images", paths, labels,
        f"pbc-{split}-{'+'.join(classes) if len(classes) < 8 else 'all'}{subset}",
        None, factor, (IMAGE_SIZE, IMAGE_SIZE, 3), cache_dir=cache_dir, cache=cache,
        progress=progress, description=f"decoding PBC {split}")
    if skipped and strict:
        listed = "; ".join(f"{path}: {reason}" for path, reason in skipped[:5])
        raise DataError(f"{len(skipped)} PBC image(s) of the {split} split cannot be used "
                        f"({listed}); the split is fixed, so this is an error (strict=False "
                        f"skips them)")
    warn_skipped(skipped, len(paths), root / "images")
    return ImageSet(x=to_unit_range(sums, 255 * factor * factor), y=kept_labels,
                    classes=classes, paths=kept, skipped=skipped)


def class_counts(split: str = "train", path=None) -> Dict[str, int]:
    """``{class: images}`` of one split, from ``splits.csv`` (nothing decoded)."""
    validation.one_of(split, "split", "pbc.class_counts", SPLITS)
    counts = Counter(name for (name, _), value in read_splits(path).items() if value == split)
    return {name: counts.get(name, 0) for name in CLASSES}
