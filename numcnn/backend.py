"""One switch that picks the kernel backend for every layer of every model.

>>> import numcnn
>>> numcnn.set_backend("numpy")      # the readable reference kernels
>>> with numcnn.use_backend("numba"):  # the jitted kernels, for a block
...     pass

The default is ``"numba"``. Where numba cannot be imported, a warning says so
once and the NumPy kernels are used instead. The environment variable
``NUMCNN_BACKEND`` sets the starting backend.
"""
import contextlib
import os
import warnings

from .kernels import reference

BACKENDS = ("numba", "numpy")

_state = {"name": None, "module": None}


def _load(name):
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {BACKENDS}")
    if name == "numpy":
        return reference
    try:
        from .kernels import jit
    except Exception as error:  # numba missing or broken: keep working, say so
        warnings.warn(f"numcnn: numba backend unavailable ({error}); "
                      "using the NumPy reference kernels", RuntimeWarning, stacklevel=3)
        return None
    return jit


def set_backend(name):
    """Select ``"numba"`` or ``"numpy"`` kernels for all layers.

    Returns the name of the backend actually in use (``"numpy"`` when numba
    was asked for but cannot be imported).
    """
    module = _load(name)
    if module is None:
        name, module = "numpy", reference
    _state["name"], _state["module"] = name, module
    return name


def get_backend():
    """Name of the backend in use: ``"numba"`` or ``"numpy"``."""
    if _state["module"] is None:
        set_backend(os.environ.get("NUMCNN_BACKEND", "numba"))
    return _state["name"]


def kernels():
    """The active kernel module (:mod:`numcnn.kernels.jit` or :mod:`numcnn.kernels.reference`)."""
    if _state["module"] is None:
        get_backend()
    return _state["module"]


@contextlib.contextmanager
def use_backend(name):
    """Context manager: run a block on one backend, then restore the previous one."""
    previous = get_backend()
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)
