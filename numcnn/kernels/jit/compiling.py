"""How the numba kernels are compiled: options, threads, and a cache that notices edits.

Every kernel of :mod:`numcnn.kernels.jit` is compiled by :func:`kernel`,
with one of four sets of options:

- ``kernel()``: a serial loop, the GIL released (``nogil``);
- ``kernel(parallel=True)``: ``prange`` loops spread over the cores;
- ``kernel(parallel=True, reassociate=True)``: reductions that LLVM may
  reorder so that it can vectorise float64 sums (``fastmath`` ``reassoc``
  and ``contract``; NaN and infinity keep their meaning);
- ``kernel(reassociate=True)``: the same, serial (a multiply-add then becomes
  one fused instruction: one rounding instead of two).

The cache. Compiled kernels are kept on disk, so that the second run starts
without compiling. numba's own cache notices an edit of the file that holds
a kernel, but not of another file whose code it inlines: a student who edits
:mod:`~numcnn.kernels.jit.vectors` would run the old code. Here every
kernel's cache entry is also keyed on a hash of every source file of this
package, so an edit anywhere in it recompiles every kernel once.

Threads: numba uses its ``workqueue`` threading layer unless the user chose
another (``NUMBA_THREADING_LAYER``): the OpenMP layer's workers spin after
each parallel loop and steal the core from the BLAS call that follows (see
docs/performance.md, "Threads"). The workqueue layer cannot run two parallel
loops at once: a second thread entering one aborts the whole process. So a
parallel kernel is entered by one Python thread at a time (:data:`PARALLEL_LOCK`):
models can be trained and used from several threads, their parallel loops
taking turns (each loop already uses every core); the other work of a step
(BLAS, NumPy, serial kernels) runs side by side.
"""
import functools
import hashlib
import os
import threading
import warnings
from pathlib import Path

import numba
from numba import njit

__all__ = ["kernel", "SOURCES_HASH", "PARALLEL_LOCK"]

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"


def _sources_hash():
    """A hash of every ``.py`` file of this package, by name and bytes."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


SOURCES_HASH = _sources_hash()
"""The hash of this package's sources that keys every kernel's cache entry."""

_warned = {"damaged": False}


def _warn_once(message):
    if not _warned["damaged"]:
        _warned["damaged"] = True
        warnings.warn(message, RuntimeWarning, stacklevel=4)


try:
    from numba.core.caching import FunctionCache

    class _SourcesKeyedCache(FunctionCache):
        """numba's per-function disk cache, its entries also keyed on :data:`SOURCES_HASH`.

        A damaged cache never stops a run: a file that cannot be read (truncated,
        garbage, a folder in its place) is set aside and the kernel compiled again,
        with one warning per process; a cache that cannot be written only costs the
        next run its compile time.
        """

        def _index_key(self, sig, codegen):
            return super()._index_key(sig, codegen) + (SOURCES_HASH,)

        def load_overload(self, sig, target_context):
            try:
                return super().load_overload(sig, target_context)
            except Exception as error:                 # unpickling, a short file, a folder
                index = getattr(getattr(self, "_cache_file", None), "_index_path", None)
                _warn_once(f"numcnn: numba's cache of its kernels in {self.cache_path} is "
                           f"damaged ({type(error).__name__}: {error}); numcnn compiles the "
                           f"kernels it cannot read again and rewrites their cache")
                for remove in (os.remove, os.rmdir):  # the index: a fresh one is written
                    try:
                        remove(index)
                        break
                    except (OSError, TypeError):
                        pass
                return None

        def save_overload(self, sig, cres):
            try:
                super().save_overload(sig, cres)
            except Exception as error:
                _warn_once(f"numcnn: numba's cache of its kernels in {self.cache_path} cannot "
                           f"be written ({type(error).__name__}: {error}); the kernels work, "
                           f"and the next run compiles them again")

    _KEYED = hasattr(FunctionCache, "_index_key")
except ImportError:                          # a numba without this cache: its plain cache
    _KEYED = False


PARALLEL_LOCK = threading.RLock()
"""Held while a parallel kernel runs: one Python thread at a time in numba's parallel code."""


class _OneThreadAtATime:
    """A parallel kernel that takes :data:`PARALLEL_LOCK` to run; otherwise its dispatcher
    (``compile``, ``signatures``, ``inspect_asm``, ... pass through)."""

    def __init__(self, dispatcher):
        self.dispatcher = dispatcher
        functools.update_wrapper(self, dispatcher.py_func)

    def __call__(self, *args):
        with PARALLEL_LOCK:
            return self.dispatcher(*args)

    def __getattr__(self, name):
        return getattr(self.dispatcher, name)


def kernel(parallel=False, reassociate=False, **options):
    """Compile a loop with numba: ``@kernel(parallel=True)`` above ``def _loop(...)``.

    ``reassociate`` lets LLVM reorder sums (``fastmath`` ``reassoc``,
    ``contract``). Other ``options`` go to ``numba.njit`` as they are. A
    parallel kernel is called from Python only (numba code calls serial
    kernels), one thread at a time.
    """
    options = dict(options, nogil=True, parallel=parallel)
    if reassociate:
        options["fastmath"] = {"reassoc", "contract"}

    def compile_later(function):
        if not _KEYED:
            dispatcher = njit(cache=True, **options)(function)
        else:
            dispatcher = njit(**options)(function)
            dispatcher._cache = _SourcesKeyedCache(dispatcher.py_func)
        return _OneThreadAtATime(dispatcher) if parallel else dispatcher
    return compile_later
