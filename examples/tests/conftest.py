"""Fixtures of the examples' tests (examples/conftest.py puts ``cellstudy`` on sys.path).

- ``rng``: a fresh ``numpy.random.Generator`` seeded with 0.
- ``bloodcells_dir``: the real blood-cell archive (``NUMCNN_BLOODCELLS`` or
  ``<repo root>/../shared/blood-cells``), as ``numcnn.datasets.bloodcells.locate``
  returns it; the test is skipped when it is absent.
- every test runs with ``NUMCNN_CACHE`` set to a temporary folder, so that
  nothing is written to ``~/.cache``.
"""
import os
from pathlib import Path

import numpy as np
import pytest

from numcnn.datasets import bloodcells

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("default-cache")
        patch.setenv("NUMCNN_CACHE", str(folder))
        yield folder


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def bloodcells_dir():
    place = Path(os.environ.get(bloodcells.DATA_ENV_VAR)
                 or REPO_ROOT.parent / "shared" / "blood-cells")
    try:
        return bloodcells.locate(place)
    except FileNotFoundError:
        pytest.skip(f"blood-cell archive not found at {place} "
                    f"(set {bloodcells.DATA_ENV_VAR} to run these tests)")
