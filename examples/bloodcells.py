"""Four kinds of white blood cell, told apart by a small CNN trained with numcnn alone.

The images are the Kaggle "blood-cells" archive (BCCD, MIT licence): 320x240
photographs of stained blood smears, each centred on one EOSINOPHIL,
LYMPHOCYTE, MONOCYTE or NEUTROPHIL. The study this reproduces subtracted the
average image, trained Conv2D blocks (each with BatchNorm, ReLU, MaxPool and
40% Dropout) and reported classification reports and confusion matrices for
the training, validation and test sets: 0.87 on TEST. The recipe here (every
number a default of the command line, fixed before TEST was looked at):

1. crop a 144x144 window around the stained cell, shrink it to 72x72;
2. hold out 10% of TRAIN's original cells, whole, for validation;
3. subtract the mean training image;
4. train on random 64x64 crops, flipped and turned, 20 epochs of AdamW;
5. evaluate the centre 64x64, averaged over its 8 symmetric views;
6. look at TEST once, at the end, and report every split.

    python examples/bloodcells.py --data ../shared/blood-cells     # the study, seed 0
    python examples/bloodcells.py --seeds 3 --resume               # 3 seeds, continuing
    python examples/bloodcells.py --predict cell.jpeg              # classify new images

Every recipe tried, and why the defaults are what they are: docs/bloodcells.md.
"""
import functools
import sys
import time

if __name__ == "__main__":      # Ctrl-C from here on: one line, status 130
    from cellstudy.shared.command import start_command
    start_command()

import numcnn                   # before numpy: numcnn sets how OpenBLAS's threads wait
import numpy as np
from numcnn.callbacks import (BatchNormCalibration, LearningRateScheduler, ModelCheckpoint,
                              cosine_schedule)
from numcnn.data import MeanImage
from numcnn.datasets import bloodcells
from numcnn.layers import (BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D,
                           ReLU)
from numcnn.losses import SoftmaxCrossEntropy
from numcnn.optim import AdamW

from cellstudy.bloodcells import cells
from cellstudy.bloodcells.command import explain, parse_args, predict, show_class_counts
from cellstudy.bloodcells.stain import StainCrop
from cellstudy.shared import datacheck, evaluation, reports
from cellstudy.shared.command import COMMAND_STOPPED, guarded, run_command
from cellstudy.shared.evaluation import (Split, augmentation_words, evaluate_seed, evaluation_view,
                                         normalise_colour, training_augment)
from cellstudy.shared.prediction import model_path
from cellstudy.shared.runs import (RunFolder, announce, keep_out_of_data, plots_wanted, run_seeds,
                                   speaker)

CLASSES = bloodcells.CLASSES
DROPOUT = 0.4
WEIGHT_DECAY = 1e-4
CALIBRATION_IMAGES = 2048   # training images on which BatchNorm re-measures its statistics
VALIDATION_TITLES = {       # how the validation split's report introduces it, by --validation
    "cells": "validation set (about 10% of the original cells, held out whole)",
    "images": "validation set (shares cells with training)"}


def load_images(settings, say):
    """TRAIN and TEST, each image cropped around its stained cell and shrunk by block means."""
    crop = StainCrop(settings.crop) if settings.crop else None
    data = {split.lower(): bloodcells.load_data(
        split, settings.data, crop, settings.factor, settings.max_per_class, seed=0,
        cache_dir=settings.cache_dir, progress=not settings.quiet) for split in ("TRAIN", "TEST")}
    for split in ("train", "test"):
        if settings.colour_norm == "image":
            data[split].x = normalise_colour(data[split].x)
        say(f"{split.upper()}: {len(data[split])} images of shape {data[split].x.shape[1:]} "
            f"(skipped {len(data[split].skipped)}), per class {data[split].class_counts()}")
    data["files"] = datacheck.check_data(data, ("train", "test"))   # TEST is not TRAIN, ...
    # Which original cell each image was made from: estimated from the pixels.
    if settings.validation == "cells":
        data["train_cells"] = cells.training_cells(data["train"], settings.cache_dir,
                                                   progress=not settings.quiet)
    if settings.crop and not settings.skip_test:
        data["test_cells"] = cells.test_cells(data["test"], settings.cache_dir,
                                              progress=not settings.quiet)
    return data


