"""scikit-learn's 8x8 handwritten digits: 1,797 small images of ten classes, with a fixed split.

The images are the test part of the UCI "Optical Recognition of Handwritten
Digits" data (E. Alpaydin and C. Kaynak, 1998; 13 writers), as scikit-learn
ships them in ``sklearn.datasets.load_digits``: nothing is downloaded. Each
32x32 bitmap was cut into 4x4 blocks and the inked pixels of each block
counted, so a pixel is an integer 0..16; this loader divides by 16, giving
exact float32 values k/16 in [0, 1].

The split is a rule on the order in which ``load_digits`` gives the images, no
random generator: within each class, every fifth image (the 5th, 10th, 15th,
... of that digit) is ``test``, the others ``train``. That gives 1,442 train
and 355 test images, 34-36 test images of every digit
(:data:`TEST_PER_CLASS`). The split depends on nothing but the data and its
order, so it is the same on every scikit-learn version that ships this data;
the loader checks the number of images of each digit and the pixel values,
and raises a :class:`numcnn.errors.DataError` if they differ. The dataset does
not say which of its 13 writers drew an image, so the split cannot keep
writers apart: the test images are most likely new digits of hands seen in
training, and the test accuracy says nothing of unseen writers.

>>> from numcnn.datasets import digits
>>> train = digits.load_data("train")
>>> train.x.shape, train.x.dtype, len(digits.load_data("test"))
((1442, 1, 8, 8), dtype('float32'), 355)
>>> train.paths[0], train.classes[train.y[0]]
('load_digits[0]', '0')
"""

from __future__ import annotations

import numpy as np
import sklearn
from sklearn.datasets import load_digits

from .. import validation
from ..data.images import ImageSet
from ..errors import DataError

__all__ = ["CLASSES", "SPLITS", "IMAGE_SHAPE", "TEST_EVERY", "TEST_PER_CLASS", "split_indices",
           "load_data"]

CLASSES = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9")
"""The ten digits, in label order (label k is the digit k)."""
SPLITS = ("train", "test")
"""The two splits."""
IMAGE_SHAPE = (1, 8, 8)
"""CHW shape of one image: one grey channel of 8x8 pixels."""
TEST_EVERY = 5
"""Every TEST_EVERY-th image of each class (in ``load_digits`` order) is a test image."""
TEST_PER_CLASS = (35, 36, 35, 36, 36, 36, 36, 35, 34, 36)
"""Test images of each digit 0..9 (355 in all); the other 1,442 are train."""
_PER_CLASS = (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)   # load_digits' 1,797 images
_MAX_VALUE = 16           # a pixel counts the inked pixels of a 4x4 block


def _raw():
    """``(images (1797, 8, 8) float64 of integers 0..16, labels (1797,) int64)`` from scikit-learn.

    Raises a DataError if scikit-learn gives other data: the split is a rule
    on this data and its order.
    """
    bunch = load_digits()
    images, labels = np.asarray(bunch.images), np.asarray(bunch.target)
    expected = (images.shape == (sum(_PER_CLASS), 8, 8)
                and labels.shape == (len(images),) and labels.min() >= 0
                and tuple(np.bincount(labels)) == _PER_CLASS
                and images.min() >= 0 and images.max() <= _MAX_VALUE
                and (images == np.round(images)).all())
    if not expected:
        raise DataError(f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__}) gave "
                        f"other data than numcnn's fixed split is made from: expected "
                        f"{sum(_PER_CLASS)} images of shape (8, 8) with integer pixels "
                        f"0..{_MAX_VALUE} and {_PER_CLASS} of the digits 0..9; got images of "
                        f"shape {images.shape} and labels of shape {labels.shape}")
    return images, labels.astype(np.int64)


def _test_mask(labels: np.ndarray) -> np.ndarray:
    """True for the test images: the 5th, 10th, ... image of each class, in the given order."""
    mask = np.zeros(len(labels), dtype=bool)
    for label in range(len(CLASSES)):
        rows = np.flatnonzero(labels == label)
        mask[rows[TEST_EVERY - 1::TEST_EVERY]] = True
    return mask


def split_indices(split: str = "train") -> np.ndarray:
    """The rows of ``sklearn.datasets.load_digits()`` that make one split, ascending.

    Returns
    -------
    ndarray, shape (1442,) for "train" or (355,) for "test", int64
        ``load_digits().images[split_indices(s)]`` are the images of
        ``load_data(s)``, in the same order.
    """
    validation.one_of(split, "split", "digits.split_indices", SPLITS)
    _, labels = _raw()
    mask = _test_mask(labels)
    return np.flatnonzero(mask if split == "test" else ~mask).astype(np.int64)


def load_data(split: str = "train") -> ImageSet:
    """One split of the 8x8 digits as NCHW float32 in [0, 1].

    Parameters
    ----------
    split : {"train", "test"}
        See the module's docstring for how the split is made.

    Returns
    -------
    ImageSet
        ``x`` (N, 1, 8, 8) float32, the counts 0..16 divided by 16; ``y``
        (N,) int64, the digit (``classes[y]`` is its name, ``"0"``..``"9"``);
        ``classes``; ``paths``: no image has a file of its own, so each row
        is named after where it comes from, ``"load_digits[i]"`` for row ``i``
        of ``sklearn.datasets.load_digits()``; ``skipped`` is empty. N is 1,442
        for train and 355 for test, in ``load_digits`` order.

    Raises
    ------
    ValueError
        ``split`` is not "train" or "test".
    DataError
        scikit-learn gave other data than the 1,797 images described above.
    """
    validation.one_of(split, "split", "digits.load_data", SPLITS)
    images, labels = _raw()
    mask = _test_mask(labels)
    rows = np.flatnonzero(mask if split == "test" else ~mask)
    x = (images[rows] / _MAX_VALUE).astype(np.float32)[:, None]      # (N, 8, 8) -> (N, 1, 8, 8)
    return ImageSet(x=x, y=labels[rows], classes=list(CLASSES),
                    paths=[f"load_digits[{i}]" for i in rows])
