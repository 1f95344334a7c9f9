"""Classify white blood cells (four classes) with numcnn alone: the study, and past it.

The study
---------
Four kinds of white blood cell - EOSINOPHIL, LYMPHOCYTE, MONOCYTE, NEUTROPHIL - in
the public "blood-cells" images (Kaggle paultimothymooney/blood-cells, from BCCD).
The study printed the raw label counts of the original smears and the (balanced,
augmented) counts of TRAIN and TEST, subtracted the average image, trained a small
CNN - Conv2D blocks, each followed by BatchNorm, ReLU, MaxPool and 40% Dropout, then
dense layers and a softmax - and reported scikit-learn classification reports and
confusion matrices for the training, validation and test sets.

The recipe (fixed in advance; every number is a CLI default)
-----------------------------------------------------------
1. Each 320x240 JPEG is cropped to 144x144 around the largest purple (stained)
   blob - the white cell - and downscaled by 2 (block mean): 72x72, in [0, 1].
2. A seeded 10% of TRAIN's original cells, whole, is cut off for validation
   (about 8,860 / 1,100 images; the cells are estimated from the pixels by
   numcnn.data.cell_groups, since the file names carry no cell id), so that
   validation measures cells the network has not seen. It watches training
   and never picks an epoch. --validation images cuts a stratified 10% of
   the images instead, as the study did (8,961 / 996); those share cells
   with training and read high.
3. "Average background" subtraction: the mean image of the training part is
   subtracted from train, validation and test images.
4. Training batches: a random 64x64 crop of each 72x72 image, then random
   flips (left-right, up-down) and quarter turns. (--colour-jitter adds a
   per-channel gain and shift; recipe 4 of docs/bloodcells.md tried 0.1 and
   lost on validation and TEST: off by default.) Evaluation: the centre
   64x64, the class probabilities averaged over its 8 symmetric views
   (quarter turns, mirrored or not).
5. The network (build_model): three blocks Conv2D 3x3 (32, 64, 128 filters;
   --filters sets one number per block; --first-stride lets the first
   convolution downscale by itself, recipe 7 of docs/bloodcells.md)
   -> BatchNorm -> ReLU -> MaxPool 2 -> Dropout 0.4, then Dense 128 ->
   BatchNorm1D -> ReLU -> Dropout 0.4 -> Dense 4 -> Softmax. (Without the
   BatchNorm1D the first dense layer dies within two epochs.)
6. Softmax cross-entropy (optionally class-balanced), Adam lr 1e-3 with
   decoupled weight decay 1e-4, cosine schedule down to lr/100, batch 64,
   20 epochs.
7. After each epoch, every BatchNorm's running statistics are re-measured on
   2,048 training images as evaluation sees them (centre crop, dropout off):
   a BatchNorm behind a 40% Dropout otherwise keeps the larger variance of
   dropped-out inputs, and evaluation suffers (on this data: validation 0.70
   with the running statistics against 0.92 re-measured, at epoch 5).
8. Honest protocol: TEST is evaluated once, after the last epoch - no picking
   of the best epoch - and the spread over seeds is reported next to the mean.
   The worst per-class recall is shown next to the accuracy: in medicine a
   class that is missed matters more than the average. The images are
   copies of a few dozen cells (TEST: about 71), so with the stain crop the
   TEST accuracy (and with --validation cells the validation accuracy) comes
   with a 95% interval over the cells (a bootstrap that resamples whole
   cells, numcnn.metrics.accuracy_interval_over_groups).

Commands
--------
    python examples/bloodcells.py --data ../shared/blood-cells     # the study, seed 0
    python examples/bloodcells.py --seeds 5                        # spread over 5 seeds
    python examples/bloodcells.py --resume                         # continue an interrupted run
    python examples/bloodcells.py --max-per-class 30 --epochs 1    # a quick look
    python examples/bloodcells.py --predict cell1.jpeg cell2.jpeg  # classify new images
    python examples/bloodcells.py --explain                        # Grad-CAM of TEST images

Outputs (``--out``, default runs/bloodcells)
-------------------------------------------
    class_counts.png                  samples per class of TRAIN and TEST
    results.json, summary.txt         per seed and mean/std over seeds, recipe, machine
    seed<S>/model.npz                 the final model (numcnn.load)
    seed<S>/checkpoint.npz            written after every epoch (for --resume)
    seed<S>/mean_image.npy            the training mean image (for --predict)
    seed<S>/recipe.json               the preprocessing settings (for --predict)
    seed<S>/history.json              per-epoch loss, accuracy, val_*, lr, seconds
    seed<S>/report_{train,val,test}.txt   classification report + confusion matrix
    seed<S>/confusion_{train,val,test}.png, seed<S>/learning_curves.png
    seed<S>/gradcam_test.png, seed<S>/feature_maps_relu_1.png    (--explain)
"""
import argparse
import hashlib
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

# Before numpy loads OpenBLAS: short spinning of its threads after each matrix
# multiply, so they do not steal the cores from numcnn's numba loops (see
# docs/performance.md, "Threads"). A value set by the user is kept.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, train_test_split

REPO_ROOT = Path(__file__).resolve().parent.parent
if (REPO_ROOT / "numcnn").is_dir() and str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))    # run from a checkout without installing

import numcnn  # noqa: E402
from numcnn import metrics, plots  # noqa: E402
from numcnn.callbacks import (BatchNormCalibration, LearningRateScheduler,  # noqa: E402
                              ModelCheckpoint, cosine_schedule)
from numcnn.data import (CLASSES, ImageError, MeanImage, cell_groups,  # noqa: E402
                         class_count_table, count_per_class, labels_csv_path, load_bloodcells,
                         locate_bloodcells, read_original_labels, read_rgb_image)
from numcnn.data.recipe import (centre_crop, crop_and_flip, predict_symmetric,  # noqa: E402
                                preprocess_image)
