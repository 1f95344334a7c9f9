"""Read images and ImageFolder-style trees (``root/CLASS/*.jpeg``) into arrays.

Layouts
-------
* :func:`read_rgb_image` returns one image as the file stores it: HWC,
  ``(H, W, 3)`` uint8.
* :func:`numcnn.data.decode.decode_images` turns each image into CHW and sums
  factor x factor blocks, giving an NCHW integer array; :func:`load_image_folder`
  divides that once into NCHW float32 in [0, 1], the layout the layers expect.

Files that cannot be used (corrupt, grayscale, RGBA, wrong size) are skipped
and counted, never fatal: a long run should not die on image 9,000. Each
loader returns the list of ``(path, reason)`` it skipped and emits one
:class:`SkippedImagesWarning` that summarises them. A folder tree that cannot
be used as it is (a missing, empty or unexpected class folder) raises a
:class:`numcnn.errors.DataError` naming the folder.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
from skimage import io

from ..errors import DataError, DataNotFoundError

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageError",
    "SkippedImagesWarning",
    "ImageSet",
    "read_rgb_image",
    "find_class_folders",
    "list_image_files",
    "image_files_in",
    "subsample_per_class",
    "load_image_folder",
]

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp")
"""File name endings read as images (in any case)."""


class ImageError(ValueError):
    """An image file that cannot be used: undecodable, not RGB, or the wrong size."""


class SkippedImagesWarning(UserWarning):
    """Some image files were skipped while loading (see ``ImageSet.skipped``)."""


@dataclass
class ImageSet:
    """A labelled set of images, ready for training.

    Attributes
    ----------
    x : ndarray, shape (N, C, H, W), float32
        Images in NCHW layout, values in [0, 1]; C is 3 for the RGB photographs
        of the folder loaders, 1 for grey images (:mod:`numcnn.datasets.digits`).
    y : ndarray, shape (N,), int64
        Labels, ``classes[y[i]]`` is the class name of image i.
    classes : list of str
        Class names in label order.
    paths : list of Path (or str)
        The file each row of ``x`` came from; for images that have no file of
        their own, a string naming where the row came from (the digits:
        ``"load_digits[i]"``).
    skipped : list of (Path, str)
        Files that were left out, with the reason.
    """

    x: np.ndarray
    y: np.ndarray
    classes: List[str]
    paths: List[Union[Path, str]]
    skipped: List[Tuple[Path, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.y)

    def class_counts(self) -> dict:
        """Number of images per class, ``{class name: count}`` in label order."""
        counts = np.bincount(self.y, minlength=len(self.classes))
        return {name: int(count) for name, count in zip(self.classes, counts)}


# ----------------------------------------------------------------------------
# One image
# ----------------------------------------------------------------------------

def read_rgb_image(path, expected_shape: Optional[Tuple[int, int, int]] = None) -> np.ndarray:
    """Decode one image file and check that it is an 8-bit RGB image.

    Parameters
    ----------
    path : str or Path
        A JPEG (or PNG, BMP) file.
    expected_shape : (H, W, 3) tuple, optional
        If given, images of any other shape are rejected.

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
        HWC layout, channels in RGB order.

    Raises
    ------
    ImageError
        With a short reason: the file cannot be decoded, is grayscale, has an
        alpha or other extra channel, is not 8-bit, or has the wrong shape.
    """
    try:
        with warnings.catch_warnings():
            # imageio tries many plugins on a damaged file and some of them warn
            # (unclosed files, deprecations); the exception below says what matters.
            warnings.simplefilter("ignore")
            image = io.imread(path)
    except Exception as error:  # PIL/imageio raise many types; all mean "unreadable"
        message_lines = str(error).strip().splitlines() or [""]   # keep the first line only
        raise ImageError(f"cannot decode ({type(error).__name__}: {message_lines[0]})") from error
    if image.ndim == 2:
        raise ImageError(f"grayscale image of shape {image.shape}, expected RGB (H, W, 3)")
    if image.ndim != 3 or image.shape[2] != 3:
        kind = "RGBA" if image.ndim == 3 and image.shape[2] == 4 else "non-RGB"
        raise ImageError(f"{kind} image of shape {image.shape}, expected RGB (H, W, 3)")
    if image.dtype != np.uint8:
        raise ImageError(f"pixels are {image.dtype}, expected 8-bit (uint8)")
    if expected_shape is not None and image.shape != tuple(expected_shape):
        raise ImageError(f"image of shape {image.shape}, expected {tuple(expected_shape)}")
    return image


# ----------------------------------------------------------------------------
# A folder tree root/CLASS/*.jpeg
# ----------------------------------------------------------------------------

def _is_visible_folder(path: Path) -> bool:
    """A sub-folder that counts as a class (hidden ones such as .ipynb_checkpoints do not)."""
    return path.is_dir() and not path.name.startswith(".")


def find_class_folders(root, classes: Optional[Sequence[str]] = None,
                       allow_extra: bool = False) -> List[str]:
    """Check the class sub-folders of ``root`` and return the class names.

    Parameters
    ----------
    root : str or Path
        A folder holding one sub-folder per class.
    classes : sequence of str, optional
        The expected classes, in label order. If None, every visible
        sub-folder is a class, in sorted order.
    allow_extra : bool
        If True, sub-folders not in ``classes`` are ignored; if False (the
        default) they are an error, since they usually mean a wrong folder or
        a class list that is out of date.

    Returns
    -------
    list of str
        Class names in label order.

    Raises
    ------
    DataNotFoundError (a FileNotFoundError)
        ``root`` does not exist, or a class folder is missing.
    DataError (a ValueError)
        An unexpected sub-folder and ``allow_extra`` is False.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(f"image folder {root} does not exist")
    present = sorted(path.name for path in root.iterdir() if _is_visible_folder(path))
    if classes is None:
        if not present:
            raise DataNotFoundError(f"{root} holds no class folders: expected {root}/CLASS/*.jpeg")
        return present
    classes = list(classes)
    missing = [name for name in classes if name not in present]
    if missing:
        raise DataNotFoundError(
            f"class folder{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing from {root} "
            f"(expected {classes}, found {present})"
        )
    extra = [name for name in present if name not in classes]
    if extra and not allow_extra:
        raise DataError(
            f"unexpected folder{'s' if len(extra) > 1 else ''} {', '.join(extra)} in {root}: "
            f"expected only the classes {classes}. Remove it (or, calling the loader from Python, "
            f"pass allow_extra=True to ignore it)."
        )
    return classes


