"""What every test folder shares (tests/, examples/tests/, benchmarks/), each once.

Before any test module is imported:

- the checkout comes first on ``sys.path``: its ``numcnn`` is the one tested,
  installed or not, and ``examples/`` holds ``cellstudy``, the studies' package,
  as ``python examples/bloodcells.py`` finds it beside the script; ``PYTHONPATH``
  starts with the checkout too, so that a script a test starts as a user would
  (``python examples/bloodcells.py ...``) runs this numcnn, not one installed elsewhere;
- ``numcnn`` is imported before numpy, as the scripts do, so that its OpenBLAS
  setting (``OPENBLAS_THREAD_TIMEOUT``) holds in the tests as in a user's run.

Fixtures:

- ``rng``: a fresh ``numpy.random.Generator`` seeded with 0.
- ``backend``: runs a test once on the NumPy reference kernels, then once on the
  numba kernels (the value is the backend's name); skipped where one is missing.
- ``torch``: PyTorch as an optional oracle, limited to two threads and seeded; the
  test is skipped when it cannot be imported (not installed, or broken).
- ``private_cache`` (every test): ``NUMCNN_CACHE`` is ``tmp_path / "default-cache"``
  (returned; made by the first write), so nothing is written to the user's cache
  and no test reads another's decoded images.
- ``bloodcells_dir``: the real blood-cell archive, ``NUMCNN_BLOODCELLS`` or else
  ``<repo>/../shared/blood-cells``, as :func:`numcnn.datasets.bloodcells.locate`
  returns it; the test is skipped when it is not there.
- ``sample_jpegs``: two real JPEGs per class of the archive's TEST_SIMPLE, as
  ``{class: [Path, Path]}``.
- ``make_split``: ``make_split(root, jpegs, classes=CLASSES, split="TRAIN")`` copies
  ``jpegs[class]`` into ``root/images/<split>/<class>/``; returns the split's folder.
- ``pbc_dir``: the prepared PBC copy (``images/`` and ``splits.csv``), ``NUMCNN_PBC``
  or else ``<repo>/../shared/pbc``; the test is skipped when it is not there.

The float32 comparison the tests share is a function: :func:`numcnn.testing.assert_close32`.
"""
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "examples"))   # cellstudy
sys.path.insert(0, str(Path(__file__).resolve().parent))                # this numcnn, first

import numcnn  # before numpy: see above
import numpy as np
from numcnn.datasets import bloodcells, pbc
from numcnn.errors import DataNotFoundError

REPO_ROOT = Path(__file__).resolve().parent
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                          os.environ.get("PYTHONPATH")]))


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
def torch():
    try:
        import torch
    except ImportError as error:      # not installed, or broken: skip, as bloodnet.maybe_torch does
        pytest.skip(f"PyTorch is not available ({error})")
    torch.set_num_threads(2)
    torch.manual_seed(0)
    return torch


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Nothing is written to the user's cache: the default cache is a folder of this test's."""
    folder = tmp_path / "default-cache"
    monkeypatch.setenv("NUMCNN_CACHE", str(folder))
    return folder


@pytest.fixture(scope="session")
def bloodcells_dir():
    """The real archive: $NUMCNN_BLOODCELLS, else <repo>/../shared/blood-cells."""
    place = Path(os.environ.get(bloodcells.DATA_ENV_VAR)
                 or REPO_ROOT.parent / "shared" / "blood-cells")
    try:
        return bloodcells.locate(place)
    except DataNotFoundError:
        pytest.skip(f"blood-cell archive not found at {place} "
                    f"(set {bloodcells.DATA_ENV_VAR} to the unpacked Kaggle archive)")


@pytest.fixture(scope="session")
def sample_jpegs(bloodcells_dir):
    """Two real JPEG paths per class (from TEST_SIMPLE), as {class: [Path, Path]}."""
    folder = bloodcells.split_dir("TEST_SIMPLE", bloodcells_dir)
    return {name: sorted((folder / name).glob("*.jpeg"))[:2] for name in bloodcells.CLASSES}


def _make_split(root, jpegs, classes=bloodcells.CLASSES, split="TRAIN"):
    """Build root/images/<split>/<class>/ with copies of ``jpegs[class]``; the split's folder."""
    folder = root / "images" / split
    for name in classes:
        (folder / name).mkdir(parents=True)
        for path in jpegs[name]:
            shutil.copy(path, folder / name / path.name)
    return folder


@pytest.fixture
def make_split():
    """``make_split(root, jpegs, classes=CLASSES, split="TRAIN")``: a split folder of real JPEGs."""
    return _make_split


@pytest.fixture(scope="session")
def pbc_dir():
    """The prepared PBC copy: $NUMCNN_PBC, else <repo>/../shared/pbc."""
    place = Path(os.environ.get(pbc.DATA_ENV_VAR) or REPO_ROOT.parent / "shared" / "pbc")
    if not ((place / "images").is_dir() and (place / "splits.csv").is_file()):
        pytest.skip(f"prepared PBC copy not found at {place} (set {pbc.DATA_ENV_VAR} to a "
                    f"folder holding images/ and splits.csv)")
    return place