from numcnn.layers import (BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout,  # noqa: E402
                           Flatten, MaxPool2D, ReLU, Softmax)

SPLITS = ("train", "val", "test")
VALIDATION_FRACTION = 0.1
WEIGHT_DECAY = 1e-4
DROPOUT = 0.4
STUDY_FILTERS = (32, 64, 128)   # filters of the study's three Conv2D blocks
CALIBRATION_IMAGES = 2048   # training images (evaluation view) for BatchNorm statistics
# What a seed folder holds for each evaluated split (--skip-test removes TEST's).
SPLIT_FILES = {"report": "report_{split}.txt", "confusion": "confusion_{split}.png",
               "predicted": "predicted_{split}.npy"}
# Settings that change what a model learns: a run can only be resumed with the same ones.
TRAINING_SETTINGS = ("crop", "factor", "input_size", "batch_size", "lr", "class_weights",
                     "max_per_class", "colour_jitter", "validation", "filters", "first_stride")
freed_memory_kept = None   # what numcnn.keep_freed_memory() returned (set when run as a script)
# What a recipe.json written before a setting existed meant by its absence.
SETTINGS_BEFORE_THEY_EXISTED = {"colour_jitter": 0.0, "validation": "images",
                                "filters": list(STUDY_FILTERS), "first_stride": 1}


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------

class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Show '(default: ...)' only where there is a default worth showing."""

    def _get_help_string(self, action):
        text = action.help
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


EPILOG = """examples:
  python examples/bloodcells.py --data ../shared/blood-cells     the study, seed 0
  python examples/bloodcells.py --seeds 5                        mean and spread over 5 seeds
  python examples/bloodcells.py --resume                         continue an interrupted run
  python examples/bloodcells.py --max-per-class 30 --epochs 1    a quick look
  python examples/bloodcells.py --predict a.jpeg b.jpeg          classify new images
  python examples/bloodcells.py --explain                        Grad-CAM grid of TEST images
