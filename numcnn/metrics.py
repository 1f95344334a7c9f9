"""Accuracy and per-class reports (scikit-learn does the counting)."""
import numpy as np
from sklearn.metrics import classification_report, confusion_matrix, precision_recall_fscore_support


def accuracy(y_true, y_pred):
    """Fraction of samples whose predicted class equals the true class."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"accuracy: y_true has shape {y_true.shape}, y_pred {y_pred.shape}")
    return float((y_true == y_pred).mean()) if y_true.size else float("nan")


def class_report(y_true, y_pred, class_names):
    """Per-class precision, recall, F1 and support, plus accuracy, as a dict.

    A class with no sample in ``y_true`` has no recall (nothing to find) and
    no meaningful F1: its entry says so (``None``, and how often it was
    predicted), it is listed under ``"no_samples"``, and it is left out of
    the macro and weighted averages and of the worst recall, which are then
    over the classes that have samples.

    Returns
    -------
    dict
        ``{"accuracy": a, "classes": {name: {"precision", "recall", "f1", "support"}},
        "macro": {...}, "weighted": {...}, "worst_recall": (name, value),
        "no_samples": [names]}``; ``worst_recall`` is ``(None, None)`` when no
        class has a sample.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = list(range(len(class_names)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    present = [i for i in labels if s[i] > 0]
    classes = {}
    for i, name in enumerate(class_names):
        if s[i] > 0:
            classes[name] = {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                             "support": int(s[i])}
        else:
            classes[name] = {"precision": None, "recall": None, "f1": None, "support": 0,
                             "predicted": int(np.sum(y_pred == i))}
    report = {"accuracy": accuracy(y_true, y_pred), "classes": classes,
              "no_samples": [class_names[i] for i in labels if s[i] == 0]}
    for average in ("macro", "weighted"):
        if present:
            pa, ra, fa, _ = precision_recall_fscore_support(y_true, y_pred, labels=present,
                                                            average=average, zero_division=0)
            report[average] = {"precision": float(pa), "recall": float(ra), "f1": float(fa)}
        else:
            report[average] = {"precision": None, "recall": None, "f1": None}
    named = [class_names[i] for i in present]
    worst = min(named, key=lambda name: classes[name]["recall"]) if named else None
    report["worst_recall"] = (worst, classes[worst]["recall"] if worst else None)
    return report


def text_report(y_true, y_pred, class_names, digits=3):
    """scikit-learn's printed classification report, as the study showed it.

    A class with no sample in ``y_true`` gets a row saying so instead of
    numbers, and the averages are over the other classes (their row says how
    many); with every class present the report is scikit-learn's own.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = list(range(len(class_names)))
    support = np.bincount(y_true.astype(np.int64), minlength=len(class_names)) if y_true.size \
        else np.zeros(len(class_names), np.int64)
    present = [i for i in labels if support[i] > 0]
    if len(present) == len(labels):
        return classification_report(y_true, y_pred, labels=labels,
                                     target_names=list(class_names), digits=digits,
                                     zero_division=0)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    averages = f"avg of {len(present)}"
    width = max(len(name) for name in [*class_names, f"weighted {averages}"])
    row = ("{:>{width}s} " + " {:>9.{digits}f}" * 3 + " {:>9}\n").format
    lines = [("{:>{width}s} " + " {:>9}" * 4).format("", "precision", "recall", "f1-score",
                                                      "support", width=width) + "\n\n"]
    for i, name in enumerate(class_names):
        if support[i]:
            lines.append(row(name, p[i], r[i], f[i], int(s[i]), width=width, digits=digits))
        else:
            lines.append(f"{name:>{width}s}   no samples (predicted {int(np.sum(y_pred == i))} "
                         f"times; left out of the averages)\n")
    lines.append("\n")
    lines.append(("{:>{width}s} " + " {:>9}" * 2 + " {:>9.{digits}f} {:>9}\n").format(
        "accuracy", "", "", accuracy(y_true, y_pred), int(y_true.size), width=width,
        digits=digits))
    for average in ("macro", "weighted"):
        if present:
            pa, ra, fa, _ = precision_recall_fscore_support(y_true, y_pred, labels=present,
                                                            average=average, zero_division=0)
            lines.append(row(f"{average} {averages}", pa, ra, fa, int(y_true.size), width=width,
                             digits=digits))
    return "".join(lines)


def confusion(y_true, y_pred, num_classes):
    """Confusion matrix ``C[i, j]``: samples of true class i predicted as j."""
    return confusion_matrix(y_true, y_pred, labels=list(range(num_classes)))


_RESAMPLES_AT_ONCE = 1000


def accuracy_interval_over_groups(correct, groups, strata=None, confidence=0.95,
                                  n_resamples=10000, seed=0):
    """Accuracy and a bootstrap interval when the samples come in correlated groups.

    When a test set holds several samples of one underlying unit (augmented
    copies of one original image, several images of one patient or one
    object), a model tends to get a unit's samples all right or all wrong, and
    the accuracy's uncertainty is that of the units, not of the samples.
    Whole groups are then resampled (a cluster bootstrap): each resample
    draws, with replacement and within each stratum (e.g. class), as many
    groups as the stratum has, and its accuracy is

        sum of correct samples over the drawn groups / sum of their samples.

    The interval is the (1 - confidence) / 2 and (1 + confidence) / 2
    percentiles of the resampled accuracies. It is approximate: with few
    groups in a stratum the percentile bootstrap runs somewhat narrow, and a
    stratum whose groups are all right or all wrong adds no width at all.
    With one sample per group it is the ordinary stratified bootstrap over
    samples (:func:`accuracy_interval`).

    Parameters
    ----------
    correct : array_like of bool, shape (N,) or (S, N)
        Whether each sample was classified correctly; a 2-D array holds S
        models (seeds) on the same samples, and then the interval is that of
        their mean accuracy.
    groups : array_like, shape (N,)
        Group id of each sample (the unit the samples come from).
    strata : array_like, shape (N,), optional
        Stratum (class) of each sample; a group must lie in one stratum.
        Default: one stratum.
    confidence : float
        Coverage of the interval, in (0, 1).
    n_resamples : int
        Bootstrap resamples.
    seed : int
        Seed of the resampling.

    Returns
    -------
    dict
        ``{"accuracy": a, "low": lo, "high": hi, "groups": number of groups,
        "confidence": confidence}``.
    """
    correct = np.atleast_2d(np.asarray(correct, dtype=bool))
    groups = np.asarray(groups)
    strata = np.zeros(len(groups), np.int64) if strata is None else np.asarray(strata)
    if correct.shape[1] != len(groups) or len(strata) != len(groups):
        raise ValueError(f"accuracy_interval_over_groups: correct has {correct.shape[1]} "
                         f"samples, groups {len(groups)}, strata {len(strata)}")
    if len(groups) == 0:
        raise ValueError("accuracy_interval_over_groups: no samples")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if int(n_resamples) != n_resamples or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    ids, group_of = np.unique(groups, return_inverse=True)
    right = np.bincount(group_of, weights=correct.sum(axis=0), minlength=len(ids))   # (G,)
    seen = np.bincount(group_of, minlength=len(ids)) * float(correct.shape[0])        # (G,)
    stratum_codes = np.unique(strata, return_inverse=True)[1]
    if len(np.unique(np.stack([group_of, stratum_codes], axis=1), axis=0)) != len(ids):
        raise ValueError("accuracy_interval_over_groups: a group spans several strata")
    stratum_of_group = np.empty(len(ids), np.int64)
    stratum_of_group[group_of] = stratum_codes

    rng = np.random.default_rng(seed)
    strata_groups = [np.flatnonzero(stratum_of_group == stratum)                    # (G_s,)
                     for stratum in np.unique(stratum_of_group)]
    resampled = np.empty(n_resamples)                                               # (R,)
    for start in range(0, n_resamples, _RESAMPLES_AT_ONCE):    # bounded memory: (chunk, G_s)
        count = min(_RESAMPLES_AT_ONCE, n_resamples - start)
        right_sum, seen_sum = np.zeros(count), np.zeros(count)
        for members in strata_groups:
            drawn = members[rng.integers(0, len(members), size=(count, len(members)))]
            right_sum += right[drawn].sum(axis=1)
            seen_sum += seen[drawn].sum(axis=1)
        resampled[start:start + count] = right_sum / seen_sum
    tail = (1 - confidence) / 2
    low, high = np.quantile(resampled, [tail, 1 - tail])
    return {"accuracy": float(right.sum() / seen.sum()), "low": float(low), "high": float(high),
            "groups": int(len(ids)), "confidence": float(confidence)}


def accuracy_interval(correct, strata=None, confidence=0.95, n_resamples=10000, seed=0):
    """Accuracy and a bootstrap interval over independent samples (one sample per group).

    :func:`accuracy_interval_over_groups` with every sample its own group;
    ``strata`` (e.g. the true classes) keep their sizes in every resample.
    """
    correct = np.asarray(correct, dtype=bool)
    return accuracy_interval_over_groups(correct, np.arange(correct.shape[-1]), strata=strata,
                                         confidence=confidence, n_resamples=n_resamples,
                                         seed=seed)
