"""Does a model trained on one laboratory's slides classify another laboratory's cells?

The blood-cell archive (Kaggle, from BCCD) and PBC (Acevedo et al. 2020, CC BY
4.0; a hospital laboratory in Barcelona, another stain and scanner) share four
classes: eosinophils, lymphocytes, monocytes and neutrophils. This script
takes models trained on one and tests them on every image of the other:

1. the blood-cell study's models (``examples/bloodcells.py``) on all 9,080
   PBC images of the four classes, none of which they ever saw;
2. PBC models trained on those four classes (``examples/pbc.py --classes
   eosinophil,lymphocyte,monocyte,neutrophil``) on all the blood-cell
   archive's images, TRAIN and TEST (about 350 original cells).

The cells are brought to the scale each model was trained at from a fact
measured on training images only: the typical diameter of a lymphocyte in
each dataset (``cellstudy.crosslab.scale``), never by trying scales on the images
tested. Accuracies come with 95% intervals: over images for PBC (one image
per cell), over the estimated original cells for the blood-cell archive.

    python examples/transfer.py --bloodcells runs/bloodcells --pbc runs/pbc4 --out runs/transfer

Several run folders may follow each flag (e.g. the remedies of docs/pbc.md);
results.json and summary.txt say what each gave.

``--adapt-batchnorm`` also reads the other laboratory a second way: each
model's BatchNorm statistics re-measured on 2,048 images of that laboratory's
training side (the archive's TRAIN, PBC's train split; their labels unused),
as Li et al. (2016, "AdaBN") adapt a network to a new domain. That is
adaptation to the new laboratory's unlabelled images, not a laboratory left
out: it is reported beside, on every image and on the test side alone (the
archive's TEST, PBC's test split: images the statistics never saw).
"""
import argparse
import sys
from pathlib import Path

if __name__ == "__main__":      # Ctrl-C from here on: one line, status 130
    from cellstudy.shared.command import start_command
    start_command()

import numcnn                   # before numpy: numcnn sets how OpenBLAS's threads wait
import numpy as np
from numcnn.callbacks import recalibrate_batchnorm
from numcnn.data import load_image_folder
from numcnn.datasets import bloodcells, pbc

from cellstudy.bloodcells import cells
from cellstudy.bloodcells.command import BloodCellSettings
from cellstudy.bloodcells.stain import StainCrop
from cellstudy.crosslab import scale
from cellstudy.crosslab.scale import ScaledStainCrop, ScaledToWindow
from cellstudy.pbc.command import PBCSettings
from cellstudy.shared import reports
from cellstudy.shared.command import COMMAND_STOPPED, guarded, positive_int, run_command
from cellstudy.shared.evaluation import (evaluation_view, fair_sample, normalise_colour,
                                         predict_probabilities)
from cellstudy.shared.prediction import load_saved_model
from cellstudy.shared.runs import RunFolder, keep_out_of_data, plots_wanted, speaker
from cellstudy.shared.settings import SettingsError

SHARED = ("eosinophil", "lymphocyte", "monocyte", "neutrophil")   # PBC's names, label order
BLOODCELL_NAMES = bloodcells.CLASSES                              # the same four, same order
#: --adapt-batchnorm: images of the other laboratory's training side on which each BatchNorm
#: re-measures its statistics (as many as the studies' own calibration takes).
ADAPTATION_IMAGES = 2048


def measure_scale(settings, say):
    """PBC pixels per blood-cell pixel: the ratio of the two datasets' lymphocyte diameters."""
    bc_lymphocytes = sorted((bloodcells.split_dir("TRAIN", settings.bloodcells_data)
                             / "LYMPHOCYTE").glob("*.jpeg"))
    pbc_train = pbc.load_data("train", settings.pbc_data, classes=["lymphocyte"],
                              cache_dir=settings.cache_dir, progress=False)
    return scale.scale_between(bc_lymphocytes[::settings.every], pbc_train.paths[::settings.every],
                               say)


def pbc_as_bloodcells(recipe, ratio, settings):
    """All PBC images of the four classes, made as a blood-cell model's training images were;
    ``(images, groups, test_side)``: one group per image (one image per cell), and which
    images are in PBC's test split."""
    window = ScaledToWindow(1 / ratio, recipe.crop)          # PBC pixels -> blood-cell pixels
    images = load_image_folder(pbc.locate(settings.pbc_data) / "images", SHARED,
                               transform=window, factor=recipe.factor, allow_extra=True,
                               max_per_class=settings.max_per_class, cache=True,
                               cache_dir=settings.cache_dir, progress=not settings.quiet)
    splits = pbc.read_splits(settings.pbc_data)              # {(class, file): split}
    test_side = np.array([splits[(Path(path).parent.name, Path(path).name)] == "test"
                          for path in images.paths])
    return images, np.arange(len(images)), test_side