exit status: 0 done; 1 some --predict image could not be read; 2 bad arguments,
data not found, or nothing to predict with."""


def filter_list(text):
    """'32,64,128' -> [32, 64, 128] (argparse type of --filters)."""
    try:
        filters = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}")
    if not filters or min(filters) < 1:
        raise argparse.ArgumentTypeError(f"every block needs at least one filter, got {text!r}")
    return filters


def parse_args(argv=None):
    """Read and check the command line; errors exit with status 2."""
    parser = argparse.ArgumentParser(
        prog="bloodcells.py",
        description="Four-class white-blood-cell classifier (EOSINOPHIL, LYMPHOCYTE, MONOCYTE,\n"
                    "NEUTROPHIL) trained with numcnn on the Kaggle blood-cells images.\n"
                    "The defaults are the recipe fixed in advance; TEST is evaluated once,\n"
                    "after the last epoch.",
        epilog=EPILOG, formatter_class=HelpFormatter)
    where = parser.add_argument_group("data and outputs")
    where.add_argument("--data", metavar="DIR", default=None,
                       help="the unpacked Kaggle archive (holding dataset2-master/); default: "
                            "$NUMCNN_BLOODCELLS, else ../shared/blood-cells, else ~/data/blood-cells")
    where.add_argument("--out", metavar="DIR", default="runs/bloodcells",
                       help="output folder: seed<S>/ sub-folders, results.json, summary.txt")
    where.add_argument("--cache-dir", metavar="DIR", default=None,
                       help="where decoded images are cached; default $NUMCNN_CACHE or "
                            "~/.cache/numcnn")
    where.add_argument("--max-per-class", metavar="K", type=int, default=None,
                       help="use at most K images per class of each split (quick runs, tests)")

    prep = parser.add_argument_group("preprocessing")
    prep.add_argument("--crop", metavar="PX", type=int, default=144,
                      help="side of the window cut around the stained cell before downscaling; "
                           "0 keeps the whole 240x320 image (and no random crop)")
    prep.add_argument("--factor", metavar="F", type=int, default=2, help="downscale factor (block mean)")
    prep.add_argument("--input-size", metavar="PX", type=int, default=64,
                      help="side of the random training crop and of the centre evaluation crop, "
                           "after downscaling (ignored with --crop 0)")
    prep.add_argument("--colour-jitter", metavar="S", type=float, default=0.0,
                      help="training batches: per-channel gain in [1-S, 1+S] and shift in "
                           "[-S/2, S/2] (0: none)")
    prep.add_argument("--tta", choices=("symmetries", "none"), default=None,
                      help="evaluation: average the class probabilities over the 8 symmetries "
                           "of the square crop, or one view (default: symmetries for square "
                           "inputs, none with --crop 0; with --predict: the model's recipe)")

    train = parser.add_argument_group("training")
    train.add_argument("--filters", metavar="N,N,...", type=filter_list,
                       default=list(STUDY_FILTERS),
                       help="filters of each Conv2D block, one number per block "
                            "(default: the study's 32,64,128)")
    train.add_argument("--first-stride", metavar="S", type=int, default=1,
                       help="the first Conv2D downscales by S itself (kernel 3S x 3S, stride "
                            "S, padding S) instead of only seeing what --factor left; e.g. "
                            "--factor 1 --input-size 128 --first-stride 2 learns the downscale "
                            "that --factor 2 does by block mean")
    train.add_argument("--validation", choices=("images", "cells"), default=None,
                       help="hold out 10%% of TRAIN's original cells, whole (estimated from "
                            "the pixels; needs a stain crop), or 10%% of its images "
                            "(which then share cells with training) (default: cells, "
                            "images with --crop 0)")
    train.add_argument("--epochs", metavar="N", type=int, default=20, help="epochs in all")
    train.add_argument("--batch-size", metavar="N", type=int, default=64, help="training batch size")
    train.add_argument("--lr", metavar="LR", type=float, default=1e-3,
                       help="Adam's initial learning rate (cosine schedule down to lr/100)")
    train.add_argument("--class-weights", choices=("none", "balanced"), default="none",
                       help="'balanced' weighs class k by N / (K * count_k) in the loss")
    seeds = train.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", metavar="N", type=int, default=1,
                       help="train seeds 0..N-1 and report mean and std over them")
    seeds.add_argument("--seed", metavar="S", type=int, default=None,
                       help="train only seed S")
    train.add_argument("--resume", action="store_true",
                       help="continue each seed from <out>/seed<S>/checkpoint.npz; a seed whose "
                            "model.npz is complete is only re-evaluated")
    train.add_argument("--skip-test", action="store_true",
                       help="do not evaluate TEST (timing runs, recipe work: keeps TEST unseen)")
    train.add_argument("--backend", choices=("numba", "numpy"), default="numba",
                       help="kernels: numba (fast) or the readable NumPy reference")

    predict = parser.add_argument_group("prediction (no training)")
    predict.add_argument("--predict", metavar="IMAGE", nargs="+", default=None,
                         help="print class probabilities for these JPEGs, using --model")
    predict.add_argument("--model", metavar="PATH", default=None,
                         help="model for --predict; its folder must hold mean_image.npy and "
                              "recipe.json (default <out>/seed0/model.npz)")

    explain = parser.add_argument_group("explanation (no training)")
    explain.add_argument("--explain", action="store_true",
                         help="draw Grad-CAM overlays of TEST images, per class, for --model, "
                              "and the first convolution's feature maps of one image")
    explain.add_argument("--explain-per-class", metavar="K", type=int, default=4,
                         help="TEST images per class in the Grad-CAM grid")

    show = parser.add_argument_group("display")
    show.add_argument("--no-plots", action="store_true", help="do not draw PNG figures")
    show.add_argument("--quiet", action="store_true",
                      help="no progress bars, no tables: only the results")
    args = parser.parse_args(argv)
    check_args(parser, args)
    return args


def check_args(parser, args):
    """Reject settings that cannot work, before any data is read."""
    positive = {"--epochs": args.epochs, "--batch-size": args.batch_size,
                "--factor": args.factor, "--seeds": args.seeds}
    for name, value in positive.items():
        if value < 1:
            parser.error(f"{name} must be at least 1, got {value}")
    if not args.lr > 0:
        parser.error(f"--lr must be positive, got {args.lr}")
    if args.seed is not None and args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
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
    if args.validation is None:
        args.validation = "cells" if args.crop else "images"
    if args.validation == "cells" and not args.crop:
        parser.error("--validation cells needs the stain crop (the cells are matched on "
                     "it); use a --crop other than 0")
    if not 0 <= args.colour_jitter < 1:
        parser.error(f"--colour-jitter must be in [0, 1), got {args.colour_jitter}")
    args.tta_explicit = args.tta is not None     # --predict: the command line beats the recipe
    if args.tta is None:
        args.tta = "symmetries" if is_square(args) else "none"
    elif args.tta == "symmetries" and not is_square(args):
        parser.error("--tta symmetries needs square inputs (quarter turns); with --crop 0 "
                     "use --tta none")


def recipe_of(args):
    """All settings of a run as a dict (written to results.json and recipe.json)."""
    recipe = {key: value for key, value in vars(args).items()
              if key not in ("predict", "model", "tta_explicit")}
    recipe.update(
        classes=list(CLASSES),
        validation_fraction=VALIDATION_FRACTION, weight_decay=WEIGHT_DECAY, dropout=DROPOUT,
        optimizer="Adam (decoupled weight decay)", schedule="cosine to lr/100",
        augmentation=augmentation_text(args),
        evaluation_crop="centre" if args.crop else "none (whole image)",
        evaluation_views=("validation and TEST: mean probabilities over the 8 symmetries "
                          "of the square; training set: one view"
                          if args.tta == "symmetries" else "one view"),
        batchnorm_calibration=f"{CALIBRATION_IMAGES} training images after each epoch")
    return recipe


def augmentation_text(args):
    steps = [f"random {args.input_size}x{args.input_size} crop"] if args.crop else []
    steps += ["random flips (left-right, up-down)"]
    if is_square(args):
        steps += ["random quarter turns"]
    if args.colour_jitter:
        steps += [f"colour jitter {args.colour_jitter:g} (per-channel gain and shift)"]
    return ", then ".join(steps)


def is_square(args):
    """True when the network sees square images (quarter turns are then allowed)."""
    return args.crop != 0


def model_input_shape(args):
    """(C, H, W) of the images the network sees."""
    if args.crop:
        return (3, args.input_size, args.input_size)
    return (3, 240 // args.factor, 320 // args.factor)


def say(args, *parts):
    """print, unless --quiet."""
    if not args.quiet:
        print(*parts, flush=True)


# ----------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------

def show_class_counts(args, data_dir, out):
    """The study's two tables: raw labels of the original smears, augmented TRAIN/TEST."""
    try:
        originals = read_original_labels(labels_csv_path(data_dir))
        say(args, "\nRaw samples per class of the original smears (dataset-master/labels.csv):")
        say(args, originals.summary())
    except FileNotFoundError as error:          # e.g. a clone that lacks dataset-master/
        say(args, f"\n(no original label counts: {error})")
    say(args, "\nAugmented samples per class (dataset2-master/images):")
    say(args, class_count_table(("TRAIN", "TEST"), data_dir))
    if plots_wanted(args):
        tables = {split: count_per_class(split, data_dir) for split in ("TRAIN", "TEST")}
        path = plots.class_counts(tables, out / "class_counts.png",
                                  title="Augmented samples per class")
        say(args, f"bar chart: {path}")


