"""The PBC study's command: its settings, its flags, and what it does besides training.

- :class:`PBCSettings`: the study's settings (image size, the network, its
  regularisation, the classes), as its recipe.json holds them;
- :func:`parse_args`: its command line, the shared flags of
  :mod:`cellstudy.shared.command` and its own; a flag that cannot work is
  refused here, before any data is read;
- :func:`show_class_counts`: images per class and split, from splits.csv;
- :func:`predict` (``--predict``): 128x128 PBC-style images, made exactly as
  the training images were.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Tuple

from numcnn.data import centre_crop, preprocess_image, read_rgb_image
from numcnn.datasets import pbc

from ..shared.command import (EXIT, build_parser, check_network_size, number_list, parse,
                              positive_int)
from ..shared.evaluation import normalise_colour
from ..shared.prediction import model_for_predict, predict_images
from ..shared.reports import count_table
from ..shared.settings import Settings

__all__ = ["PBCSettings", "parse_args", "show_class_counts", "predict"]


@dataclass(frozen=True)
class PBCSettings(Settings):
    """The PBC study: image size, the network, its regularisation, on the fixed split."""

    TRAINING: ClassVar[Tuple[str, ...]] = Settings.TRAINING + (
        "size", "input_size", "filters", "convs", "dense", "dropout", "weight_decay",
        "label_smoothing", "classes", "colour_norm")

    out: str = "runs/pbc"
    size: int = 64
    input_size: int = 56
    filters: Tuple[int, ...] = (32, 64, 128, 256)
    convs: int = 1
    dense: int = 256
    dropout: float = 0.25
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    classes: Tuple[str, ...] = ("basophil", "eosinophil", "erythroblast", "ig", "lymphocyte",
                                "monocyte", "neutrophil", "platelet")
    colour_norm: str = "none"
    epochs: int = 20

    POSITIVE: ClassVar[Tuple[str, ...]] = Settings.POSITIVE + ("size", "input_size", "convs",
                                                               "dense")

    def __post_init__(self):
        if not self.classes:          # "all of them", as the first recipes of this study said
            object.__setattr__(self, "classes", PBCSettings.classes)

    @property
    def square(self) -> bool:
        """PBC's images are square: crops, quarter turns and 8 views all apply."""
        return True

    @property
    def input_shape(self):
        """(C, H, W) of what the network sees."""
        return (3, self.input_size, self.input_size)

    @property
    def image_shape(self):
        """(C, H, W) of the images before the centre crop: the shape of mean_image.npy."""
        return (3, self.size, self.size)


DESCRIPTION = """Eight-class blood-cell classifier on the PBC dataset (Acevedo et al. 2020,
CC BY 4.0), trained with numcnn on its fixed split: trained on train,
watched on val, TEST evaluated once after the last epoch. The defaults are
the final recipe (docs/pbc.md)."""

EXAMPLES = """  python examples/pbc.py --data ../shared/pbc                the study, seed 0
  python examples/pbc.py --seeds 3 --resume                  3 seeds, continuing
  python examples/pbc.py --classes eosinophil,lymphocyte,monocyte,neutrophil --out runs/pbc4
                                                             the four classes the blood-cell archive shares
  python examples/pbc.py --predict cell.jpg                  classify new 128x128 images"""


def class_list(text):
    """'eosinophil,lymphocyte' -> ('eosinophil', 'lymphocyte'), checked against PBC's classes.

    At least two: a model of one class gives it to every image, and its
    accuracy of 1.0 would say nothing.
    """
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in pbc.CLASSES]
    if not names or unknown or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected distinct names from {', '.join(pbc.CLASSES)}; "
                                         f"got {text!r}")
    if len(names) < 2:                    # a one-class model is right whatever it is shown
        raise argparse.ArgumentTypeError(f"expected at least 2 classes to tell apart; got {text!r}")
    return names


