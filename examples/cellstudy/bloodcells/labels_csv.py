"""``labels.csv`` of the blood-cell archive: the raw labels of the original smears.

The study printed these counts before the balanced, augmented ones. The file
is messy as published, and it only feeds a printed table, so
:func:`read_original_labels` copes with what it can and says what it could
not read; a file that cannot be read at all raises :class:`LabelsFileError`,
which the example turns into a warning.
"""

from __future__ import annotations

import csv
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Tuple

from numcnn.datasets.bloodcells import CLASSES

__all__ = ["OriginalLabels", "LabelsFileError", "read_original_labels"]


class LabelsFileError(ValueError):
    """labels.csv cannot be read at all (not text, empty, no Category column)."""


@dataclass
class OriginalLabels:
    """What ``labels.csv`` says about the original smear images.

    Attributes
    ----------
    counts : Counter
        Rows naming one of :data:`CLASSES`, per class. A class written twice
        ("EOSINOPHIL, EOSINOPHIL": two cells of one kind) counts once, for it.
    unknown : Counter
        Rows naming one class outside :data:`CLASSES` (e.g. BASOPHIL).
    multi_label : Counter
        Rows naming two or more different classes, keyed by the names joined
        with ", " in the order written, e.g. "NEUTROPHIL, LYMPHOCYTE".
    empty : int
        Rows with an empty category.
    bad_lines : list of (int, str)
        Line numbers (1-based, the header is line 1) that could not be read,
        with the reason; they are counted nowhere else.
    """

    counts: Counter = field(default_factory=Counter)
    unknown: Counter = field(default_factory=Counter)
    multi_label: Counter = field(default_factory=Counter)
    empty: int = 0
    bad_lines: List[Tuple[int, str]] = field(default_factory=list)

    @property
    def n_multi_label(self) -> int:
        """Number of rows with two or more different classes."""
        return sum(self.multi_label.values())

    @property
    def n_rows(self) -> int:
        """Number of rows read (every readable row falls in exactly one group)."""
        return (sum(self.counts.values()) + sum(self.unknown.values())
                + self.n_multi_label + self.empty)

    def summary(self) -> str:
        """The label counts as a small text table, largest class first."""
        lines = [f"{name:<12}{count:>6}" for name, count in self.counts.most_common()]
        lines += [f"{name:<12}{count:>6}  (not one of the four classes)"
                  for name, count in self.unknown.most_common()]
        lines.append(f"{'multi-label':<12}{self.n_multi_label:>6}  ({dict(self.multi_label)})")
        lines.append(f"{'empty':<12}{self.empty:>6}")
        if self.bad_lines:
            lines.append(f"{'unreadable':<12}{len(self.bad_lines):>6}")
        lines.append(f"{'rows':<12}{self.n_rows:>6}")
        return "\n".join(lines)


def _class_names(category: str) -> List[str]:
    """'NEUTROPHIL,EOSINOPHIL ' -> ['NEUTROPHIL', 'EOSINOPHIL']: split, strip, drop repeats."""
    names = []
    for name in category.split(","):
        name = name.strip().upper()
        if name and name not in names:
            names.append(name)
    return names


def read_original_labels(path) -> OriginalLabels:
    """Parse ``labels.csv`` and count its categories.

    The file, as published, has CRLF line ends, a header ``,Image,Category``
    (the first column is an unnamed, empty index), empty categories,
    multi-labels (``"EOSINOPHIL, EOSINOPHIL"``, ``"NEUTROPHIL,LYMPHOCYTE"``,
    spaces or not) and a few BASOPHIL rows.

    Parameters
    ----------
    path : str or Path
        The CSV file (:func:`numcnn.datasets.bloodcells.labels_csv_path`).

    Returns
    -------
    OriginalLabels
        Counts per class, unknown classes, multi-label rows, empty rows and
        unreadable lines. ``print(labels.summary())`` shows them as a table.

    Warns
    -----
    UserWarning
        Once, naming the file and the line numbers of rows that have the
        wrong number of columns; those rows are skipped and listed in
        ``bad_lines``.
    """
    path = Path(path)
    result = OriginalLabels()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise LabelsFileError(f"{path} is not UTF-8 text ({error})") from None
    if "\0" in text:
        raise LabelsFileError(f"{path} holds binary data, not a CSV table")
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None or "category" not in [name.strip().lower() for name in header]:
        raise LabelsFileError(f"{path}: expected a header row with a 'Category' column, "
                              f"got {header}")
    category_column = [name.strip().lower() for name in header].index("category")
    for row in reader:
        if not row:                                   # a blank line is not a row
            continue
        if len(row) != len(header):
            result.bad_lines.append(
                (reader.line_num, f"{len(row)} columns, expected {len(header)}: {row}"))
            continue
        _count_category(result, row[category_column])
    if result.bad_lines:
        numbers = ", ".join(str(number) for number, _ in result.bad_lines)
        warnings.warn(f"{path}: skipped {len(result.bad_lines)} unreadable row(s) with the wrong "
                      f"number of columns, at line(s) {numbers}", stacklevel=2)
    return result


def _count_category(result: OriginalLabels, category: str) -> None:
    """Add one row's category to the right counter of ``result``."""
    names = _class_names(category)
    if not names:
        result.empty += 1
    elif len(names) > 1:
        result.multi_label[", ".join(names)] += 1
    elif names[0] in CLASSES:
        result.counts[names[0]] += 1
    else:
        result.unknown[names[0]] += 1
