"""The PBC study's command line: its own flags and checks on top of :mod:`cellstudy.cli`."""

from __future__ import annotations

from numcnn.datasets import pbc

from . import cli
from .settings import PBCSettings

__all__ = ["parse_args"]

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
    import argparse
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
    parser = cli.build_parser(
        "pbc.py", DESCRIPTION, defaults, EXAMPLES,
        data_help="the PBC folder: the unpacked public download (PBC_dataset_normal_DIB/ or "
                  "the folder holding it) or a prepared copy (images/ and splits.csv); "
                  "default: $NUMCNN_PBC, "
                  "else ~/data/pbc")
    prep = parser.add_argument_group("preprocessing")
    prep.add_argument("--size", metavar="PX", type=cli.positive_int, default=defaults.size,
                      help="image side after block means of the 128x128 images (a divisor of 128)")
    prep.add_argument("--input-size", metavar="PX", type=cli.positive_int,
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
    net.add_argument("--filters", metavar="N,N,...", type=cli.number_list, default=defaults.filters,
                     help="filters of each convolution block, one number per block")
    net.add_argument("--convs", metavar="N", type=cli.positive_int, default=defaults.convs,
                     help="3x3 convolutions (each with BatchNorm and ReLU) per block")
    net.add_argument("--dense", metavar="N", type=cli.positive_int, default=defaults.dense,
                     help="units of the hidden dense layer")
    net.add_argument("--dropout", metavar="P", type=float, default=defaults.dropout,
                     help="dropout after each block and the hidden dense layer")
    net.add_argument("--weight-decay", metavar="W", type=float, default=defaults.weight_decay,
                     help="AdamW's decoupled weight decay")
    net.add_argument("--label-smoothing", metavar="E", type=float,
                     default=defaults.label_smoothing, help="softmax cross-entropy's smoothing")
    return cli.parse(parser, PBCSettings, argv, _check)


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
    cli.check_network_size(parser, sum(9 * a * b + 9 * b * b * (args.convs - 1)
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
