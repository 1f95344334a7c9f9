"""The PBC dataset: 17,092 peripheral blood cells of eight classes, with a fixed split.

Acevedo, Merino, Alférez, Molina, Boldú and Rodellar, "A dataset of microscopic
peripheral blood cell images for development of automatic recognition
systems", Data in Brief 30 (2020) 105474, Mendeley Data
doi:10.17632/snkd93bnjr.1, licence CC BY 4.0 (credit the authors and the
article wherever the data or results from it are shown). Normal cells of
healthy donors, Hospital Clinic of Barcelona, CellaVision DM96,
May-Grünwald-Giemsa stain; the source of MedMNIST's BloodMNIST.

This loader reads either of two layouts. The public download
(``PBC_dataset_normal_DIB.zip``, unpacked)::

    <folder>/PBC_dataset_normal_DIB/<class>/<file>.jpg    the original JPEGs (about 360x363)

where ``path`` may name ``<folder>`` or ``PBC_dataset_normal_DIB`` itself. Each
original is checked against the MD5 that the split table shipped with numcnn
gives (``numcnn/datasets/pbc_splits.csv.gz``: the class, file name, split and
MD5 of each of the authors' 17,092 original images, under their CC BY 4.0
licence, credited beside it), then prepared as the prepared copy below was
(:func:`numcnn.datasets.pbc_originals.prepare_original`: the central 200x200,
resized to 128x128 bicubic). No ``splits.csv`` is needed from the user, and
with ``strict=False`` a partial download loads what it has. Or a prepared
copy::

    <folder>/images/<class>/<file>.jpg     128x128 RGB JPEGs (the central 200x200
                                          of each original, resized as MedMNIST does)
    <folder>/splits.csv                    class,file,split,md5_of_original

read, as before, with its own ``splits.csv`` (required: it indexes the copy;
the project's prepared copy carries the same table that numcnn ships).
Either way the split puts every image in ``train`` (11,967), ``val`` (1,710)
or ``test`` (3,415): use it as it is, so that results are comparable.

>>> from numcnn.datasets import pbc
>>> train = pbc.load_data("train", size=64)                   # doctest: +SKIP
>>> train.x.shape                                             # doctest: +SKIP
(11967, 3, 64, 64)

Where it is: the ``path`` argument, else ``$NUMCNN_PBC``, else
``~/data/pbc`` (each may hold either
layout; a prepared copy wins where a folder holds both). Decoded images are
cached as integer block sums (uint8 at 128 pixels: 0.8 GB for all of them,
where float32 would take 3.4 GB), keyed on the files' bytes: the second load
of the originals skips their decoding and preparation.
"""

from __future__ import annotations

import csv
import functools
import gzip
import warnings
from collections import Counter
from importlib import resources
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
from .pbc_originals import ORIGINALS_FOLDER, PrepareOriginal, check_md5, find_originals_folder

__all__ = ["CLASSES", "SPLITS", "IMAGE_SIZE", "DATA_ENV_VAR", "CITATION", "SPLIT_TABLE",
           "default_data_dirs", "locate", "read_splits", "split_table", "load_data",
           "class_counts"]

CLASSES = ("basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte",
           "neutrophil", "platelet")
"""The eight classes, in label order (``ig``: immature granulocytes)."""
SPLITS = ("train", "val", "test")
"""The splits of ``splits.csv``."""
IMAGE_SIZE = 128
"""Side of the stored images, in pixels."""
DATA_ENV_VAR = "NUMCNN_PBC"
"""The environment variable that may say where the dataset is."""
SOURCE_URL = "https://doi.org/10.17632/snkd93bnjr.1"
"""Where the dataset can be downloaded (Mendeley Data)."""
CITATION = ("Acevedo A, Merino A, Alférez S, Molina Á, Boldú L, Rodellar J. A dataset of "
            "microscopic peripheral blood cell images for development of automatic recognition "
            "systems. Data in Brief 30 (2020) 105474. doi:10.17632/snkd93bnjr.1 (CC BY 4.0)")
