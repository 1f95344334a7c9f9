"""A trained seed, evaluated: every split's report, the learning curves, the timings.

The training set is predicted with one view (it only shows how well the
network fits; 8 views of every training image would add minutes to a run),
validation and TEST as the settings say (one view, or the mean over the 8
symmetries). TEST is evaluated here, once, after the last epoch, unless
``--skip-test`` keeps it unseen; then the TEST files of an earlier run are
removed, so that none is mistaken for this run's.
"""

from __future__ import annotations

import time

import numpy as np

from . import reports
from .views import predict_probabilities

__all__ = ["evaluate_seed"]


def evaluate_seed(model, arrays, settings, classes, folder, titles, groups, began, say,
                  plot=False, unit="estimated cells"):
    """Report ``arrays[split] = (x, y)`` for train, val and test; return the seed's metrics.

    Parameters
    ----------
    model : Sequential
    arrays : dict
        ``{"train": (x, y), "val": (x, y), "test": (x, y)}``, the images as
        evaluation sees them before the centre crop (mean-subtracted).
    settings : Settings
        ``tta``, ``input_size``, ``square`` and ``skip_test`` are read.
    titles : dict
        ``{split: first words of its report}``.
    groups : dict
        ``{split: group of each image, or None}`` (the interval's units).
    began : float
        ``time.perf_counter()`` when the seed started.
    """
    result = {"seed": model.seed, "epochs": model.epoch}
    for split, (x, y) in arrays.items():
        if split == "test" and settings.skip_test:
            say("\n--- TEST not evaluated (--skip-test)")
            for kind in reports.SPLIT_FILES:          # from an earlier run that did evaluate TEST
                reports.split_file(folder, kind, "test").unlink(missing_ok=True)
            continue
        views = "none" if split == "train" else settings.tta
        predicted = predict_probabilities(model, x, views, settings.input_size,
                                          crop=settings.square).argmax(axis=1)
        title = titles[split] + (", mean over 8 symmetric views" if views == "symmetries" else "")
        result[split], text = reports.report_split(predicted, y, classes, title, folder, split,
                                                   groups=groups.get(split), group_unit=unit,
                                                   plot=plot, seed=model.seed)
        say(f"\n--- {text}")
    if plot and model.history.history:
        from numcnn import plots
        plots.learning_curves(model.history, path=folder / "learning_curves.png",
                              title=f"Learning curves, seed {model.seed}")
    seconds = model.history.history.get("seconds", [])
    result["seconds_per_epoch"] = float(np.mean(seconds)) if seconds else None
    result["train_seconds"] = float(np.sum(seconds))
    result["total_seconds"] = time.perf_counter() - began
    return result