def network(settings, seed):
    """The study's network: one Conv2D block per entry of --filters, then two Dense layers."""
    layers, channels = [], 3
    height, width = settings.input_shape[1:]
    for block, filters in enumerate(settings.filters):
        stride = settings.first_stride if block == 0 else 1   # 1: a 3x3 convolution
        layers += [Conv2D(channels, filters, 3 * stride, stride=stride, padding=stride),
                   BatchNorm2D(filters), ReLU(), MaxPool2D(2), Dropout(DROPOUT)]
        channels, height, width = filters, height // stride // 2, width // stride // 2
    layers += [Flatten(), Dense(channels * height * width, 128),
               BatchNorm1D(128), ReLU(), Dropout(DROPOUT),    # without it the Dense dies
               Dense(128, len(CLASSES))]                      # logits
    return numcnn.Sequential(layers, seed=seed, input_shape=settings.input_shape)


def train_seed(seed, *, settings, data, run, say):
    """Split, centre, build (or resume), fit, and report one seed; its metrics."""
    began = time.perf_counter()
    folder = run.seed_folder(seed)
    x, y = data["train"].x, data["train"].y
    if "train_cells" in data:                 # 10% of the original cells, held out whole
        train_index, val_index = evaluation.split_whole_groups(y, data["train_cells"], seed)
    else:                                     # 10% of the images (sharing cells with training)
        train_index, val_index = evaluation.split_by_images(y, seed)
    held_out = evaluation.validation_digest(val_index)
    if settings.resume:                       # only on the same data, recipe, seed and network
        model, note = run.resume(folder, settings, network(settings, seed),
                                 data["files"]["identity"], held_out)
    else:                                     # no model of an earlier run may pass for this one's
        run.start_afresh(folder)
        model, note = None, "new"

    mean = MeanImage().fit(x[train_index])    # the mean training image, subtracted everywhere
    train = Split(mean.transform(x[train_index], copy=False), y[train_index], "training set")
    val = Split(mean.transform(x[val_index], copy=False), y[val_index],
                VALIDATION_TITLES[settings.validation],
                groups=data["train_cells"][val_index] if "train_cells" in data else None)
    test = Split(mean.transform(data["test"].x), data["test"].y,
                 "TEST set (held-out cells, evaluated once)", groups=data.get("test_cells"))
    run.write_seed_files(folder, recipe_of(settings, held_out), mean.mean,
                         data["files"]["identity"])               # recipe.json, mean_image.npy
    if model is None:
        model = network(settings, seed)
        weights = (len(train.y) / (len(CLASSES) * np.bincount(train.y, minlength=len(CLASSES)))
                   if settings.class_weights == "balanced" else None)
        model.compile(AdamW(settings.lr, weight_decay=WEIGHT_DECAY),
                      SoftmaxCrossEntropy(class_weights=weights))
    resumed_from = model.epoch
    say(f"\n=== seed {seed}: {len(train.y)} train / {len(val.y)} validation / {len(test.y)} "
        f"test images; model {note} ===")
    if seed == settings.seed_list[0] and not settings.quiet:
        model.summary()

    def view(images):                         # what the network sees at evaluation
        return evaluation_view(images, settings.input_size, crop=settings.square)

    if model.epoch < settings.epochs:
        model.fit(train.x, train.y, batch_size=settings.batch_size, epochs=settings.epochs,
                  initial_epoch=model.epoch, verbose=0 if settings.quiet else 1,
                  validation_data=(view(val.x), val.y),
                  augment=training_augment(settings, mean.mean,
                                           settings.input_size if settings.crop else None,
                                           rotate90=settings.square),
                  callbacks=[LearningRateScheduler(cosine_schedule(
                                 settings.lr, settings.epochs, min_lr=settings.lr / 100)),
                             BatchNormCalibration(view(train.x[:CALIBRATION_IMAGES])),
                             ModelCheckpoint(folder / "checkpoint.npz", keep_previous=True)])
    diverged = run.save_trained(folder, model)     # model.npz, unless training diverged
    if diverged:
        return diverged                       # no result for this seed, and no reports

    # Reports: training set (one view), validation, and TEST, looked at once, here.
    result = evaluate_seed(model, {"train": train, "val": val, "test": test},
                           settings=settings, classes=CLASSES, folder=folder, began=began,
                           say=say, plot=plots_wanted(settings))
    return {**result, "resumed_from_epoch": resumed_from, **run.continuation(folder)}