"""How to credit the dataset (its licence requires it)."""
SPLIT_TABLE = "pbc_splits.csv.gz"
"""The split table shipped inside numcnn (package data of :mod:`numcnn.datasets`):
``class,file,split,md5_of_original`` for all 17,092 images, gzipped."""
_SPLITS_COLUMNS = ("class", "file", "split")
_MD5_COLUMN = "md5_of_original"

HOW_TO_GET = f"""Get the PBC dataset (Acevedo et al. 2020, CC BY 4.0) from Mendeley Data,
doi:10.17632/snkd93bnjr.1, and unpack {ORIGINALS_FOLDER}.zip: numcnn reads
<folder>/{ORIGINALS_FOLDER}/<class>/<file>.jpg as it is (checked against the split
table numcnn ships, then the central 200x200 of each original resized to 128x128).
A prepared copy works too: <folder>/images/<class>/<file>.jpg (128x128) with
<folder>/splits.csv (class,file,split,...). Then tell numcnn where <folder> is
(or {ORIGINALS_FOLDER} itself): pass it (pbc.load_data(path="<folder>"), --data in
the examples), or set {DATA_ENV_VAR}, or put it at the default place, ~/data/pbc."""


def default_data_dirs() -> List[Path]:
    """``~/data/pbc``."""
    return [Path.home() / "data" / "pbc"]


def _layout(folder: Path) -> Optional[Tuple[str, Path]]:
    """``("prepared", folder)``, ``("originals", folder of class folders)`` or None."""
    if (folder / "images").is_dir() and (folder / "splits.csv").is_file():
        return "prepared", folder
    originals = find_originals_folder(folder, CLASSES)
    return None if originals is None else ("originals", originals)


def _find(path) -> Tuple[str, Path]:
    """Which layout holds the data, and its folder (absolute)."""
    folder = locate_dataset(path, DATA_ENV_VAR, default_data_dirs(),
                            lambda place: _layout(place) is not None, "PBC images", HOW_TO_GET)
    return _layout(folder)


def locate(path=None) -> Path:
    """The folder holding the data (absolute).

    A prepared copy's folder (holding ``images/`` and ``splits.csv``), or the
    public layout's ``PBC_dataset_normal_DIB`` (holding the class folders),
    also when ``path`` names the folder that holds it.
    """
    return _find(path)[1]


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"{file} is not UTF-8 text ({error}): is it damaged?") from None


def _parse_splits(text: str, file, columns: Sequence[str] = _SPLITS_COLUMNS
                  ) -> Dict[Tuple[str, str], Dict[str, str]]:
    """``{(class, file): row}`` from the text of a split table, checked row by row."""
    reader = csv.DictReader(text.splitlines())
    missing = [column for column in columns if column not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"{file}: the header {reader.fieldnames} lacks the column(s) {missing}; "
                        f"expected {', '.join(columns)}, ...")
    rows: Dict[Tuple[str, str], Dict[str, str]] = {}
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
        if (name, image) in rows:
            raise DataError(f"{file}, line {line}: {name}/{image} is listed twice")
        rows[(name, image)] = row
    if not rows:
        raise DataError(f"{file} lists no image")
    return rows


@functools.lru_cache(maxsize=1)
def _shipped_rows() -> Dict[Tuple[str, str], Dict[str, str]]:
    table = resources.files(__package__) / SPLIT_TABLE
    try:
        text = gzip.decompress(table.read_bytes()).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise DataError(f"numcnn's PBC split table {table} cannot be read ({error}): "
                        f"reinstall numcnn") from None
    return _parse_splits(text, table, _SPLITS_COLUMNS + (_MD5_COLUMN,))


