"""The scripts' preamble: OpenBLAS's thread setting comes from one place, numcnn.

numcnn/__init__.py sets ``OPENBLAS_THREAD_TIMEOUT`` when numpy is not loaded yet
(a value the user set is kept; tests/test_backend.py holds it to that). A script
that imported numpy first would run without it, so every script imports numcnn
(or bloodnet, which does) before numpy instead of setting it itself. Here each
script's module code (its preamble and imports, not its ``main``) runs in a
fresh Python whose environment lacks the variable, as ``python <script>`` would
start it, and must end with the value ``import numcnn`` gives. (The workers of
benchmarks/interleaved.py report theirs: benchmarks/test_interleaved.py.)
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ["examples/bloodcells.py", "examples/pbc.py", "examples/transfer.py",
           "examples/twolabs.py", "examples/digits.py", "benchmarks/bloodnet.py",
           "benchmarks/lock_cost.py", "benchmarks/augment_cost.py", "benchmarks/step_time.py"]
#: Python that sets the variable: environ's setdefault, or an assignment to environ[...].
SETS_IT = re.compile(r"environ(?:\.setdefault\(|\[)\s*[\"']OPENBLAS_THREAD_TIMEOUT[\"']")
#: Runs a script's module code as `python <script>` would, but not its main; prints the setting.
PREAMBLE = """
import os, runpy, sys
script = sys.argv[1]
sys.path.insert(0, os.path.dirname(script))       # as `python <script>` puts its folder first
runpy.run_path(script, run_name="preamble")       # not "__main__": imports only
print(os.environ.get("OPENBLAS_THREAD_TIMEOUT"))
"""


def without_the_setting():
    return {name: value for name, value in os.environ.items()
            if name != "OPENBLAS_THREAD_TIMEOUT"}


@pytest.fixture(scope="module")
def numcnn_sets():
    """What ``import numcnn`` before numpy leaves in a fresh environment."""
    done = subprocess.run([sys.executable, "-c", "import os, numcnn; "
                           "print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"],
                          env=without_the_setting(), cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300, check=True)
    value = done.stdout.strip()
    assert value not in ("", "None")
    return value


@pytest.mark.subprocess
@pytest.mark.parametrize("script", SCRIPTS)
def test_each_script_gets_openblas_setting_from_numcnn(script, numcnn_sets):
    done = subprocess.run([sys.executable, "-c", PREAMBLE, str(REPO_ROOT / script)],
                          env=without_the_setting(), cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == numcnn_sets, \
        f"{script} imports numpy before numcnn: OpenBLAS runs without numcnn's setting"


def test_only_numcnn_sets_it():
    setting = [path.relative_to(REPO_ROOT).as_posix()
               for folder in ("numcnn", "examples", "benchmarks", "tests", "docs")
               for path in sorted((REPO_ROOT / folder).rglob("*.py"))
               if SETS_IT.search(path.read_text(encoding="utf-8"))]
    assert setting == ["numcnn/__init__.py"]
