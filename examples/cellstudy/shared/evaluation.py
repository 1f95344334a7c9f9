"""What the network is shown, and how a trained seed is judged.

- **Colour** (:func:`normalise_colour`, ``--colour-norm image``): two
  laboratories stain and photograph cells differently, and the same cell comes
  out pinker, darker or bluer. Each channel of each image is shifted to mean
  0.5 and scaled to a spread of 0.2, before anything else: what is left is
  where the colours differ within the image (the nucleus against the cytoplasm
  and the background), not the slide's overall shade. It uses the image
  alone: no statistics of another dataset.
- **Validation splits** cut from a training set (:func:`split_by_images`,
  :func:`split_whole_groups`): by images, or by whole original cells.
- **Views**: training takes a random crop of each (mean-subtracted) image;
  evaluation the centre one (:func:`evaluation_view`). With square crops the
  class probabilities can be averaged over the 8 symmetries of the square
  (four quarter turns, each mirrored or not): every orientation the network
  met in training (:func:`predict_views`).
- **A trained seed, evaluated** (:func:`evaluate_seed`): every split's report,
  the learning curves, the timings. The training set is predicted with one
  view (it only shows how well the network fits; 8 views of every training
  image would add minutes to a run), validation and TEST as the settings say.
  TEST is evaluated there, once, after the last epoch, unless ``--skip-test``
  keeps it unseen; then the TEST files of an earlier run are removed, so that
  none is mistaken for this run's.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, train_test_split

from numcnn.data import (centre_crop, colour_jitter, crop_and_flip, lab_augment,
                         predict_symmetric)

from . import reports

__all__ = ["TARGET_MEAN", "TARGET_SPREAD", "normalise_colour", "training_augment",
           "augmentation_words", "camera_words", "LAB_STAIN", "LAB_LIGHT",
           "VALIDATION_FRACTION", "split_by_images", "split_whole_groups", "validation_digest",
           "fair_sample", "evaluation_view", "predict_views", "predict_probabilities",
           "Split", "evaluate_seed"]

# ---------------------------------------------------------------------------
# Colour
# ---------------------------------------------------------------------------
TARGET_MEAN = 0.5
TARGET_SPREAD = 0.2


def normalise_colour(x):
    """Each image's channels to mean 0.5 and standard deviation 0.2; NCHW float32 in, out."""
    x = np.asarray(x, dtype=np.float32)
    mean = x.mean(axis=(2, 3), keepdims=True, dtype=np.float64)
    spread = x.std(axis=(2, 3), keepdims=True, dtype=np.float64)
    return ((x - mean) / np.maximum(spread, 1e-3) * TARGET_SPREAD + TARGET_MEAN).astype(np.float32)


# ---------------------------------------------------------------------------
# Validation splits
# ---------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------
# Views
# ---------------------------------------------------------------------------
#: --augment lab's strengths, registered in docs/twolabs.md before any result: each stain's
#: amount times Uniform(0.8, 1.2) plus Uniform(-0.1, 0.1) (optical density), brightness
#: Uniform(-0.1, 0.1), contrast Uniform(0.8, 1.2); its zoom factors are the setting ``zoom``
#: (--zoom; registered: Uniform(0.85, 1.18), the default).
LAB_STAIN, LAB_LIGHT = (0.2, 0.1), (0.1, 0.2)
#: --augment lab+camera's camera, registered in docs/twolabs.md before any result: a Gaussian
#: blur of sigma Uniform(0, 1.5) pixels, sensor noise of spread Uniform(0, 0.03), a JPEG of
#: quality 20..95.
LAB_CAMERA = {"blur": 1.5, "noise": 0.03, "quality": (20, 95)}
#: The --augment values that change stains, light and scale.
LAB_AUGMENTS = ("lab", "lab+camera")


def training_augment(settings, mean_image, size, rotate90=True):
    """The ``fit(augment=...)`` a study trains with: a random crop of ``size`` (None: none),
    flips and (``rotate90``) quarter turns, colour jitter when asked; with
    ``--augment lab`` first each image's stains, light and scale
    (:func:`numcnn.data.stain.lab_augment`, on the images before ``mean_image`` is
    subtracted), with ``lab+camera`` then also blur, noise and a JPEG round trip."""
    if settings.augment not in LAB_AUGMENTS:
        return crop_and_flip(size, rotate90=rotate90, colour=settings.colour_jitter)
    lab = lab_augment(size, mean_image, stain=LAB_STAIN, rescale=settings.zoom, light=LAB_LIGHT,
                      rotate90=rotate90,
                      camera=LAB_CAMERA if settings.augment == "lab+camera" else None)
    if not settings.colour_jitter:
        return lab
    return lambda xb, rng: colour_jitter(lab(xb, rng), rng, settings.colour_jitter)


