"""numcnn: a convolutional-network library in NumPy, with numba-jitted hot paths.

>>> import numcnn
>>> from numcnn.layers import Conv2D, BatchNorm2D, ReLU, MaxPool2D, Flatten, Dense
>>> model = numcnn.Sequential([Conv2D(3, 8, 3, padding=1), BatchNorm2D(8), ReLU(),
...                            MaxPool2D(2), Flatten(), Dense(8 * 16 * 16, 4)], seed=0)
>>> model.compile(numcnn.optim.AdamW(1e-3), numcnn.losses.SoftmaxCrossEntropy())  # doctest: +ELLIPSIS
<numcnn.model.Sequential object at ...>
"""
import os
import sys

if "numpy" not in sys.modules:
    # OpenBLAS threads spin after each matrix multiply and steal the cores from the
    # numba loop that follows (im2col after a GEMM: 15 ms instead of 7.5 on two
    # cores). A short spin removes that; it must be set before numpy loads
    # OpenBLAS, and a value the user chose is kept. See docs/performance.md.
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

__version__ = "0.3.0"
"""numcnn's version (setup.cfg reads it from here)."""

from . import callbacks, errors, explain, init, layers, losses, metrics, optim  # noqa: E402
from .allocator import keep_freed_memory  # noqa: E402
from .backend import get_backend, set_backend, use_backend  # noqa: E402
from .finite_differences import gradcheck, gradcheck_loss, numerical_gradient  # noqa: E402
from .model import Sequential  # noqa: E402
from .routes import route, set_route  # noqa: E402
from .saving import load_model as load  # noqa: E402
from .saving import load_weights, save_weights  # noqa: E402

__all__ = ["Sequential", "load", "save_weights", "load_weights", "layers", "losses", "optim",
           "callbacks", "init", "explain", "metrics", "errors",
           "gradcheck", "gradcheck_loss", "numerical_gradient", "set_backend", "get_backend",
           "use_backend", "route", "set_route", "keep_freed_memory", "__version__"]
