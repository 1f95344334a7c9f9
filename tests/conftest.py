"""Shared fixtures for the numcnn tests.

- ``rng``: a fresh ``numpy.random.Generator`` seeded with 0.
- ``backend``: runs a test once on the NumPy reference kernels and once on the
  numba kernels (the value is the backend's name).
- ``bloodcells_dir``: the folder of the real blood-cell dataset, from
  ``NUMCNN_BLOODCELLS`` or ``<repo root>/../shared/blood-cells``, checked by
  :func:`numcnn.datasets.bloodcells.locate` (any layout it accepts); the test is
  skipped when it is absent.
- ``torch``: PyTorch as an optional oracle (skipped when not installed), limited
  to two threads and seeded.
"""
import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # test the checkout even when numcnn is not installed
    sys.path.insert(0, str(REPO_ROOT))

import numcnn  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(params=["numpy", "numba"])
def backend(request):
    with numcnn.use_backend(request.param):
        if numcnn.get_backend() != request.param:
            pytest.skip(f"backend {request.param!r} is not available here")
        yield request.param


@pytest.fixture
def bloodcells_dir():
    from numcnn.datasets import bloodcells
    from numcnn.errors import DataNotFoundError
    configured = os.environ.get("NUMCNN_BLOODCELLS")
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "blood-cells"
    try:
        return bloodcells.locate(path)
    except DataNotFoundError:
        pytest.skip(f"blood-cell dataset not found at {path} "
                    "(set NUMCNN_BLOODCELLS to the unpacked Kaggle archive)")


@pytest.fixture
def torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(2)
    torch.manual_seed(0)
    return torch