def load_data(args, data_dir):
    """Decode (or read from the cache) TRAIN and TEST as NCHW float32 in [0, 1].

    Returns ``{"train": ImageSet, "test": ImageSet, "skipped": {...}}``; the subset
    of --max-per-class is drawn with seed 0, so every training seed sees the same images.
    """
    loaded = {}
    for split in ("TRAIN", "TEST"):
        loaded[split.lower()] = load_bloodcells(
            data_dir, split, crop=args.crop or None, factor=args.factor,
            max_per_class=args.max_per_class, seed=0, cache_dir=args.cache_dir,
            progress=not args.quiet)
    if args.validation == "cells":
        loaded["groups"] = groups = cell_groups(loaded["train"], cache_dir=args.cache_dir,
                                                progress=not args.quiet)
        y = loaded["train"].y
        for label, name in enumerate(CLASSES):
            if len(np.unique(groups[y == label])) < 2:
                raise ValueError(f"TRAIN/{name}: the file names give fewer than 2 original "
                                 f"cells (distinct batch positions '_<position>_'), so none can "
                                 f"be held out whole for validation")
    if args.crop and not args.skip_test:   # for the interval of the TEST accuracy over its cells
        try:
            loaded["test_groups"] = cell_groups(loaded["test"], cache_dir=args.cache_dir,
                                                progress=not args.quiet)
        except ValueError as error:        # e.g. file names that do not count the cells
            warnings.warn(f"no interval over TEST's cells: {error}", stacklevel=2)
    loaded["skipped"] = {split: [str(path) for path, _ in loaded[split].skipped]
                         for split in ("train", "test")}
    for split in ("train", "test"):
        images = loaded[split]
        say(args, f"{split.upper()}: {len(images)} images of shape {images.x.shape[1:]} "
                  f"(skipped {len(images.skipped)}), per class {images.class_counts()}")
    return loaded


def split_whole_groups(y, groups, seed):
    """Hold out VALIDATION_FRACTION of each class's groups (seeded); return (train, val) indices.

    scikit-learn's GroupShuffleSplit, class by class, so that every class keeps
    its share of validation cells (StratifiedGroupKFold's shuffle gave the same
    first fold for every seed here, where each group has one class). The
    training indices come in a seeded random order, the validation ones sorted.
    """
    held_out = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        splitter = GroupShuffleSplit(n_splits=1, test_size=VALIDATION_FRACTION,
                                     random_state=seed + 1000 * int(label))
        _, chosen = next(splitter.split(members, groups=groups[members]))
        held_out.append(members[chosen])
    val_index = np.sort(np.concatenate(held_out))
    train_index = np.setdiff1d(np.arange(len(y)), val_index)
    # shuffled, as train_test_split's are: the first training images must be a fair
    # sample of all classes (BatchNormCalibration measures its statistics on them)
    return np.random.default_rng(seed).permutation(train_index), val_index


def split_and_centre(data, seed):
    """The seeded, stratified validation split, then the mean image of the training part.

    The split holds out 10% of the images, or, when ``data`` has ``"groups"``
    (--validation cells), 10% of each class's groups, whole (:func:`split_whole_groups`).

    Returns ``(arrays, mean, val_index)``: ``arrays[split] = (x, y)`` for train,
    val and test (x mean-subtracted, still uncropped), the fitted
    :class:`MeanImage`, and the TRAIN indices of the validation images.
    """
    x, y = data["train"].x, data["train"].y
    if "groups" in data:
        train_index, val_index = split_whole_groups(y, data["groups"], seed)
    else:
        train_index, val_index = train_test_split(
            np.arange(len(y)), test_size=VALIDATION_FRACTION, stratify=y, random_state=seed)
    x_train, x_val = x[train_index], x[val_index]                # copies (fancy indexing)
    mean = MeanImage().fit(x_train)                              # training part only
    arrays = {"train": (mean.transform(x_train, copy=False), y[train_index]),
              "val": (mean.transform(x_val, copy=False), y[val_index]),
              "test": (mean.transform(data["test"].x), data["test"].y)}   # a copy: reused
    return arrays, mean, val_index


def cells_of_splits(data, val_index):
    """The estimated cell of each val and test image, or None where unknown
    (validation by images; no stain crop or --skip-test for TEST)."""
    return {"val": data["groups"][val_index] if "groups" in data else None,
            "test": data.get("test_groups")}


def evaluation_view(args, x):
    """What the network sees at evaluation: the centre crop (or the whole image)."""
    return centre_crop(x, args.input_size) if args.crop else x


# ----------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------

def build_model(input_shape=(3, 64, 64), seed=0, num_classes=len(CLASSES),
                filters=STUDY_FILTERS, first_stride=1):
    """The study's network for images of ``input_shape`` (C, H, W).

    One block Conv2D 3x3 -> BatchNorm -> ReLU -> MaxPool 2 -> Dropout 0.4 per
    entry of ``filters`` (the study: 32, 64 and 128 filters), then Dense 128 ->
    BatchNorm1D -> ReLU -> Dropout 0.4 -> Dense(num_classes) -> Softmax. For
    64x64 inputs and three blocks the first dense layer sees 128 x 8 x 8 features.

    ``first_stride`` S > 1 makes the first convolution downscale by S itself:
    kernel 3S x 3S, stride S, padding S, so (H, W) -> (H/S, W/S). A block mean
    by S followed by a 3x3 convolution (padding 1) is one such convolution
    (each 3x3 weight spread evenly over an S x S block), so this layer can
    learn whatever ``--factor S`` with the 3x3 layer computes, and more.
    """
    channels, height, width = input_shape
    layers = []
    for block, (c_in, c_out) in enumerate(zip((channels,) + tuple(filters[:-1]), filters)):
        stride = first_stride if block == 0 else 1
        layers += [Conv2D(c_in, c_out, 3 * stride, stride=stride, padding=stride),
                   BatchNorm2D(c_out), ReLU(), MaxPool2D(2), Dropout(DROPOUT)]
        height, width = height // stride // 2, width // stride // 2   # convolution, 2x2 pooling
    features = filters[-1] * height * width
    layers += [Flatten(), Dense(features, 128), BatchNorm1D(128), ReLU(), Dropout(DROPOUT),
               Dense(128, num_classes), Softmax()]
    return numcnn.Sequential(layers, seed=seed, input_shape=input_shape)


