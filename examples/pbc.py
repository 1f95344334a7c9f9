"""Eight kinds of blood cell in the 17,092 images of the PBC dataset: a study that can be measured.

The PBC dataset (Acevedo et al., "A dataset of microscopic peripheral blood cell
images for development of automatic recognition systems", Data in Brief 30,
2020, 105474; CC BY 4.0) holds single cells of healthy donors from a hospital
laboratory in Barcelona: basophils, eosinophils, erythroblasts, immature
granulocytes, lymphocytes, monocytes, neutrophils and platelets. Its fixed
split leaves 3,415 test images, so an accuracy is known to about +-0.007
and can be set beside published results (MedMNIST's BloodMNIST is this data).
The recipe (every number a default of the command line, fixed on the
validation split before TEST was looked at):

1. shrink each 128x128 image to 64x64 by block means;
2. subtract the mean training image;
3. train on random 56x56 crops, flipped and turned, with AdamW and a cosine schedule;
4. evaluate the centre 56x56, averaged over its 8 symmetric views;
5. look at TEST once, at the end, and report every split.

    python examples/pbc.py --data ../shared/pbc              # the study, seed 0
    python examples/pbc.py --seeds 3 --resume                # 3 seeds, continuing

Results, every recipe tried and the transfer to another laboratory: docs/pbc.md.
"""
import os
import sys
import time
from pathlib import Path

# Before numpy loads OpenBLAS: a short spin of its threads after each matrix multiply,
# so that they do not steal the cores from numcnn's numba loops (docs/performance.md,
# "Threads"). A value set by the user is kept.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
ROOT = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT), str(ROOT.parent)]       # cellstudy, and numcnn from a checkout
if __name__ == "__main__":           # Ctrl-C from here on: one line, status 130 (cellstudy.cli)
    from cellstudy.cli import start_command
    start_command()

import numpy as np  # noqa: E402

import numcnn  # noqa: E402
from numcnn.callbacks import (BatchNormCalibration, LearningRateScheduler,  # noqa: E402
                              ModelCheckpoint, cosine_schedule)
from numcnn.data import MeanImage, crop_and_flip  # noqa: E402
from numcnn.datasets import pbc  # noqa: E402
from numcnn.layers import (BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout,  # noqa: E402
                           Flatten, MaxPool2D, ReLU)
from numcnn.losses import SoftmaxCrossEntropy  # noqa: E402
from numcnn.optim import AdamW  # noqa: E402

from cellstudy import datacheck, pbc_commands, reports, splits  # noqa: E402
from cellstudy.cli import COMMAND_STOPPED, guarded, run_command  # noqa: E402
from cellstudy.colour import normalise_colour  # noqa: E402
from cellstudy.evaluation import evaluate_seed  # noqa: E402
from cellstudy.pbc_cli import parse_args  # noqa: E402
from cellstudy.runs import RunFolder, keep_out_of_data  # noqa: E402
from cellstudy.study import announce, plots_wanted, run_seeds, speaker  # noqa: E402
from cellstudy.views import evaluation_view  # noqa: E402

CALIBRATION_IMAGES = 2048   # training images on which BatchNorm re-measures its statistics


def load_images(settings, say):
    """train, val and test as splits.csv gives them, at settings.size pixels."""
    data = {split: pbc.load_data(split, settings.data, settings.size, settings.classes,
                                 settings.max_per_class, cache_dir=settings.cache_dir,
                                 progress=not settings.quiet)
            for split in pbc.SPLITS}
    if settings.colour_norm == "image":
        for images in data.values():
            images.x = normalise_colour(images.x)
    for split, images in data.items():
        say(f"{split}: {len(images)} images of shape {images.x.shape[1:]}, "
            f"per class {images.class_counts()}")
    data["files"] = datacheck.check_data(data, pbc.SPLITS)   # test is not train, ...
    return data


def network(settings, seed, classes):
    """Blocks of 3x3 convolutions (each with BatchNorm and ReLU), then two Dense layers."""
    layers, channels, side = [], 3, settings.input_size
    for filters in settings.filters:
        for _ in range(settings.convs):
            layers += [Conv2D(channels, filters, 3, padding=1), BatchNorm2D(filters), ReLU()]
            channels = filters
        layers += [MaxPool2D(2), Dropout(settings.dropout)]
        side //= 2
    layers += [Flatten(), Dense(channels * side * side, settings.dense),
               BatchNorm1D(settings.dense), ReLU(), Dropout(settings.dropout),
               Dense(settings.dense, len(classes))]                 # logits
    return numcnn.Sequential(layers, seed=seed, input_shape=settings.input_shape)


