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
from numcnn.datasets import pbc
from numcnn.layers import (BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D,
                           ReLU)
from numcnn.losses import SoftmaxCrossEntropy
from numcnn.optim import AdamW

from cellstudy.pbc.command import parse_args, predict, show_class_counts
from cellstudy.shared import datacheck, reports
from cellstudy.shared.command import COMMAND_STOPPED, guarded, run_command
from cellstudy.shared.evaluation import (Split, augmentation_words, evaluate_seed,
                                         evaluation_view, fair_sample, normalise_colour,
                                         training_augment)
from cellstudy.shared.runs import (RunFolder, announce, keep_out_of_data, plots_wanted, run_seeds,
                                   speaker)

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


def train_seed(seed, *, settings, data, run, say):
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
    train = Split(mean.transform(data["train"].x), data["train"].y, "training set")
    val = Split(mean.transform(data["val"].x), data["val"].y, "validation set (splits.csv)",
                groups=np.arange(len(data["val"])))      # one image per cell: intervals over images
    test = Split(mean.transform(data["test"].x), data["test"].y,
                 "TEST set (splits.csv, evaluated once)", groups=np.arange(len(data["test"])))
    run.write_seed_files(folder, recipe_of(settings, classes), mean.mean,
                         data["files"]["identity"])               # recipe.json, mean_image.npy
    if model is None:
        model = network(settings, seed, classes)
        model.compile(AdamW(settings.lr, weight_decay=settings.weight_decay),
                      SoftmaxCrossEntropy(label_smoothing=settings.label_smoothing))
    resumed_from = model.epoch
    say(f"\n=== seed {seed}: {len(train.y)} train / {len(val.y)} validation / "
        f"{len(test.y)} test images; model {note} ===")
    if seed == settings.seed_list[0] and not settings.quiet:
        model.summary()

    def view(images):                         # what the network sees at evaluation
        return evaluation_view(images, settings.input_size)

    calibration = fair_sample(len(train.y), CALIBRATION_IMAGES, seed)   # every class

    if model.epoch < settings.epochs:
        model.fit(train.x, train.y, batch_size=settings.batch_size, epochs=settings.epochs,
                  initial_epoch=model.epoch, verbose=0 if settings.quiet else 1,
                  validation_data=(view(val.x), val.y),
                  augment=training_augment(settings, mean.mean, settings.input_size),
                  callbacks=[LearningRateScheduler(cosine_schedule(
                                 settings.lr, settings.epochs, min_lr=settings.lr / 100)),
                             BatchNormCalibration(view(train.x[calibration])),
                             ModelCheckpoint(folder / "checkpoint.npz", keep_previous=True)])
    diverged = run.save_trained(folder, model)     # model.npz, unless training diverged
    if diverged:
        return diverged                       # no result for this seed, and no reports

    # Reports: training set (one view), validation, and TEST, looked at once, here.
    result = evaluate_seed(model, {"train": train, "val": val, "test": test},
                           settings=settings, classes=classes, folder=folder, began=began,
                           say=say, plot=plots_wanted(settings), unit="images")
    return {**result, "resumed_from_epoch": resumed_from, **run.continuation(folder)}


def recipe_of(settings, classes):
    """The settings, and in words what the code fixes: recipe.json and results.json."""
    return {**settings.to_recipe(), "classes": list(classes),
            "optimizer": "AdamW (decoupled weight decay)", "schedule": "cosine to lr/100",
            "augmentation": augmentation_words(settings, settings.input_size),
            "evaluation_views": ("validation and TEST: mean probabilities over the 8 symmetries "
                                 "of the square; training set: one view"
                                 if settings.tta == "symmetries" else "one view"),
            "batchnorm_calibration": f"{CALIBRATION_IMAGES} training images after each epoch",
            "data_licence": pbc.CITATION}


def main(argv=None, freed_memory_kept=None):
    """Run the study (or --predict); return the exit status.

    ``freed_memory_kept``: what ``numcnn.keep_freed_memory()`` returned, for results.json.
    """
    settings, actions = parse_args(argv)
    numcnn.set_backend(settings.backend)
    if actions.predict:
        return guarded(predict, settings, actions, stopped=COMMAND_STOPPED)
    return guarded(study, settings, freed_memory_kept)


def study(settings, freed_memory_kept=None):
    """The whole study: counts, images, every seed, results over seeds."""
    say = speaker(settings)
    data_dir = pbc.locate(settings.data)
    keep_out_of_data(settings, [data_dir])    # no output among the images
    with RunFolder(settings.out).locked() as run:
        announce(run, data_dir, say, note=f"data: {pbc.CITATION}")
        show_class_counts(data_dir, say)
        data = load_images(settings.replace(data=str(data_dir)), say)
        classes = data["train"].classes
        record = reports.StudyRecord(
            title=f"{len(classes)}-class blood-cell classification (PBC, Acevedo et al. 2020)",
            classes=classes, recipe=recipe_of(settings, classes),
            data=reports.data_info(data_dir, data, pbc.SPLITS),
            test_y=data["test"].y, test_groups=np.arange(len(data["test"])), unit="images",
            freed_memory_kept=freed_memory_kept)
        train = functools.partial(train_seed, settings=settings, data=data, run=run, say=say)
        return run_seeds(run, seeds=settings.seed_list, train=train, study=record)


if __name__ == "__main__":
    # Keep freed memory for reuse (see examples/bloodcells.py): only when run as a script.
    sys.exit(run_command(main, freed_memory_kept=numcnn.keep_freed_memory()))