def balanced_weights(y, num_classes=len(CLASSES)):
    """``N / (K * count_k)``: each class then weighs as much in the loss as any other."""
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    return len(y) / (num_classes * np.maximum(counts, 1))


def compile_model(model, args, y_train):
    weights = balanced_weights(y_train) if args.class_weights == "balanced" else None
    return model.compile(numcnn.losses.SoftmaxCrossEntropy(class_weights=weights),
                         numcnn.optim.Adam(args.lr, weight_decay=WEIGHT_DECAY))


# ----------------------------------------------------------------------------
# One seed: train (or resume), then report
# ----------------------------------------------------------------------------

def model_to_continue(args, seed, folder, y_train):
    """A new model, or with --resume the finished model or the last checkpoint.

    Returns ``(model, note)``; ``note`` says where the model came from.
    """
    if args.resume:
        final, checkpoint = folder / "model.npz", folder / "checkpoint.npz"
        if final.exists():
            model = numcnn.load(final)
            if model.epoch >= args.epochs:
                return model, f"complete ({model.epoch} epochs): not retrained, only evaluated"
        if checkpoint.exists():
            model = numcnn.load(checkpoint)
            return model, f"resumed from {checkpoint.name} after epoch {model.epoch}"
    model = build_model(model_input_shape(args), seed, filters=args.filters,
                        first_stride=args.first_stride)
    return compile_model(model, args, y_train), "new"


class SettingsError(Exception):
    """The command line asks for something the files on disk cannot give."""


def validation_digest(val_index):
    """A short fingerprint of which TRAIN images a seed held out for validation."""
    return hashlib.sha256(np.asarray(val_index, np.int64).tobytes()).hexdigest()[:16]


def check_resumable(args, folder, val_index=None):
    """Refuse to resume a seed that was trained with other settings or another split.

    The split is compared when both sides know it (``val_index`` given, and a
    recipe.json that recorded it): estimated cell groups that changed would
    otherwise move former validation images into training without a word.
    """
    saved = folder / "recipe.json"
    if not saved.exists():
        return
    saved_recipe = json.loads(saved.read_text())
    if val_index is not None and saved_recipe.get("validation_split") not in (
            None, validation_digest(val_index)):
        raise SettingsError(f"--resume: {folder} held out other validation images than this "
                            f"run does (were the cell groups recomputed?); training on would "
                            f"train on former validation images: use another --out")
    before = {key: saved_recipe.get(key, SETTINGS_BEFORE_THEY_EXISTED.get(key))
              for key in TRAINING_SETTINGS}
    changed = [f"{key}: {before[key]!r} -> {getattr(args, key)!r}"
               for key in TRAINING_SETTINGS if before[key] != getattr(args, key)]
    if changed:
        raise SettingsError(f"--resume: {folder} was trained with other settings "
                            f"({'; '.join(changed)}); use the same ones or another --out")


def train_one_seed(args, seed, data, out):
    """Train (or resume, or reuse) one seed, evaluate it, write its folder; return its metrics."""
    began = time.perf_counter()
    folder = out / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    arrays, mean, val_index = split_and_centre(data, seed)
    if args.resume:
        check_resumable(args, folder, val_index)
    x_train, y_train = arrays["train"]
    np.save(folder / "mean_image.npy", mean.mean)
    (folder / "recipe.json").write_text(json.dumps(
        {**recipe_of(args), "validation_split": validation_digest(val_index)},
        indent=2))

    model, note = model_to_continue(args, seed, folder, y_train)
    resumed_from = model.epoch
    say(args, f"\n=== seed {seed}: {len(y_train)} train / {len(arrays['val'][1])} validation / "
              f"{len(arrays['test'][1])} test images; model {note} ===")
    if seed == seeds_of(args)[0]:
        say(args, "")
        model.summary(print_fn=None if args.quiet else print)

    if model.epoch < args.epochs:
        x_val, y_val = arrays["val"]
        schedule = cosine_schedule(args.lr, args.epochs, min_lr=args.lr / 100)
        model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                  validation_data=(evaluation_view(args, x_val), y_val),
                  augment=crop_and_flip(args.input_size if args.crop else None,
                                        rotate90=is_square(args), colour=args.colour_jitter),
                  callbacks=[LearningRateScheduler(schedule),
                             BatchNormCalibration(evaluation_view(
                                 args, x_train[:CALIBRATION_IMAGES])),
                             ModelCheckpoint(folder / "checkpoint.npz")],
                  verbose=0 if args.quiet else 1)
        if model.history.stop_reason:
            print(f"seed {seed}: training stopped early: {model.history.stop_reason}")
        model.save(folder / "model.npz")
    (folder / "history.json").write_text(json.dumps(model.history.to_dict(), indent=2))

    result = {"seed": seed, "epochs": model.epoch, "resumed_from_epoch": resumed_from}
    cells = cells_of_splits(data, val_index)
    for split in SPLITS:           # TEST is looked at here, once, after the last epoch
        if split == "test" and args.skip_test:
            say(args, "\n--- TEST not evaluated (--skip-test)")
            for kind in SPLIT_FILES:          # from an earlier run that did evaluate TEST
                split_file(folder, kind, "test").unlink(missing_ok=True)
            continue
        result[split] = report_split(args, model, split, *arrays[split], folder,
                                     cells=cells.get(split))
    if plots_wanted(args) and model.history.history:
        plots.learning_curves(model.history, folder / "learning_curves.png",
                              title=f"Learning curves, seed {seed}")
    seconds = model.history.history.get("seconds", [])
    result["seconds_per_epoch"] = float(np.mean(seconds)) if seconds else None
    result["train_seconds"] = float(np.sum(seconds))
    result["total_seconds"] = time.perf_counter() - began
    return result


