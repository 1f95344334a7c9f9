"""cellstudy.bloodcells.labels_csv: the raw labels of the blood-cell archive's original smears."""
import re
from collections import Counter

import pytest

from numcnn.datasets import bloodcells

from cellstudy.bloodcells.labels_csv import LabelsFileError, read_original_labels

CLASSES = bloodcells.CLASSES


def test_original_labels_on_the_real_file(bloodcells_dir):
    path = bloodcells.labels_csv_path(bloodcells_dir)
    labels = read_original_labels(path)

    # The same counts by another route: raw bytes, CRLF split, a regex per line.
    lines = path.read_bytes().decode().split("\r\n")[1:]
    expected_counts, expected_unknown, multi, empty = Counter(), Counter(), 0, 0
    for line in filter(None, lines):
        category = re.fullmatch(r",\d+,(.*)", line).group(1)
        names = set(re.findall(r"[A-Z]+", category))
        if not names:
            empty += 1
        elif len(names) > 1:
            multi += 1
        elif names <= set(CLASSES):
            expected_counts[names.pop()] += 1
        else:
            expected_unknown[names.pop()] += 1
    assert labels.counts == expected_counts
    assert labels.unknown == expected_unknown
    assert labels.n_multi_label == multi
    assert labels.empty == empty
    assert labels.bad_lines == []
    assert labels.n_rows == len(list(filter(None, lines)))
    assert "BASOPHIL" in labels.unknown and "NEUTROPHIL" in labels.summary()


def test_original_labels_on_a_messy_file(tmp_path):
    rows = [",Image,Category",
            ",0,NEUTROPHIL",
            ",1,",
            ',2,"EOSINOPHIL, EOSINOPHIL"',
            ',3,"NEUTROPHIL,LYMPHOCYTE"',
            ',4,"NEUTROPHIL, LYMPHOCYTE"',
            ",5,BASOPHIL",
            ",6",                                   # too few columns
            "",
            ",8,MONOCYTE,extra",                    # too many columns
            ",9, eosinophil "]
    path = tmp_path / "labels.csv"
    path.write_bytes("\r\n".join(rows).encode())    # CRLF, no newline at the end
    with pytest.warns(UserWarning, match=r"labels\.csv.*line\(s\) 8, 10"):
        labels = read_original_labels(path)
    assert labels.counts == Counter({"NEUTROPHIL": 1, "EOSINOPHIL": 2})
    assert labels.unknown == Counter({"BASOPHIL": 1})
    assert labels.multi_label == Counter({"NEUTROPHIL, LYMPHOCYTE": 2})
    assert labels.empty == 1
    assert [number for number, _ in labels.bad_lines] == [8, 10]
    assert labels.n_rows == 7
    assert "unreadable" in labels.summary()


@pytest.mark.parametrize("content, message", [
    (b"\x89PNG\r\n\x1a\n\xff\xfe", "not UTF-8"),
    (b",Image,Category\r\n,0,\x00\x01\r\n", "binary data"),
    (b"", "header row with a 'Category' column"),
    (b",Image,Label\r\n,0,NEUTROPHIL\r\n", "header row with a 'Category' column"),
])
def test_a_file_that_cannot_be_read_at_all_is_a_labels_file_error(tmp_path, content, message):
    path = tmp_path / "labels.csv"
    path.write_bytes(content)
    with pytest.raises(LabelsFileError, match=message):
        read_original_labels(path)