def bloodcells_as_pbc(recipe, ratio, settings):
    """All the blood-cell archive's images, TRAIN and TEST, made as a PBC model's were;
    ``(images, groups, test_side)``: the estimated original cells, and which images are TEST's."""
    window = ScaledStainCrop(round(pbc.IMAGE_SIZE / ratio), pbc.IMAGE_SIZE)
    parts, groups, offset = [], [], 0
    for split in ("TRAIN", "TEST"):
        images = bloodcells.load_data(split, settings.bloodcells_data, window,
                                      pbc.IMAGE_SIZE // recipe.size, settings.max_per_class,
                                      cache_dir=settings.cache_dir, progress=not settings.quiet)
        study = bloodcells.load_data(split, settings.bloodcells_data, StainCrop(144), 2,
                                     settings.max_per_class, cache_dir=settings.cache_dir,
                                     progress=False)            # the study's crops: its cells
        assert study.paths == images.paths
        found = cells.cell_groups(study, settings.cache_dir, progress=not settings.quiet)
        parts.append(images)
        groups.append(found + offset)
        offset = groups[-1].max() + 1
    test_side = np.repeat([False, True], [len(part.y) for part in parts])   # TEST's images
    images = parts[0]
    images.x = np.concatenate([part.x for part in parts])
    images.y = np.concatenate([part.y for part in parts])
    images.paths = parts[0].paths + parts[1].paths
    return images, np.concatenate(groups), test_side


def saved_models(run_dir, settings_class):
    """Every seed of one run folder: ``(path, model, recipe, labels, mean)``, each checked first.

    ``labels`` maps the model's outputs to the shared order (a PBC model may list
    the four classes in any order); a model of other classes is refused (exit 2).
    """
    paths = sorted(Path(run_dir).glob("seed*/model.npz"))
    if not paths:
        raise FileNotFoundError(f"{run_dir} holds no seed*/model.npz: train first")
    loaded = []
    for path in paths:
        model, recipe, classes, mean = load_saved_model(
            path, settings_class, (BLOODCELL_NAMES, True) if settings_class is BloodCellSettings
            else (pbc.CLASSES, False))
        if sorted(name.lower() for name in classes) != sorted(SHARED):
            raise SettingsError(f"{path} is a model of the classes {classes}; the transfer "
                                f"tests models of the four shared ones, {', '.join(SHARED)} "
                                f"(examples/pbc.py --classes {','.join(SHARED)})")
        labels = np.array([SHARED.index(name.lower()) for name in classes])
        loaded.append((path, model, recipe, labels, mean))
    return loaded


def predicted_classes(model, x, mean, recipe, labels):
    """Each image's predicted class, in the shared order."""
    return labels[np.concatenate([predict_probabilities(model, x[i:i + 1024] - mean,
                                                        recipe.tta, recipe.input_size)
                                  for i in range(0, len(x), 1024)]).argmax(axis=1)]


def adapt_batchnorm(model, x, mean, recipe, test_side):
    """Re-measure every BatchNorm's statistics on the other laboratory's training side
    (a seeded sample of :data:`ADAPTATION_IMAGES`, centre views as evaluation sees them)."""
    side = np.flatnonzero(~test_side)
    chosen = side[fair_sample(len(side), ADAPTATION_IMAGES, model.seed)]
    recalibrate_batchnorm(model, evaluation_view(x[chosen] - mean, recipe.input_size))


def test_models(run_dir, models, make_images, ratio, out, direction, settings, say):
    """Every seed of one run folder on the other dataset; the per-seed results and the pooled
    intervals, ``{split: interval}`` (with --adapt-batchnorm also the adapted readings)."""
    results, folder = [], out / direction / Path(run_dir).name
    images = None
    for model_path, model, recipe, labels, mean in models:
        if images is None:                                   # the same for every seed
            images, groups, test_side = make_images(recipe, ratio, settings)
            x = normalise_colour(images.x) if recipe.colour_norm == "image" else images.x
            # split name -> (which images, what is said of them)
            readings = {"transfer": (slice(None), "the other laboratory")}
            if settings.adapt_batchnorm:
                readings.update({
                    "test_side": (test_side, "the other laboratory's test side"),
                    "adapted": (slice(None), "the other laboratory, BatchNorm adapted to its "
                                             "training side"),
                    "adapted_test_side": (test_side, "the other laboratory's test side, "
                                                     "BatchNorm adapted to its training side")})
                if not test_side.any():           # a subset (--max-per-class) may hold none
                    say(f"\n{direction}: no image of the other laboratory's test side among "
                        f"these: its readings are left out")
                    del readings["test_side"], readings["adapted_test_side"]
        seed_folder = folder / model_path.parent.name
        seed_folder.mkdir(parents=True, exist_ok=True)
        bloodcell_model = isinstance(recipe, BloodCellSettings)
        names = BLOODCELL_NAMES if bloodcell_model else list(SHARED)
        unit = "images" if bloodcell_model else "estimated cells"
        entry = {"seed": model.seed, "run": str(run_dir),
                 "recipe": {"colour_jitter": recipe.colour_jitter,
                            "colour_norm": recipe.colour_norm}}
        predicted = None
        for split, (chosen, words) in readings.items():
            if split == "adapted":              # the readings before it share the predictions
                adapt_batchnorm(model, x, mean, recipe, test_side)    # the model in memory only
                predicted = None
            if predicted is None:
                predicted = predicted_classes(model, x, mean, recipe, labels)
            y = images.y[chosen]
            entry[split], text = reports.report_split(
                predicted[chosen], y, names, f"{direction}: {model_path} on {len(y)} images of "
                f"{words}", seed_folder, split, groups=groups[chosen], group_unit=unit,
                plot=plots_wanted(settings), seed=model.seed)
            say(f"\n--- {text}")
        results.append(entry)
    pooled = {split: reports.pooled_interval(folder, results, images.y[chosen], groups[chosen],
                                             split=split)
              for split, (chosen, _) in readings.items()}
    return results, pooled