def predict_views(model, x, views, batch_size=256):
    """Class probabilities of what the network sees: one view, or the mean over the
    8 symmetric views (``views="symmetries"``, numcnn.data.predict_symmetric)."""
    if views == "symmetries":
        return predict_symmetric(model, x, batch_size=batch_size)
    return model.predict(x, batch_size=batch_size)


def predict_probabilities(args, model, x, views, batch_size=256):
    """Class probabilities of mean-subtracted, uncropped images, a batch at a time
    (the evaluation crop of the whole set at once would copy it)."""
    return np.concatenate([predict_views(model, evaluation_view(args, x[i:i + batch_size]),
                                         views, batch_size)
                           for i in range(0, len(x), batch_size)])


def report_split(args, model, split, x, y, folder, cells=None):
    """Classification report and confusion matrix of one split: printed, .txt, .png.

    Validation and TEST are predicted as --tta says; the training set (which
    only shows how well the network fits) with the centre view alone: 8 views
    of 9,000 images would add two minutes to every run. Their predicted
    classes are saved as ``predicted_<split>.npy``. With ``cells`` (the cell
    of each image) the accuracy gets a 95% interval over the cells
    (:func:`numcnn.metrics.accuracy_interval_over_groups`): the images are
    copies of a few dozen cells, so the cells set the uncertainty.
    """
    views = "none" if split == "train" else args.tta
    predicted = predict_probabilities(args, model, x, views).argmax(axis=1)
    if split != "train":
        np.save(split_file(folder, "predicted", split), predicted.astype(np.int8))
    interval = (metrics.accuracy_interval_over_groups(predicted == y, cells, strata=y)
                if cells is not None else None)
    report = metrics.class_report(y, predicted, CLASSES)
    matrix = metrics.confusion(y, predicted, len(CLASSES))
    worst_class, worst_recall = report["worst_recall"]
    validation = ("validation set (about 10% of the original cells, held out whole)"
                  if args.validation == "cells" else "validation set (shares cells with training)")
    title = {"train": "training set", "val": validation,
             "test": "TEST set (held-out cells, evaluated once)"}[split]
    if views == "symmetries":
        title += ", mean over 8 symmetric views"
    text = (f"{title}: {len(y)} images, accuracy {report['accuracy']:.4f}"
            + (f" ({interval_text(interval)})" if interval else "")
            + f", worst recall {worst_recall:.3f} ({worst_class})\n\n"
            f"{metrics.text_report(y, predicted, CLASSES)}\n"
            f"confusion matrix (rows: true class, columns: predicted)\n"
            f"{format_confusion(matrix)}\n")
    split_file(folder, "report", split).write_text(text)
    say(args, f"\n--- {text}")
    if plots_wanted(args):
        plots.confusion_matrix(matrix, CLASSES, split_file(folder, "confusion", split),
                               title=f"Confusion matrix, {split} (seed {model.seed})")
    return {"accuracy": report["accuracy"],
            "precision": {c: v["precision"] for c, v in report["classes"].items()},
            "recall": {c: v["recall"] for c, v in report["classes"].items()},
            "f1": {c: v["f1"] for c, v in report["classes"].items()},
            "support": {c: v["support"] for c, v in report["classes"].items()},
            "macro_f1": report["macro"]["f1"],
            "worst_recall": worst_recall, "worst_recall_class": worst_class,
            "confusion": matrix.tolist(),
            **({"accuracy_interval": [interval["low"], interval["high"]],
                "cells": interval["groups"]} if interval else {})}


def split_file(folder, kind, split):
    """``folder / SPLIT_FILES[kind]`` for ``split`` (e.g. report_test.txt)."""
    return folder / SPLIT_FILES[kind].format(split=split)


def interval_text(interval):
    return (f"95% interval over {interval['groups']} estimated cells: "
            f"{interval['low']:.3f}-{interval['high']:.3f}")


def pooled_test_interval(out, results, data):
    """The 95% interval over TEST's cells of the mean accuracy of all seeds, or None."""
    if data.get("test_groups") is None or not all("test" in r for r in results):
        return None
    y = data["test"].y
    correct = np.stack([np.load(split_file(out / f"seed{r['seed']}", "predicted", "test")) == y
                        for r in results])                          # (seeds, N)
    return metrics.accuracy_interval_over_groups(correct, data["test_groups"], strata=y)


def format_confusion(matrix):
    width = max(len(name) for name in CLASSES) + 2
    lines = [" " * width + "".join(f"{name[:10]:>12}" for name in CLASSES)]
    for name, row in zip(CLASSES, matrix):
        lines.append(f"{name:<{width}}" + "".join(f"{count:>12}" for count in row))
    return "\n".join(lines)


def plots_wanted(args):
    return not args.no_plots and plots.available()


def seeds_of(args):
    return [args.seed] if args.seed is not None else list(range(args.seeds))


# ----------------------------------------------------------------------------
# Results over seeds
# ----------------------------------------------------------------------------

_NOT_A_NUMBER = object()


def aggregate(values, reduce):
    """Apply ``reduce`` leaf by leaf across same-shaped dicts of numbers.

    ``reduce`` gets the list of floats of one leaf (one per seed). Strings and
    lists (class names, confusion matrices) are left out.
    """
    first = values[0]
    if isinstance(first, dict):
        out = {}
        for key in first:
            if key in ("seed", "resumed_from_epoch"):
                continue
            reduced = aggregate([value[key] for value in values], reduce)
            if reduced is not _NOT_A_NUMBER:
                out[key] = reduced
        return out
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return reduce([float(v) for v in values])
    return _NOT_A_NUMBER


