"""What the docs name exists: every file of the repository they mention, and every flag
they pass to one of the project's scripts.

A page that says ``python benchmarks/compare.py --skip-epoch`` or points at
``numcnn/kernels/jit/conv3x3.py`` is held to it: the file must exist, and the
script's ``--help`` must list the flag. (Relative links are checked by
``tests/test_docs.py``.)
"""
import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PAGES = [REPO_ROOT / "README.md", REPO_ROOT / "CHANGELOG.md",
         *sorted((REPO_ROOT / "docs").rglob("*.md")), *sorted((REPO_ROOT / "benchmarks").glob("*.md"))]
PAGES = [page for page in PAGES if not {"_site", "_build"} & set(page.parts)]  # made by runs
#: A path inside the repository, as the docs write it (in code spans, blocks or text).
REPO_PATH = re.compile(r"(?<![\w/.-])((?:numcnn|examples|benchmarks|tests|docs|\.ci)/[\w./-]*[\w])")
#: ``python <script>.py <arguments>`` up to the end of the line or of a code span.
COMMAND = re.compile(r"python3? ((?:examples|benchmarks|tests|docs)/[\w/]+\.py)([^`\n]*)")
FLAG = re.compile(r"(?<![\w-])(--[a-z][\w-]*)")
#: Historical reports quote the code of their day: not held to today's files.
HISTORY = ("docs/benchmarks/", "CHANGELOG.md")


def page_name(page):
    return page.relative_to(REPO_ROOT).as_posix()


def mentions(pattern):
    for page in PAGES:
        if page_name(page).startswith(HISTORY):
            continue
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
            for match in pattern.finditer(line):
                yield f"{page_name(page)}:{number}", match


#: Folders the runs make, never committed (CI's environments, the API pages, the site).
MADE = (".ci/venv", ".ci/api", ".ci/cache", ".ci/arm64", ".ci/floors-venv", "docs/_site",
        "docs/_build", "docs/course/_build")


def test_every_file_the_docs_name_exists():
    missing = []
    for where, match in mentions(REPO_PATH):
        path = match.group(1).rstrip(".")
        if path.startswith(MADE) or any(part in path for part in ("*", "<", "NN-")):
            continue                                   # made by a run, globs, placeholders
        page = REPO_ROOT / where.split(":")[0]
        if not ((REPO_ROOT / path).exists() or (page.parent / path).exists()):
            missing.append(f"{where}: {path}")         # from the root, or beside the page
    assert not missing, "the docs name files that do not exist:\n" + "\n".join(missing)


@functools.lru_cache(maxsize=None)
def help_text(script):
    done = subprocess.run([sys.executable, str(REPO_ROOT / script), "--help"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.subprocess
def test_every_flag_the_docs_pass_to_a_script_is_in_its_help():
    wrong = []
    for where, match in mentions(COMMAND):
        script, arguments = match.groups()
        flags = FLAG.findall(arguments.split("#")[0])   # a shell comment is not an argument
        if not flags or not (REPO_ROOT / script).exists():
            continue                                   # the test above names missing scripts
        status, text = help_text(script)
        if status != 0:
            wrong.append(f"{where}: `python {script} --help` exits {status}")
            continue
        wrong += [f"{where}: {script} has no {flag}" for flag in flags if flag not in text]
    assert not wrong, "the docs pass flags the scripts do not take:\n" + "\n".join(wrong)
