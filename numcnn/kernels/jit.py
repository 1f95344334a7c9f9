"""numba-jitted kernels: the fast twins of :mod:`numcnn.kernels.reference`.

Every public function here has the same name, signature and result as its
reference twin (the tests compare them over random shapes). Each is a thin
Python wrapper that allocates the output when none is given and calls a
``@njit`` loop. Only loops live here; matrix multiplies stay in BLAS (the 3x3
convolutions that training runs through ``conv2d_direct`` need none).

Parallelism: ``prange`` runs over images (or channels), and no two iterations
ever write the same element, so col2im and the pooling backward are race-free.
numba uses the ``workqueue`` threading layer unless the user chose another
(``NUMBA_THREADING_LAYER``): the OpenMP layer's workers spin after each
parallel loop and steal the core from the BLAS call that follows (see
docs/performance.md, "Threads"). Compiled code is cached on disk (``cache=True``).
"""
import os

import numba
import numpy as np
from numba import njit, prange

from .reference import conv_output_size
from .vectors import BLOCK, VECTOR_BYTES, filled, multiply_add, store

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

_jit = dict(cache=True, nogil=True)
_pjit = dict(cache=True, nogil=True, parallel=True)
# Reductions may be reassociated (fastmath "reassoc") so that LLVM vectorises
# the float64 sums; NaN and infinity semantics are kept.
_reduce_jit = dict(_pjit, fastmath={"reassoc", "contract"})
# Multiply-adds fused into one instruction (one rounding instead of two).
_fma_sum_jit = dict(_jit, fastmath={"reassoc", "contract"})


