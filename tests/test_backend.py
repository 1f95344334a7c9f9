"""The one switch between kernel backends, and the fallback without numba."""
import builtins
import sys

import numpy as np
import pytest

import numcnn
from numcnn import backend, routes
from numcnn.kernels import reference


def test_set_backend_switches_the_kernels_and_use_backend_restores():
    with numcnn.use_backend("numpy"):
        assert numcnn.get_backend() == "numpy"
        assert backend.kernels() is reference
        with numcnn.use_backend("numba"):
            assert numcnn.get_backend() == "numba"
            assert backend.kernels().__name__ == "numcnn.kernels.jit"
        assert numcnn.get_backend() == "numpy"


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        numcnn.set_backend("cuda")


def test_without_numba_a_warning_and_the_numpy_kernels(monkeypatch):
    real_import = builtins.__import__

    def no_numba(name, *args, **kwargs):
        if name == "numba" or name.startswith("numba."):
            raise ImportError("No module named 'numba' (simulated)")
        return real_import(name, *args, **kwargs)

    previous = numcnn.get_backend()
    monkeypatch.setattr(routes, "_state", dict(routes._state))   # the route found without numba
    for name in [name for name in sys.modules if name.startswith("numcnn.kernels.jit")]:
        monkeypatch.delitem(sys.modules, name)                 # the package and its rooms
    monkeypatch.delattr(numcnn.kernels, "jit", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_numba)
    try:
        with pytest.warns(RuntimeWarning, match="numba backend unavailable"):
            assert numcnn.set_backend("numba") == "numpy"
        assert backend.kernels() is reference
        # and a model still trains on the reference kernels
        from numcnn.layers import Conv2D, Dense, Flatten, ReLU
        model = numcnn.Sequential([Conv2D(1, 2, 3), ReLU(), Flatten(), Dense(2 * 4 * 4, 2)], seed=0)
        model.compile(numcnn.optim.SGD(0.1), numcnn.losses.SoftmaxCrossEntropy())
        x = np.random.default_rng(0).standard_normal((8, 1, 6, 6)).astype(np.float32)
        history = model.fit(x, np.arange(8) % 2, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
    finally:
        monkeypatch.undo()  # numba importable again, numcnn.kernels.jit back in place
        numcnn.set_backend(previous)


@pytest.mark.subprocess
def test_import_sets_a_short_openblas_spin_unless_the_user_chose(tmp_path):
    """OpenBLAS threads spinning after a GEMM slow the next numba loop down 2x;
    numcnn asks for a short spin before numpy loads OpenBLAS, and keeps a user's value."""
    import os
    import subprocess
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    probe = "import os, numcnn; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    env["PYTHONPATH"] = str(root)
    run = lambda e: subprocess.run([sys.executable, "-c", probe], env=e, cwd=tmp_path,  # noqa: E731
                                   capture_output=True, text=True, check=True).stdout.strip()
    assert run(env) == "4"
    assert run(dict(env, OPENBLAS_THREAD_TIMEOUT="8")) == "8"


@pytest.mark.subprocess
def test_keep_freed_memory_reports_whether_it_took_effect():
    """In a fresh process (it changes malloc for the whole process): True on glibc.

    Only the promise of the return value is checked (and that arrays still work
    afterwards); the speed it buys is measured in docs/performance.md, not here.
    """
    import platform
    import subprocess
    import sys
    code = ("import numpy as np, numcnn; kept = numcnn.keep_freed_memory(); "
            "a = np.ones(50_000_000 // 4, np.float32); del a; "
            "b = np.ones(50_000_000 // 4, np.float32); print(kept, float(b.sum()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[1] == str(float(50_000_000 // 4))            # arrays still work afterwards
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert out[0] == "True"
    else:
        assert out[0] in ("True", "False")
