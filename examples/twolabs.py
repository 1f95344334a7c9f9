"""One white-cell classifier for two laboratories: trained on both, reported for each.

The blood-cell archive (Kaggle, from BCCD, MIT licence) and PBC (Acevedo et al.
2020, CC BY 4.0; another hospital's stain, microscope and camera) share four
classes. A model trained on one laboratory scores near chance on the other
(docs/pbc.md). This script trains the blood-cell study's network on both at
once (the recipe registered in docs/twolabs.md before any result):

1. measure each laboratory's scale on its training lymphocytes and bring PBC's
   cells to the archive's (``cellstudy.crosslab.scale``), in the study's
   144-pixel window, shrunk to 72x72 as the archive's stain crops are;
2. hold out validation from both: 10% of the archive's original cells, whole,
   and PBC's val split;
3. balance: the larger laboratory gives a seeded, stratified sample of the
   smaller one's size (``--lab-balance none``: every training image of both;
   ``--pbc-camera``: PBC's training images each seen once through a random camera);
4. subtract the mean training image; train 20 epochs of AdamW on random
   64x64 crops, flips, quarter turns, and stain, light and scale augmentation;
5. report each laboratory's test split once, at the end: the archive's TEST
   (interval over its cells) and PBC's four-class test (interval over images,
   optimistic: PBC's donors are not published).

    python examples/twolabs.py --data ../shared/blood-cells --pbc-data ../shared/pbc
    python examples/twolabs.py --seeds 3 --resume                  # 3 seeds, continuing
    python examples/twolabs.py --predict cell.jpg --scale 1.75     # a PBC original

Results, and what they mean: docs/twolabs.md.
"""
import functools
import json
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
from numcnn.datasets import bloodcells, pbc
from numcnn.losses import SoftmaxCrossEntropy
from numcnn.optim import AdamW

import bloodcells as bloodcell_study     # examples/bloodcells.py: its images, network, recipe
from cellstudy.crosslab import scale
from cellstudy.crosslab.twolabs import (SHARED, parse_args, predict, training_images,
                                        training_set)
from cellstudy.shared import datacheck, evaluation, reports
from cellstudy.shared.command import COMMAND_STOPPED, guarded, run_command
from cellstudy.shared.evaluation import (Split, camera_words, evaluate_seed, evaluation_view,
                                         fair_sample, normalise_colour, predict_probabilities,
                                         training_augment)
from cellstudy.shared.settings import SettingsError
from cellstudy.shared.runs import (RunFolder, announce, keep_out_of_data, plots_wanted, run_seeds,
                                   speaker)

CLASSES = bloodcells.CLASSES             # the same four as SHARED, in the same order


def load_images(settings, say):
    """Both laboratories' images at the archive's scale: the archive's TRAIN and TEST as the
    blood-cell study makes them, PBC's train, val and test splits of the four classes."""
    data = bloodcell_study.load_images(settings, say)         # train, test, their cells
    ours = {split: pbc.load_data(split, settings.pbc_data, classes=list(SHARED),
                                 max_per_class=settings.max_per_class,
                                 cache_dir=settings.cache_dir, progress=not settings.quiet)
            for split in ("train", "val", "test")}
    ratio, data["scale"] = scale.scale_between(*[                # the training lymphocytes
        [path for path, label in zip(images.paths, images.y) if label == SHARED.index("lymphocyte")]
        for images in (data["train"], ours["train"])], say)
    window = scale.ScaledToWindow(1 / ratio, settings.crop)  # PBC pixels -> archive pixels
    for split, images in ours.items():
        images.x = scale.images_in_window(images.x, window, settings.factor)
        if settings.colour_norm == "image":
            images.x = normalise_colour(images.x)
        data[f"pbc_{split}"] = images
        say(f"PBC {split}: {len(images)} images of shape {images.x.shape[1:]} at the archive's "
            f"scale, per class {images.class_counts()}")
    pbc_files = datacheck.check_data(data, ("pbc_train", "pbc_val", "pbc_test"))
    data["files"]["identity"].update(pbc_files["identity"])  # a resumed run: the same images
    return data