def parse_args(argv=None):
    """``(settings, actions)`` from the command line; bad flags exit with status 2."""
    defaults = PBCSettings()
    parser = build_parser(
        "pbc.py", DESCRIPTION, defaults, EXAMPLES,
        data_help="the PBC folder: the unpacked public download (PBC_dataset_normal_DIB/ or "
                  "the folder holding it) or a prepared copy (images/ and splits.csv); "
                  "default: $NUMCNN_PBC, "
                  "else ~/data/pbc")
    prep = parser.add_argument_group("preprocessing")
    prep.add_argument("--size", metavar="PX", type=positive_int, default=defaults.size,
                      help="image side after block means of the 128x128 images (a divisor of 128)")
    prep.add_argument("--input-size", metavar="PX", type=positive_int,
                      default=defaults.input_size,
                      help="side of the random training crop and of the centre evaluation crop")
    prep.add_argument("--tta", choices=("symmetries", "none"), default=None,
                      help="evaluation: mean over the 8 symmetries of the square, or one view "
                           "(default: symmetries; with --predict: the model's recipe)")
    prep.add_argument("--classes", metavar="NAME,...", type=class_list, default=(),
                      help="train on these classes only (default: all eight)")
    prep.add_argument("--colour-norm", choices=("none", "image"), default=defaults.colour_norm,
                      help="'image': each image's channels brought to mean 0.5 and a fixed "
                           "spread before anything else (a remedy against another lab's stain)")
    net = parser.add_argument_group("network")
    net.add_argument("--filters", metavar="N,N,...", type=number_list, default=defaults.filters,
                     help="filters of each convolution block, one number per block")
    net.add_argument("--convs", metavar="N", type=positive_int, default=defaults.convs,
                     help="3x3 convolutions (each with BatchNorm and ReLU) per block")
    net.add_argument("--dense", metavar="N", type=positive_int, default=defaults.dense,
                     help="units of the hidden dense layer")
    net.add_argument("--dropout", metavar="P", type=float, default=defaults.dropout,
                     help="dropout after each block and the hidden dense layer")
    net.add_argument("--weight-decay", metavar="W", type=float, default=defaults.weight_decay,
                     help="AdamW's decoupled weight decay")
    net.add_argument("--label-smoothing", metavar="E", type=float,
                     default=defaults.label_smoothing, help="softmax cross-entropy's smoothing")
    return parse(parser, PBCSettings, argv, _check)


def _check(parser, args):
    """Reject settings that cannot work, before any data is read."""
    if pbc.IMAGE_SIZE % args.size:
        parser.error(f"--size must divide {pbc.IMAGE_SIZE} (128, 64, 32, ...), got {args.size}")
    if not 8 <= args.input_size <= args.size:
        parser.error(f"--input-size must be between 8 and --size {args.size}, got {args.input_size}")
    if args.input_size >> len(args.filters) < 1:
        parser.error(f"--filters: {len(args.filters)} blocks halve the {args.input_size}-pixel "
                     f"input {len(args.filters)} times, too often")
    channels = (3,) + tuple(args.filters)
    side = args.input_size >> len(args.filters)
    check_network_size(parser, sum(9 * a * b + 9 * b * b * (args.convs - 1)
                                       for a, b in zip(channels, channels[1:]))
                           + args.filters[-1] * side * side * args.dense)
    if not 0 <= args.dropout < 1:
        parser.error(f"--dropout must be in [0, 1), got {args.dropout}")
    if not 0 <= args.weight_decay < 1:
        parser.error(f"--weight-decay must be in [0, 1), got {args.weight_decay}")
    if not 0 <= args.label_smoothing < 1:
        parser.error(f"--label-smoothing must be in [0, 1), got {args.label_smoothing}")
    if args.tta is None:
        args.tta = "symmetries"
    if not args.classes:
        args.classes = pbc.CLASSES                # all eight, by name: as recipe.json stores them


def show_class_counts(data_dir, say):
    """Images per class and split, from splits.csv."""
    counts = {split: pbc.class_counts(split, data_dir) for split in pbc.SPLITS}
    say("\nImages per class and split (splits.csv):")
    say(count_table(counts, pbc.CLASSES))


def predict(settings, actions):
    """``--predict``: class probabilities of 128x128 PBC-style images; the exit status."""
    loaded = model_for_predict(settings, actions, PBCSettings, (pbc.CLASSES, False))
    if loaded is None:
        return EXIT.BAD_INPUT
    model_path, model, recipe, classes, mean = loaded
    factor = pbc.IMAGE_SIZE // recipe.size
    shape = (pbc.IMAGE_SIZE, pbc.IMAGE_SIZE, 3)

    def make_input(path):
        if not Path(path).is_file():
            raise OSError("no such file")
        image = read_rgb_image(path)
        if image.shape != shape:
            raise ValueError(f"a {image.shape[1]}x{image.shape[0]} image; the model was trained on "
                             f"{shape[1]}x{shape[0]} images (the central 200x200 of a PBC "
                             f"original, resized): bring it to that size first")
        x = preprocess_image(image, None, factor)[None]
        if recipe.colour_norm == "image":
            x = normalise_colour(x)
        return centre_crop(x - mean, recipe.input_size), None

    views = settings.tta if actions.tta_explicit else recipe.tta
    description = (f"model {model_path} ({model.epoch} epochs); preprocessing: {recipe.size}x"
                   f"{recipe.size} by block means, centre {recipe.input_size}x{recipe.input_size}"
                   + ("; mean over the 8 symmetric views" if views == "symmetries" else "; one view"))
    return predict_images(actions.predict, model, classes, make_input, views, description)
