"""The two-laboratory model's command: its settings, its flags, its balance and ``--predict``.

``examples/twolabs.py`` trains the blood-cell study's network on both
laboratories' cells at the blood-cell archive's scale. What it adds to that
study's command (:mod:`cellstudy.bloodcells.command`) is here:

- :class:`TwoLabSettings`: the blood-cell settings, the PBC data folder, and
  the augmentation of docs/twolabs.md on by default;
- :func:`parse_args`: the blood-cell study's flags plus ``--pbc-data``,
  ``--lab-balance``, ``--pbc-camera`` and ``--scale``;
- :func:`training_images` and :func:`balanced_sample`: the larger
  laboratory's training images cut down to the smaller one's count, class by
  class (``--lab-balance equal``), or every image of both (``none``);
- :func:`training_set`: the images a seed trains on, PBC's seen through a
  camera drawn at random when asked (``--pbc-camera``);
- :func:`predict` (``--predict IMAGE... [--scale S]``): an image of any
  laboratory, a whole field or a crop, brought to the archive's scale, cut
  around its stained cell and classified; an image without one is an error.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Dict, Optional, Tuple

import numpy as np

from numcnn.data import camera_jitter, centre_crop, crop_around, downscale, read_rgb_image
from numcnn.datasets import bloodcells

from ..bloodcells import command as bloodcell_command
from ..bloodcells.stain import find_stain_centre
from ..shared.command import EXIT, finite_positive
from ..shared.evaluation import LAB_CAMERA, normalise_colour
from ..shared.prediction import model_for_predict, predict_images
from .scale import rescaled_for_predict

__all__ = ["TwoLabSettings", "parse_args", "training_images", "balanced_sample",
           "training_set", "predict", "SHARED"]

#: The random stream of ``--pbc-camera``'s draws, with the seed: none of the seed's other streams.
PBC_CAMERA_STREAM = 0xCA3E7A

#: PBC's names of the four classes both laboratories have, in the blood-cell labels' order.
SHARED = ("eosinophil", "lymphocyte", "monocyte", "neutrophil")


@dataclass(frozen=True)
class TwoLabSettings(bloodcell_command.BloodCellSettings):
    """The blood-cell study's settings, PBC's folder, the laboratory augmentation and balance."""

    TRAINING: ClassVar[Tuple[str, ...]] = (bloodcell_command.BloodCellSettings.TRAINING
                                           + ("lab_balance", "pbc_camera"))
    CHOICES: ClassVar[Dict[str, Tuple[str, ...]]] = {
        **bloodcell_command.BloodCellSettings.CHOICES, "lab_balance": ("equal", "none")}

    out: str = "runs/twolabs"
    augment: str = "lab"
    pbc_data: Optional[str] = None
    lab_balance: str = "equal"
    pbc_camera: bool = False


DESCRIPTION = """One four-class white-cell classifier (EOSINOPHIL, LYMPHOCYTE, MONOCYTE,
NEUTROPHIL) trained on two laboratories' slides: the Kaggle blood-cell archive and PBC,
at one physical scale, balanced (--lab-balance), with stain, light and scale augmentation.
Reported per laboratory (docs/twolabs.md)."""

EXAMPLES = """  python examples/twolabs.py --data ../shared/blood-cells --pbc-data ../shared/pbc
  python examples/twolabs.py --seeds 3 --resume                   3 seeds, continuing
  python examples/twolabs.py --predict a.jpg --scale 1.75        a PBC original (360x363)
  python examples/twolabs.py --predict cell.jpeg                  a blood-cell archive frame"""


def _more_flags(parser):
    parser.add_argument("--pbc-data", metavar="DIR", default=None,
                        help="PBC, prepared or as downloaded; default: $NUMCNN_PBC, "
                             "else ~/data/pbc")
    parser.add_argument("--lab-balance", choices=("equal", "none"), default="equal",
                        help="'equal': the larger laboratory gives a seeded, stratified sample "
                             "of the smaller one's size; 'none': every training image of both")
    parser.add_argument("--pbc-camera", action="store_true",
                        help="each PBC training image seen once a seed through a camera drawn "
                             "at random (blur, noise and a JPEG round trip, the ranges of "
                             "--augment lab+camera); the archive, validation and tests untouched")
    parser.add_argument("--scale", metavar="S", type=finite_positive, default=1.0,
                        help="--predict: the images' linear magnification relative to the "
                             "blood-cell archive's 320x240 frames (1.0 for them, 1.75 for "
                             "PBC's originals; docs/twolabs.md says how to measure it)")


def parse_args(argv=None):
    """``(settings, actions)`` from the command line; bad flags exit with status 2."""
    return bloodcell_command.parse_args(argv, TwoLabSettings, "twolabs.py", DESCRIPTION,
                                        EXAMPLES, _more_flags)


def training_images(bc_train, bc_y, pbc_y, seed, lab_balance="equal"):
    """``(archive indices, PBC indices)`` a seed trains on.

    ``bc_train`` indexes the archive's training images (validation cells out),
    ``bc_y`` the archive's labels, ``pbc_y`` PBC's training labels.
    ``lab_balance="equal"``: the larger laboratory gives a :func:`balanced_sample`
    of the smaller one's size; ``"none"``: every image of both.
    """
    pbc_train = np.arange(len(pbc_y))
    if lab_balance == "none":
        return bc_train, pbc_train
    if len(bc_train) > len(pbc_train):
        return bc_train[balanced_sample(bc_y[bc_train], len(pbc_train), seed)], pbc_train
    return bc_train, balanced_sample(pbc_y, len(bc_train), seed)


def training_set(bc_x, pbc_x, seed, pbc_camera=False, chunk=256):
    """The training images of both laboratories in one array, the archive's first.

    ``bc_x`` and ``pbc_x`` (N, 3, H, W) in [0, 1], already chosen by
    :func:`training_images`. ``pbc_camera``: each PBC image replaced by itself
    seen through a camera drawn at random for it (:func:`numcnn.data.camera_jitter`
    with the ranges of ``--augment lab+camera``), the draws fixed by ``seed``
    and made ``chunk`` images at a time; the archive's images are copied as they are.
    """
    x = np.concatenate([bc_x, pbc_x])
    if pbc_camera:
        rng = np.random.default_rng([seed, PBC_CAMERA_STREAM])
        for start in range(len(bc_x), len(x), chunk):
            x[start:start + chunk] = camera_jitter(x[start:start + chunk], rng, **LAB_CAMERA)
    return x


def balanced_sample(y_big, n_small, seed):
    """Indices of a seeded sample of ``n_small`` of ``y_big``, stratified by class, sorted.

    Each class keeps its share of ``y_big`` (rounded; the remainder goes to the
    largest classes), so the sample has the larger laboratory's class mix at the
    smaller one's size. All indices when ``len(y_big) <= n_small``.
    """
    if len(y_big) <= n_small:
        return np.arange(len(y_big))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y_big, return_counts=True)
    wanted = np.floor(counts * n_small / len(y_big)).astype(int)
    for k in np.argsort(-counts)[:n_small - wanted.sum()]:
        wanted[k] += 1
    chosen = [rng.choice(np.flatnonzero(y_big == c), size=n, replace=False)
              for c, n in zip(classes, wanted)]
    return np.sort(np.concatenate(chosen))


def _input_maker(recipe, mean, input_shape, scale):
    """``path -> (x, None)``: one image of any size at the archive's scale, as training made it."""
    def make_input(path):
        if not Path(path).is_file():
            raise OSError("no such file")
        image = rescaled_for_predict(read_rgb_image(path), scale, recipe.crop)
        centre = find_stain_centre(image)
        if centre is None:
            raise ValueError("no stained white cell found (no purple region large enough "
                             "for a nucleus); is --scale right?")
        window = np.ascontiguousarray(crop_around(image, centre, recipe.crop).transpose(2, 0, 1),
                                      np.float32)
        x = downscale(window, recipe.factor)[None] / 255                  # (1, 3, H', W')
        if recipe.colour_norm == "image":
            x = normalise_colour(x)
        x = centre_crop((x - mean).astype(np.float32), recipe.input_size)
        if input_shape is not None and x.shape[1:] != tuple(input_shape):
            raise ValueError(f"image gives input {x.shape[1:]}, the model expects "
                             f"{tuple(input_shape)}")
        return x, None

    return make_input


def predict(settings, actions):
    """``--predict``: print class probabilities for each image; return the exit status."""
    loaded = model_for_predict(settings, actions, TwoLabSettings, (bloodcells.CLASSES, True))
    if loaded is None:
        return EXIT.BAD_INPUT
    model_path, model, recipe, classes, mean = loaded
    views = settings.tta if actions.tta_explicit else recipe.tta
    description = (f"model {model_path} ({model.epoch} epochs); images at {actions.scale:g}x "
                   f"the blood-cell archive's scale, resized by {1 / actions.scale:.3f}; stain "
                   f"crop {recipe.crop}, factor {recipe.factor}, centre {recipe.input_size}x"
                   f"{recipe.input_size}"
                   + ("; mean over the 8 symmetric views" if views == "symmetries" else "; one view"))
    make_input = _input_maker(recipe, mean, model.input_shape, actions.scale)
    if actions.allow_other_size:
        print("note: --allow-other-size is not needed here: any size is read at --scale",
              file=sys.stderr)
    return predict_images(actions.predict, model, classes, make_input, views, description)
