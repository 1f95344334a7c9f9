"""Checks for code that must compute what other code computes: a kernel and its twin,
a layer and PyTorch's.

Two float32 computations of one value differ by round-off that grows with the
size of the values: a fixed absolute tolerance is too strict for large outputs
and too loose for small ones. :func:`assert_close32` measures the absolute
tolerance against the largest value expected. numcnn's own tests hold every
numba kernel to its NumPy reference, and every layer to PyTorch, this way;
a kernel or layer of your own can be held to them alike:

>>> import numpy as np
>>> from numcnn.testing import assert_close32
>>> x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
>>> assert_close32(np.maximum(x, 0), np.where(x > 0, x, 0), "relu")
"""
import numpy as np

__all__ = ["assert_close32", "load_script"]


def assert_close32(actual, expected, what="", rtol=1e-4, atol_scale=1e-5):
    """Assert float32 agreement, the absolute tolerance measured against the size of the values.

    Parameters
    ----------
    actual, expected : array_like
        The same shape; compared in float64.
    what : str
        Named in the message when they differ (e.g. ``"dW vs PyTorch"``).
    rtol : float
        Relative tolerance, per element.
    atol_scale : float
        The absolute tolerance is ``atol_scale * max(|expected|)``.

    Raises
    ------
    AssertionError
        The shapes differ, or some element is outside
        ``atol + rtol * |expected|``.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(float(np.abs(expected).max(initial=0.0)), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol_scale * scale,
                               err_msg=what)


def load_script(path, name):
    """A script file as a module named ``name``, its top level run, its ``__main__`` block not:
    how a test reaches a script's functions (``load_script("examples/pbc.py", "pbc_example")``)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