def recipe_of(settings, validation_split=None):
    """The settings, and in words what the code fixes: recipe.json and results.json."""
    return {**settings.to_recipe(), "classes": list(CLASSES), "validation_fraction":
            evaluation.VALIDATION_FRACTION, "weight_decay": WEIGHT_DECAY, "dropout": DROPOUT,
            "optimizer": "AdamW (decoupled weight decay)", "schedule": "cosine to lr/100",
            "augmentation": augmentation_words(settings, settings.input_size if settings.crop
                                               else None, rotate90=settings.square),
            "evaluation_crop": "centre" if settings.crop else "none (whole image)",
            "evaluation_views": ("validation and TEST: mean probabilities over the 8 symmetries "
                                 "of the square; training set: one view"
                                 if settings.tta == "symmetries" else "one view"),
            "batchnorm_calibration": f"{CALIBRATION_IMAGES} training images after each epoch",
            **({"validation_split": validation_split} if validation_split else {})}


def main(argv=None, freed_memory_kept=None):
    """Run the study (or --predict, --explain); return the exit status.

    ``freed_memory_kept``: what ``numcnn.keep_freed_memory()`` returned, for results.json.
    """
    settings, actions = parse_args(argv)
    numcnn.set_backend(settings.backend)
    if actions.predict:
        return guarded(predict, settings, actions, stopped=COMMAND_STOPPED)
    if actions.explain:
        return guarded(explain, settings, actions, outputs=[model_path(settings, actions).parent],
                       stopped=COMMAND_STOPPED)
    return guarded(study, settings, freed_memory_kept)


def study(settings, freed_memory_kept=None):
    """The whole study: class counts, images, every seed, results over seeds."""
    say = speaker(settings)
    data_dir = bloodcells.locate(settings.data)
    keep_out_of_data(settings, [data_dir])    # no output among the images
    with RunFolder(settings.out).locked() as run:
        announce(run, data_dir, say)
        show_class_counts(settings, data_dir, run.out, say, plots_wanted(settings))
        data = load_images(settings.replace(data=str(data_dir)), say)
        record = reports.StudyRecord(
            title="four-class white-blood-cell classification (BCCD / Kaggle blood-cells)",
            classes=CLASSES, recipe=recipe_of(settings),
            data=reports.data_info(data_dir, data, ("train", "test")),
            test_y=data["test"].y, test_groups=data.get("test_cells"),
            freed_memory_kept=freed_memory_kept)
        train = functools.partial(train_seed, settings=settings, data=data, run=run, say=say)
        return run_seeds(run, seeds=settings.seed_list, train=train, study=record)


if __name__ == "__main__":
    # Each step frees and re-allocates the same large arrays: keep the freed memory
    # instead of fresh zero-filled pages every time (docs/performance.md). It changes
    # the whole process, so only when run as a script, not when imported.
    sys.exit(run_command(main, freed_memory_kept=numcnn.keep_freed_memory()))
