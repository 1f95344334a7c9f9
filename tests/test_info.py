"""``python -m numcnn info``: what numcnn sees of the machine, for a bug report."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import numcnn
from numcnn import info

REPO_ROOT = Path(__file__).resolve().parent.parent


def numcnn_command(*args, **env):
    return subprocess.run([sys.executable, "-m", "numcnn", *args], capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT), **env))


@pytest.mark.subprocess
def test_info_prints_versions_processor_route_cache_and_datasets(tmp_path):
    run = numcnn_command("info", NUMCNN_CACHE=str(tmp_path / "cache"))
    assert run.returncode == 0, run.stderr
    text = run.stdout
    import numba
    import numpy as np
    assert text.startswith(f"numcnn {numcnn.__version__} on Python ")
    assert f"numba {numba.__version__}" in text and f"numpy {np.__version__}" in text
    assert f"route: {numcnn.route()} (asked: auto)" in text
    assert f"cache folder: {tmp_path / 'cache'}" in text
    for name in ("bloodcells", "pbc"):
        assert f"dataset {name}: " in text
    assert "BLAS: " in text and "processor: " in text


@pytest.mark.subprocess
def test_info_says_which_route_was_forced_and_what_numba_compiles_for():
    run = numcnn_command("info", NUMCNN_ROUTE="portable", NUMBA_CPU_NAME="generic")
    assert run.returncode == 0, run.stderr
    assert "route: portable (asked: portable)" in run.stdout
    assert "compiles for generic: none (not " in run.stdout
    assert "settings: " in run.stdout and "NUMBA_CPU_NAME=generic" in run.stdout


@pytest.mark.subprocess
def test_info_without_its_word_prints_the_usage_and_exits_2():
    run = numcnn_command()
    assert run.returncode == 2 and "usage: python -m numcnn info" in run.stderr
    assert numcnn_command("--help").returncode == 0


def test_machine_info_is_the_record_the_examples_write():
    record = info.machine_info()
    for key in ("platform", "processor", "machine", "python", "cpu_count", "cpus_usable",
                "numpy", "numba", "numcnn", "numcnn_backend", "environment", "route", "blas"):
        assert key in record
    assert record["route"] == numcnn.route() and record["numcnn"] == numcnn.__version__