def split_table() -> Dict[Tuple[str, str], Tuple[str, str]]:
    """``{(class, file): (split, md5 of the original)}`` from the table numcnn ships.

    All 17,092 images of the public download, as :data:`SPLIT_TABLE` lists
    them (the split of the prepared copy's ``splits.csv``).
    """
    return {key: (row["split"], row[_MD5_COLUMN]) for key, row in _shipped_rows().items()}


def read_splits(path=None) -> Dict[Tuple[str, str], str]:
    """``{(class, file): split}``: a prepared copy's ``splits.csv``, checked row by row,
    or, for the public layout, the table numcnn ships (:func:`split_table`).

    Raises
    ------
    DataError
        The file is not UTF-8 text, lacks a column, names an unknown class
        or split, or lists one image twice; the message gives the line.
    """
    kind, root = _find(path)
    if kind == "originals":
        return {key: split for key, (split, _) in split_table().items()}
    file = root / "splits.csv"
    return {key: row["split"] for key, row in _parse_splits(_read_text(file), file).items()}


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


def _originals_of_split(root: Path, split: str, classes: Sequence[str]):
    """The originals of ``split`` for ``classes`` that are present, as the shipped table lists them.

    Returns ``(paths, labels, md5s, absent, unlisted)``: the files present
    (class by class, sorted by name), their labels and expected MD5s, the
    listed files of the split that are absent (``class/file``), and the image
    files of those class folders that the table does not list.
    """
    by_class: Dict[str, Dict[str, Tuple[str, str]]] = {}
    for (name, image), entry in split_table().items():
        by_class.setdefault(name, {})[image] = entry
    paths, labels, md5s, absent, unlisted = [], [], [], [], []
    for label, name in enumerate(classes):
        folder = root / name
        on_disk = {path.name: path for path in image_files_in(folder)} if folder.is_dir() else {}
        listed = by_class.get(name, {})
        unlisted += [on_disk[image] for image in sorted(set(on_disk) - set(listed))]
        for image in sorted(image for image, (where, _) in listed.items() if where == split):
            if image in on_disk:
                paths.append(on_disk[image])
                labels.append(label)
                md5s.append(listed[image][1])
            else:
                absent.append(f"{name}/{image}")
    return paths, np.array(labels, dtype=np.int64), md5s, absent, unlisted


def _check_originals(root: Path, split: str, classes: Sequence[str], strict: bool):
    """:func:`_originals_of_split`, with what is absent or unlisted an error (strict) or a warning."""
    paths, labels, md5s, absent, unlisted = _originals_of_split(root, split, classes)
    if absent or unlisted:
        which = "" if len(classes) == len(CLASSES) else f" (classes {', '.join(classes)})"
        problems = []
        if absent:
            problems.append(f"{len(absent)} of the {len(paths) + len(absent)} images it lists "
                            f"are missing (e.g. {', '.join(absent[:3])})")
        if unlisted:
            problems.append(f"{len(unlisted)} image file(s) are not in it (e.g. "
                            f"{', '.join(str(path) for path in unlisted[:3])})")
        problem = (f"{root} does not hold the {split} split{which} as numcnn's PBC split table "
                   f"({SPLIT_TABLE}) lists it: {'; '.join(problems)}")
        if strict:
            raise DataError(f"{problem}. Is the download partial or unfinished? Unpack all of "
                            f"{ORIGINALS_FOLDER}.zip, or pass strict=False to load the "
                            f"{len(paths)} present")
        if not paths:
            raise DataError(f"{problem}: not one of them is present, so there is nothing to load")
        warnings.warn(f"{problem}; strict=False: loading the {len(paths)} present", stacklevel=3)
    return paths, labels, md5s