def image_files_in(folder: Path) -> List[Path]:
    """Image files directly inside ``folder``, sorted by name (hidden files ignored)."""
    return sorted(
        path for path in folder.iterdir()
        if path.is_file() and not path.name.startswith(".")
        and path.suffix.lower() in IMAGE_EXTENSIONS
    )


def list_image_files(root, classes: Optional[Sequence[str]] = None,
                     allow_extra: bool = False) -> Tuple[List[str], List[Path], np.ndarray]:
    """List the image files of an ImageFolder-style tree, without decoding them.

    Parameters
    ----------
    root : str or Path
        Folder laid out as ``root/CLASS/*.jpeg``.
    classes, allow_extra
        As in :func:`find_class_folders`.

    Returns
    -------
    classes : list of str
        Class names in label order.
    paths : list of Path
        Image files, grouped by class, sorted by name within each class.
    labels : ndarray, shape (len(paths),), int64
        Label of each file.

    Raises
    ------
    DataNotFoundError (a FileNotFoundError)
        A class folder is missing, or holds no image file.
    DataError (a ValueError)
        An unexpected sub-folder (see ``allow_extra``).
    """
    root = Path(root)
    classes = find_class_folders(root, classes, allow_extra)
    paths: List[Path] = []
    labels: List[int] = []
    for label, name in enumerate(classes):
        files = image_files_in(root / name)
        if not files:
            raise DataNotFoundError(
                f"class folder {root / name} holds no image files ({', '.join(IMAGE_EXTENSIONS)})"
            )
        paths.extend(files)
        labels.extend([label] * len(files))
    return classes, paths, np.array(labels, dtype=np.int64)


