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
"""
import argparse
import sys
from pathlib import Path

if __name__ == "__main__":      # Ctrl-C from here on: one line, status 130
    from cellstudy.shared.command import start_command
    start_command()

import numcnn                   # before numpy: numcnn sets how OpenBLAS's threads wait
import numpy as np
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
from cellstudy.shared.evaluation import normalise_colour, predict_probabilities
from cellstudy.shared.prediction import load_saved_model
from cellstudy.shared.runs import RunFolder, keep_out_of_data, plots_wanted, speaker
from cellstudy.shared.settings import SettingsError

SHARED = ("eosinophil", "lymphocyte", "monocyte", "neutrophil")   # PBC's names, label order
BLOODCELL_NAMES = bloodcells.CLASSES                              # the same four, same order


def measure_scale(settings, say):
    """PBC pixels per blood-cell pixel: the ratio of the two datasets' lymphocyte diameters."""
    bc_lymphocytes = sorted((bloodcells.split_dir("TRAIN", settings.bloodcells_data)
                             / "LYMPHOCYTE").glob("*.jpeg"))
    pbc_train = pbc.load_data("train", settings.pbc_data, classes=["lymphocyte"],
                              cache_dir=settings.cache_dir, progress=False)
    return scale.scale_between(bc_lymphocytes[::settings.every], pbc_train.paths[::settings.every],
                               say)


def pbc_as_bloodcells(recipe, ratio, settings):
    """All PBC images of the four classes, made as a blood-cell model's training images were."""
    window = ScaledToWindow(1 / ratio, recipe.crop)          # PBC pixels -> blood-cell pixels
    images = load_image_folder(pbc.locate(settings.pbc_data) / "images", SHARED,
                               transform=window, factor=recipe.factor, allow_extra=True,
                               max_per_class=settings.max_per_class, cache=True,
                               cache_dir=settings.cache_dir, progress=not settings.quiet)
    return images, np.arange(len(images))                    # one image per cell


def bloodcells_as_pbc(recipe, ratio, settings):
    """All the blood-cell archive's images, TRAIN and TEST, made as a PBC model's were."""
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
    images = parts[0]
    images.x = np.concatenate([part.x for part in parts])
    images.y = np.concatenate([part.y for part in parts])
    images.paths = parts[0].paths + parts[1].paths
    return images, np.concatenate(groups)


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


def test_models(run_dir, models, make_images, ratio, out, direction, settings, say):
    """Every seed of one run folder on the other dataset; the per-seed results and the pooled interval."""
    results, folder = [], out / direction / Path(run_dir).name
    images = None
    for model_path, model, recipe, labels, mean in models:
        if images is None:                                   # the same for every seed
            images, groups = make_images(recipe, ratio, settings)
            x = normalise_colour(images.x) if recipe.colour_norm == "image" else images.x
        seed_folder = folder / model_path.parent.name
        seed_folder.mkdir(parents=True, exist_ok=True)
        predicted = labels[np.concatenate([predict_probabilities(model, x[i:i + 1024] - mean,
                                                                 recipe.tta, recipe.input_size)
                                           for i in range(0, len(x), 1024)]).argmax(axis=1)]
        bloodcell_model = isinstance(recipe, BloodCellSettings)
        names = BLOODCELL_NAMES if bloodcell_model else list(SHARED)
        unit = "images" if bloodcell_model else "estimated cells"
        result, text = reports.report_split(
            predicted, images.y, names, f"{direction}: {model_path} on {len(images.y)} images of "
            f"the other laboratory", seed_folder, "transfer", groups=groups, group_unit=unit,
            plot=plots_wanted(settings), seed=model.seed)
        say(f"\n--- {text}")
        results.append({"seed": model.seed, "run": str(run_dir), "transfer": result,
                        "recipe": {"colour_jitter": recipe.colour_jitter,
                                   "colour_norm": recipe.colour_norm}})
    pooled = reports.pooled_interval(folder, results, images.y, groups, split="transfer")
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
                accuracies = [r["transfer"]["accuracy"] for r in results]
                document[direction][str(run_dir)] = {"seeds": results, "pooled_interval": pooled,
                                                     "mean_accuracy": float(np.mean(accuracies))}
                lines.append(f"{direction} {run_dir}: accuracy {np.mean(accuracies):.3f} over "
                             f"{len(results)} seed(s) ({', '.join(f'{a:.3f}' for a in accuracies)})"
                             + (f", {reports.interval_text(pooled, 'units')}" if pooled else ""))
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
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--no-plots", action="store_true")
    settings = parser.parse_args(argv)
    return guarded(transfer, settings, stopped=COMMAND_STOPPED)


if __name__ == "__main__":
    numcnn.keep_freed_memory()
    sys.exit(run_command(main))
