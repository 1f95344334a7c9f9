"""3x3 convolutions with stride 1, directly: nine shifted multiply-adds, outputs in registers.

The vectors route (:mod:`numcnn.routes`) runs every 3x3 convolution with
stride 1 and padding up to 2 here, in training and prediction; the portable
route never calls these kernels. :func:`takes` is the one place that says
which convolutions they take.

Pad an image with zeros to height HP = H + 2 * pad and width WP = W + 2 * pad
and lay each channel out as one flat row. Output (oh, ow) reads inputs
(oh + i, ow + j), which sit at flat index q + i * WP + j with q = oh * WP + ow.

The forward pass (and the input gradient, the same convolution) keeps a block
of outputs in registers: BLOCK filters at ``VECTORS * lanes`` neighbouring
columns of one output row, one vector register a filter and vector
(:mod:`numcnn.kernels.jit.vectors`; with AVX-512 16 filters at 16 float32
columns, with AVX2 4 filters at 3 x 8). Every channel c and tap (i, j) then
adds VECTORS input vectors, each loaded once, times each filter's weight::

    acc[f, v] += xp[c, (oh + i) * WP + ow + v * lanes + j : ... + lanes] * W[f0+f, c, i, j]

BLOCK * VECTORS multiply-adds for VECTORS + BLOCK numbers loaded; the block is
written to y once, when all 9C taps are in. The weights are laid out so that
one tap's BLOCK filters are adjacent (:func:`_filters_in_blocks`). Each image is padded into a buffer of its own.
When a row is not a whole number of blocks wide, the vectors run on across
rows at width WP instead, and each row's part of a vector goes as a masked store.

The weight gradient is the same sums read the other way::

    dW[f, c, i, j] = sum over q of g[f, q] * xp[c, q + i*WP + j]

with g the output gradient laid out at width WP (zeros in the places no output
has: the last two columns of each row, and the two rows where one image's
window reaches into the next). Several padded images go one under another ("a
stack", GRADIENT_STACK_BYTES of input and g together) so that small images
make long runs, one long loop that the compiler vectorises, four filters at a
time so that each input value loaded feeds twelve multiply-adds (the filters
padded with zeros to a multiple of four). Its buffers start on a cache line and
their rows are whole vectors long, so that no vector of ``g`` straddles two
cache lines (a straddling load costs two).

If a kernel here fails to compile (a processor or an LLVM that the vector
operations were not tested with), :func:`forward` and :func:`backward` say so
by returning None, once numcnn has taken the portable route
(:func:`numcnn.routes.fall_back`); the caller then computes the same values
another way.
"""
import numba
import numpy as np
from numba import njit, prange
from numba.core.errors import NumbaError

from ... import routes
from .compiling import kernel
from .vectors import (BLOCK, TAP_FILTERS, VECTOR_BYTES, VECTORS, filled, lane_sum,
                      multiply_add, multiply_add_taps, store, tap_sums)

__all__ = ["takes", "forward", "backward", "FILTER_BLOCK", "GRADIENT_STACK_BYTES",
           "GRADIENT_PARTS"]

FILTER_BLOCK = TAP_FILTERS
"""Filters the weight gradient handles at a time (a :class:`~.vectors.TapSums` holds four)."""
GRADIENT_STACK_BYTES = 384 * 1024
"""The weight gradient's stacks are sized by their input and the four rows of ``g``
together, which the three passes of each channel (one a kernel row) read again:
about 384 KiB stays in the L2 cache (1 MiB a core where this was measured)."""
GRADIENT_PARTS = 8
"""Image shares of the weight gradient: each is summed on its own, then the shares
are added in order, so the result does not depend on the thread count."""




def takes(W_shape, stride, pad):
    """Whether these kernels compute a convolution with weights of ``W_shape``
    (F, C, KH, KW), ``stride`` and ``pad``: 3x3, stride 1, padding 0 to 2, on the
    vectors route."""
    return (tuple(W_shape[2:]) == (3, 3) and stride == 1 and 0 <= pad <= 2
            and routes.route() == "vectors")