def transfer(settings):
    """Both directions, every run folder; results.json and summary.txt in --out."""
    say = speaker(settings)
    directions = [("bloodcells_on_pbc", [(run_dir, saved_models(run_dir, BloodCellSettings))
                                         for run_dir in settings.bloodcells], pbc_as_bloodcells),
                  ("pbc_on_bloodcells", [(run_dir, saved_models(run_dir, PBCSettings))
                                         for run_dir in settings.pbc], bloodcells_as_pbc)]
    keep_out_of_data(settings, [bloodcells.locate(settings.bloodcells_data),
                                pbc.locate(settings.pbc_data)])
    with RunFolder(settings.out).locked() as run:         # every model checked: now the work
        ratio, facts = measure_scale(settings, say)
        document = {"scale": facts, "bloodcells_on_pbc": {}, "pbc_on_bloodcells": {}}
        lines = [f"PBC pixels per blood-cell pixel: {ratio:.3f} (lymphocytes of the training images)"]
        for direction, runs, make in directions:
            for run_dir, models in runs:
                results, pooled = test_models(run_dir, models, make, ratio, run.out,
                                              direction, settings, say)
                entry = document[direction][str(run_dir)] = {"seeds": results}
                for split, interval in pooled.items():
                    accuracies = [r[split]["accuracy"] for r in results]
                    prefix = "" if split == "transfer" else f"{split}_"
                    entry[f"{prefix}pooled_interval"] = interval
                    entry[f"{prefix}mean_accuracy"] = float(np.mean(accuracies))
                    lines.append(f"{direction} {run_dir}"
                                 + ("" if split == "transfer" else f" ({split.replace('_', ' ')})")
                                 + f": accuracy {np.mean(accuracies):.3f} over {len(results)} "
                                 f"seed(s) ({', '.join(f'{a:.3f}' for a in accuracies)})"
                                 + (f", {reports.interval_text(interval, 'units')}"
                                    if interval else ""))
        run.write_json(run.out / "results.json", document)
        run.write_text(run.out / "summary.txt", "\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))
    return 0


def main(argv=None):
    """Parse the command line and run both directions; the exit status."""
    parser = argparse.ArgumentParser(prog="transfer.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bloodcells", metavar="RUN", nargs="*", default=[],
                        help="run folders of examples/bloodcells.py (each with seed*/model.npz)")
    parser.add_argument("--pbc", metavar="RUN", nargs="*", default=[],
                        help="run folders of examples/pbc.py trained on the four shared classes")
    parser.add_argument("--bloodcells-data", metavar="DIR", default=None)
    parser.add_argument("--pbc-data", metavar="DIR", default=None)
    parser.add_argument("--out", metavar="DIR", default="runs/transfer")
    parser.add_argument("--cache-dir", metavar="DIR", default=None)
    parser.add_argument("--max-per-class", metavar="K", type=positive_int, default=None,
                        help="at most K images per class (quick runs, tests)")
    parser.add_argument("--every", metavar="K", type=positive_int, default=1,
                        help="measure the scale on every K-th training lymphocyte")
    parser.add_argument("--adapt-batchnorm", action="store_true",
                        help="also read the other laboratory with each BatchNorm's statistics "
                             f"re-measured on {ADAPTATION_IMAGES} of its training-side images "
                             "(labels unused): adaptation, reported beside leave-one-out")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--no-plots", action="store_true")
    settings = parser.parse_args(argv)
    return guarded(transfer, settings, stopped=COMMAND_STOPPED)


if __name__ == "__main__":
    numcnn.keep_freed_memory()
    sys.exit(run_command(main))