def train_seed(seed, *, settings, data, run, say):
    """Split, balance, centre, build (or resume), fit, and report one seed; its metrics."""
    began = time.perf_counter()
    folder = run.seed_folder(seed)
    bc, ours = data["train"], data["pbc_train"]
    bc_train, bc_val = evaluation.split_whole_groups(bc.y, data["train_cells"], seed)
    bc_train, pbc_train = training_images(bc_train, bc.y, ours.y, seed, settings.lab_balance)
    held_out = evaluation.validation_digest(np.concatenate([bc_val, [-1], bc_train, [-1],
                                                            pbc_train]))   # and the balance
    if settings.resume:                     # only on the same data, recipe, seed and network
        model, note = run.resume(folder, settings, bloodcell_study.network(settings, seed),
                                 data["files"]["identity"], held_out)
    else:
        run.start_afresh(folder)
        model, note = None, "new"

    x = training_set(bc.x[bc_train], ours.x[pbc_train], seed, settings.pbc_camera)
    y = np.concatenate([bc.y[bc_train], ours.y[pbc_train]])
    mean = MeanImage().fit(x)               # the mean training image of both laboratories
    train = Split(mean.transform(x, copy=False), y, "training set (both laboratories)")
    val_groups = np.concatenate([data["train_cells"][bc_val],
                                 data["train_cells"].max() + 1 + np.arange(len(data["pbc_val"]))])
    val = Split(mean.transform(np.concatenate([bc.x[bc_val], data["pbc_val"].x])),
                np.concatenate([bc.y[bc_val], data["pbc_val"].y]),
                "validation set (10% of the archive's cells, whole, and PBC's val split)",
                groups=val_groups)
    tests = {"test": Split(mean.transform(data["test"].x), data["test"].y,
                           "blood-cell TEST (held-out cells, evaluated once)",
                           groups=data.get("test_cells")),
             "test_pbc": Split(mean.transform(data["pbc_test"].x), data["pbc_test"].y,
                               "PBC test, four classes (evaluated once; interval over images, "
                               "optimistic: donors unknown)", groups=np.arange(len(data["pbc_test"])))}
    run.write_seed_files(folder, recipe_of(settings, data, held_out), mean.mean,
                         data["files"]["identity"])               # recipe.json, mean_image.npy
    if model is None:
        model = bloodcell_study.network(settings, seed)
        weights = (len(y) / (len(CLASSES) * np.bincount(y, minlength=len(CLASSES)))
                   if settings.class_weights == "balanced" else None)
        model.compile(AdamW(settings.lr, weight_decay=bloodcell_study.WEIGHT_DECAY),
                      SoftmaxCrossEntropy(class_weights=weights))
    resumed_from = model.epoch
    say(f"\n=== seed {seed}: {len(bc_train)} archive + {len(pbc_train)} PBC training images, "
        f"{len(val.y)} validation; model {note} ===")

    def view(images):
        return evaluation_view(images, settings.input_size)

    calibration = train.x[fair_sample(len(train.y), bloodcell_study.CALIBRATION_IMAGES, seed)]
    if model.epoch < settings.epochs:
        model.fit(train.x, train.y, batch_size=settings.batch_size, epochs=settings.epochs,
                  initial_epoch=model.epoch, verbose=0 if settings.quiet else 1,
                  validation_data=(view(val.x), val.y),
                  augment=training_augment(settings, mean.mean, settings.input_size),
                  callbacks=[LearningRateScheduler(cosine_schedule(
                                 settings.lr, settings.epochs, min_lr=settings.lr / 100)),
                             BatchNormCalibration(view(calibration)),
                             ModelCheckpoint(folder / "checkpoint.npz", keep_previous=True)])
    diverged = run.save_trained(folder, model)
    if diverged:
        return diverged

    # Reports: training set, validation, then each laboratory's test split, looked at once.
    result = evaluate_seed(model, {"train": train, "val": val, "test": tests["test"]},
                           settings=settings, classes=CLASSES, folder=folder, began=began,
                           say=say, plot=plots_wanted(settings))
    if not settings.skip_test:
        split = tests["test_pbc"]
        predicted = predict_probabilities(model, split.x, settings.tta,
                                          settings.input_size).argmax(axis=1)
        result["test_pbc"], text = reports.report_split(
            predicted, split.y, CLASSES, split.title, folder, "test_pbc", groups=split.groups,
            group_unit="images", plot=plots_wanted(settings), seed=seed)
        say(f"\n--- {text}")
    return {**result, "resumed_from_epoch": resumed_from, **run.continuation(folder)}