def camera_words():
    """What the camera of :data:`LAB_CAMERA` does, in the words of recipe.json."""
    return (f"Gaussian blur of sigma Uniform(0, {LAB_CAMERA['blur']:g}) px, noise of spread "
            f"Uniform(0, {LAB_CAMERA['noise']:g}), a JPEG round trip of quality "
            f"{LAB_CAMERA['quality'][0]}..{LAB_CAMERA['quality'][1]}")


def augmentation_words(settings, size, rotate90=True):
    """What :func:`training_augment` does, in the words of recipe.json."""
    steps = (["stains in optical density (Giemsa basis) times Uniform(0.8, 1.2) plus "
              "Uniform(-0.1, 0.1), brightness Uniform(-0.1, 0.1), contrast Uniform(0.8, 1.2), "
              f"zoom Uniform({settings.zoom[0]:g}, {settings.zoom[1]:g})"]
             if settings.augment in LAB_AUGMENTS else [])
    steps += [camera_words()] if settings.augment == "lab+camera" else []
    steps += [f"random {size}x{size} crop"] if size else []
    steps += ["random flips (left-right, up-down)"] + (["random quarter turns"] if rotate90 else [])
    steps += ([f"colour jitter {settings.colour_jitter:g} (per-channel gain and shift)"]
              if settings.colour_jitter else [])
    return ", then ".join(steps)


def evaluation_view(x, input_size, crop=True):
    """The centre ``input_size`` square of each image (``crop=False``: the whole image)."""
    return centre_crop(x, input_size) if crop else x


def predict_views(model, x, views, batch_size=256):
    """Class probabilities: one view (``"none"``) or the mean over the 8 symmetries."""
    if views == "symmetries":
        return predict_symmetric(model, x, batch_size=batch_size)
    return model.predict(x, batch_size=batch_size)


def predict_probabilities(model, x, views, input_size, crop=True, batch_size=256):
    """Class probabilities of uncropped images, a batch at a time.

    (The centre crop of a whole set at once would copy it.)
    """
    return np.concatenate([predict_views(model, evaluation_view(x[i:i + batch_size], input_size,
                                                                crop), views, batch_size)
                           for i in range(0, len(x), batch_size)])


# ---------------------------------------------------------------------------
# A trained seed, evaluated
# ---------------------------------------------------------------------------
@dataclass
class Split:
    """One split of a seed, as its report reads it.

    Attributes
    ----------
    x : ndarray (N, C, H, W)
        The images as evaluation sees them before the centre crop
        (mean-subtracted), float32.
    y : ndarray (N,)
        Their labels.
    title : str
        The first words of the split's report ("TEST set (...)").
    groups : ndarray (N,), optional
        The group (original cell) of each image: the accuracy then gets a 95%
        interval over the groups.
    """

    x: np.ndarray
    y: np.ndarray
    title: str
    groups: Optional[np.ndarray] = None


def evaluate_seed(model, splits, *, settings, classes, folder, began, say, plot=False,
                  unit="estimated cells"):
    """Report every split of a trained seed; return the seed's metrics for results.json.

    Parameters
    ----------
    model : Sequential
    splits : dict
        ``{"train": Split, "val": Split, "test": Split}``, reported in that order.
    settings : Settings
        ``tta``, ``input_size``, ``square`` and ``skip_test`` are read.
    classes : list of str
    folder : Path
        The seed folder: each split's files (:func:`cellstudy.shared.reports.report_split`).
    began : float
        ``time.perf_counter()`` when the seed started.
    say : callable
        Prints (unless ``--quiet``).
    plot : bool
        Draw the confusion matrices and the learning curves.
    unit : str
        What a group is, in the reports' words ("estimated cells", "images").
    """
    result = {"seed": model.seed, "epochs": model.epoch}
    for name, split in splits.items():
        if name == "test" and settings.skip_test:
            say("\n--- TEST not evaluated (--skip-test)")
            for kind in reports.SPLIT_FILES:          # from an earlier run that did evaluate TEST
                reports.split_file(folder, kind, "test").unlink(missing_ok=True)
            continue
        views = "none" if name == "train" else settings.tta
        predicted = predict_probabilities(model, split.x, views, settings.input_size,
                                          crop=settings.square).argmax(axis=1)
        title = split.title + (", mean over 8 symmetric views" if views == "symmetries" else "")
        result[name], text = reports.report_split(predicted, split.y, classes, title, folder, name,
                                                  groups=split.groups, group_unit=unit,
                                                  plot=plot, seed=model.seed)
        say(f"\n--- {text}")
    if plot and model.history.history:
        from numcnn import plots
        plots.learning_curves(model.history, path=folder / "learning_curves.png",
                              title=f"Learning curves, seed {model.seed}")
    seconds = model.history.history.get("seconds", [])
    result["seconds_per_epoch"] = float(np.mean(seconds)) if seconds else None
    result["train_seconds"] = float(np.sum(seconds))
    result["total_seconds"] = time.perf_counter() - began
    return result