def forward(x, W, b, pad):
    """``x`` (N, C, H, W) convolved with ``W`` (F, C, 3, 3), stride 1, plus ``b`` (F,).

    The arrays contiguous, ``W`` and ``b`` in x's dtype. Returns ``y`` (N, F,
    H + 2*pad - 2, W + 2*pad - 2), or None if the kernel cannot be compiled
    here (the portable route is then in force).
    """
    N, C, H, Wd = x.shape
    F = len(W)
    y = np.empty((N, F, H + 2 * pad - 2, Wd + 2 * pad - 2), dtype=x.dtype)
    if _run_compiled(_conv3x3, x, _filters_in_blocks(W, x.dtype).reshape(-1),
                     _padded_bias(b, F), pad, y):
        return y
    return None


def backward(dy, x, W, pad, input_grad):
    """``(dx, dW, db)`` of :func:`forward` (``dx`` None unless ``input_grad``).

    ``dx`` is itself a 3x3 convolution of ``dy`` with the kernels turned
    half a turn and input and output channels swapped, padding ``2 - pad``.
    ``dW`` sums each stack's products in x's dtype and the stacks in float64.
    Its sums also meet the input values beside each image (where ``g`` is
    zero), so an infinite input makes more of ``dW`` NaN than the
    definition's would; either way ``dW`` is not finite, which is what
    training checks for before it updates a weight. Returns None if a kernel
    cannot be compiled here (the portable route is then in force).
    """
    N, C = x.shape[:2]
    F = len(W)
    parts = min(N, GRADIENT_PARTS)
    dW_parts = np.zeros((parts, _blocked_count(F), C, 3, 3), dtype=np.float64)
    db_parts = np.zeros((parts, F), dtype=np.float64)
    per_stack = _images_per_stack(x.shape, pad, x.itemsize, GRADIENT_STACK_BYTES, FILTER_BLOCK)
    _conv3x3_dw(dy, x, pad, per_stack, dW_parts, db_parts)
    dW = dW_parts.sum(axis=0)[:F].astype(x.dtype)
    db = db_parts.sum(axis=0).astype(x.dtype)
    dx = None
    if input_grad:
        turned = W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)                    # (C, F, 3, 3)
        dx = np.empty_like(x)
        if not _run_compiled(_conv3x3, dy, _filters_in_blocks(turned, x.dtype).reshape(-1),
                             _padded_bias(np.zeros(C, dtype=x.dtype), C), 2 - pad, dx):
            return None
    return dx, dW, db


#: The argument types each vector kernel has been compiled for in this process.
_compiled = set()


def _run_compiled(kernel, *args):
    """``kernel(*args)``, compiled first if it is not yet for these argument types.

    Returns False, without running it, if it cannot be compiled: numba's
    typing or lowering, or LLVM, refused the code. numcnn then takes the
    portable route (:func:`numcnn.routes.fall_back` warns once). Errors while
    it runs are raised as they are.
    """
    signature = tuple(numba.typeof(arg) for arg in args)
    if (kernel, signature) not in _compiled:
        try:
            kernel.compile(signature)
        except (NumbaError, RuntimeError) as error:      # RuntimeError: LLVM's verifier
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            routes.fall_back(f"{kernel.__name__} did not compile for "
                             f"{routes.compile_target()['cpu']}: "
                             f"{type(error).__name__}: {first_line}")
            return False
        _compiled.add((kernel, signature))
    kernel(*args)
    return True


