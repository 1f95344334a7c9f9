"""Run the course: every lesson's teacher version top to bottom, every student version to its first check.

    python docs/course/run_lessons.py            all lessons
    python docs/course/run_lessons.py 01 04      lessons 01 and 04 only

For each lesson (``docs/course/NN-name.md``):

1. the **teacher's** notebook runs top to bottom in a fresh Python kernel, in
   an empty working folder; a cell that raises fails the lesson (each lesson
   asserts numbers it states), and so does a lesson slower than
   ``--limit`` seconds (default 300: five minutes on two cores);
2. the **student's** notebook runs cell by cell up to its first exercise
   check (a cell that calls ``check(``): it must print ``FAIL <name>``, since
   the student's function is still a stub. A checker that cannot fail is
   caught here.

It prints one line per lesson with both times, and writes the executed
teacher notebooks to ``docs/course/_build/executed/`` (git-ignored), where
``docs/build_site.py`` takes them for the site. A lesson whose dataset is not
found is skipped with a note saying which one and how to point numcnn at it,
except in CI (``CI`` set), where that is a failure. Exit status: 0 when every
lesson passed (or was skipped outside CI), 1 otherwise.
"""
import argparse
import hashlib
import os
import re
import sys
import tempfile
import time
from pathlib import Path

COURSE = Path(__file__).resolve().parent
REPO = COURSE.parent.parent
sys.path.insert(0, str(COURSE))
sys.path.insert(0, str(REPO))

import versions  # noqa: E402

EXECUTED = versions.BUILD / "executed"
#: What a lesson's source says about the data it needs: (pattern, dataset, variable).
DATASETS = [(re.compile(r"\bbloodcells\.(load_data|locate)\("), "bloodcells", "NUMCNN_BLOODCELLS"),
            (re.compile(r"\bpbc\.(load_data|locate)\("), "pbc", "NUMCNN_PBC")]
CHECK_CALL = re.compile(r"\bcheck\(")


def source_hash(path):
    """A digest of a lesson's source (and of this folder's scripts): is an executed copy current?"""
    digest = hashlib.sha256(Path(path).read_bytes())
    for script in ("versions.py", "run_lessons.py"):
        digest.update((COURSE / script).read_bytes())
    return digest.hexdigest()[:16]


def missing_data(path):
    """``[(dataset, variable)]`` a lesson needs and that is not found here."""
    from numcnn.datasets import bloodcells, pbc
    from numcnn.errors import DataNotFoundError
    loaders = {"bloodcells": bloodcells, "pbc": pbc}
    text = Path(path).read_text(encoding="utf-8")
    missing = []
    for pattern, name, variable in DATASETS:
        if pattern.search(text):
            try:
                loaders[name].locate()
            except DataNotFoundError:
                missing.append((name, variable))
    return missing


#: Run in each kernel before the lesson: tqdm.auto (which numcnn.data imports) warns in a
#: notebook without ipywidgets; the lessons draw no progress bar, so the warning is noise.
KERNEL_SETUP = ("import warnings; "
                "warnings.filterwarnings('ignore', message='IProgress not found')")


def _client(nb, workdir, timeout):
    from nbclient import NotebookClient
    return NotebookClient(nb, timeout=timeout, kernel_name="python3",
                          extra_arguments=[f"--IPKernelApp.exec_lines={KERNEL_SETUP!r}"],
                          resources={"metadata": {"path": str(workdir)}})


def run_teacher(path, timeout=600):
    """Execute the teacher's notebook; return (executed notebook, seconds)."""
    nb = versions.notebook(path, "teacher")
    with tempfile.TemporaryDirectory(prefix="numcnn-lesson-") as workdir:
        began = time.perf_counter()
        _client(nb, workdir, timeout).execute()
        seconds = time.perf_counter() - began
    nb.metadata["numcnn_course"].update(seconds=round(seconds, 1), source=source_hash(path))
    failures = [line for cell in nb.cells if cell.cell_type == "code"
                for line in _printed(cell).splitlines() if line.startswith("FAIL ")]
    assert not failures, f"a solution fails its check: {failures[0]}"
    return nb, seconds


