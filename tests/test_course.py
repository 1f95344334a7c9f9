"""The course's sources are well formed (fast: nothing here runs a lesson).

``python docs/course/run_lessons.py`` runs the lessons (CI's step of its own);
this checks what can be checked without running them: the students' and
teachers' versions come out of the one source as they should, every lesson
has an exercise whose check comes after its stub, asserts something, and
every exercise of ``numcnn.exercises`` is taught somewhere.
"""
import re
from pathlib import Path

import pytest

from numcnn.testing import load_script

from numcnn import exercises

COURSE = Path(__file__).resolve().parent.parent / "docs" / "course"


def load(name):
    return load_script(COURSE / f"{name}.py", f"course_{name}")


versions = load("versions")
LESSONS = versions.lessons()

SOURCE = '''def f(x):
    """Doc."""
    # BEGIN SOLUTION
    y = x + 1
    return y
    # END SOLUTION


check("f", f)
'''


def test_teacher_keeps_the_answer_without_markers():
    text = versions.teacher(SOURCE)
    assert "return y" in text and "SOLUTION" not in text


def test_student_gets_a_stub_at_the_same_indentation():
    text = versions.student(SOURCE)
    assert "    # your code here\n    raise NotImplementedError\n" in text
    assert "return y" not in text and "SOLUTION" not in text
    namespace = {}
    exec(text.replace('check("f", f)', ""), namespace)  # noqa: S102 - our own snippet
    with pytest.raises(NotImplementedError):
        namespace["f"](1)


@pytest.mark.parametrize("broken", ["# BEGIN SOLUTION\nx\n", "x\n# END SOLUTION\n",
                                    "# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION\n"])
def test_unbalanced_markers_are_refused(broken):
    with pytest.raises(ValueError):
        versions.student(broken)


def test_there_are_at_least_nine_lessons_numbered_in_order():
    numbers = [int(path.name[:2]) for path in LESSONS]
    assert len(LESSONS) >= 9 and numbers == list(range(1, len(LESSONS) + 1))


@pytest.mark.parametrize("path", LESSONS, ids=[path.stem for path in LESSONS])
def test_lesson_has_a_stubbed_exercise_checked_and_an_assertion(path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\njupytext:"), "a lesson is jupytext MyST Markdown"
    student = versions.student(text)
    first_stub = student.find("# your code here")
    first_check = re.search(r"\bcheck\(\"(\w+)\"", student)
    assert first_stub >= 0, "no exercise: nothing between BEGIN/END SOLUTION"
    assert first_check and first_check.start() > first_stub, "the first check precedes any stub"
    assert first_check.group(1) in exercises.EXERCISES
    assert re.search(r"^assert ", versions.teacher(text), re.M), "the lesson asserts nothing"


@pytest.mark.parametrize("path", LESSONS, ids=[path.stem for path in LESSONS])
def test_lesson_reads_as_a_notebook(path):
    pytest.importorskip("jupytext")                 # in the docs extra
    for version in ("student", "teacher"):
        nb = versions.notebook(path, version)
        assert sum(cell.cell_type == "code" for cell in nb.cells) >= 3
        assert nb.metadata["kernelspec"]["name"] == "python3"


def test_every_exercise_is_taught():
    taught = set()
    for path in LESSONS:
        taught.update(re.findall(r"\bcheck\(\"(\w+)\"", path.read_text(encoding="utf-8")))
    assert taught == set(exercises.EXERCISES), set(exercises.EXERCISES) ^ taught
