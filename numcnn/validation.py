"""One place that checks the arguments of every public entry point.

Each check raises at once, before any work, with a message of one form:
``"<where>: <name> must be <what is expected>; got <what was received>"``.
The kernels never check anything: the layers, the model and the loaders call
these first.

>>> positive_int(0, "batch_size", "fit")
Traceback (most recent call last):
...
ValueError: fit: batch_size must be a positive integer; got 0
"""
import math
import numbers

import numpy as np

__all__ = ["positive_int", "non_negative_int", "positive_float", "non_negative_float",
           "fraction", "one_of", "image_batch", "class_labels", "pair_of_arrays",
           "sample_shape"]


def _is_integer(value):
    """True for Python and NumPy integers (not bool, not 2.0)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(value, name, where):
    """``value`` as an int if it is an integer >= 1, else ValueError (TypeError for non-numbers)."""
    if not _is_integer(value) or value < 1:
        _fail(value, name, where, "a positive integer")
    return int(value)


def non_negative_int(value, name, where):
    """``value`` as an int if it is an integer >= 0."""
    if not _is_integer(value) or value < 0:
        _fail(value, name, where, "an integer >= 0")
    return int(value)


def _real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def positive_float(value, name, where):
    """``value`` as a float if it is finite and > 0 (a learning rate, an epsilon)."""
    if not _real(value) or not math.isfinite(value) or not value > 0:
        _fail(value, name, where, "a finite number > 0")
    return float(value)


def non_negative_float(value, name, where):
    """``value`` as a float if it is finite and >= 0 (a weight decay)."""
    if not _real(value) or not math.isfinite(value) or not value >= 0:
        _fail(value, name, where, "a finite number >= 0")
    return float(value)


def fraction(value, name, where, low=0.0, high=1.0, include_high=False):
    """``value`` as a float in ``[low, high)`` (or ``[low, high]``)."""
    ok = _real(value) and math.isfinite(value) and low <= value and (
        value <= high if include_high else value < high)
    if not ok:
        _fail(value, name, where, f"a number in [{low:g}, {high:g}{']' if include_high else ')'}")
    return float(value)


def one_of(value, name, where, choices):
    """``value`` if it is one of ``choices``, else ValueError (a wrong value, whatever its type)."""
    if value not in choices:
        raise ValueError(f"{where}: {name} must be one of {list(choices)}; got {value!r}")
    return value


def sample_shape(value, name, where, rank=None):
    """A shape of positive integers, e.g. ``(3, 64, 64)``, as a tuple of ints."""
    try:
        shape = tuple(value)
    except TypeError:
        shape = None
    if shape is None or not shape or not all(_is_integer(s) and s >= 1 for s in shape) \
            or (rank is not None and len(shape) != rank):
        what = "a tuple of positive integers" + (f" of length {rank}" if rank else "")
        _fail(value, name, where, what)
    return tuple(int(s) for s in shape)


def image_batch(x, name, where):
    """A non-empty floating-point NumPy array with finite values, returned as float32.

    The layout (NCHW for images) is checked by the layers that receive it.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{where}: {name} must be a NumPy array; got {type(x).__name__}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{where}: {name} must be a float array (float32 images in NCHW "
                        f"layout); got dtype {x.dtype} (convert with x.astype(np.float32) / 255)")
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"{where}: {name} must hold at least one sample, with a batch axis "
                         f"first; got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).reshape(len(x), -1).any(axis=1).sum())
        raise ValueError(f"{where}: {name} must hold finite values; got NaN or infinite values "
                         f"in {bad} of {len(x)} samples")
    if x.dtype != np.float32:
        with np.errstate(over="ignore"):
            x = x.astype(np.float32)                 # float64 beyond 3.4e38 becomes infinite
        if not np.isfinite(x).all():
            bad = int((~np.isfinite(x)).reshape(len(x), -1).any(axis=1).sum())
            raise ValueError(f"{where}: {name} must hold values that float32 can hold (at most "
                             f"3.4e38 in size); got larger values in {bad} of {len(x)} samples")
    return x


def class_labels(labels, n, num_classes, where):
    """Raise unless ``labels`` are ``n`` integer class indices in ``[0, num_classes)``."""
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"{where}: expected a NumPy integer array of shape ({n},); "
                        f"got {type(labels).__name__}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{where}: expected integer class indices of shape ({n},); "
                        f"got dtype {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(f"{where}: expected shape ({n},) (one class index per sample); "
                         f"got {labels.shape}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise ValueError(f"{where}: class indices must lie in [0, {num_classes}); got {bad}")
    return labels


def pair_of_arrays(value, name, where):
    """``(x, y)``: a tuple or list of exactly two arrays."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        got = (f"a {type(value).__name__} of length {len(value)}"
               if isinstance(value, (tuple, list)) else type(value).__name__)
        raise ValueError(f"{where}: {name} must be a pair (x, y) of arrays; got {got}")
    return value


def _fail(value, name, where, expected):
    error = ValueError if isinstance(value, (numbers.Number, np.generic)) else TypeError
    raise error(f"{where}: {name} must be {expected}; got {value!r}")
