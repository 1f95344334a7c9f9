"""The blood-cell study's command: its settings, its flags, and what it does besides training.

- :class:`BloodCellSettings`: the study's settings (stain crop, downscale, crop
  size, network, validation), as its recipe.json holds them;
- :func:`parse_args`: its command line, the shared flags of
  :mod:`cellstudy.shared.command` and its own; a flag that cannot work is
  refused here, before any data is read;
- :func:`show_class_counts`: the two tables of images per class the study prints first;
- :func:`predict` (``--predict``) and :func:`explain` (``--explain``), each
  image made exactly as the training images were.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Dict, Tuple

from numcnn.data import centre_crop, preprocess_image, read_rgb_image
from numcnn.datasets import bloodcells

from ..shared.command import (EXIT, build_parser, check_network_size, number_list, parse,
                              positive_int, printable)
from ..shared.evaluation import normalise_colour
from ..shared.prediction import explain_images, model_for_predict, predict_images
from ..shared.reports import count_table
from ..shared.settings import Settings
from .labels_csv import LabelsFileError, read_original_labels
from .stain import StainCrop

__all__ = ["BloodCellSettings", "parse_args", "show_class_counts", "predict", "explain"]


def _blood_cells_from_version_1(recipe: dict) -> dict:
    """numcnn 0.1's recipe.json: what an absent setting meant before it existed."""
    before = {"colour_jitter": 0.0, "validation": "images", "filters": [32, 64, 128],
              "first_stride": 1, "colour_norm": "none"}
    return {**before, **recipe}