def load_data(split: str = "train", path=None, size: int = IMAGE_SIZE,
              classes: Optional[Sequence[str]] = None, max_per_class: Optional[int] = None,
              seed: int = 0, cache_dir=None, cache: bool = True, progress: bool = True,
              strict: bool = True) -> ImageSet:
    """One split of PBC as NCHW float32 in [0, 1], at ``size`` x ``size`` pixels.

    Parameters
    ----------
    split : {"train", "val", "test"}
        As the split table says (a prepared copy's ``splits.csv``, or the
        table numcnn ships for the public layout).
    path : str or Path, optional
        Where the data is: a prepared copy's folder, ``PBC_dataset_normal_DIB``
        or the folder holding it; see the module's docstring.
    size : int
        128 (the prepared size) or a divisor of it (64, 32, ...), reached by
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
        and a silent gap would change it), or is skipped with a warning. For
        the public layout, likewise an original of the split that is absent,
        or an image file the table does not list: with ``strict=False`` a
        partial download loads the originals it has (a warning counts the
        rest). An original whose bytes differ from its MD5 is an error
        either way.

    Returns
    -------
    ImageSet
        ``x`` (N, 3, size, size) float32, ``y`` (N,) int64, ``classes``,
        ``paths`` (the prepared copy's files, or the originals) and ``skipped``.

    Raises
    ------
    DataNotFoundError
        No data where it was looked for, or a missing class folder of a
        prepared copy.
    DataError
        A damaged or mismatched ``splits.csv``; an original that is not the
        published file (its MD5 differs), named; with ``strict``, an
        unreadable image, or originals of the split absent (counted, with
        examples).

    Notes
    -----
    The originals are prepared by :class:`numcnn.datasets.pbc_originals.PrepareOriginal`
    (the central 200x200, resized to 128x128 with Pillow's bicubic filter):
    the prepared copy's recipe before its JPEG encoding, so each image is
    within JPEG rounding of the prepared copy's (a mean absolute difference
    of 0.006-0.019 on a sample of 40). They are cached as the prepared
    copy's images are; the MD5 of each original is checked on every load.
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
    kind, root = _find(path)
    if kind == "prepared":
        paths, labels = _files_of_split(root, split, classes)
        md5s = None
        folder, transform, shape, prefix = root / "images", None, (IMAGE_SIZE, IMAGE_SIZE, 3), "pbc"
    else:                                      # the public layout: originals, prepared here
        paths, labels, md5s = _check_originals(root, split, classes, strict)
        folder, transform, shape, prefix = root, PrepareOriginal(), None, "pbc-originals"
    subset = "" if max_per_class is None else f"-max{max_per_class}-seed{seed}"
    if max_per_class is not None:
        chosen = subsample_per_class(labels, max_per_class, seed)
        paths, labels = [paths[i] for i in chosen], labels[chosen]
        md5s = None if md5s is None else [md5s[i] for i in chosen]
    if md5s is not None:
        check_md5(paths, md5s, f"numcnn's PBC split table ({SPLIT_TABLE})")
    factor = IMAGE_SIZE // size
    sums, kept_labels, kept, skipped = load_or_decode(
        folder, paths, labels,
        f"{prefix}-{split}-{'+'.join(classes) if len(classes) < 8 else 'all'}{subset}",
        transform, factor, shape, cache_dir=cache_dir, cache=cache,
        progress=progress, description=f"decoding PBC {split}")
    if skipped and strict:
        listed = "; ".join(f"{path}: {reason}" for path, reason in skipped[:5])
        raise DataError(f"{len(skipped)} PBC image(s) of the {split} split cannot be used "
                        f"({listed}); the split is fixed, so this is an error (strict=False "
                        f"skips them)")
    warn_skipped(skipped, len(paths), folder)
    return ImageSet(x=to_unit_range(sums, 255 * factor * factor), y=kept_labels,
                    classes=classes, paths=kept, skipped=skipped)


def class_counts(split: str = "train", path=None) -> Dict[str, int]:
    """``{class: images}`` of one split, from the split table (nothing decoded).

    For the public layout, the shipped table's counts: those of the whole
    download, whatever part of it is on disk.
    """
    validation.one_of(split, "split", "pbc.class_counts", SPLITS)
    counts = Counter(name for (name, _), value in read_splits(path).items() if value == split)
    return {name: counts.get(name, 0) for name in CLASSES}