def subsample_per_class(labels: np.ndarray, max_per_class: int, seed: int = 0) -> np.ndarray:
    """Pick at most ``max_per_class`` items of each class, reproducibly.

    Parameters
    ----------
    labels : ndarray, shape (N,), int
        Label of each item, in a fixed (e.g. sorted-by-name) order.
    max_per_class : int
        Largest number of items kept per class.
    seed : int
        Seed of the ``numpy.random.Generator`` that picks the subset.

    Returns
    -------
    ndarray, shape (M,), int64
        Indices of the kept items, in their original order.
    """
    if int(max_per_class) != max_per_class or max_per_class < 1:
        raise ValueError(f"max_per_class must be a positive integer, got {max_per_class!r}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    kept = []
    for label in np.unique(labels):
        indices = np.flatnonzero(labels == label)
        if len(indices) > max_per_class:
            indices = np.sort(rng.choice(indices, size=max_per_class, replace=False))
        kept.append(indices)
    return np.concatenate(kept).astype(np.int64)


def load_image_folder(root, classes: Optional[Sequence[str]] = None,
                      expected_shape: Optional[Tuple[int, int, int]] = None,
                      transform: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                      factor: int = 1, max_per_class: Optional[int] = None, seed: int = 0,
                      allow_extra: bool = False, progress: bool = False,
                      cache: bool = False, cache_dir=None) -> ImageSet:
    """Load an ImageFolder-style tree ``root/CLASS/*.jpeg`` into NCHW float32.

    Parameters
    ----------
    root : str or Path
        Folder with one sub-folder per class.
    classes : sequence of str, optional
        Expected classes in label order; default: the sorted sub-folders.
    expected_shape : (H, W, 3) tuple, optional
        Decoded shape every image must have; others are skipped.
    transform : callable, optional
        ``transform(image) -> image`` applied to each HWC uint8 image, e.g.
        :class:`numcnn.data.transforms.CentreCrop` ``(128)``.
    factor : int
        Integer downscale factor (block mean).
    max_per_class : int, optional
        Keep a seeded random subset of at most this many files per class.
    seed : int
        Seed of that subset.
    allow_extra : bool
        Ignore sub-folders that are not in ``classes`` instead of failing.
    progress : bool
        Show a tqdm progress bar while decoding.
    cache : bool
        Keep the decoded images in the cache of :mod:`numcnn.data.cache`
        (keyed on the files' bytes and the settings).
    cache_dir : str or Path, optional
        Where; default ``$NUMCNN_CACHE`` or ``~/.cache/numcnn``.

    Returns
    -------
    ImageSet
        ``x`` of shape (N, 3, H', W') float32 in [0, 1], ``y`` (N,) int64,
        ``classes``, ``paths`` and ``skipped``. A warning summarises skipped files.
    """
    from .cache import load_or_decode
    from .decode import warn_skipped
    from .transforms import to_unit_range

    root = Path(root)
    classes, paths, labels = list_image_files(root, classes, allow_extra)
    if max_per_class is not None:
        chosen = subsample_per_class(labels, max_per_class, seed)
        paths = [paths[i] for i in chosen]
        labels = labels[chosen]
    sums, kept_labels, kept, skipped = load_or_decode(
        root, paths, labels, f"folder-{root.name}", transform, factor, expected_shape,
        settings={"classes": list(classes)}, cache_dir=cache_dir, cache=cache,
        progress=progress, description=f"decoding {root.name}")
    warn_skipped(skipped, len(paths), root)
    return ImageSet(x=to_unit_range(sums, 255 * factor * factor), y=kept_labels,
                    classes=list(classes), paths=kept, skipped=skipped)