@dataclass(frozen=True)
class BloodCellSettings(Settings):
    """The blood-cell study: stain crop, downscale, crop size, network width, validation."""

    TRAINING: ClassVar[Tuple[str, ...]] = Settings.TRAINING + (
        "crop", "factor", "input_size", "validation", "filters", "first_stride", "colour_norm")
    MIGRATIONS: ClassVar[Dict[int, object]] = {1: _blood_cells_from_version_1}
    POSITIVE: ClassVar[Tuple[str, ...]] = Settings.POSITIVE + ("factor", "input_size",
                                                               "first_stride")
    CHOICES: ClassVar[Dict[str, Tuple[str, ...]]] = {**Settings.CHOICES,
                                                     "validation": ("images", "cells")}

    out: str = "runs/bloodcells"
    crop: int = 144
    factor: int = 2
    input_size: int = 64
    filters: Tuple[int, ...] = (32, 64, 128)
    first_stride: int = 1
    validation: str = "cells"
    colour_norm: str = "none"

    @property
    def square(self) -> bool:
        """The network sees square crops (quarter turns and 8 views are then possible)."""
        return self.crop != 0

    @property
    def input_shape(self):
        """(C, H, W) of what the network sees."""
        if self.crop:
            return (3, self.input_size, self.input_size)
        return (3, 240 // self.factor, 320 // self.factor)

    @property
    def image_shape(self):
        """(C, H, W) of the images before the centre crop: the shape of mean_image.npy."""
        if self.crop:
            return (3, self.crop // self.factor, self.crop // self.factor)
        return (3, 240 // self.factor, 320 // self.factor)


DESCRIPTION = """Four-class white-blood-cell classifier (EOSINOPHIL, LYMPHOCYTE, MONOCYTE,
NEUTROPHIL) trained with numcnn on the Kaggle blood-cells images.
The defaults are the recipe fixed in advance; TEST is evaluated once,
after the last epoch."""

EXAMPLES = """  python examples/bloodcells.py --data ../shared/blood-cells     the study, seed 0
  python examples/bloodcells.py --seeds 5                        mean and spread over 5 seeds
  python examples/bloodcells.py --resume                         continue an interrupted run
  python examples/bloodcells.py --max-per-class 30 --epochs 1    a quick look
  python examples/bloodcells.py --predict a.jpeg b.jpeg          classify new images
  python examples/bloodcells.py --explain                        Grad-CAM grid of TEST images"""


def parse_args(argv=None, settings_class=BloodCellSettings, prog="bloodcells.py",
               description=DESCRIPTION, examples=EXAMPLES, more_flags=None):
    """``(settings, actions)`` from the command line; bad flags exit with status 2.

    ``settings_class`` and the texts let another script of the same images
    (``examples/twolabs.py``) take these flags; ``more_flags(parser)`` adds its own.
    """
    defaults = settings_class()
    parser = build_parser(
        prog, description, defaults, examples,
        data_help="the unpacked Kaggle archive (holding dataset2-master/); default: "
                  "$NUMCNN_BLOODCELLS, else ~/data/blood-cells")
    if more_flags is not None:
        more_flags(parser)
    prep = parser.add_argument_group("preprocessing")
    prep.add_argument("--crop", metavar="PX", type=int, default=defaults.crop,
                      help="side of the window cut around the stained cell before downscaling; "
                           "0 keeps the whole 240x320 image (and no random crop)")
    prep.add_argument("--factor", metavar="F", type=positive_int, default=defaults.factor,
                      help="downscale factor (block mean)")
    prep.add_argument("--input-size", metavar="PX", type=int, default=defaults.input_size,
                      help="side of the random training crop and of the centre evaluation crop, "
                           "after downscaling (ignored with --crop 0)")
    prep.add_argument("--tta", choices=("symmetries", "none"), default=None,
                      help="evaluation: average the class probabilities over the 8 symmetries "
                           "of the square crop, or one view (default: symmetries for square "
                           "inputs, none with --crop 0; with --predict: the model's recipe)")
    prep.add_argument("--colour-norm", choices=("none", "image"), default=defaults.colour_norm,
                      help="'image': each image's channels brought to mean 0.5 and a fixed "
                           "spread before anything else (a remedy against another lab's stain)")
    net = parser.add_argument_group("network and validation")
    net.add_argument("--filters", metavar="N,N,...", type=number_list, default=defaults.filters,
                     help="filters of each Conv2D block, one number per block "
                          "(default: the study's 32,64,128)")
    net.add_argument("--first-stride", metavar="S", type=int, default=defaults.first_stride,
                     help="the first Conv2D downscales by S itself (kernel 3S x 3S, stride S, "
                          "padding S); e.g. --factor 1 --input-size 128 --first-stride 2 "
                          "learns the downscale that --factor 2 does by block mean")
    net.add_argument("--validation", choices=("images", "cells"), default=None,
                     help="hold out 10%% of TRAIN's original cells, whole (estimated from the "
                          "pixels; needs a stain crop), or 10%% of its images (which then share "
                          "cells with training) (default: cells, images with --crop 0)")
    explain = parser.add_argument_group("explanation (no training)")
    explain.add_argument("--explain", action="store_true",
                         help="draw Grad-CAM overlays of TEST images, per class, for --model, "
                              "and the first convolution's feature maps of one image")
    explain.add_argument("--explain-per-class", metavar="K", type=positive_int, default=4,
                         help="TEST images per class in the Grad-CAM grid")
    return parse(parser, settings_class, argv, _check)


def _check(parser, args):
    """Reject settings that cannot work, before any data is read."""
    if args.max_per_class is not None and args.max_per_class < 10:
        parser.error("--max-per-class must be at least 10 (the stratified validation split "
                     f"needs a few images of each class), got {args.max_per_class}")
    if args.crop < 0 or args.crop > 240:
        parser.error(f"--crop must be between 1 and 240 (or 0 for the whole image), got {args.crop}")
    if args.crop:
        if args.crop % args.factor:
            parser.error(f"--factor {args.factor} must divide --crop {args.crop}")
        side = args.crop // args.factor
        if not 8 <= args.input_size <= side:
            parser.error(f"--input-size must be between 8 and {side} (the downscaled crop "
                         f"{args.crop}/{args.factor}), got {args.input_size}")
    elif 240 % args.factor or 320 % args.factor or 240 // args.factor < 8:
        parser.error(f"--factor {args.factor} must divide 240 and 320 (and leave at least 8 "
                     "pixels) with --crop 0")
    side_seen = args.input_size if args.crop else 240 // args.factor
    if not 1 <= args.first_stride <= side_seen:
        parser.error(f"--first-stride must be between 1 and the {side_seen}-pixel input, "
                     f"got {args.first_stride}")
    smallest_side = side_seen // args.first_stride
    if smallest_side >> len(args.filters) < 1:
        parser.error(f"--filters: {len(args.filters)} blocks halve the {smallest_side}-pixel "
                     f"input {len(args.filters)} times, too often")
    channels = (3,) + tuple(args.filters)
    side = smallest_side >> len(args.filters)
    check_network_size(parser, sum(9 * args.first_stride ** 2 * a * b if k == 0 else 9 * a * b
                                       for k, (a, b) in enumerate(zip(channels, channels[1:])))
                           + args.filters[-1] * side * side * 128)
    if args.validation is None:
        args.validation = "cells" if args.crop else "images"
    if args.validation == "cells" and not args.crop:
        parser.error("--validation cells needs the stain crop (the cells are matched on "
                     "it); use a --crop other than 0")
    if args.tta is None:
        args.tta = "symmetries" if args.crop else "none"
    elif args.tta == "symmetries" and not args.crop:
        parser.error("--tta symmetries needs square inputs (quarter turns); with --crop 0 "
                     "use --tta none")


def show_class_counts(settings, data_dir, out, say, plot):
    """The study's two tables: raw labels of the original smears, augmented TRAIN/TEST.

    ``labels.csv`` only feeds the first table: a missing or unreadable one is a warning.
    """
    try:
        originals = read_original_labels(bloodcells.labels_csv_path(data_dir))
    except (FileNotFoundError, LabelsFileError, OSError) as error:
        warnings.warn(f"no table of the original labels: {error}", stacklevel=2)
    else:                           # (printing is not reading labels.csv: a closed stdout is not its fault)
        say("\nRaw samples per class of the original smears (dataset-master/labels.csv):")
        say(originals.summary())
    counts = {split: bloodcells.count_per_class(split, data_dir) for split in ("TRAIN", "TEST")}
    say("\nAugmented samples per class (dataset2-master/images):")
    say(count_table(counts, bloodcells.CLASSES))
    if plot:
        from numcnn import plots
        path = out / "class_counts.png"
        plots.class_counts(counts, path=path, title="Augmented samples per class")
        say(f"bar chart: {path}")


def _input_maker(recipe, mean, input_shape, allow_other_size):
    """``path -> (x, note)``: one JPEG made exactly as the training images were."""
    crop, factor, size = recipe.crop or None, recipe.factor, recipe.input_size
    transform = StainCrop(crop) if crop else None

    def make_input(path):
        if not Path(path).is_file():
            raise OSError("no such file")
        image = read_rgb_image(path)
        note = None
        if image.shape != bloodcells.IMAGE_SHAPE:
            what = (f"a {image.shape[1]}x{image.shape[0]} image; the model was trained on "
                    f"{bloodcells.IMAGE_SHAPE[1]}x{bloodcells.IMAGE_SHAPE[0]} frames")
            if image.shape[:2] == bloodcells.IMAGE_SHAPE[1::-1]:
                what += " (this one is portrait: turned by 90 degrees)"
            if not allow_other_size or not crop:
                raise ValueError(f"{what}; "
                                 + ("--allow-other-size classifies it anyway (the stain crop "
                                    "still cuts a window of the trained size)" if crop else
                                    "without a stain crop only that size can work"))
            note = f"{what}; classified anyway (--allow-other-size)"
        x = preprocess_image(image, transform, factor)[None]         # (1, 3, H', W')
        if recipe.colour_norm == "image":
            x = normalise_colour(x)
        if x.shape[1:] != mean.shape:
            raise ValueError(f"image gives shape {x.shape[1:]} after preprocessing; the "
                             f"model's mean image has {mean.shape}")
        x = x - mean
        if crop:
            x = centre_crop(x, size)
        if input_shape is not None and x.shape[1:] != tuple(input_shape):
            raise ValueError(f"image gives input {x.shape[1:]}, the model expects "
                             f"{tuple(input_shape)}")
        return x, note

    return make_input


def predict(settings, actions):
    """``--predict``: print class probabilities for each image; return the exit status."""
    loaded = model_for_predict(settings, actions, BloodCellSettings, (bloodcells.CLASSES, True))
    if loaded is None:
        return EXIT.BAD_INPUT
    model_path, model, recipe, classes, mean = loaded
    square = model.input_shape is not None and model.input_shape[1] == model.input_shape[2]
    views = settings.tta if actions.tta_explicit else recipe.tta
    if views == "symmetries" and not square:
        print(f"error: --tta symmetries needs a model of square inputs; {model_path} takes "
              f"{model.input_shape}", file=sys.stderr)
        return EXIT.BAD_INPUT
    description = (f"model {model_path} ({model.epoch} epochs); preprocessing: stain crop "
                   f"{recipe.crop or 'none'}, factor {recipe.factor}"
                   + (f", centre {recipe.input_size}x{recipe.input_size}" if recipe.crop else "")
                   + ("; mean over the 8 symmetric views" if views == "symmetries" else "; one view"))
    make_input = _input_maker(recipe, mean, model.input_shape, actions.allow_other_size)
    return predict_images(actions.predict, model, classes, make_input, views, description)


def explain(settings, actions):
    """``--explain``: Grad-CAM grid of TEST images per class, and feature maps; the exit status."""
    loaded = model_for_predict(settings, actions, BloodCellSettings, (bloodcells.CLASSES, True))
    if loaded is None:
        return EXIT.BAD_INPUT
    model_path, model, recipe, classes, mean = loaded
    try:
        data_dir = bloodcells.locate(settings.data)
    except (OSError, ValueError) as error:
        print(f"error: cannot explain: {error}", file=sys.stderr)
        return EXIT.BAD_INPUT
    from numcnn import plots
    if not plots.available():
        print("error: --explain draws pictures and needs matplotlib: pip install 'numcnn[plot]'",
              file=sys.stderr)
        return EXIT.BAD_INPUT
    crop, size = recipe.crop or None, recipe.input_size
    test = bloodcells.load_data("TEST", data_dir, StainCrop(crop) if crop else None, recipe.factor,
                                max_per_class=actions.explain_per_class, seed=0,
                                cache_dir=settings.cache_dir, progress=False)
    shown = centre_crop(test.x, size) if crop else test.x             # what a person sees
    seen = normalise_colour(test.x) if recipe.colour_norm == "image" else test.x
    x = centre_crop(seen - mean, size) if crop else seen - mean       # what the network sees
    grid, features, correct = explain_images(
        model, shown, x, test.y, classes, model_path.parent, actions.explain_per_class,
        f"Grad-CAM on the last Conv2D, TEST images ({model_path})",
        first_name=printable(Path(test.paths[0]).name))
    print(f"Grad-CAM of {len(x)} TEST images ({correct} predicted right): {grid}")
    print(f"feature maps: {features}")
    return EXIT.DONE
