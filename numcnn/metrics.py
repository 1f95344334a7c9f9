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

    Returns
    -------
    dict
        ``{"accuracy": a, "classes": {name: {"precision", "recall", "f1", "support"}},
        "macro": {...}, "weighted": {...}, "worst_recall": (name, value)}``
    """
    labels = list(range(len(class_names)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    classes = {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                      "support": int(s[i])} for i, name in enumerate(class_names)}
    report = {"accuracy": accuracy(y_true, y_pred), "classes": classes}
    for average in ("macro", "weighted"):
        pa, ra, fa, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels,
                                                        average=average, zero_division=0)
        report[average] = {"precision": float(pa), "recall": float(ra), "f1": float(fa)}
    worst = min(class_names, key=lambda name: classes[name]["recall"])
    report["worst_recall"] = (worst, classes[worst]["recall"])
    return report


def text_report(y_true, y_pred, class_names, digits=3):
    """scikit-learn's printed classification report, as the study showed it."""
    return classification_report(y_true, y_pred, labels=list(range(len(class_names))),
                                 target_names=list(class_names), digits=digits, zero_division=0)


def confusion(y_true, y_pred, num_classes):
    """Confusion matrix ``C[i, j]``: samples of true class i predicted as j."""
    return confusion_matrix(y_true, y_pred, labels=list(range(num_classes)))
