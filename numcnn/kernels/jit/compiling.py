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
docs/performance.md, "Threads").
"""
import hashlib
import os
from pathlib import Path

import numba
from numba import njit

__all__ = ["kernel", "SOURCES_HASH"]

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

try:
    from numba.core.caching import FunctionCache

    class _SourcesKeyedCache(FunctionCache):
        """numba's per-function disk cache, its entries also keyed on :data:`SOURCES_HASH`."""

        def _index_key(self, sig, codegen):
            return super()._index_key(sig, codegen) + (SOURCES_HASH,)

    _KEYED = hasattr(FunctionCache, "_index_key")
except ImportError:                          # a numba without this cache: its plain cache
    _KEYED = False


def kernel(parallel=False, reassociate=False, **options):
    """Compile a loop with numba: ``@kernel(parallel=True)`` above ``def _loop(...)``.

    ``reassociate`` lets LLVM reorder sums (``fastmath`` ``reassoc``,
    ``contract``). Other ``options`` go to ``numba.njit`` as they are.
    """
    options = dict(options, nogil=True, parallel=parallel)
    if reassociate:
        options["fastmath"] = {"reassoc", "contract"}

    def compile_later(function):
        if not _KEYED:
            return njit(cache=True, **options)(function)
        dispatcher = njit(**options)(function)
        dispatcher._cache = _SourcesKeyedCache(dispatcher.py_func)
        return dispatcher
    return compile_later
