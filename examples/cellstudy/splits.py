"""Validation splits cut from a training set: by images, or by whole original cells."""

from __future__ import annotations

import hashlib

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, train_test_split

__all__ = ["VALIDATION_FRACTION", "split_by_images", "split_whole_groups", "validation_digest",
           "fair_sample"]

VALIDATION_FRACTION = 0.1


def split_by_images(y, seed, fraction=VALIDATION_FRACTION):
    """A seeded, stratified split of the images; ``(train_index, val_index)``.

    Images that are copies of one original cell land on both sides: the
    validation accuracy then reads high.
    """
    return train_test_split(np.arange(len(y)), test_size=fraction, stratify=y,
                            random_state=seed)


def split_whole_groups(y, groups, seed, fraction=VALIDATION_FRACTION):
    """Hold out ``fraction`` of each class's groups (seeded); ``(train_index, val_index)``.

    scikit-learn's GroupShuffleSplit, class by class, so that every class keeps
    its share of validation cells (StratifiedGroupKFold's shuffle gave the same
    first fold for every seed here, where each group has one class). The
    training indices come in a seeded random order, the validation ones sorted.
    """
    held_out = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction,
                                     random_state=seed + 1000 * int(label))
        _, chosen = next(splitter.split(members, groups=groups[members]))
        held_out.append(members[chosen])
    val_index = np.sort(np.concatenate(held_out))
    train_index = np.setdiff1d(np.arange(len(y)), val_index)
    # shuffled, as train_test_split's are: the first training images must be a fair
    # sample of all classes (BatchNorm recalibration measures its statistics on them)
    return np.random.default_rng(seed).permutation(train_index), val_index


def validation_digest(val_index):
    """A short fingerprint of which training images a seed held out for validation."""
    return hashlib.sha256(np.asarray(val_index, np.int64).tobytes()).hexdigest()[:16]


def fair_sample(n, k, seed):
    """``k`` of the indices ``0 .. n-1`` (all of them if ``n <= k``), drawn at random, sorted.

    For BatchNorm's calibration images: a loader returns a split sorted by
    class, and its first ``k`` images would be one or two classes only.
    """
    return np.sort(np.random.default_rng(seed).permutation(n)[:k])
