"""Reports: one split's classification report and confusion matrix; results over seeds.

Per seed and split: the predicted classes (``predicted_<split>.npy``), the
scikit-learn report and confusion matrix (``report_<split>.txt``, and
``confusion_<split>.png``), the accuracy with a 95% interval where the
samples' groups are known. Over seeds: ``results.json`` (per seed, mean and
standard deviation, the recipe, the machine) and ``summary.txt``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from numcnn import info as numcnn_info
from numcnn import metrics
from numcnn.files import write_atomically

__all__ = ["write_text", "SPLIT_FILES", "split_file", "report_split", "interval_text",
           "pooled_interval", "count_table", "format_confusion", "aggregate", "sample_std",
           "machine_info", "StudyRecord", "results_document", "summary_text", "protocol_text",
           "data_info", "write_results"]

#: What a seed folder holds for each evaluated split (--skip-test removes TEST's).
SPLIT_FILES = {"report": "report_{split}.txt", "confusion": "confusion_{split}.png",
               "predicted": "predicted_{split}.npy"}


def write_text(path, text):
    """``text`` at ``path``, atomically, as UTF-8; the bytes of file names that are not
    UTF-8 (Linux allows any) are written as they are (``surrogateescape``), not refused."""
    data = text.encode("utf-8", "surrogateescape")
    return write_atomically(path, lambda handle: handle.write(data))


def split_file(folder, kind, split):
    """``folder / SPLIT_FILES[kind]`` for ``split`` (e.g. report_test.txt)."""
    return folder / SPLIT_FILES[kind].format(split=split)


def interval_text(interval, unit="estimated cells"):
    """'95% interval over 71 estimated cells: 0.829-0.943'."""
    return (f"95% interval over {interval['groups']} {unit}: "
            f"{interval['low']:.3f}-{interval['high']:.3f}")


def format_confusion(matrix, classes):
    """The confusion matrix as a text table, rows the true classes."""
    width = max(len(name) for name in classes) + 2
    lines = [" " * width + "".join(f"{name[:10]:>12}" for name in classes)]
    for name, row in zip(classes, matrix):
        lines.append(f"{name:<{width}}" + "".join(f"{count:>12}" for count in row))
    return "\n".join(lines)


def count_table(counts, classes):
    """Images per class and split: ``counts[split][class]`` as a text table with totals."""
    splits = list(counts)
    lines = [f"{'class':<12}" + "".join(f"{split:>13}" for split in splits)]
    for name in classes:
        lines.append(f"{name:<12}" + "".join(f"{counts[split][name]:>13}" for split in splits))
    lines.append(f"{'total':<12}" + "".join(f"{sum(counts[split].values()):>13}"
                                            for split in splits))
    return "\n".join(lines)


def report_split(predicted, y, classes, title, folder, split, groups=None,
                 group_unit="estimated cells", plot=False, seed=None):
    """Report one split: write its files, return its metrics for results.json.

    Parameters
    ----------
    predicted, y : ndarray (N,)
        Predicted and true classes.
    classes : list of str
    title : str
        First words of the report ("TEST set (...)").
    folder : Path
        The seed folder.
    split : str
        "train", "val" or "test".
    groups : ndarray (N,), optional
        The group (cell) of each image: the accuracy then gets a 95% interval
        over the groups (:func:`numcnn.metrics.accuracy_interval_over_groups`).
    plot : bool
        Draw ``confusion_<split>.png``.

    Returns
    -------
    (dict, str)
        The metrics and the report's text.
    """
    if split != "train":
        predicted_classes = predicted.astype(np.int8)
        write_atomically(split_file(folder, "predicted", split),
                         lambda handle: np.save(handle, predicted_classes))
    interval = (metrics.accuracy_interval_over_groups(predicted == y, groups, strata=y)
                if groups is not None else None)
    report = metrics.class_report(y, predicted, classes)
    matrix = metrics.confusion(y, predicted, len(classes))
    worst_class, worst_recall = report["worst_recall"]
    absent = report["no_samples"]            # a class with no image here: no recall to report
    text = (f"{title}: {len(y)} images, accuracy {report['accuracy']:.4f}"
            + (f" ({interval_text(interval, group_unit)})" if interval else "")
            + f", worst recall {worst_recall:.3f} ({worst_class})"
            + (f"; no images of {', '.join(absent)} (left out of the macro averages and the "
               f"worst recall)" if absent else "") + "\n\n"
            f"{metrics.text_report(y, predicted, classes)}\n"
            f"confusion matrix (rows: true class, columns: predicted)\n"
            f"{format_confusion(matrix, classes)}\n")
    write_text(split_file(folder, "report", split), text)
    if plot:
        from numcnn import plots
        plots.confusion_matrix(matrix, classes, path=split_file(folder, "confusion", split),
                               title=f"Confusion matrix, {split} (seed {seed})")
    result = {"accuracy": report["accuracy"],
              "balanced_accuracy": report["macro"]["recall"],     # mean recall over classes
              "precision": {c: v["precision"] for c, v in report["classes"].items()},
              "recall": {c: v["recall"] for c, v in report["classes"].items()},
              "f1": {c: v["f1"] for c, v in report["classes"].items()},
              "support": {c: v["support"] for c, v in report["classes"].items()},
              "macro_f1": report["macro"]["f1"],
              "worst_recall": worst_recall, "worst_recall_class": worst_class,
              "confusion": matrix.tolist()}
    if absent:
        result["no_images"] = absent
    if interval:
        result.update(accuracy_interval=[interval["low"], interval["high"]],
                      cells=interval["groups"])
    return result, text


def pooled_interval(out, results, y, groups, split="test"):
    """The 95% interval over ``groups`` of the mean accuracy of all seeds, or None."""
    if groups is None or not results or not all(split in r for r in results):
        return None
    correct = np.stack([np.load(split_file(out / f"seed{r['seed']}", "predicted", split)) == y
                        for r in results])                          # (seeds, N)
    return metrics.accuracy_interval_over_groups(correct, groups, strata=y)


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


def machine_info(freed_memory_kept=None):
    """What ``python -m numcnn info`` reports (:func:`numcnn.info.machine_info`), and
    whether freed memory was kept for reuse."""
    return dict(numcnn_info.machine_info(), keep_freed_memory=freed_memory_kept)


def protocol_text(skip_test):
    """How TEST was used, in the words of results.json and summary.txt."""
    return ("TEST not evaluated (--skip-test)" if skip_test
            else "TEST evaluated once after the last epoch")


@dataclass(frozen=True)
class StudyRecord:
    """What results.json and summary.txt say of a study besides its seeds' results.

    Attributes
    ----------
    title : str
        What the study is ("four-class white-blood-cell classification (...)");
        results.json's ``study`` adds how TEST was used.
    classes : list of str
        In label order.
    recipe : dict
        The settings, and in words what the code fixes.
    data : dict
        Where the data is and what it held (:func:`data_info`).
    test_y : ndarray (N,)
        TEST's labels: the interval over seeds.
    test_groups : ndarray (N,), optional
        TEST's group (original cell) of each image; None: no interval.
    unit : str
        What a group is, in the summary's words ("estimated cells", "images").
    freed_memory_kept : bool, optional
        What ``numcnn.keep_freed_memory()`` returned (None: not asked for).
    """

    title: str
    classes: list
    recipe: dict
    data: dict
    test_y: np.ndarray
    test_groups: Optional[np.ndarray] = None
    unit: str = "estimated cells"
    freed_memory_kept: Optional[bool] = None


def results_document(study, results, interval):
    """What results.json holds (its keys are kept from one version to the next).

    ``study`` is a :class:`StudyRecord`, ``results`` the seeds' metrics,
    ``interval`` TEST's interval over the seeds (:func:`pooled_interval`), or None.
    """
    return {
        "study": f"{study.title}, {protocol_text(study.recipe.get('skip_test'))}",
        "classes": list(study.classes),
        "recipe": study.recipe,
        "machine": machine_info(study.freed_memory_kept),
        "data": study.data,
        "seeds": {str(result["seed"]): result for result in results},
        "mean": aggregate(results, lambda v: float(np.mean(v))) if results else {},
        "std": aggregate(results, sample_std) if results else {},
        "test_interval_over_seeds": interval,
    }


def summary_text(results, document, diverged=(), unit="estimated cells"):
    """The closing summary: per seed, then mean +- std; worst recall next to accuracy.

    ``diverged`` names seeds whose training diverged: listed, and left out of the means.
    """
    classes = document["classes"]
    skipped = document["data"]["skipped_count"]
    lines = [f"Summary: {len(results)} seed(s)"
             + (f" trained, {len(diverged)} diverged" if diverged else "")
             + f", {document['recipe']['epochs']} epochs, "
             + protocol_text(document["recipe"].get("skip_test")),
             "images skipped as unreadable: "
             + ", ".join(f"{split.upper()} {count}" for split, count in skipped.items())]
    lines += _shared_files_lines(document["data"].get("files")) + [""]
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
    for seed, reason in diverged:
        lines.append(f"seed {seed}: TRAINING DIVERGED, no result ({reason})")
    if diverged:
        lines.append(f"the means below leave out the diverged seed(s) "
                     f"{', '.join(str(seed) for seed, _ in diverged)}")
    if len(results) > 1:
        mean, std = document["mean"], document["std"]
        has_test = all("test" in r for r in results)
        lines += ["", f"over {len(results)} seeds (mean +- std, std with ddof=1):"]
        if has_test:
            pooled = document.get("test_interval_over_seeds")
            lines += [f"  test accuracy      {mean['test']['accuracy']:.4f} +- "
                      f"{std['test']['accuracy']:.4f}"
                      + (f"   ({interval_text(pooled, unit)})" if pooled else ""),
                      f"  worst recall       {mean['test']['worst_recall']:.4f} +- "
                      f"{std['test']['worst_recall']:.4f}"]
        lines.append(f"  validation acc.    {mean['val']['accuracy']:.4f} +- {std['val']['accuracy']:.4f}")
        shown = "test" if has_test else "val"       # per-class F1: TEST, or validation without it
        lines.append(f"  {'test' if has_test else 'validation'} F1 per class:")
        for name in classes:
            if name not in mean[shown]["f1"]:       # no image of it in that split
                lines.append(f"    {name:<12} no images (left out of the means)")
                continue
            lines.append(f"    {name:<12} {mean[shown]['f1'][name]:.4f} +- "
                         f"{std[shown]['f1'][name]:.4f}   (recall {mean[shown]['recall'][name]:.4f} "
                         f"+- {std[shown]['recall'][name]:.4f})")
    return "\n".join(lines)


def _shared_files_lines(files):
    """Summary lines for files one split shares with another, or one class with another."""
    if not files:
        return []
    same = {pair: n for pair, n in files.get("same_files", {}).items() if n}
    sharing = {split: n for split, n in files.get("classes_sharing_files", {}).items() if n}
    lines = [f"{pair.split('_in_')[0].upper()} images that are {pair.split('_in_')[1].upper()} "
             f"images byte for byte: {n} (not held out)" for pair, n in same.items()]
    lines += [f"{split.upper()} images whose bytes appear under another class too: {n}"
              for split, n in sharing.items()]
    return lines


def data_info(data_dir, data, splits):
    """The ``data`` entry of results.json: where, how many images, which were skipped, and
    (``data["files"]``, :func:`cellstudy.shared.datacheck.check_data`) the data's identity and the
    files it shares between splits and classes."""
    info = {"data_dir": str(data_dir),
            "images": {split: len(data[split]) for split in splits},
            "skipped_count": {split: len(data[split].skipped) for split in splits},
            "skipped": {split: [str(path) for path, _ in data[split].skipped] for split in splits}}
    if "files" in data:
        info["files"] = data["files"]
    return info


def write_results(run, study, results):
    """Write results.json and summary.txt in the run folder; return the summary text.

    ``study`` is a :class:`StudyRecord`; ``results`` holds one dict per seed; a
    seed whose training diverged is ``{"seed": S, "diverged": reason}``: it is
    named in the summary (and under ``diverged_seeds`` in results.json) and
    left out of every mean.
    """
    done = [r for r in results if "diverged" not in r]
    diverged = [(r["seed"], r["diverged"]) for r in results if "diverged" in r]
    interval = pooled_interval(run.out, done, study.test_y, study.test_groups)
    document = results_document(study, done, interval)
    if diverged:
        document["diverged_seeds"] = {str(seed): reason for seed, reason in diverged}
    run.write_json(run.out / "results.json", document)
    summary = summary_text(done, document, diverged, study.unit)
    run.write_text(run.out / "summary.txt", summary + "\n")
    return summary
