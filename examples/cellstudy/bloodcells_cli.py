"""The blood-cell study's command line: its own flags and checks on top of :mod:`cellstudy.cli`."""

from __future__ import annotations

from . import cli
from .settings import BloodCellSettings

__all__ = ["parse_args"]

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


def parse_args(argv=None):
    """``(settings, actions)`` from the command line; bad flags exit with status 2."""
    defaults = BloodCellSettings()
    parser = cli.build_parser(
        "bloodcells.py", DESCRIPTION, defaults, EXAMPLES,
        data_help="the unpacked Kaggle archive (holding dataset2-master/); default: "
                  "$NUMCNN_BLOODCELLS, else ~/data/blood-cells")
    prep = parser.add_argument_group("preprocessing")
    prep.add_argument("--crop", metavar="PX", type=int, default=defaults.crop,
                      help="side of the window cut around the stained cell before downscaling; "
                           "0 keeps the whole 240x320 image (and no random crop)")
    prep.add_argument("--factor", metavar="F", type=cli.positive_int, default=defaults.factor,
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
    net.add_argument("--filters", metavar="N,N,...", type=cli.number_list, default=defaults.filters,
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
    explain.add_argument("--explain-per-class", metavar="K", type=cli.positive_int, default=4,
                         help="TEST images per class in the Grad-CAM grid")
    return cli.parse(parser, BloodCellSettings, argv, _check)


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
    cli.check_network_size(parser, sum(9 * args.first_stride ** 2 * a * b if k == 0 else 9 * a * b
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
