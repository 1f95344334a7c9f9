"""Make the students' and the teachers' notebooks of the course from its one source.

Each lesson is one file, ``docs/course/NN-name.md``, in jupytext's MyST Markdown.
Inside its code cells, the answers to the exercises sit between two marker
lines::

    def dense_forward(x, W, b):
        # BEGIN SOLUTION
        return x @ W + b
        # END SOLUTION

The teacher's version keeps the answer and drops the markers; the student's
version replaces everything between the markers (markers included) with::

        # your code here
        raise NotImplementedError

at the same indentation. Run from the repository root:

    python docs/course/versions.py              both versions of every lesson
    python docs/course/versions.py 03 05        lessons 03 and 05 only
    python docs/course/versions.py --out DIR    elsewhere (default docs/course/_build)

It writes ``DIR/student/NN-name.ipynb`` and ``DIR/teacher/NN-name.ipynb``
(unexecuted; ``docs/course/run_lessons.py`` executes them). The folder is
git-ignored: the Markdown is the only source.
"""
import argparse
import re
import sys
from pathlib import Path

COURSE = Path(__file__).resolve().parent
BUILD = COURSE / "_build"
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
STUB = ("# your code here", "raise NotImplementedError")
_LESSON_NAME = re.compile(r"^\d\d-[a-z0-9-]+\.md$")


def lessons(selected=()):
    """The lessons' source files, in order; ``selected`` narrows them by number or name."""
    found = sorted(path for path in COURSE.glob("*.md") if _LESSON_NAME.match(path.name))
    if selected:
        found = [path for path in found
                 if any(path.stem == s or path.stem.startswith(f"{s}-") for s in selected)]
        if not found:
            raise SystemExit(f"no lesson matches {' '.join(selected)}")
    return found


def teacher(text):
    """The teacher's text: the answers kept, the marker lines dropped."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if line.strip() not in (BEGIN, END))


def student(text):
    """The student's text: each answer replaced by a ``# your code here`` stub."""
    out, inside = [], False
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise ValueError(f"line {number}: {BEGIN} inside another solution")
            inside = True
            indent = line[:len(line) - len(line.lstrip())]
            out.extend(f"{indent}{stub}\n" for stub in STUB)
        elif marker == END:
            if not inside:
                raise ValueError(f"line {number}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN} never closed")
    return "".join(out)


def notebook(path, version):
    """The lesson at ``path`` as an nbformat notebook, ``version`` "teacher" or "student"."""
    import jupytext
    text = Path(path).read_text(encoding="utf-8")
    try:
        text = {"teacher": teacher, "student": student}[version](text)
    except ValueError as error:
        raise ValueError(f"{Path(path).name}: {error}") from None
    nb = jupytext.reads(text, fmt="md:myst")
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python",
                                 "name": "python3"}
    nb.metadata["numcnn_course"] = {"lesson": Path(path).stem, "version": version}
    return nb


def write(path, version, out=BUILD):
    """Write one version of one lesson as ``out/version/NN-name.ipynb``; return its path."""
    import nbformat
    target = Path(out) / version / (Path(path).stem + ".ipynb")
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook(path, version), target)
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lessons", nargs="*", help="lesson numbers or names (default: all)")
    parser.add_argument("--out", default=str(BUILD), help=f"output folder (default {BUILD})")
    args = parser.parse_args(argv)
    for path in lessons(args.lessons):
        for version in ("student", "teacher"):
            print(write(path, version, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