# ---------------------------------------------------------------------------
# Convolution by its definition: direct loops
# ---------------------------------------------------------------------------
@njit(inline="always")
def _valid_range(offset, stride, pad, size, out_size):
    """The outputs ``o`` whose input ``o * stride + offset - pad`` lies in [0, size)."""
    lo = max(0, (pad - offset + stride - 1) // stride)
    hi = min(out_size, (size - 1 - offset + pad) // stride + 1)
    return lo, hi


@njit(inline="always")
def _axpy(target, w, source):
    """``target += w * source`` for two 2-D views of one shape (rows, then columns)."""
    for r in range(target.shape[0]):
        for k in range(target.shape[1]):  # indices from 0 on a row: vectorised
            target[r, k] += w * source[r, k]


@njit(inline="always")
def _dot(a, b, start):
    """``start + sum(a * b)`` for two 2-D views of one shape."""
    total = start
    for r in range(a.shape[0]):
        for k in range(a.shape[1]):
            total += a[r, k] * b[r, k]
    return total


@njit(**_pjit)
def _conv2d_direct(x, W, b, stride, pad, y):
    N, C, H, Wd = x.shape
    F, _, KH, KW = W.shape
    OH, OW = y.shape[2:]
    for nf in prange(N * F):  # each (image, filter) plane is written by one iteration
        n = nf // F
        f = nf % F
        out = y[n, f]
        out[:, :] = b[f]
        for c in range(C):
            for i in range(KH):
                top, bottom = _valid_range(i, stride, pad, H, OH)
                if bottom <= top:
                    continue
                rows = slice(top * stride + i - pad, (bottom - 1) * stride + i - pad + 1, stride)
                for j in range(KW):
                    left, right = _valid_range(j, stride, pad, Wd, OW)
                    if right <= left:
                        continue
                    start, stop = left * stride + j - pad, (right - 1) * stride + j - pad + 1
                    # out[oh, ow] += W[f, c, i, j] * x[n, c, oh*s + i - p, ow*s + j - p]
                    if stride == 1:  # contiguous rows: a vectorised multiply-add
                        _axpy(out[top:bottom, left:right], W[f, c, i, j],
                              x[n, c, rows.start:rows.stop, start:stop])
                    else:
                        _axpy(out[top:bottom, left:right], W[f, c, i, j],
                              x[n, c, rows, start:stop:stride])


def conv2d_direct(x, W, b, stride, pad):
    """Convolution by its definition; see :func:`numcnn.kernels.reference.conv2d_direct`.

    3x3 kernels with stride 1 and padding up to 2 run :func:`_conv3x3` (a
    block of filters' outputs at a vector of columns kept in registers while
    every channel's nine taps add to it). Other shapes run loops over output rows, the innermost over an
    output row's columns, so that each weight multiplies a contiguous run of
    pixels; each output element sums its products in the order (c, i, j).
    """
    N, C, H, Wd = x.shape
    F, _, KH, KW = W.shape
    y = np.empty((N, F, conv_output_size(H, KH, stride, pad),
                  conv_output_size(Wd, KW, stride, pad)), dtype=x.dtype)
    x = np.ascontiguousarray(x)
    b = np.ascontiguousarray(b, dtype=x.dtype)
    if _is_direct_3x3(W.shape, stride, pad):
        _conv3x3(x, _filters_in_blocks(W, x.dtype).reshape(-1), _padded_bias(b, len(W)), pad, y)
    else:
        _conv2d_direct(x, np.ascontiguousarray(W, dtype=x.dtype), b, stride, pad, y)
    return y


@njit(**_pjit)
def _conv2d_direct_dx(dy, W, stride, pad, dx):
    N, C, H, Wd = dx.shape
    F, _, KH, KW = W.shape
    OH, OW = dy.shape[2:]
    for n in prange(N):  # each image owns dx[n]
        dx[n] = 0
        for f in range(F):
            for c in range(C):
                for i in range(KH):
                    top, bottom = _valid_range(i, stride, pad, H, OH)
                    if bottom <= top:
                        continue
                    rows = slice(top * stride + i - pad, (bottom - 1) * stride + i - pad + 1,
                                 stride)
                    for j in range(KW):
                        left, right = _valid_range(j, stride, pad, Wd, OW)
                        if right <= left:
                            continue
                        start, stop = left * stride + j - pad, (right - 1) * stride + j - pad + 1
                        if stride == 1:
                            _axpy(dx[n, c, rows.start:rows.stop, start:stop], W[f, c, i, j],
                                  dy[n, f, top:bottom, left:right])
                        else:
                            _axpy(dx[n, c, rows, start:stop:stride], W[f, c, i, j],
                                  dy[n, f, top:bottom, left:right])


@njit(**_reduce_jit)
def _conv2d_direct_dw(dy, x, stride, pad, dW):
    N, C, H, Wd = x.shape
    F, _, KH, KW = dW.shape
    OH, OW = dy.shape[2:]
    for f in prange(F):  # each filter owns dW[f]
        total = np.zeros((C, KH, KW), dtype=np.float64)
        for n in range(N):
            g = dy[n, f]
            zero = g[0, 0] * 0  # one image's products summed in x's dtype (vectorised),
            for c in range(C):  # the images added up in float64
                for i in range(KH):
                    top, bottom = _valid_range(i, stride, pad, H, OH)
                    if bottom <= top:
                        continue
                    rows = slice(top * stride + i - pad, (bottom - 1) * stride + i - pad + 1,
                                 stride)
                    for j in range(KW):
                        left, right = _valid_range(j, stride, pad, Wd, OW)
                        if right <= left:
                            continue
                        start, stop = left * stride + j - pad, (right - 1) * stride + j - pad + 1
                        if stride == 1:
                            total[c, i, j] += _dot(g[top:bottom, left:right],
                                                   x[n, c, rows.start:rows.stop, start:stop], zero)
                        else:
                            total[c, i, j] += _dot(g[top:bottom, left:right],
                                                   x[n, c, rows, start:stop:stride], zero)
        for c in range(C):
            for i in range(KH):
                for j in range(KW):
                    dW[f, c, i, j] = total[c, i, j]


def conv2d_direct_backward(dy, x, W, stride, pad, input_grad=True):
    """Gradients of :func:`conv2d_direct`; see the reference twin.

    ``dW`` sums each image's products (vectorised) and adds the images in
    float64, so that it stays accurate over hundreds of thousands of terms.
    """
    x = np.ascontiguousarray(x)
    dy = np.ascontiguousarray(dy, dtype=x.dtype)
    W = np.ascontiguousarray(W, dtype=x.dtype)
    if _is_direct_3x3(W.shape, stride, pad):
        return _conv3x3_backward(dy, x, W, pad, input_grad)
    dW = np.empty_like(W)
    _conv2d_direct_dw(dy, x, stride, pad, dW)
    dx = None
    if input_grad:
        dx = np.empty_like(x)
        _conv2d_direct_dx(dy, W, stride, pad, dx)
    return dx, dW, channel_sums(dy.reshape(dy.shape[0], dy.shape[1], -1)).astype(x.dtype)


# ---------------------------------------------------------------------------
# 3x3 convolutions with stride 1, directly: nine shifted multiply-adds
# ---------------------------------------------------------------------------
# Pad an image with zeros to height HP = H + 2 * pad and width WP = W + 2 * pad
# and lay each channel out as one flat row. Output (oh, ow) reads inputs
# (oh + i, ow + j), which sit at flat index q + i * WP + j with q = oh * WP + ow.
#
# The forward pass (and the input gradient, the same convolution) keeps a block
# of outputs in registers: BLOCK filters at `lanes` neighbouring columns of one
# output row, one vector register a filter (numcnn.kernels.vectors; with
# AVX-512 16 filters at 16 float32 columns, with AVX2 8 at 8).
# Every channel c and tap (i, j) then adds one input vector, loaded once, times
# each filter's weight:
#     acc[f] += xp[c, (oh + i) * WP + ow + j : ... + lanes] * W[f0 + f, c, i, j],
# BLOCK multiply-adds a load; the block is written to y once, when all 9C taps
# are in. The weights are laid out so that one tap's BLOCK filters are adjacent
# (_filters_in_blocks). Each image is padded into a buffer of its own. When a
# row is not a whole number of vectors wide, the vectors run on across rows at
# width WP instead, and each row's part of a block goes as a masked store.
#
# The weight gradient is the same sums read the other way:
#     dW[f, c, i, j] = sum over q of g[f, q] * xp[c, q + i*WP + j],
# with g the output gradient laid out at width WP (zeros in the places no
# output has: the last two columns of each row, and the two rows where one
# image's window reaches into the next). Several padded images go one under
# another ("a stack", GRADIENT_STACK_BYTES of input and g together) so that
# small images make long runs, one long loop that the compiler vectorises,
# four filters at a time so that each input value loaded feeds twelve
# multiply-adds (the filters padded with zeros to a multiple of four). Its
# buffers start on a cache line and their rows are whole vectors long, so that
# no vector of ``g`` straddles two cache lines (a straddling load costs two).
FILTER_BLOCK = 4  # _row_taps_dot is written out for four filters: not a knob
#: The weight gradient's stacks are sized by their input and the four rows of ``g``
#: together, which the three passes of each channel (one a kernel row) read again:
#: about 384 KiB stays in the L2 cache (1 MiB a core where this was measured).
GRADIENT_STACK_BYTES = 384 * 1024
#: Image shares of the 3x3 weight gradient: each is summed on its own, then the
#: shares are added in order, so the result does not depend on the thread count.
GRADIENT_PARTS = 8


def _is_direct_3x3(W_shape, stride, pad):
    """Whether :func:`conv2d_direct` runs the 3x3 kernels for weights of this shape."""
    return tuple(W_shape[2:]) == (3, 3) and stride == 1 and 0 <= pad <= 2


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


@njit(**_pjit)
def _conv3x3(x, weights, b, pad, y):
    """y = x convolved with ``weights`` (from _filters_in_blocks, flat) plus ``b``
    (padded to whole blocks), a block of ``BLOCK`` filters x one vector of columns
    at a time."""
    N, C, H, Wd = x.shape
    F, OH, OW = y.shape[1:]
    if len(b) % BLOCK != 0 or len(weights) != len(b) * C * 9:
        # BLOCK is compiled in: a cached kernel from before an edit of vectors.BLOCK
        raise ValueError("weights not in blocks of BLOCK filters: clear numba's cache")
    HP, WP = H + 2 * pad, Wd + 2 * pad
    lanes = VECTOR_BYTES // x.itemsize
    # The last vector read starts at most at HP * WP - 1 (vectors across rows), so
    # a plane of HP * WP + lanes numbers holds it; rounded up to a multiple of 16
    # numbers (one 64-byte cache line of float32, two of float64) so that every
    # channel starts on a line.
    plane = _ceil_div(HP * WP + lanes, 16) * 16
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
            if OW % lanes == 0:                    # rows of whole vectors: a vector of a row
                for oh in range(OH):
                    for ow in range(0, OW, lanes):
                        outputs = _taps(filled(b, f0), xp, oh * WP + ow, plane, WP, weights,
                                        w_start, C)
                        store(y_flat, out + oh * OW + ow, OH * OW, outputs, filters, 0, lanes)
            else:  # vectors run on across rows (the two padding columns are wasted work)
                for q in range(0, (OH - 1) * WP + OW, lanes):     # outputs q .. q + lanes - 1
                    outputs = _taps(filled(b, f0), xp, q, plane, WP, weights, w_start, C)
                    # lane l is column q + l - r * WP of output row r: one store a row, of
                    # the lanes lo..hi-1 that fall in its OW columns (the vector's start
                    # may lie before the row, even before y; lane lo does not)
                    for r in range(q // WP, min(OH, _ceil_div(q + lanes, WP))):
                        lo = max(0, r * WP - q)
                        hi = min(lanes, r * WP + OW - q)
                        if hi > lo:
                            store(y_flat, out + r * OW + (q - r * WP), OH * OW, outputs,
                                  filters, lo, hi)


@njit(**_fma_sum_jit)
def _row_taps_dot(g, run, Q, dw):
    """``dw[f, j] += sum over q of g[f, q] * run[q + j]`` for f < 4, j < 3 (summed in g's dtype)."""
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


@njit(**_reduce_jit)
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


def _conv3x3_backward(dy, x, W, pad, input_grad):
    """dx, dW, db of :func:`_conv3x3` (the arrays contiguous, ``W`` in x's dtype).

    ``dx`` is itself a 3x3 convolution of ``dy`` with the kernels turned
    half a turn and input and output channels swapped, padding ``2 - pad``.
    ``dW`` sums each stack's products in x's dtype and the stacks in float64.
    Its sums also meet the input values beside each image (where ``g`` is
    zero), so an infinite input makes more of ``dW`` NaN than the
    definition's would; either way ``dW`` is not finite, which is what
    training checks for before it updates a weight.
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
        _conv3x3(dy, _filters_in_blocks(turned, x.dtype).reshape(-1),
                 _padded_bias(np.zeros(C, dtype=x.dtype), C), 2 - pad, dx)
    return dx, dW, db


# ---------------------------------------------------------------------------
# im2col / col2im
# ---------------------------------------------------------------------------
@njit(**_pjit)
def _im2col(x, KH, KW, stride, pad, OH, OW, cols):
    N, C, H, W = x.shape
    P = OH * OW
    for n in prange(N):
        for c in range(C):
            for i in range(KH):
                for j in range(KW):
                    k = (c * KH + i) * KW + j
                    left, right = _valid_range(j, stride, pad, W, OW)   # columns inside the image
                    right = max(left, right)
                    start = left * stride + j - pad
                    for oh in range(OH):
                        ih = oh * stride + i - pad
                        row = cols[k, n * P + oh * OW:n * P + (oh + 1) * OW]
                        if ih < 0 or ih >= H:
                            row[:] = 0
                            continue
                        row[:left] = 0
                        row[right:] = 0
                        source = x[n, c, ih]
                        if stride == 1:   # a contiguous copy (vectorised)
                            for ow in range(right - left):
                                row[left + ow] = source[start + ow]
                        else:
                            for ow in range(right - left):
                                row[left + ow] = source[start + ow * stride]


def im2col(x, KH, KW, stride, pad, out=None):
    """Unfold patches into columns; see :func:`numcnn.kernels.reference.im2col`."""
    N, C, H, W = x.shape
    OH = conv_output_size(H, KH, stride, pad)
    OW = conv_output_size(W, KW, stride, pad)
    if out is None:
        out = np.empty((C * KH * KW, N * OH * OW), dtype=x.dtype)
    _im2col(np.ascontiguousarray(x), KH, KW, stride, pad, OH, OW, out)
    return out


@njit(**_pjit)
def _col2im(cols, KH, KW, stride, pad, OH, OW, dx):
    N, C, H, W = dx.shape
    P = OH * OW
    for n in prange(N):  # each image owns dx[n]: no two iterations collide
        dx[n] = 0
        for c in range(C):
            for i in range(KH):
                for j in range(KW):
                    k = (c * KH + i) * KW + j
                    left, right = _valid_range(j, stride, pad, W, OW)
                    start = left * stride + j - pad
                    for oh in range(OH):
                        ih = oh * stride + i - pad
                        if ih < 0 or ih >= H:
                            continue
                        row = cols[k, n * P + oh * OW:n * P + (oh + 1) * OW]
                        target = dx[n, c, ih]
                        if stride == 1:   # contiguous: vectorised
                            for ow in range(right - left):
                                target[start + ow] += row[left + ow]
                        else:
                            for ow in range(right - left):
                                target[start + ow * stride] += row[left + ow]


def col2im(cols, x_shape, KH, KW, stride, pad, out=None):
    """Fold columns into an image; see :func:`numcnn.kernels.reference.col2im`."""
    N, C, H, W = x_shape
    OH = conv_output_size(H, KH, stride, pad)
    OW = conv_output_size(W, KW, stride, pad)
    if out is None:
        out = np.empty(x_shape, dtype=cols.dtype)
    _col2im(np.ascontiguousarray(cols), KH, KW, stride, pad, OH, OW, out)
    return out


@njit(**_pjit)
def _nchw_from_rows(y_rows, bias, out):
    N, F, P = out.shape
    for n in prange(N):
        for f in range(F):
            target = out[n, f]
            source = y_rows[f, n * P:(n + 1) * P]
            b = bias[f]
            for p in range(P):
                target[p] = source[p] + b


def nchw_from_rows(y_rows, N, out=None, bias=None):
    """(F, N * P) -> (N, F, P), plus ``bias[f]`` if given; see the reference twin."""
    F = y_rows.shape[0]
    P = y_rows.shape[1] // N
    if out is None:
        out = np.empty((N, F, P), dtype=y_rows.dtype)
    _nchw_from_rows(y_rows, np.zeros(F, y_rows.dtype) if bias is None else bias, out)
    return out


@njit(**_pjit)
def _rows_from_nchw(y, out):
    N, F, P = y.shape
    for n in prange(N):
        for f in range(F):
            out[f, n * P:(n + 1) * P] = y[n, f, :]


def rows_from_nchw(y, out=None):
    """(N, F, P) -> (F, N * P); see the reference twin."""
    N, F, P = y.shape
    if out is None:
        out = np.empty((F, N * P), dtype=y.dtype)
    _rows_from_nchw(np.ascontiguousarray(y), out)
    return out


@njit(**_pjit)
def _add_channel_bias(y, b):
    N, F, P = y.shape
    for n in prange(N):
        for f in range(F):
            y[n, f, :] += b[f]


def add_channel_bias(y, b):
    """In place ``y[n, f, :] += b[f]`` for y of shape (N, F, P)."""
    _add_channel_bias(y, b)
    return y


@njit(**_reduce_jit)
def _channel_sums(y, sums):
    N, F, P = y.shape
    for f in prange(F):  # each channel owns sums[f]
        total = 0.0
        for n in range(N):
            for p in range(P):
                total += y[n, f, p]
        sums[f] = total


def channel_sums(y):
    """Per-channel sums in float64; see :func:`numcnn.kernels.reference.channel_sums`."""
    sums = np.empty(y.shape[1], dtype=np.float64)
    _channel_sums(np.ascontiguousarray(y), sums)
    return sums


# ---------------------------------------------------------------------------
# Max pooling
# ---------------------------------------------------------------------------
@njit(**_pjit)
def _maxpool_forward(x, K, stride, y, argmax):
    N, C, OH, OW = y.shape
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        for oh in range(OH):
            for ow in range(OW):
                h0 = oh * stride
                w0 = ow * stride
                best = x[n, c, h0, w0]
                best_at = 0
                for i in range(K):
                    for j in range(K):
                        v = x[n, c, h0 + i, w0 + j]
                        if v > best:  # strict: the first maximum wins ties
                            best = v
                            best_at = i * K + j
                y[n, c, oh, ow] = best
                argmax[n, c, oh, ow] = best_at


@njit(**_pjit)
def _maxpool2_forward(x, y, argmax):
    N, C, OH, OW = y.shape
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        for oh in range(OH):
            top = x[n, c, 2 * oh]
            bottom = x[n, c, 2 * oh + 1]
            out = y[n, c, oh]
            at = argmax[n, c, oh]
            for ow in range(OW):  # the four values of a 2x2 window, in the general order
                best = top[2 * ow]
                where = 0
                v = top[2 * ow + 1]
                if v > best:
                    best, where = v, 1
                v = bottom[2 * ow]
                if v > best:
                    best, where = v, 2
                v = bottom[2 * ow + 1]
                if v > best:
                    best, where = v, 3
                out[ow] = best
                at[ow] = where


@njit(**_pjit)
def _maxpool2_backward(dy, argmax, dx):
    N, C, OH, OW = dy.shape
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        dx[n, c, 2 * OH:, :] = 0  # rows and columns no window covers
        dx[n, c, :, 2 * OW:] = 0
        for oh in range(OH):
            top = dx[n, c, 2 * oh]
            bottom = dx[n, c, 2 * oh + 1]
            g = dy[n, c, oh]
            at = argmax[n, c, oh]
            for ow in range(OW):
                a = at[ow]
                v = g[ow]
                top[2 * ow] = v if a == 0 else 0
                top[2 * ow + 1] = v if a == 1 else 0
                bottom[2 * ow] = v if a == 2 else 0
                bottom[2 * ow + 1] = v if a == 3 else 0


def maxpool_forward(x, K, stride):
    """Max pooling; see :func:`numcnn.kernels.reference.maxpool_forward`.

    2x2 windows with stride 2, the usual case, have a kernel of their own
    (the same comparisons, written out: about eight times faster).
    """
    N, C, H, W = x.shape
    OH = conv_output_size(H, K, stride, 0)
    OW = conv_output_size(W, K, stride, 0)
    y = np.empty((N, C, OH, OW), dtype=x.dtype)
    argmax = np.empty((N, C, OH, OW), dtype=np.int32)
    if K == stride == 2:
        _maxpool2_forward(np.ascontiguousarray(x), y, argmax)
    else:
        _maxpool_forward(np.ascontiguousarray(x), K, stride, y, argmax)
    return y, argmax


@njit(**_pjit)
def _maxpool_backward(dy, argmax, K, stride, dx):
    N, C, OH, OW = dy.shape
    H, W = dx.shape[2:]
    tiled = stride == K  # windows tile the image: every input is written exactly once
    for nc in prange(N * C):  # each (image, channel) plane is written by one iteration
        n = nc // C
        c = nc % C
        if tiled:
            dx[n, c, OH * K:, :] = 0  # rows and columns no window covers
            dx[n, c, :, OW * K:] = 0
            for oh in range(OH):
                for ow in range(OW):
                    a = argmax[n, c, oh, ow]
                    g = dy[n, c, oh, ow]
                    for i in range(K):
                        for j in range(K):
                            dx[n, c, oh * K + i, ow * K + j] = g if i * K + j == a else 0
        else:  # overlapping windows add up: clear the plane, then accumulate
            dx[n, c] = 0
            for oh in range(OH):
                for ow in range(OW):
                    a = argmax[n, c, oh, ow]
                    dx[n, c, oh * stride + a // K, ow * stride + a % K] += dy[n, c, oh, ow]


def maxpool_backward(dy, argmax, x_shape, K, stride):
    """Route gradients to the maxima; see the reference twin."""
    dx = np.empty(x_shape, dtype=dy.dtype)
    if K == stride == 2:
        _maxpool2_backward(np.ascontiguousarray(dy), np.ascontiguousarray(argmax), dx)
    else:
        _maxpool_backward(np.ascontiguousarray(dy), argmax, K, stride, dx)
    return dx


# ---------------------------------------------------------------------------
# Batch normalisation
# ---------------------------------------------------------------------------
@njit(**_reduce_jit)
def _channel_mean_var(x, mean, var):
    N, C, L = x.shape  # L = H * W
    M = N * L
    for c in prange(C):
        total = 0.0  # float64 accumulators
        for n in range(N):
            for i in range(L):
                total += x[n, c, i]
        mu = total / M
        sq = 0.0
        for n in range(N):
            for i in range(L):
                d = x[n, c, i] - mu
                sq += d * d
        mean[c] = mu
        var[c] = sq / M


@njit(**_pjit)
def _channel_affine(x, scale, shift, relu, y):
    N, C, L = x.shape
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        s = scale[c]
        t = shift[c]
        for i in range(L):
            v = x[n, c, i] * s + t
            y[n, c, i] = (v if v > 0 else 0) if relu else v   # relu: the ReLU after it, fused


def _affine_from_stats(gamma, beta, mean, var, eps, dtype):
    inv_std = 1.0 / np.sqrt(var.astype(np.float64) + eps)
    scale = (gamma * inv_std).astype(dtype)
    shift = (beta - mean * gamma * inv_std).astype(dtype)
    return scale, shift


def _batchnorm(x, gamma, beta, eps, relu):
    """Batch statistics, then the affine map (and the ReLU): y, mean, var."""
    x = np.ascontiguousarray(x)
    N, C = x.shape[:2]
    x3 = x.reshape(N, C, -1)
    mean = np.empty(C, dtype=np.float64)
    var = np.empty(C, dtype=np.float64)
    _channel_mean_var(x3, mean, var)
    scale, shift = _affine_from_stats(gamma, beta, mean, var, eps, x.dtype)
    y = np.empty_like(x)
    _channel_affine(x3, scale, shift, relu, y.reshape(N, C, -1))
    return y, mean.astype(x.dtype), var.astype(x.dtype)


def _batchnorm_fixed(x, gamma, beta, mean, var, eps, relu):
    """The affine map of fixed statistics (and the ReLU)."""
    x = np.ascontiguousarray(x)
    N, C = x.shape[:2]
    scale, shift = _affine_from_stats(gamma, beta, mean, var, eps, x.dtype)
    y = np.empty_like(x)
    _channel_affine(x.reshape(N, C, -1), scale, shift, relu, y.reshape(N, C, -1))
    return y


def batchnorm_forward(x, gamma, beta, eps):
    """Batch-statistics normalisation; see the reference twin."""
    return _batchnorm(x, gamma, beta, eps, False)


def batchnorm_inference(x, gamma, beta, mean, var, eps):
    """Running-statistics normalisation; see the reference twin."""
    return _batchnorm_fixed(x, gamma, beta, mean, var, eps, False)


@njit(**_reduce_jit)
def _batchnorm_backward(dy, y, x, gamma, mean, inv_std, dx, dgamma, dbeta):
    N, C, L = x.shape  # L = H * W
    M = N * L
    relu = y.shape[0] > 0  # y: the ReLU's output, when the ReLU after BatchNorm is fused
    for c in prange(C):
        mu = mean[c]
        s = inv_std[c]
        sum_dy = 0.0
        sum_dy_xc = 0.0  # sum of dy * (x - mu); times s it is sum(dy * xhat)
        for n in range(N):
            for i in range(L):
                g = (dy[n, c, i] if y[n, c, i] > 0 else 0) if relu else dy[n, c, i]
                sum_dy += g
                sum_dy_xc += g * (x[n, c, i] - mu)
        sum_dy_xhat = sum_dy_xc * s
        dbeta[c] = sum_dy
        dgamma[c] = sum_dy_xhat
        k = gamma[c] * s / M
        for n in range(N):
            for i in range(L):
                g = (dy[n, c, i] if y[n, c, i] > 0 else 0) if relu else dy[n, c, i]
                xhat = (x[n, c, i] - mu) * s
                dx[n, c, i] = k * (M * g - sum_dy - xhat * sum_dy_xhat)


def _batchnorm_gradients(dy, y, x, gamma, mean, var, eps):
    """dx, dgamma, dbeta of BatchNorm (and of the ReLU after it, given its output ``y``)."""
    x = np.ascontiguousarray(x)
    N, C = x.shape[:2]
    inv_std = 1.0 / np.sqrt(var.astype(np.float64) + eps)
    dx = np.empty_like(x)
    dgamma = np.empty(C, dtype=np.float64)
    dbeta = np.empty(C, dtype=np.float64)
    relu_out = (np.empty((0, 0, 0), dtype=x.dtype) if y is None
                else np.ascontiguousarray(y).reshape(N, C, -1))
    _batchnorm_backward(np.ascontiguousarray(dy).reshape(N, C, -1), relu_out,
                        x.reshape(N, C, -1), gamma.astype(np.float64), mean.astype(np.float64),
                        inv_std, dx.reshape(N, C, -1), dgamma, dbeta)
    return dx, dgamma.astype(x.dtype), dbeta.astype(x.dtype)


def batchnorm_backward(dy, x, gamma, mean, var, eps):
    """Training-mode BatchNorm gradients; see the reference twin."""
    return _batchnorm_gradients(dy, None, x, gamma, mean, var, eps)


# ---------------------------------------------------------------------------
# BatchNorm followed by ReLU, fused: one pass fewer each way
# ---------------------------------------------------------------------------
def batchnorm_relu_forward(x, gamma, beta, eps):
    """``max(0, BN(x))`` with batch statistics, in the same pass; see the reference twin."""
    return _batchnorm(x, gamma, beta, eps, True)


def batchnorm_relu_inference(x, gamma, beta, mean, var, eps):
    """``max(0, BN(x))`` with fixed statistics; see the reference twin."""
    return _batchnorm_fixed(x, gamma, beta, mean, var, eps, True)


def batchnorm_relu_backward(dy, y, x, gamma, mean, var, eps):
    """Gradients of ``max(0, BN(x))`` in training mode (the ReLU's mask read from ``y``)."""
    return _batchnorm_gradients(dy, y, x, gamma, mean, var, eps)


# ---------------------------------------------------------------------------
# A convolution's matrix-multiply result straight into BatchNorm and ReLU
# ---------------------------------------------------------------------------
@njit(**_reduce_jit)
def _rows_mean_var(rows, bias, N, mean, var):
    F = rows.shape[0]
    M = rows.shape[1]
    for f in prange(F):  # the same sums, in the same order, as _channel_mean_var's
        b = bias[f]
        total = 0.0
        for i in range(M):
            total += rows[f, i] + b
        mu = total / M
        sq = 0.0
        for i in range(M):
            d = (rows[f, i] + b) - mu
            sq += d * d
        mean[f] = mu
        var[f] = sq / M


@njit(**_pjit)
def _rows_affine(rows, bias, scale, shift, relu, y):
    N, F, P = y.shape
    for nf in prange(N * F):
        n = nf // F
        f = nf % F
        source = rows[f, n * P:(n + 1) * P]
        target = y[n, f]
        b = bias[f]
        s = scale[f]
        t = shift[f]
        for p in range(P):
            v = (source[p] + b) * s + t
            target[p] = (v if v > 0 else 0) if relu else v


def rows_batchnorm_relu_forward(rows, bias, gamma, beta, eps, N):
    """``max(0, BN(rows + bias))``, read in the GEMM's layout; see the reference twin."""
    F = rows.shape[0]
    mean = np.empty(F, dtype=np.float64)
    var = np.empty(F, dtype=np.float64)
    _rows_mean_var(rows, bias, N, mean, var)
    scale, shift = _affine_from_stats(gamma, beta, mean, var, eps, rows.dtype)
    y = np.empty((N, F, rows.shape[1] // N), dtype=rows.dtype)
    _rows_affine(rows, bias, scale, shift, True, y)
    return y, mean.astype(rows.dtype), var.astype(rows.dtype)


def rows_batchnorm_relu_inference(rows, bias, gamma, beta, mean, var, eps, N):
    """``max(0, BN(rows + bias))`` with fixed statistics; see the reference twin."""
    scale, shift = _affine_from_stats(gamma, beta, mean, var, eps, rows.dtype)
    y = np.empty((N, rows.shape[0], rows.shape[1] // N), dtype=rows.dtype)
    _rows_affine(rows, bias, scale, shift, True, y)
    return y


@njit(**_reduce_jit)
def _rows_batchnorm_relu_backward(dy, y, rows, bias, gamma, mean, inv_std, dx, dgamma, dbeta):
    N, F, P = dy.shape
    M = N * P
    for f in prange(F):  # the same sums and values as _batchnorm_backward's, dx as rows
        mu = mean[f]
        s = inv_std[f]
        b = bias[f]
        sum_dy = 0.0
        sum_dy_xc = 0.0
        for n in range(N):
            for p in range(P):
                g = dy[n, f, p] if y[n, f, p] > 0 else 0
                sum_dy += g
                sum_dy_xc += g * ((rows[f, n * P + p] + b) - mu)
        sum_dy_xhat = sum_dy_xc * s
        dbeta[f] = sum_dy
        dgamma[f] = sum_dy_xhat
        k = gamma[f] * s / M
        for n in range(N):
            for p in range(P):
                g = dy[n, f, p] if y[n, f, p] > 0 else 0
                xhat = ((rows[f, n * P + p] + b) - mu) * s
                dx[f, n * P + p] = k * (M * g - sum_dy - xhat * sum_dy_xhat)


def rows_batchnorm_relu_backward(dy, y, rows, bias, gamma, mean, var, eps):
    """Gradients of the fused forward, ``dx`` in the GEMM's layout; see the reference twin."""
    F = rows.shape[0]
    inv_std = 1.0 / np.sqrt(var.astype(np.float64) + eps)
    dx = np.empty_like(rows)
    dgamma = np.empty(F, dtype=np.float64)
    dbeta = np.empty(F, dtype=np.float64)
    _rows_batchnorm_relu_backward(np.ascontiguousarray(dy), np.ascontiguousarray(y), rows,
                                  bias, gamma.astype(np.float64), mean.astype(np.float64),
                                  inv_std, dx, dgamma, dbeta)
    return dx, dgamma.astype(rows.dtype), dbeta.astype(rows.dtype)


# ---------------------------------------------------------------------------
# Element-wise steps (flattened, split across both cores)
# ---------------------------------------------------------------------------
@njit(**_pjit)
def _relu_forward(x, y):
    for i in prange(x.size):
        v = x[i]
        y[i] = v if v > 0 else 0


def relu_forward(x):
    """``max(x, 0)``, any shape."""
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    _relu_forward(x.reshape(-1), y.reshape(-1))
    return y


@njit(**_pjit)
def _relu_backward(dy, y, dx):
    for i in prange(dy.size):
        dx[i] = dy[i] if y[i] > 0 else 0


def relu_backward(dy, y):
    """``dy * (y > 0)``."""
    dy = np.ascontiguousarray(dy)
    dx = np.empty_like(dy)
    _relu_backward(dy.reshape(-1), np.ascontiguousarray(y).reshape(-1), dx.reshape(-1))
    return dx


@njit(inline="always")
def _splitmix_uniform(seed, i):
    """The ``i``-th uniform of :func:`numcnn.kernels.reference.uniform_from_seed` (0-based)."""
    z = seed + np.uint64(i + 1) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return np.float32(z >> np.uint64(40)) * np.float32(2.0 ** -24)


@njit(**_pjit)
def _uniform_from_seed(seed, u):
    for i in prange(u.size):
        u[i] = _splitmix_uniform(seed, i)


def uniform_from_seed(seed, shape):
    """Uniform float32 numbers in [0, 1) from one 64-bit seed; see the reference twin."""
    u = np.empty(shape, dtype=np.float32)
    _uniform_from_seed(np.uint64(seed), u.reshape(-1))
    return u


@njit(**_pjit)
def _dropout_forward(x, seed, p, scale, y, mask):
    for i in prange(x.size):
        u = _splitmix_uniform(seed, i)  # made here, never stored
        m = scale if u >= p else 0
        mask[i] = m
        y[i] = x[i] * m


def dropout_forward(x, seed, p):
    """Inverted dropout, its uniform numbers made on the fly; see the reference twin."""
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    mask = np.empty_like(x)
    scale = x.dtype.type(1.0 / (1.0 - p))
    _dropout_forward(x.reshape(-1), np.uint64(seed), np.float32(p), scale,
                     y.reshape(-1), mask.reshape(-1))
    return y, mask


@njit(**_pjit)
def _multiply(a, b, out):
    for i in prange(a.size):
        out[i] = a[i] * b[i]


def dropout_backward(dy, mask):
    """``dy * mask``."""
    dy = np.ascontiguousarray(dy)
    dx = np.empty_like(dy)
    _multiply(dy.reshape(-1), mask.reshape(-1), dx.reshape(-1))
    return dx