def _printed(cell):
    return "".join(output.get("text", "") for output in cell.get("outputs", [])
                   if output.get("output_type") == "stream")


def run_student(path, timeout=600):
    """Run the student's notebook up to its first check; return (check's line, seconds).

    Raises AssertionError if there is no check, or if it does not print FAIL.
    """
    nb = versions.notebook(path, "student")
    with tempfile.TemporaryDirectory(prefix="numcnn-student-") as workdir:
        client = _client(nb, workdir, timeout)
        began = time.perf_counter()
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                client.execute_cell(cell, index)
                if CHECK_CALL.search(cell.source):
                    lines = [line for line in _printed(cell).splitlines()
                             if line.startswith(("PASS ", "FAIL "))]
                    assert lines, f"the first check printed no verdict: {_printed(cell)!r}"
                    assert lines[0].startswith("FAIL "), \
                        f"a stub passed its check (a checker that cannot fail): {lines[0]}"
                    return lines[0], time.perf_counter() - began
    raise AssertionError("the student's version has no exercise check")


def _last_words(error):
    """The line of a lesson that failed and the error's own last line, without colours."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    failing = [line for line in lines if line.startswith("---->")]
    return " | ".join(([failing[-1]] if failing else []) + lines[-1:])


def save(nb, path):
    import nbformat
    EXECUTED.mkdir(parents=True, exist_ok=True)
    target = EXECUTED / (Path(path).stem + ".ipynb")
    nbformat.write(nb, target)
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lessons", nargs="*", help="lesson numbers or names (default: all)")
    parser.add_argument("--limit", type=float, default=300,
                        help="seconds a teacher's version may take (default 300)")
    parser.add_argument("--teacher-only", action="store_true", help="skip the students' runs")
    args = parser.parse_args(argv)
    in_ci = bool(os.environ.get("CI"))
    # The lessons' kernels import numcnn from this checkout, whatever else is installed.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    failed, skipped, began = [], [], time.perf_counter()
    print(f"{'lesson':<28}{'teacher s':>10}{'student s':>10}  first check of the student's version")
    for path in versions.lessons(args.lessons):
        name = path.stem
        missing = missing_data(path)
        if missing:
            note = ", ".join(f"{data} (set {variable})" for data, variable in missing)
            if in_ci:
                print(f"{name:<28}  FAILED: its data is missing in CI: {note}")
                failed.append(name)
            else:
                print(f"{name:<28}  skipped: needs {note}; `python -m numcnn info` "
                      "says where numcnn looks")
                skipped.append(name)
            continue
        try:
            nb, seconds = run_teacher(path, timeout=max(args.limit * 2, 600))
            save(nb, path)
            if seconds > args.limit:
                raise AssertionError(f"the teacher's version took {seconds:.0f} s, "
                                     f"more than {args.limit:.0f}")
            line, student_seconds = ("(not run)", 0.0) if args.teacher_only \
                else run_student(path)
        except Exception as error:  # noqa: BLE001 - report every lesson, then fail
            print(f"{name:<28}  FAILED: {type(error).__name__}: {_last_words(error)}")
            failed.append(name)
            continue
        print(f"{name:<28}{seconds:>10.1f}{student_seconds:>10.1f}  {line[:70]}", flush=True)
    total = time.perf_counter() - began
    passed = len(versions.lessons(args.lessons)) - len(failed) - len(skipped)
    print(f"the lessons took {total / 60:.1f} minutes"
          + (f"; failed: {', '.join(failed)}" if failed else "")
          + (f"; skipped: {', '.join(skipped)}" if skipped else ""))
    print(f"{passed} passed, {len(failed)} failed" + (f", {len(skipped)} skipped" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