def sample_std(numbers):
    """Standard deviation over seeds (ddof=1); None with a single seed."""
    return float(np.std(numbers, ddof=1)) if len(numbers) > 1 else None


def machine_info():
    try:
        import numba
        numba_version = numba.__version__
    except ImportError:
        numba_version = None
    try:
        cores_usable = len(os.sched_getaffinity(0))
    except AttributeError:
        cores_usable = None
    return {"platform": platform.platform(), "processor": platform.processor(),
            "machine": platform.machine(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "cpus_usable": cores_usable,
            "numpy": np.__version__, "numba": numba_version, "numcnn": numcnn.__version__,
            "numcnn_backend": numcnn.get_backend(), "keep_freed_memory": freed_memory_kept,
            "environment": {key: os.environ[key] for key in
                            ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
                             "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER") if key in os.environ}}


def write_results(args, out, results, data, data_dir):
    """results.json and summary.txt in ``out``; returns the summary text."""
    document = {
        "study": "four-class white-blood-cell classification (BCCD / Kaggle blood-cells), "
                 + protocol_text(args.skip_test),
        "classes": list(CLASSES),
        "recipe": recipe_of(args),
        "machine": machine_info(),
        "data": {"data_dir": str(data_dir),
                 "images": {split: len(data[split]) for split in ("train", "test")},
                 "skipped_count": {split: len(paths) for split, paths in data["skipped"].items()},
                 "skipped": data["skipped"]},
        "seeds": {str(result["seed"]): result for result in results},
        "mean": aggregate(results, lambda v: float(np.mean(v))),
        "std": aggregate(results, sample_std),
        "test_interval_over_seeds": pooled_test_interval(out, results, data),
    }
    (out / "results.json").write_text(json.dumps(document, indent=2))
    summary = summary_text(results, document)
    (out / "summary.txt").write_text(summary + "\n")
    return summary


def protocol_text(skip_test):
    """How TEST was used, in the words of results.json and summary.txt."""
    return ("TEST not evaluated (--skip-test)" if skip_test
            else "TEST evaluated once after the last epoch")


def summary_text(results, document):
    """The closing summary: per seed, then mean +- std; worst recall next to accuracy."""
    skipped = document["data"]["skipped_count"]
    lines = [f"Summary: {len(results)} seed(s), {document['recipe']['epochs']} epochs, "
             + protocol_text(document["recipe"].get("skip_test")),
             f"images skipped as unreadable: TRAIN {skipped['train']}, TEST {skipped['test']}",
             ""]
    for r in results:
        seconds = r["seconds_per_epoch"]
        test = "TEST not evaluated"
        if "test" in r:
            low, high = r["test"].get("accuracy_interval", (None, None))
            test = (f"test accuracy {r['test']['accuracy']:.4f}"
                    + (f" [{low:.3f}-{high:.3f}]" if low is not None else "")
                    + f"   worst recall {r['test']['worst_recall']:.3f} "
                      f"({r['test']['worst_recall_class']})")
        lines.append(f"seed {r['seed']}: {test}   "
                     f"val accuracy {r['val']['accuracy']:.4f}   "
                     f"train accuracy {r['train']['accuracy']:.4f}   "
                     + (f"{seconds:.1f} s/epoch" if seconds is not None else "not retrained"))
    if len(results) > 1:
        mean, std = document["mean"], document["std"]
        has_test = all("test" in r for r in results)
        lines += ["", f"over {len(results)} seeds (mean +- std, std with ddof=1):"]
        if has_test:
            lines += [f"  test accuracy      {mean['test']['accuracy']:.4f} +- "
                      f"{std['test']['accuracy']:.4f}"
                      + (f"   ({interval_text(document['test_interval_over_seeds'])})"
                         if document.get("test_interval_over_seeds") else ""),
                      f"  worst recall       {mean['test']['worst_recall']:.4f} +- "
                      f"{std['test']['worst_recall']:.4f}"]
        lines.append(f"  validation acc.    {mean['val']['accuracy']:.4f} +- {std['val']['accuracy']:.4f}")
        shown = "test" if has_test else "val"       # per-class F1: TEST, or validation without it
        lines.append(f"  {'test' if has_test else 'validation'} F1 per class:")
        for name in CLASSES:
            lines.append(f"    {name:<12} {mean[shown]['f1'][name]:.4f} +- "
                         f"{std[shown]['f1'][name]:.4f}   (recall {mean[shown]['recall'][name]:.4f} "
                         f"+- {std[shown]['recall'][name]:.4f})")
    return "\n".join(lines)


# ----------------------------------------------------------------------------
# Prediction on new images
# ----------------------------------------------------------------------------

def load_saved_model(args):
    """The trained model of --model (default <out>/seed0/model.npz), its recipe and mean image.

    Returns ``(path, model, recipe, mean)``; raises OSError or ValueError naming the path.
    """
    model_path = Path(args.model) if args.model else Path(args.out) / "seed0" / "model.npz"
    folder = model_path.parent
    try:
        model = numcnn.load(model_path)
        recipe = json.loads((folder / "recipe.json").read_text())
        mean = np.load(folder / "mean_image.npy")
    except OSError as error:
        raise OSError(f"cannot use the model {model_path}: {error}") from None
    except ValueError as error:
        raise ValueError(f"cannot use the model {model_path}: {error}") from None
    return model_path, model, recipe, mean


