"""Keep freed memory in the process: large arrays then cost no page faults.

A training step allocates the same large arrays every time (each layer's
output, each gradient) and frees them at the end of the step. glibc's
``malloc`` hands blocks above a threshold (at most 32 MiB) to the kernel with
``mmap`` and gives them back with ``munmap`` when they are freed, so the next
step's array of the same size arrives as fresh pages that the kernel must
fault in and fill with zeros: one extra pass over every byte, every step.
:func:`keep_freed_memory` tells malloc to serve every block from its heap and
to keep freed memory for reuse. Measured on the 2-core machine (the
CNN of three convolution blocks, batch 64, median training step): 6-7% faster at 60x80,
about 25% at 120x160, for about 16% more peak memory at 120x160 (see
docs/performance.md).

It changes the whole process, so numcnn does not do it on import: call it at
the start of a training script (the examples do).
"""
import ctypes
import ctypes.util

__all__ = ["keep_freed_memory"]

# mallopt parameters, from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_KEEP_UP_TO_BYTES = 2**31 - 1   # largest value mallopt's int accepts: keep up to 2 GiB free


def keep_freed_memory():
    """Serve large arrays from malloc's heap and keep freed memory for reuse.

    Calls glibc's ``mallopt(M_MMAP_MAX, 0)`` (no ``mmap`` per block) and
    ``mallopt(M_TRIM_THRESHOLD, 2 GiB - 1)`` (return memory to the system
    only when more than that is free at the top of the heap). Affects every
    later allocation of the process, numcnn's or not; memory already
    allocated is unchanged.

    Returns
    -------
    bool
        True when both settings were accepted (Linux with glibc); False
        where there is no glibc ``mallopt`` (macOS, Windows, musl), and
        nothing changes.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _KEEP_UP_TO_BYTES) == 1