def recipe_of(settings, data=None, validation_split=None):
    """The blood-cell study's recipe, and what the second laboratory adds."""
    recipe = bloodcell_study.recipe_of(settings, validation_split)
    recipe["balance"] = ("the larger laboratory's training images: a seeded sample, stratified "
                         "by class, of the smaller one's size" if settings.lab_balance == "equal"
                         else "none: every training image of both laboratories")
    recipe["pbc_validation"] = "PBC's val split of the four classes"
    recipe["pbc_training_images"] = (
        "each seen once a seed through a camera drawn at random: " + camera_words()
        if settings.pbc_camera else "as they are")
    if data is not None:
        recipe["pbc_px_per_bloodcell_px"] = data["scale"]["pbc_px_per_bloodcell_px"]
    return recipe


def main(argv=None):
    """Run the two-laboratory study (or --predict, --explain); return the exit status."""
    settings, actions = parse_args(argv)
    numcnn.set_backend(settings.backend)
    if actions.predict:
        return guarded(predict, settings, actions, stopped=COMMAND_STOPPED)
    if actions.explain:
        return guarded(bloodcell_study.explain, settings, actions, stopped=COMMAND_STOPPED)
    return guarded(study, settings)


def study(settings):
    """Both laboratories' images, every seed, the results over seeds per laboratory."""
    say = speaker(settings)
    if not settings.crop or settings.validation != "cells":
        raise SettingsError("two laboratories need the stain crop and whole cells held out "
                            "(--crop other than 0, --validation cells)")
    data_dir, pbc_dir = bloodcells.locate(settings.data), pbc.locate(settings.pbc_data)
    keep_out_of_data(settings, [data_dir, pbc_dir])
    with RunFolder(settings.out).locked() as run:
        announce(run, data_dir, say, note=f"and PBC: {pbc_dir}")
        data = load_images(settings.replace(data=str(data_dir), pbc_data=str(pbc_dir)), say)
        record = reports.StudyRecord(
            title="four-class white-cell classification, two laboratories (blood-cell archive "
                  "and PBC)", classes=CLASSES, recipe=recipe_of(settings, data),
            data={**reports.data_info(data_dir, data, ("train", "test")), "scale": data["scale"],
                  "pbc": {"data_dir": str(pbc_dir), "images": {
                      split: len(data[f"pbc_{split}"]) for split in ("train", "val", "test")}}},
            test_y=data["test"].y, test_groups=data.get("test_cells"))
        train = functools.partial(train_seed, settings=settings, data=data, run=run, say=say)
        status = run_seeds(run, seeds=settings.seed_list, train=train, study=record)
        per_laboratory(run, data, say)
    return status


def per_laboratory(run, data, say):
    """Each laboratory's test accuracy over the seeds, beside results.json's: summary lines."""
    document = json.loads((run.out / "results.json").read_text(encoding="utf-8"))
    seeds = [r for r in document["seeds"].values() if "test_pbc" in r]
    if not seeds:
        return
    pooled = reports.pooled_interval(run.out, seeds, data["pbc_test"].y,
                                     np.arange(len(data["pbc_test"])), split="test_pbc")
    document["test_pbc_interval_over_seeds"] = pooled
    run.write_json(run.out / "results.json", document)
    lines = [f"PBC test, four classes, over {len(seeds)} seed(s): accuracy "
             f"{np.mean([r['test_pbc']['accuracy'] for r in seeds]):.4f}, balanced accuracy "
             f"{np.mean([r['test_pbc']['balanced_accuracy'] for r in seeds]):.4f}, macro-F1 "
             f"{np.mean([r['test_pbc']['macro_f1'] for r in seeds]):.4f}"
             + (f" ({reports.interval_text(pooled, 'images')})" if pooled else "")]
    run.write_text(run.out / "summary.txt",
                   (run.out / "summary.txt").read_text(encoding="utf-8") + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    numcnn.keep_freed_memory()
    sys.exit(run_command(main))
