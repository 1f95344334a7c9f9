"""The data checked against itself, and its identity, from the bytes of every file.

Every image file is hashed (:func:`numcnn.data.cache.file_digest`, the hash
the decode cache keys on; a second pass over files the system has just read
costs a fraction of a second per 10,000). Two things follow:

- **its identity** (:func:`data_identity`): per split, the number of images
  and a SHA-256 of their names (``<class>/<file>``) and bytes, in the
  loader's order. ``recipe.json`` records it, and ``--resume`` goes on only
  on the same data, wherever it lies (:meth:`cellstudy.shared.runs.RunFolder.resume`);
- **checks of the data against itself** (:func:`check_against_itself`): a
  held-out split (TEST, and PBC's val) that holds images of an earlier split
  byte for byte is not held out. If nearly all of them are (at least
  :data:`SAME_SPLIT_FRACTION`: TEST a copy or a link of TRAIN), the run is
  refused (DataError, exit 2); any fewer are counted in a warning and in
  results.json. Likewise a file whose bytes appear under two classes of one
  split (their labels contradict each other): counted, or refused when a
  class is nearly all copies of another (a class folder linked to another).

A subset (``--max-per-class``) is checked as it is loaded.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from numcnn.data.cache import file_digest
from numcnn.errors import DataError

__all__ = ["SAME_SPLIT_FRACTION", "file_digests", "data_identity", "check_against_itself",
           "check_data"]

#: A held-out split (or a class) this much made of another's files is refused.
SAME_SPLIT_FRACTION = 0.9


def file_digests(paths):
    """The hash of the bytes of each file (BLAKE2b, as the decode cache keys on)."""
    return [file_digest(path) for path in paths]


def _name(path):
    """``<class folder>/<file name>``, as bytes (a name need not be UTF-8)."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}".encode("utf-8", "surrogateescape")


def data_identity(images, digests):
    """``{"images": N, "sha256": ...}`` of one split: its names and bytes, in order."""
    digest = hashlib.sha256()
    for path, label, file in zip(images.paths, images.y, digests):
        digest.update(_name(path) + f"\t{int(label)}\t{file}\n".encode())
    return {"images": len(images), "sha256": digest.hexdigest()}


def check_against_itself(data, splits, digests):
    """Same files across splits and across classes: warnings, or DataError; the counts.

    Parameters
    ----------
    data : dict
        ``{split: ImageSet}``.
    splits : sequence of str
        In order: a split is held out from those before it (train, val, test).
    digests : dict
        ``{split: list of file hashes}``, one per image.

    Returns
    -------
    dict
        ``{"same_files": {"test_in_train": n, ...}, "classes_sharing_files":
        {split: n}}``: for results.json.
    """
    facts = {"same_files": {}, "classes_sharing_files": {}}
    for later_index, later in enumerate(splits):
        for earlier in splits[:later_index]:
            known = set(digests[earlier])
            same = sum(digest in known for digest in digests[later])
            facts["same_files"][f"{later}_in_{earlier}"] = same
            total = len(digests[later])
            if total and same >= SAME_SPLIT_FRACTION * total:
                raise DataError(f"{later.upper()} is {earlier.upper()}: {same} of its {total} "
                                f"images are, byte for byte, {earlier.upper()} images (is one "
                                f"folder a copy or a link of the other?); results on it would "
                                f"not be held out. Point --data at data whose splits are apart")
            if same:
                warnings.warn(f"{same} of the {total} {later.upper()} images are, byte for "
                              f"byte, {earlier.upper()} images: {later.upper()}'s results are "
                              f"not wholly held out (counted in results.json)", stacklevel=3)
    for split in splits:
        facts["classes_sharing_files"][split] = _classes_sharing(data[split], digests[split],
                                                                 split)
    return facts


def _classes_sharing(images, digests, split):
    """Images whose bytes appear under another class too; DataError if a class is a copy."""
    labels_of = defaultdict(set)
    for digest, label in zip(digests, images.y):
        labels_of[digest].add(int(label))
    shared = [len(labels_of[digest]) > 1 for digest in digests]
    count = int(np.sum(shared))
    if not count:
        return 0
    for label, name in enumerate(images.classes):
        mine = [digest for digest, y in zip(digests, images.y) if y == label]
        for other, other_name in enumerate(images.classes):
            if other == label or not mine:
                continue
            copied = sum(other in labels_of[digest] for digest in mine)
            if copied >= SAME_SPLIT_FRACTION * len(mine):
                raise DataError(f"{split.upper()}/{name} is {split.upper()}/{other_name}: "
                                f"{copied} of its {len(mine)} images are, byte for byte, "
                                f"{other_name} images (is one class folder a copy or a link "
                                f"of the other?)")
    first = next(path for path, flag in zip(images.paths, shared) if flag)
    warnings.warn(f"{count} {split.upper()} images have the bytes of an image of another class "
                  f"(e.g. {first}): their labels contradict each other (counted in "
                  f"results.json)", stacklevel=4)
    return count


def check_data(data, splits):
    """Hash every file of ``splits``; check the data against itself; its identity and facts.

    Returns
    -------
    dict
        ``{"identity": {split: {"images", "sha256"}}, "same_files": ...,
        "classes_sharing_files": ...}`` (:func:`check_against_itself`); the
        study keeps it as ``data["identity"]``, recipe.json records the
        identity, results.json all of it.
    """
    digests = {split: file_digests(data[split].paths) for split in splits}
    facts = check_against_itself(data, splits, digests)
    return {"identity": {split: data_identity(data[split], digests[split]) for split in splits},
            **facts}