@njit(inline="always")
def _ceil_div(a, b):
    """The smallest integer at least ``a / b`` (for positive ``b``)."""
    return -(-a // b)


def _blocked_count(F, block=FILTER_BLOCK):
    """``F`` filters rounded up to whole blocks of ``block``."""
    return _ceil_div(F, block) * block


def _filters_in_blocks(W, dtype):
    """``W`` (F, C, 3, 3) as the forward kernel reads it: blocks of ``BLOCK`` filters
    (zero filters appended to fill the last), the block's filters last, so that one
    tap's ``BLOCK`` weights are adjacent: (F / BLOCK, C, 3, 3, BLOCK), as ``dtype``."""
    F, C = W.shape[:2]
    blocked = np.zeros((_blocked_count(F, BLOCK), C, 3, 3), dtype=dtype)
    blocked[:F] = W
    return np.ascontiguousarray(
        blocked.reshape(-1, BLOCK, C, 3, 3).transpose(0, 2, 3, 4, 1))


def _padded_bias(b, F):
    """The biases with zeros appended to whole blocks of ``BLOCK`` filters."""
    padded = np.zeros(_blocked_count(F, BLOCK), dtype=b.dtype)
    padded[:F] = b
    return padded


def _images_per_stack(x_shape, pad, itemsize, budget, extra_rows=0):
    """How many padded images of ``x_shape`` (N, C, H, W) make one stack of the weight gradient.

    At most about ``budget`` bytes of the stack's C rows of input and
    ``extra_rows`` more rows as long (``g``) each, aiming at a multiple of
    GRADIENT_PARTS stacks so that the threads get equal shares; other counts
    may not divide evenly (conv1 of the blood-cell network: 22 stacks of 3
    images and one, so its 8 shares hold 6 to 9 images).
    """
    N, C, H, W = x_shape
    total_bytes = N * (C + extra_rows) * (H + 2 * pad) * (W + 2 * pad) * itemsize
    stacks = GRADIENT_PARTS * max(1, _ceil_div(total_bytes, GRADIENT_PARTS * budget))
    return max(1, _ceil_div(N, stacks))


@njit(inline="always")
def _aligned_zeros(rows, cols, like):
    """Zeros (rows, cols) of ``like``'s dtype whose first element starts a 64-byte cache line.

    numba's allocator guarantees less, so a few more numbers are allocated and
    the view starts at the first one on a line boundary. With ``cols`` a
    multiple of 16 every row starts on a line too.
    """
    per_line = 64 // like.itemsize
    buffer = np.zeros(rows * cols + per_line, dtype=like.dtype)
    skip = (-(buffer.ctypes.data // like.itemsize)) % per_line
    return buffer[skip:skip + rows * cols].reshape((rows, cols))


@njit(inline="always")
def _stack(x, n0, count, pad, xp):
    """Images ``x[n0:n0 + count]`` padded, one under another, into the zeros of ``xp`` (C, L)."""
    C, H, Wd = x.shape[1:]
    HP, WP = H + 2 * pad, Wd + 2 * pad
    for m in range(count):
        for c in range(C):
            for h in range(H):
                start = (m * HP + h + pad) * WP + pad
                xp[c, start:start + Wd] = x[n0 + m, c, h]


@njit(inline="always")
def _stack_of(x, k, per_stack, pad, OH):
    """Stack ``k`` of the batch: its first image, its image count, the length ``Q`` of its
    flat runs, and ``xp``, its images padded one under another (C, L).

    ``Q`` reaches the last image's last output, rounded up to whole vectors of 16
    numbers so that no run ends in a scalar remainder (the extra positions read zeros,
    at most 15 past the stack, and are dropped).
    """
    N, C, H, Wd = x.shape
    HP, WP = H + 2 * pad, Wd + 2 * pad
    n0 = k * per_stack
    count = min(per_stack, N - n0)
    Q = _ceil_div(max(0, ((count - 1) * HP + OH) * WP - 2), 16) * 16
    xp = _aligned_zeros(C, _ceil_div(count * HP * WP + 16, 16) * 16, x)
    _stack(x, n0, count, pad, xp)
    return n0, count, Q, xp


@njit(inline="always")
def _taps(acc, xp, at, plane, WP, weights, w_start, C):
    """``acc`` plus the 9C taps of the outputs at ``at = oh * WP + ow`` and after:
    channel c, tap (i, j) reads ``xp[c * plane + at + i * WP + j]`` times the
    block's weights for that tap, ``weights[w_start + ((c * 3 + i) * 3 + j) * BLOCK:]``."""
    for c in range(C):
        for i in range(3):
            row = at + c * plane + i * WP
            k = w_start + (c * 3 + i) * 3 * BLOCK
            acc = multiply_add(acc, xp, row, weights, k)
            acc = multiply_add(acc, xp, row + 1, weights, k + BLOCK)
            acc = multiply_add(acc, xp, row + 2, weights, k + 2 * BLOCK)
    return acc


@kernel(parallel=True)
def _conv3x3(x, weights, b, pad, y):
    """y = x convolved with ``weights`` (from _filters_in_blocks, flat) plus ``b``
    (padded to whole blocks), a block of ``BLOCK`` filters x ``VECTORS`` vectors of
    columns at a time."""
    N, C, H, Wd = x.shape
    F, OH, OW = y.shape[1:]
    if len(b) % BLOCK != 0 or len(weights) != len(b) * C * 9:
        # BLOCK is compiled in: a cached kernel from before an edit of vectors.BLOCK
        raise ValueError("weights not in blocks of BLOCK filters: clear numba's cache")
    HP, WP = H + 2 * pad, Wd + 2 * pad
    lanes = VECTOR_BYTES // x.itemsize
    span = VECTORS * lanes                         # a block's columns
    # The last block read starts at most at HP * WP - 1 (vectors across rows), so
    # a plane of HP * WP + span numbers holds it; rounded up to a multiple of 16
    # numbers (one 64-byte cache line of float32, two of float64) so that every
    # channel starts on a line.
    plane = _ceil_div(HP * WP + span, 16) * 16
    y_flat = y.reshape(-1)
    for n in prange(N):
        xp = _aligned_zeros(C, plane, x)
        for c in range(C):
            for h in range(H):
                start = (h + pad) * WP + pad
                xp[c, start:start + Wd] = x[n, c, h]
        xp = xp.reshape(-1)
        for f0 in range(0, F, BLOCK):
            w_start = f0 * C * 9                   # the block's weights
            filters = min(BLOCK, F - f0)
            out = (n * F + f0) * OH * OW           # y[n, f0, 0, 0]
            if OW % span == 0:                     # rows of whole blocks: a block of a row
                for oh in range(OH):
                    for ow in range(0, OW, span):
                        outputs = _taps(filled(b, f0), xp, oh * WP + ow, plane, WP, weights,
                                        w_start, C)
                        for v in range(VECTORS):
                            store(y_flat, out + oh * OW + ow + v * lanes, OH * OW, outputs, v,
                                  filters, 0, lanes)
            else:  # vectors run on across rows (the two padding columns are wasted work)
                for q in range(0, (OH - 1) * WP + OW, span):      # outputs q .. q + span - 1
                    outputs = _taps(filled(b, f0), xp, q, plane, WP, weights, w_start, C)
                    for v in range(VECTORS):
                        first = q + v * lanes             # vector v: outputs first .. + lanes - 1
                        # lane l is column first + l - r * WP of output row r: one store a
                        # row, of the lanes lo..hi-1 that fall in its OW columns (the
                        # vector's start may lie before the row, even before y; lane lo
                        # does not)
                        for r in range(first // WP, min(OH, _ceil_div(first + lanes, WP))):
                            lo = max(0, r * WP - first)
                            hi = min(lanes, r * WP + OW - first)
                            if hi > lo:
                                store(y_flat, out + r * OW + (first - r * WP), OH * OW, outputs,
                                      v, filters, lo, hi)


@kernel(reassociate=True)
def _row_taps_loop(g, run, Q, dw):
    """``dw[f, j] += sum over q of g[f, q] * run[q + j]`` for f < 4, j < 3 (summed in g's
    dtype): a plain loop, which LLVM vectorises with 12 vectors of sums."""
    a, b, c = run[0:Q], run[1:Q + 1], run[2:Q + 2]
    g0, g1, g2, g3 = g[0], g[1], g[2], g[3]
    s00 = s01 = s02 = s10 = s11 = s12 = s20 = s21 = s22 = s30 = s31 = s32 = g.dtype.type(0)
    for q in range(Q):
        xa = a[q]
        xb = b[q]
        xc = c[q]
        u = g0[q]
        s00 += u * xa
        s01 += u * xb
        s02 += u * xc
        u = g1[q]
        s10 += u * xa
        s11 += u * xb
        s12 += u * xc
        u = g2[q]
        s20 += u * xa
        s21 += u * xb
        s22 += u * xc
        u = g3[q]
        s30 += u * xa
        s31 += u * xb
        s32 += u * xc
    dw[0, 0] += s00
    dw[0, 1] += s01
    dw[0, 2] += s02
    dw[1, 0] += s10
    dw[1, 1] += s11
    dw[1, 2] += s12
    dw[2, 0] += s20
    dw[2, 1] += s21
    dw[2, 2] += s22
    dw[3, 0] += s30
    dw[3, 1] += s31
    dw[3, 2] += s32


@kernel()
def _row_taps_vectors(g, run, Q, dw):
    """The sums of :func:`_row_taps_loop` with the vectors written out
    (:func:`~.vectors.multiply_add_taps`), lane by lane, the lanes added at the end.
    ``Q`` is a whole number of vectors."""
    lanes = VECTOR_BYTES // g.itemsize
    flat = g.reshape(-1)
    sums = tap_sums(flat)
    for q in range(0, Q, lanes):
        sums = multiply_add_taps(sums, flat, q, g.shape[1], run, q)
    for f in range(TAP_FILTERS):
        for j in range(3):
            dw[f, j] += lane_sum(sums, f * 3 + j)


#: One kernel row of the weight gradient. With AVX-512, LLVM vectorises the plain
#: loop with 32-byte vectors (Intel's processors are tuned to prefer them), half
#: of a register: the vectors written out are 64 bytes wide (the weight gradients
#: of the blood-cell network's convolutions took 0.86-0.97x the time on 2 cores of
#: an Intel Xeon with AVX-512; docs/performance.md). With AVX2 the plain loop
#: already fills the registers, and was as fast or faster.
_row_taps_dot = _row_taps_vectors if VECTOR_BYTES == 64 else _row_taps_loop


@kernel(parallel=True, reassociate=True)
def _conv3x3_dw(dy, x, pad, per_stack, dW_parts, db_parts):
    N, C, H, Wd = x.shape
    F, OH, OW = dy.shape[1:]
    HP, WP = H + 2 * pad, Wd + 2 * pad
    stacks = _ceil_div(N, per_stack)
    parts = len(dW_parts)
    for k in prange(parts):  # each part owns dW_parts[k]: a fixed share of the stacks
        for stack in range(k * stacks // parts, (k + 1) * stacks // parts):
            n0, count, Q, xp = _stack_of(x, stack, per_stack, pad, OH)
            g = _aligned_zeros(FILTER_BLOCK, Q, x)  # zero where outputs are dropped
            for f0 in range(0, dW_parts.shape[1], FILTER_BLOCK):
                for f in range(f0, min(f0 + FILTER_BLOCK, F)):
                    for m in range(count):
                        for oh in range(OH):
                            source = dy[n0 + m, f, oh]
                            start = (m * HP + oh) * WP
                            target = g[f - f0, start:start + OW]
                            row_sum = g.dtype.type(0)  # a row in x's dtype, the rows in float64
                            for ow in range(OW):
                                v = source[ow]
                                target[ow] = v
                                row_sum += v
                            db_parts[k, f] += row_sum
                for c in range(C):
                    for i in range(3):
                        _row_taps_dot(g, xp[c, i * WP:i * WP + Q + 2], Q,
                                      dW_parts[k, f0:f0 + FILTER_BLOCK, c, i])