def explain_model(args):
    """Grad-CAM grid of TEST images per class, and feature maps; return the exit status.

    The heat shows where the last convolution's evidence for the *predicted* class
    lies (numcnn.explain.grad_cam); titles give the true and predicted class.
    """
    try:
        model_path, model, recipe, mean = load_saved_model(args)
        data_dir = locate_bloodcells(args.data)
    except (OSError, ValueError) as error:
        print(f"error: cannot explain: {error}", file=sys.stderr)
        return 2
    folder = model_path.parent
    if not plots.available():
        print("error: --explain draws pictures and needs matplotlib: pip install 'numcnn[plot]'",
              file=sys.stderr)
        return 2
    crop, factor, size = recipe["crop"] or None, recipe["factor"], recipe["input_size"]
    test = load_bloodcells(data_dir, "TEST", crop=crop, factor=factor,
                           max_per_class=args.explain_per_class, seed=0,
                           cache_dir=args.cache_dir, progress=False)
    shown = centre_crop(test.x, size) if crop else test.x             # what a person sees
    x = centre_crop(test.x - mean, size) if crop else test.x - mean   # what the network sees
    cam = numcnn.explain.grad_cam(model, x)
    names = recipe.get("classes", list(CLASSES))
    titles = [f"true {names[t][:3]} / pred {names[p][:3]}" for t, p in zip(test.y, cam["classes"])]
    grid = plots.overlay_grid(shown, cam["heatmap"], titles, folder / "gradcam_test.png",
                              columns=args.explain_per_class,
                              title=f"Grad-CAM on the last Conv2D, TEST images ({model_path})")
    maps = numcnn.explain.feature_maps(model, x[0], "relu_1")
    features = plots.feature_map_grid(maps, folder / "feature_maps_relu_1.png",
                                      title=f"relu_1 feature maps of {Path(test.paths[0]).name} "
                                            f"({names[test.y[0]]})")
    correct = int((cam["classes"] == test.y).sum())
    print(f"Grad-CAM of {len(x)} TEST images ({correct} predicted right): {grid}")
    print(f"feature maps: {features}")
    return 0


def predict_images(args):
    """Print class probabilities for each --predict image; return the exit status.

    0: all images classified; 1: some image could not be read (named, the others
    still run); 2: the model, its mean image or its recipe is missing.
    """
    try:
        model_path, model, recipe, mean = load_saved_model(args)
    except (OSError, ValueError) as error:
        print(f"error: {error}\n(train first, or pass --model PATH to a model.npz whose "
              "folder holds recipe.json and mean_image.npy)", file=sys.stderr)
        return 2
    crop, factor, size = recipe["crop"] or None, recipe["factor"], recipe["input_size"]
    classes = recipe.get("classes", list(CLASSES))
    square = model.input_shape is not None and model.input_shape[1] == model.input_shape[2]
    views = (args.tta if args.tta_explicit
             else recipe.get("tta") or ("symmetries" if square else "none"))
    if views == "symmetries" and not square:
        print(f"error: --tta symmetries needs a model of square inputs; {model_path} takes "
              f"{model.input_shape}", file=sys.stderr)
        return 2
    print(f"model {model_path} ({model.epoch} epochs); preprocessing: stain crop "
          f"{crop or 'none'}, factor {factor}"
          + (f", centre {size}x{size}" if crop else "")
          + ("; mean over the 8 symmetric views" if views == "symmetries" else "; one view"))
    failed = 0
    for name in args.predict:
        try:
            x = preprocessed(name, crop, factor, size, mean, model.input_shape)
        except (ImageError, OSError, ValueError) as error:
            print(f"error: {name}: {error}", file=sys.stderr)
            failed += 1
            continue
        probabilities = predict_views(model, x, views)[0]
        best = int(probabilities.argmax())
        listed = "  ".join(f"{c} {p:.3f}" for c, p in zip(classes, probabilities))
        print(f"{name}: {classes[best]}  ({listed})")
    if failed:
        print(f"{failed} of {len(args.predict)} image(s) could not be classified", file=sys.stderr)
    return 1 if failed else 0


def preprocessed(path, crop, factor, size, mean, input_shape):
    """One image file -> a (1, C, H, W) batch, exactly as the training data was made."""
    if not Path(path).is_file():
        raise OSError("no such file")
    x = preprocess_image(read_rgb_image(path), crop, factor)[None]   # (1, 3, H', W')
    if x.shape[1:] != mean.shape:
        raise ValueError(f"image gives shape {x.shape[1:]} after preprocessing; the model's "
                         f"mean image has {mean.shape} (expected a 320x240 JPEG)")
    x = x - mean
    if crop:
        x = centre_crop(x, size)
    if input_shape is not None and x.shape[1:] != tuple(input_shape):
        raise ValueError(f"image gives input {x.shape[1:]}, the model expects {tuple(input_shape)}")
    return x


# ----------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------

def main(argv=None):
    """Run the study (or --predict); return the exit status."""
    args = parse_args(argv)
    numcnn.set_backend(args.backend)
    if args.predict:
        return predict_images(args)
    if args.explain:
        return explain_model(args)
    try:
        data_dir = locate_bloodcells(args.data)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    say(args, f"numcnn {numcnn.__version__}, backend {numcnn.get_backend()}; data {data_dir}; "
              f"output {out}")
    if not args.no_plots and not plots.available():
        say(args, "(matplotlib is not installed: no PNG figures; pip install 'numcnn[plot]')")
    show_class_counts(args, data_dir, out)
    try:
        data = load_data(args, data_dir)
    except ValueError as error:          # e.g. file names that do not tell the cells apart
        print(f"error: {error}", file=sys.stderr)
        if args.validation == "cells":
            print("(--validation images splits by image instead)", file=sys.stderr)
        return 2

    results = []
    for seed in seeds_of(args):
        try:
            results.append(train_one_seed(args, seed, data, out))
        except SettingsError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        summary = write_results(args, out, results, data, data_dir)   # after every seed
    print("\n" + summary)
    print(f"\nresults: {out / 'results.json'}, {out / 'summary.txt'}")
    return 0


if __name__ == "__main__":
    # Every step frees and re-allocates the same large arrays: keep the freed memory
    # instead of fresh zero-filled pages each time (docs/performance.md, "Freed memory
    # and page faults"). Process-wide, so only when run as a script, not when imported.
    freed_memory_kept = numcnn.keep_freed_memory()
    sys.exit(main())