def train_seed(settings, seed, data, run, say):
    """Centre, build (or resume), fit, and report one seed; its metrics."""
    began = time.perf_counter()
    folder = run.seed_folder(seed)
    classes = data["train"].classes
    if settings.resume:                       # only on the same data, recipe, seed and network
        model, note = run.resume(folder, settings, network(settings, seed, classes),
                                 data["files"]["identity"])
    else:                                     # no model of an earlier run may pass for this one's
        run.start_afresh(folder)
        model, note = None, "new"
    mean = MeanImage().fit(data["train"].x)   # the mean training image, subtracted everywhere
    arrays = {split: (mean.transform(data[split].x), data[split].y) for split in pbc.SPLITS}
    (x_train, y_train), (x_val, y_val) = arrays["train"], arrays["val"]
    run.write_seed_files(folder, recipe_of(settings, classes), mean.mean,
                         data["files"]["identity"])               # recipe.json, mean_image.npy
    if model is None:
        model = network(settings, seed, classes)
        model.compile(AdamW(settings.lr, weight_decay=settings.weight_decay),
                      SoftmaxCrossEntropy(label_smoothing=settings.label_smoothing))
    resumed_from = model.epoch
    say(f"\n=== seed {seed}: {len(y_train)} train / {len(y_val)} validation / "
        f"{len(arrays['test'][1])} test images; model {note} ===")
    if seed == settings.seed_list[0] and not settings.quiet:
        model.summary()

    def view(images):                         # what the network sees at evaluation
        return evaluation_view(images, settings.input_size)

    calibration = splits.fair_sample(len(y_train), CALIBRATION_IMAGES, seed)   # every class

    if model.epoch < settings.epochs:
        model.fit(x_train, y_train, batch_size=settings.batch_size, epochs=settings.epochs,
                  initial_epoch=model.epoch, verbose=0 if settings.quiet else 1,
                  validation_data=(view(x_val), y_val),
                  augment=crop_and_flip(settings.input_size, rotate90=True,
                                        colour=settings.colour_jitter),
                  callbacks=[LearningRateScheduler(cosine_schedule(
                                 settings.lr, settings.epochs, min_lr=settings.lr / 100)),
                             BatchNormCalibration(view(x_train[calibration])),
                             ModelCheckpoint(folder / "checkpoint.npz", keep_previous=True)])
    diverged = run.save_trained(folder, model)     # model.npz, unless training diverged
    if diverged:
        return diverged                       # no result for this seed, and no reports

    # Reports: training set (one view), validation, and TEST, looked at once, here; one
    # image per cell, so the accuracies' intervals are over images.
    result = evaluate_seed(model, arrays, settings, classes, folder,
                           {"train": "training set", "val": "validation set (splits.csv)",
                            "test": "TEST set (splits.csv, evaluated once)"},
                           {split: np.arange(len(arrays[split][1])) for split in ("val", "test")},
                           began, say, plot=plots_wanted(settings), unit="images")
    return {**result, "resumed_from_epoch": resumed_from, **run.continuation(folder)}


def recipe_of(settings, classes):
    """The settings, and in words what the code fixes: recipe.json and results.json."""
    return {**settings.to_recipe(), "classes": list(classes),
            "optimizer": "AdamW (decoupled weight decay)", "schedule": "cosine to lr/100",
            "augmentation": f"random {settings.input_size}x{settings.input_size} crop, then "
                            "random flips and quarter turns"
                            + (f", colour jitter {settings.colour_jitter:g}"
                               if settings.colour_jitter else ""),
            "evaluation_views": ("validation and TEST: mean probabilities over the 8 symmetries "
                                 "of the square; training set: one view"
                                 if settings.tta == "symmetries" else "one view"),
            "batchnorm_calibration": f"{CALIBRATION_IMAGES} training images after each epoch",
            "data_licence": pbc.CITATION}


def main(argv=None):
    """Run the study (or --predict); return the exit status."""
    settings, actions = parse_args(argv)
    numcnn.set_backend(settings.backend)
    if actions.predict:
        return guarded(lambda s: pbc_commands.predict(s, actions), settings,
                       stopped=COMMAND_STOPPED)
    return guarded(study, settings)


def study(settings):
    """The whole study: counts, images, every seed, results over seeds."""
    say = speaker(settings)
    data_dir = pbc.locate(settings.data)
    keep_out_of_data(settings, [data_dir])    # no output among the images
    with RunFolder(settings.out).locked() as run:
        announce(run, data_dir, say, note=f"data: {pbc.CITATION}")
        pbc_commands.show_class_counts(data_dir, say)
        data = load_images(settings.replace(data=str(data_dir)), say)
        classes, test_y = data["train"].classes, data["test"].y
        return run_seeds(settings, run, lambda seed: train_seed(settings, seed, data, run, say),
                         lambda results: reports.write_results(
                             run, f"{len(classes)}-class blood-cell classification (PBC, "
                             "Acevedo et al. 2020)", classes, recipe_of(settings, classes),
                             reports.data_info(data_dir, data, pbc.SPLITS), results, test_y,
                             np.arange(len(test_y)), freed_memory_kept, unit="images"))


freed_memory_kept = None    # what numcnn.keep_freed_memory() returned, when run as a script

if __name__ == "__main__":
    freed_memory_kept = numcnn.keep_freed_memory()
    sys.exit(run_command(main))
