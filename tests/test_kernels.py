"""The numba kernels (numcnn.kernels.jit) against their NumPy twins (numcnn.kernels.reference).

The convolution's ladder, at the level of the kernels: the direct loops of its
definition (``conv2d_direct``, ``conv2d_direct_backward``) equal im2col + one
matrix multiply (forward) and col2im of ``W.T @ dY`` (backward), and the numba
direct loops equal the NumPy ones.

Shapes, kernel sizes, strides and paddings come from hypothesis; the array
values come from a Generator seeded by hypothesis. Exact ops (copies, maxima,
masks) must agree bit for bit; ops that sum must agree to float32 round-off,
measured against the magnitude of the terms summed.
"""
import contextlib
import inspect

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numcnn
from numcnn.kernels import jit, reference
from numcnn.kernels.jit import conv3x3, normalisation
from numcnn.kernels.reference import conv_output_size

SETTINGS = settings(max_examples=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
TOL = {np.float32: 1e-5, np.float64: 1e-12}

dtypes = st.sampled_from([np.float32, np.float64])
seeds = st.integers(0, 2**32 - 1)


@st.composite
def conv_geometry(draw):
    """(N, C, H, W, KH, KW, stride, pad) with at least one output position."""
    N = draw(st.integers(1, 3))
    C = draw(st.integers(1, 3))
    KH = draw(st.integers(1, 4))
    KW = draw(st.integers(1, 4))
    stride = draw(st.integers(1, 3))
    pad = draw(st.integers(0, 2))
    H = draw(st.integers(max(1, KH - 2 * pad), 9))
    W = draw(st.integers(max(1, KW - 2 * pad), 9))
    return N, C, H, W, KH, KW, stride, pad


@st.composite
def pool_geometry(draw):
    """(N, C, H, W, K, stride) with H, W >= K."""
    N = draw(st.integers(1, 3))
    C = draw(st.integers(1, 3))
    K = draw(st.integers(1, 4))
    stride = draw(st.integers(1, 4))
    H = draw(st.integers(K, 10))
    W = draw(st.integers(K, 10))
    return N, C, H, W, K, stride


@st.composite
def image_shape(draw):
    return tuple(draw(st.integers(1, 5)) for _ in range(4))


def assert_close(actual, expected, dtype, scale=None):
    """Within ``tol`` relative, or ``tol * scale`` absolute (scale: size of the terms summed)."""
    tol = TOL[dtype]
    if scale is None:
        scale = np.abs(expected).max(initial=0.0)
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * max(scale, 1e-30))


# ---------------------------------------------------------------------------
# Both modules offer the same functions with the same signatures
# ---------------------------------------------------------------------------
def public_functions(module):
    """Public functions defined in ``module`` or the modules of its package (the rooms of
    ``numcnn.kernels.jit``), not imported helpers like njit."""
    return {name: obj for name, obj in vars(module).items()
            if not name.startswith("_") and inspect.isfunction(obj)
            and (obj.__module__ == module.__name__
                 or obj.__module__.startswith(module.__name__ + "."))}


def test_kernel_modules_define_the_same_functions():
    ref, fast = public_functions(reference), public_functions(jit)
    # conv_output_size is a shared helper that jit imports from reference.
    assert set(ref) - {"conv_output_size"} == set(fast)
    assert jit.conv_output_size is reference.conv_output_size


@pytest.mark.parametrize("name", sorted(set(public_functions(jit))))
def test_kernel_signatures_match(name):
    assert inspect.signature(getattr(jit, name)) == inspect.signature(getattr(reference, name))


def test_expected_kernels_exist():
    expected = {"conv2d_direct", "conv2d_direct_backward", "adam_update",
                "im2col", "col2im", "nchw_from_rows", "rows_from_nchw", "add_channel_bias",
                "channel_sums",
                "maxpool_forward", "maxpool_backward", "batchnorm_forward",
                "batchnorm_inference", "batchnorm_backward", "relu_forward", "relu_backward",
                "dropout_forward", "dropout_backward", "uniform_from_seed",
                "batchnorm_relu_forward", "batchnorm_relu_inference", "batchnorm_relu_backward",
                "batchnorm_relu_maxpool2_forward", "batchnorm_relu_maxpool2_inference",
                "batchnorm_relu_maxpool2_backward"}
    assert expected <= set(public_functions(jit))


# ---------------------------------------------------------------------------
# Convolution by its definition: direct loops
# ---------------------------------------------------------------------------
def conv_arrays(geometry, dtype, seed, F):
    N, C, H, W, KH, KW, stride, pad = geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    Wt = rng.standard_normal((F, C, KH, KW)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    OH, OW = conv_output_size(H, KH, stride, pad), conv_output_size(W, KW, stride, pad)
    dy = rng.standard_normal((N, F, OH, OW)).astype(dtype)
    return x, Wt, b, dy


@SETTINGS
@given(geometry=conv_geometry(), F=st.integers(1, 3), seed=seeds)
def test_direct_convolution_equals_im2col_and_one_matrix_multiply(geometry, F, seed):
    """Forward and backward of the definition against the im2col route, in float64."""
    N, C, H, W, KH, KW, stride, pad = geometry
    x, Wt, b, dy = conv_arrays(geometry, np.float64, seed, F)
    cols = reference.im2col(x, KH, KW, stride, pad)                       # (C*KH*KW, N*P)
    rows = Wt.reshape(F, -1) @ cols                                       # (F, N*P)
    y = reference.nchw_from_rows(rows, N) + b[None, :, None]
    expected = y.reshape(dy.shape)
    np.testing.assert_allclose(reference.conv2d_direct(x, Wt, b, stride, pad), expected,
                               rtol=1e-12, atol=1e-12)
    dY = reference.rows_from_nchw(dy.reshape(N, F, -1))                   # (F, N*P)
    dx, dW, db = reference.conv2d_direct_backward(dy, x, Wt, stride, pad)
    np.testing.assert_allclose(dW, (dY @ cols.T).reshape(Wt.shape), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, reference.col2im(Wt.reshape(F, -1).T @ dY, x.shape, KH, KW,
                                                    stride, pad), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)), rtol=1e-12, atol=1e-12)


@SETTINGS
@given(geometry=conv_geometry(), F=st.integers(1, 3), dtype=dtypes, seed=seeds)
def test_direct_convolution_matches_reference(geometry, F, dtype, seed):
    N, C, H, W, KH, KW, stride, pad = geometry
    x, Wt, b, dy = conv_arrays(geometry, dtype, seed, F)
    y_ref = reference.conv2d_direct(x, Wt, b, stride, pad)
    y_jit = jit.conv2d_direct(x, Wt, b, stride, pad)
    # Each output sums C*KH*KW products (and the bias).
    terms = C * KH * KW * np.abs(x).max() * np.abs(Wt).max() + np.abs(b).max()
    assert_close(y_jit, y_ref, dtype, scale=terms)
    dx_ref, dW_ref, db_ref = reference.conv2d_direct_backward(dy, x, Wt, stride, pad)
    dx_jit, dW_jit, db_jit = jit.conv2d_direct_backward(dy, x, Wt, stride, pad)
    # dx sums at most F*KH*KW products per pixel; dW and db sum N*OH*OW each.
    P = dy.shape[0] * dy.shape[2] * dy.shape[3]
    assert_close(dx_jit, dx_ref, dtype, scale=F * KH * KW * np.abs(dy).max() * np.abs(Wt).max())
    assert_close(dW_jit, dW_ref, dtype, scale=P * np.abs(dy).max() * np.abs(x).max())
    assert_close(db_jit, db_ref, dtype, scale=P * np.abs(dy).max())


def test_direct_convolution_accepts_non_contiguous_input():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 6, 7, 8)).astype(np.float32)[:, ::2, :, 1:]   # strided view
    Wt = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    y = reference.conv2d_direct(x, Wt, b, 2, 1)
    assert_close(jit.conv2d_direct(x, Wt, b, 2, 1), y, np.float32,
                 scale=3 * 3 * 2 * np.abs(x).max() * np.abs(Wt).max() + np.abs(b).max())
    dy = rng.standard_normal(y.shape).astype(np.float32)[..., ::-1]          # reversed view
    P = dy.shape[0] * dy.shape[2] * dy.shape[3]
    scales = (4 * 3 * 2 * np.abs(dy).max() * np.abs(Wt).max(),        # dx
              P * np.abs(dy).max() * np.abs(x).max(),                  # dW
              P * np.abs(dy).max())                                    # db
    for got, want, scale in zip(jit.conv2d_direct_backward(dy, x, Wt, 2, 1),
                                reference.conv2d_direct_backward(dy, x, Wt, 2, 1), scales):
        assert_close(got, want, np.float32, scale=scale)


# ---------------------------------------------------------------------------
# The 3x3 kernels: stacks of padded images, nine shifted multiply-adds
# ---------------------------------------------------------------------------
@st.composite
def geometry_3x3(draw):
    """(N, C, F, H, W, pad) of a 3x3 convolution with stride 1 and at least one output."""
    pad = draw(st.integers(0, 2))
    H = draw(st.integers(max(1, 3 - 2 * pad), 12))
    W = draw(st.integers(max(1, 3 - 2 * pad), 12))
    F = draw(st.integers(1, 2 * conv3x3.BLOCK + 1))      # up to three blocks of the forward kernel
    return (draw(st.integers(1, 11)), draw(st.integers(1, 5)), F, H, W, pad)


@contextlib.contextmanager
def stacking(stack_bytes, parts):
    """The 3x3 weight gradient with ``GRADIENT_STACK_BYTES`` ``stack_bytes`` and
    ``GRADIENT_PARTS`` ``parts``, for a while."""
    saved = conv3x3.GRADIENT_STACK_BYTES, conv3x3.GRADIENT_PARTS
    conv3x3.GRADIENT_STACK_BYTES, conv3x3.GRADIENT_PARTS = stack_bytes, parts
    try:
        yield
    finally:
        conv3x3.GRADIENT_STACK_BYTES, conv3x3.GRADIENT_PARTS = saved


def gradient_stack(x_shape, itemsize=4):
    """Images a stack of the 3x3 weight gradient at the current budget (padding 1)."""
    return conv3x3._images_per_stack(x_shape, 1, itemsize, conv3x3.GRADIENT_STACK_BYTES, conv3x3.FILTER_BLOCK)


@SETTINGS
@given(geometry=geometry_3x3(), dtype=dtypes, seed=seeds,
       stack_bytes=st.sampled_from([1, 600, 4000, conv3x3.GRADIENT_STACK_BYTES]),
       parts=st.sampled_from([1, 3, conv3x3.GRADIENT_PARTS]))
def test_3x3_kernels_match_the_reference(geometry, dtype, seed, stack_bytes, parts):
    """Forward, dx, dW and db of the 3x3 kernels against the definition, for any number of
    images a stack of the weight gradient (``GRADIENT_STACK_BYTES`` and ``GRADIENT_PARTS``
    small or large: one image a stack, a few with a shorter last stack, the whole batch
    in one), rows shorter than a vector, filters that do not fill a block, and padding
    0, 1 or 2."""
    N, C, F, H, W, pad = geometry
    x, Wt, b, dy = conv_arrays((N, C, H, W, 3, 3, 1, pad), dtype, seed, F)
    assert conv3x3.takes(Wt.shape, 1, pad) == (numcnn.route() == "vectors")
    with stacking(stack_bytes, parts):
        y = jit.conv2d_direct(x, Wt, b, 1, pad)
        dx, dW, db = jit.conv2d_direct_backward(dy, x, Wt, 1, pad)
        first_layer = jit.conv2d_direct_backward(dy, x, Wt, 1, pad, input_grad=False)
    assert_close(y, reference.conv2d_direct(x, Wt, b, 1, pad), dtype,
                 scale=C * 9 * np.abs(x).max() * np.abs(Wt).max() + np.abs(b).max())
    dx_ref, dW_ref, db_ref = reference.conv2d_direct_backward(dy, x, Wt, 1, pad)
    P = N * H * W
    assert_close(dx, dx_ref, dtype, scale=F * 9 * np.abs(dy).max() * np.abs(Wt).max())
    assert_close(dW, dW_ref, dtype, scale=P * np.abs(dy).max() * np.abs(x).max())
    assert_close(db, db_ref, dtype, scale=P * np.abs(dy).max())
    assert first_layer[0] is None
    assert np.array_equal(first_layer[1], dW) and np.array_equal(first_layer[2], db)


def test_3x3_weight_gradient_splits_images_into_stacks_both_threads_share():
    # conv1 of the blood-cell network: 64 images of 3x66x66 padded, and the four rows of g
    huge = 2 * conv3x3.GRADIENT_STACK_BYTES // 4                              # one image > budget
    assert conv3x3._images_per_stack((5, 1, huge, 1), 0, 4, conv3x3.GRADIENT_STACK_BYTES) == 1
    assert gradient_stack((1, 3, 64, 64)) == 1
    for N, C, H in [(64, 3, 64), (64, 32, 32), (7, 5, 9), (100, 1, 3)]:
        # the weight gradient's stacks: input and the four rows of g within their budget
        per_stack = gradient_stack((N, C, H, H))
        image = (C + 4) * (H + 2) ** 2 * 4
        assert per_stack * image <= max(conv3x3.GRADIENT_STACK_BYTES, image)
        assert conv3x3._ceil_div(N, per_stack) >= min(N, conv3x3.GRADIENT_PARTS)
    # conv1 and conv2 of the network: 3 and 2 images a stack in the weight gradient
    assert gradient_stack((64, 3, 64, 64)) == 3
    assert gradient_stack((64, 32, 32, 32)) == 2


@pytest.mark.skipif(not numcnn.routes.vectors_tested_on(), reason="no AVX2 or AVX-512 here")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_both_ways_of_a_weight_gradient_row_give_the_sums(dtype):
    """The weight gradient's row of taps, the plain loop and the vectors written out (the
    one this processor does not run is checked here too): the definition's sums."""
    rng = np.random.default_rng(5)
    Q = 96                                             # whole vectors of 16 numbers
    g = rng.standard_normal((4, Q)).astype(dtype)
    run = rng.standard_normal(Q + 2).astype(dtype)
    expected = np.array([[g[f] @ run[j:j + Q] for j in range(3)] for f in range(4)])
    for row_taps in (conv3x3._row_taps_loop, conv3x3._row_taps_vectors):
        dw = np.ones((4, 3))
        row_taps(g, run, Q, dw)
        np.testing.assert_allclose(dw, 1 + expected, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                   atol=1e-4 if dtype == np.float32 else 1e-10)


def test_3x3_weight_gradient_stacks_the_whole_batch_or_one_image_at_a_time():
    """The two ends of the stacking, on one batch: the same numbers to float32 rounding."""
    x, Wt, b, dy = conv_arrays((13, 2, 7, 9, 3, 3, 1, 1), np.float32, 3, 5)
    results = []
    for stack_bytes, parts, per_stack in [(10**9, 1, 13), (1, 8, 1)]:
        with stacking(stack_bytes, parts):
            assert gradient_stack(x.shape) == per_stack
            results.append((jit.conv2d_direct(x, Wt, b, 1, 1),)
                           + jit.conv2d_direct_backward(dy, x, Wt, 1, 1))
    expected = (reference.conv2d_direct(x, Wt, b, 1, 1),) + reference.conv2d_direct_backward(
        dy, x, Wt, 1, 1)
    for got in results:
        for a, want in zip(got, expected):
            assert_close(a, want, np.float32, scale=13 * 63 * 9 * np.abs(want).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("F, W", [(32, 64),     # conv1 of the network: whole blocks of filters
                                  (20, 16),     # (rows of whole blocks of columns with AVX-512)
                                  (9, 48),      # rows of whole blocks of columns on every processor
                                  (17, 20),     # one filter past a block; vectors across rows
                                  (40, 40),
                                  (16, 25),
                                  (3, 7)])      # fewer filters than a block; a vector spans rows
@pytest.mark.parametrize("pad", [0, 1, 2])
def test_3x3_forward_blocks_of_filters_and_columns(dtype, F, W, pad):
    """The forward pass (and dx, the same kernel) in blocks of filters and a vector of
    positions: rows of whole vectors, vectors that run across rows, filters that end in
    part of a block all give the definition's numbers."""
    x, Wt, b, dy = conv_arrays((3, 2, 5, W, 3, 3, 1, pad), dtype, 11, F)
    y = jit.conv2d_direct(x, Wt, b, 1, pad)
    assert_close(y, reference.conv2d_direct(x, Wt, b, 1, pad), dtype,
                 scale=2 * 9 * np.abs(x).max() * np.abs(Wt).max() + np.abs(b).max())
    dx, _, _ = jit.conv2d_direct_backward(dy, x, Wt, 1, pad)
    dx_ref, _, _ = reference.conv2d_direct_backward(dy, x, Wt, 1, pad)
    assert_close(dx, dx_ref, dtype, scale=F * 9 * np.abs(dy).max() * np.abs(Wt).max())


def test_3x3_backward_takes_an_output_gradient_of_another_dtype():
    """A float64 ``dy`` for a float32 ``x`` (as a loss in float64 would give) is taken
    in x's dtype: the gradients are float32 and those of the float32 ``dy``."""
    x, Wt, b, dy = conv_arrays((2, 3, 6, 9, 3, 3, 1, 1), np.float32, 5, 20)
    got = jit.conv2d_direct_backward(dy.astype(np.float64), x, Wt, 1, 1)
    want = jit.conv2d_direct_backward(dy, x, Wt, 1, 1)
    for a, w in zip(got, want):
        assert a.dtype == np.float32 and np.array_equal(a, w)


def test_3x3_forward_weights_put_one_taps_filters_side_by_side():
    Wt = np.arange(20 * 2 * 9, dtype=np.float32).reshape(20, 2, 3, 3)
    blocked = conv3x3._filters_in_blocks(Wt, np.float32)
    B = conv3x3.BLOCK                                             # 16 with AVX-512, else 8
    blocks = -(-20 // B)
    last = 20 - (blocks - 1) * B                              # the last block's filters
    assert blocked.shape == (blocks, 2, 3, 3, B) and blocked.flags.c_contiguous
    assert np.array_equal(blocked[0, 1, 2, 0], Wt[:B, 1, 2, 0])
    assert np.array_equal(blocked[-1, 0, 1, 2, :last], Wt[20 - last:, 0, 1, 2])
    assert not blocked[-1, ..., last:].any()                  # zero filters fill the last block
    assert np.array_equal(conv3x3._padded_bias(np.ones(20, np.float32), 20),
                          [1] * 20 + [0] * (blocks * B - 20))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, cols", [(1, 16), (4, 2048), (3, 48)])
def test_3x3_buffers_start_on_a_cache_line(dtype, rows, cols):
    """Every row of the kernels' buffers starts on a 64-byte line (rows of whole
    vectors), whatever the allocator gives; the numbers are zeros."""
    for _ in range(20):                                  # several allocations, several offsets
        buffer = conv3x3._aligned_zeros(rows, cols, np.zeros(1, dtype))
        assert buffer.shape == (rows, cols) and buffer.dtype == dtype
        assert not buffer.any() and buffer.flags.c_contiguous
        assert all(row.ctypes.data % 64 == 0 for row in buffer)


def test_3x3_kernels_take_an_empty_batch():
    x = np.zeros((0, 3, 8, 8), np.float32)
    Wt = np.ones((4, 3, 3, 3), np.float32)
    y = jit.conv2d_direct(x, Wt, np.zeros(4, np.float32), 1, 1)
    dx, dW, db = jit.conv2d_direct_backward(np.zeros((0, 4, 8, 8), np.float32), x, Wt, 1, 1)
    assert y.shape == (0, 4, 8, 8) and dx.shape == x.shape
    assert not dW.any() and not db.any() and dW.shape == Wt.shape


def test_3x3_weight_gradient_of_an_infinite_input_is_not_finite():
    """One infinite pixel: the definition's dW is not finite, nor is the kernels' (which
    may have more NaN entries: its sums also meet the pixels beside each image, times a
    zero). Training checks exactly this before it updates a weight."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 1, 5, 6)).astype(np.float32)
    x[1, 0, 2, 0] = np.inf
    Wt = rng.standard_normal((3, 1, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    _, dW, _ = jit.conv2d_direct_backward(dy, x, Wt, 1, 1, input_grad=False)
    _, dW_ref, _ = reference.conv2d_direct_backward(dy, x, Wt, 1, 1, input_grad=False)
    assert not np.isfinite(dW_ref).all()
    assert not np.isfinite(dW[~np.isfinite(dW_ref)]).any()     # non-finite wherever it is


def test_3x3_kernels_give_the_same_bits_on_one_thread_or_two():
    """The weight gradient is summed over fixed shares of the images, so the thread count
    does not change a bit of any result (a resumed run stays bit-identical)."""
    import numba
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba runs one thread here: nothing to compare")
    x, Wt, b, dy = conv_arrays((19, 3, 13, 11, 3, 3, 1, 1), np.float32, 7, 6)
    results = []
    threads = numba.get_num_threads()
    try:
        for n in (1, max(2, threads)):
            numba.set_num_threads(n)
            results.append((jit.conv2d_direct(x, Wt, b, 1, 1),)
                           + jit.conv2d_direct_backward(dy, x, Wt, 1, 1))
    finally:
        numba.set_num_threads(threads)
    for a, b_ in zip(results[0], results[-1]):
        assert np.array_equal(a, b_)


def test_the_plan_runs_direct_exactly_the_shapes_the_3x3_kernels_take():
    from numcnn.layers import Conv2D
    from numcnn.plan import runs_direct
    for kernel in (1, 2, 3, 5):
        for stride in (1, 2):
            for padding in (0, 1, 2, 3):
                conv = Conv2D(2, 3, kernel, stride=stride, padding=padding)
                assert runs_direct(conv) == (kernel == 3 and stride == 1 and padding <= 2
                                             and numcnn.route() == "vectors")
    assert runs_direct(Conv2D(3, 32, 3, padding=1)) == (numcnn.route() == "vectors")


# ---------------------------------------------------------------------------
# im2col / col2im
# ---------------------------------------------------------------------------
@SETTINGS
@given(geometry=conv_geometry(), dtype=dtypes, seed=seeds)
def test_im2col_matches_reference_exactly(geometry, dtype, seed):
    N, C, H, W, KH, KW, stride, pad = geometry
    x = np.random.default_rng(seed).standard_normal((N, C, H, W)).astype(dtype)
    expected = reference.im2col(x, KH, KW, stride, pad)
    OH, OW = conv_output_size(H, KH, stride, pad), conv_output_size(W, KW, stride, pad)
    assert expected.shape == (C * KH * KW, N * OH * OW)
    actual = jit.im2col(x, KH, KW, stride, pad)
    assert actual.dtype == expected.dtype
    np.testing.assert_array_equal(actual, expected)
    # With a caller's buffer full of garbage: every entry is overwritten.
    out = np.full_like(expected, np.nan)
    assert jit.im2col(x, KH, KW, stride, pad, out=out) is out
    np.testing.assert_array_equal(out, expected)
    out = np.full_like(expected, np.nan)
    reference.im2col(x, KH, KW, stride, pad, out=out)
    np.testing.assert_array_equal(out, expected)


@SETTINGS
@given(geometry=conv_geometry(), dtype=dtypes, seed=seeds)
def test_col2im_matches_reference(geometry, dtype, seed):
    N, C, H, W, KH, KW, stride, pad = geometry
    OH, OW = conv_output_size(H, KH, stride, pad), conv_output_size(W, KW, stride, pad)
    cols = np.random.default_rng(seed).standard_normal((C * KH * KW, N * OH * OW)).astype(dtype)
    expected = reference.col2im(cols, (N, C, H, W), KH, KW, stride, pad)
    # Each pixel sums at most KH * KW entries of cols.
    scale = KH * KW * np.abs(cols).max()
    assert_close(jit.col2im(cols, (N, C, H, W), KH, KW, stride, pad), expected, dtype, scale)
    out = np.full((N, C, H, W), np.nan, dtype=dtype)
    assert jit.col2im(cols, (N, C, H, W), KH, KW, stride, pad, out=out) is out
    assert_close(out, expected, dtype, scale)


@SETTINGS
@given(geometry=conv_geometry(), seed=seeds)
def test_col2im_is_the_adjoint_of_im2col(geometry, seed):
    N, C, H, W, KH, KW, stride, pad = geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W))
    for kernels in (reference, jit):
        cols = kernels.im2col(x, KH, KW, stride, pad)
        g = rng.standard_normal(cols.shape)
        lhs = np.sum(cols * g)
        rhs = np.sum(x * kernels.col2im(g, x.shape, KH, KW, stride, pad))
        assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12 * np.abs(cols * g).sum())


# ---------------------------------------------------------------------------
# Layout shuffles and the channel bias
# ---------------------------------------------------------------------------
@SETTINGS
@given(N=st.integers(1, 4), F=st.integers(1, 5), P=st.integers(1, 30), dtype=dtypes, seed=seeds)
def test_nchw_rows_conversions_match_reference(N, F, P, dtype, seed):
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((F, N * P)).astype(dtype)
    y = reference.nchw_from_rows(rows, N)
    assert y.shape == (N, F, P)
    np.testing.assert_array_equal(jit.nchw_from_rows(rows, N), y)
    np.testing.assert_array_equal(y[N - 1, F - 1], rows[F - 1, (N - 1) * P:])
    back = reference.rows_from_nchw(y)
    np.testing.assert_array_equal(back, rows)
    np.testing.assert_array_equal(jit.rows_from_nchw(y), rows)
    out = np.full((N, F, P), np.nan, dtype)
    assert jit.nchw_from_rows(rows, N, out=out) is out
    np.testing.assert_array_equal(out, y)
    out = np.full((F, N * P), np.nan, dtype)
    assert jit.rows_from_nchw(y, out=out) is out
    np.testing.assert_array_equal(out, rows)


@SETTINGS
@given(N=st.integers(1, 4), F=st.integers(1, 5), P=st.integers(1, 30), dtype=dtypes, seed=seeds)
def test_add_channel_bias_matches_reference(N, F, P, dtype, seed):
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((N, F, P)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    expected = reference.add_channel_bias(y.copy(), b)
    np.testing.assert_array_equal(expected, y + b[None, :, None])
    target = y.copy()
    result = jit.add_channel_bias(target, b)
    np.testing.assert_array_equal(target, expected)       # in place
    assert result is target or np.shares_memory(result, target)


@SETTINGS
@given(N=st.integers(1, 4), F=st.integers(1, 5), P=st.integers(1, 30), dtype=dtypes, seed=seeds)
def test_channel_sums_match_reference(N, F, P, dtype, seed):
    y = np.random.default_rng(seed).standard_normal((N, F, P)).astype(dtype)
    expected = reference.channel_sums(y)
    assert expected.shape == (F,) and expected.dtype == np.float64
    np.testing.assert_allclose(expected, y.astype(np.float64).sum(axis=(0, 2)), rtol=1e-12, atol=1e-12)
    actual = jit.channel_sums(y)
    assert actual.dtype == np.float64
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12 * N * P)


# ---------------------------------------------------------------------------
# Max pooling
# ---------------------------------------------------------------------------
@SETTINGS
@given(geometry=pool_geometry(), dtype=dtypes, seed=seeds, ties=st.booleans())
def test_maxpool_matches_reference(geometry, dtype, seed, ties):
    N, C, H, W, K, stride = geometry
    rng = np.random.default_rng(seed)
    if ties:  # few distinct values: both must pick the first maximum of each window
        x = rng.integers(-2, 3, (N, C, H, W)).astype(dtype)
    else:
        x = rng.standard_normal((N, C, H, W)).astype(dtype)
    y_ref, arg_ref = reference.maxpool_forward(x, K, stride)
    y_jit, arg_jit = jit.maxpool_forward(x, K, stride)
    assert y_jit.dtype == y_ref.dtype and arg_jit.dtype == arg_ref.dtype
    np.testing.assert_array_equal(y_jit, y_ref)
    np.testing.assert_array_equal(arg_jit, arg_ref)

    dy = rng.standard_normal(y_ref.shape).astype(dtype)
    dx_ref = reference.maxpool_backward(dy, arg_ref, x.shape, K, stride)
    dx_jit = jit.maxpool_backward(dy, arg_ref, x.shape, K, stride)
    if stride >= K:   # disjoint windows: each input gets at most one gradient, exact
        np.testing.assert_array_equal(dx_jit, dx_ref)
    else:             # overlapping windows add up, maybe in another order
        assert_close(dx_jit, dx_ref, dtype, scale=K * K * np.abs(dy).max())


# ---------------------------------------------------------------------------
# Batch normalisation
# ---------------------------------------------------------------------------
def bn_inputs(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    N, C, H, W = shape
    spread = rng.uniform(0.1, 5.0, C)[None, :, None, None]
    centre = rng.uniform(-3.0, 3.0, C)[None, :, None, None]
    x = (rng.standard_normal(shape) * spread + centre).astype(dtype)
    gamma = rng.uniform(-2.0, 2.0, C).astype(dtype)
    beta = rng.uniform(-1.0, 1.0, C).astype(dtype)
    return rng, x, gamma, beta


@SETTINGS
@given(shape=image_shape(), dtype=dtypes, seed=seeds)
def test_batchnorm_forward_matches_reference(shape, dtype, seed):
    if shape[0] * shape[2] * shape[3] < 2:
        shape = (2,) + shape[1:]
    _, x, gamma, beta = bn_inputs(shape, dtype, seed)
    eps = 1e-5
    y_ref, mean_ref, var_ref = reference.batchnorm_forward(x, gamma, beta, eps)
    y_jit, mean_jit, var_jit = jit.batchnorm_forward(x, gamma, beta, eps)
    assert_close(mean_jit, mean_ref, dtype, scale=np.abs(x).max())
    assert_close(var_jit, var_ref, dtype, scale=np.abs(x).max() ** 2)
    # y = x * scale + shift, scale = gamma / std, shift = beta - mean * scale: the two
    # terms can be much bigger than y (a channel far from zero), so measure against them.
    scale = np.abs(gamma) / np.sqrt(var_ref.astype(np.float64) + eps)
    shift = np.abs(beta) + np.abs(mean_ref) * scale
    c = (None, slice(None), None, None)
    assert_close(y_jit, y_ref, dtype, scale=(np.abs(x) * scale[c] + shift[c]).max())
    # And both agree with the definition, computed in float64.
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(0, 2, 3))
    var = x64.var(axis=(0, 2, 3))
    c = (None, slice(None), None, None)
    expected = gamma[c] * (x64 - mean[c]) / np.sqrt(var[c] + eps) + beta[c]
    np.testing.assert_allclose(y_ref, expected, rtol=10 * TOL[dtype],
                               atol=10 * TOL[dtype] * (np.abs(expected).max() + 1))


@SETTINGS
@given(shape=image_shape(), dtype=dtypes, seed=seeds)
def test_batchnorm_inference_matches_reference(shape, dtype, seed):
    rng, x, gamma, beta = bn_inputs(shape, dtype, seed)
    C = shape[1]
    mean = rng.standard_normal(C).astype(dtype)
    var = rng.uniform(0.05, 4.0, C).astype(dtype)
    y_ref = reference.batchnorm_inference(x, gamma, beta, mean, var, 1e-5)
    y_jit = jit.batchnorm_inference(x, gamma, beta, mean, var, 1e-5)
    assert_close(y_jit, y_ref, dtype, scale=np.abs(y_ref).max() + np.abs(beta).max())


@SETTINGS
@given(shape=image_shape(), dtype=dtypes, seed=seeds)
def test_batchnorm_backward_matches_reference(shape, dtype, seed):
    if shape[0] * shape[2] * shape[3] < 2:
        shape = (2,) + shape[1:]
    rng, x, gamma, beta = bn_inputs(shape, dtype, seed)
    eps = 1e-5
    _, mean, var = reference.batchnorm_forward(x, gamma, beta, eps)
    dy = rng.standard_normal(shape).astype(dtype)
    dx_ref, dgamma_ref, dbeta_ref = reference.batchnorm_backward(dy, x, gamma, mean, var, eps)
    dx_jit, dgamma_jit, dbeta_jit = jit.batchnorm_backward(dy, x, gamma, mean, var, eps)
    M = shape[0] * shape[2] * shape[3]
    inv_std = 1.0 / np.sqrt(var.astype(np.float64) + eps)
    xhat = (x - mean[None, :, None, None]) * inv_std[None, :, None, None]
    # Sizes of the terms each result is made of.
    assert_close(dbeta_jit, dbeta_ref, dtype, scale=np.abs(dy).sum(axis=(0, 2, 3)).max())
    assert_close(dgamma_jit, dgamma_ref, dtype, scale=np.abs(dy * xhat).sum(axis=(0, 2, 3)).max())
    # dx = gamma inv_std / M (M dy - dbeta - xhat dgamma): three terms of size ~ M |dy|.
    dx_scale = (np.abs(gamma) * inv_std).max() * np.abs(dy).max() * (1 + np.abs(xhat).max())
    assert_close(dx_jit, dx_ref, dtype, scale=dx_scale)
    assert M >= 2


# ---------------------------------------------------------------------------
# Fused kernels: BatchNorm + ReLU, and BatchNorm + ReLU on a convolution's rows
# ---------------------------------------------------------------------------
@SETTINGS
@given(shape=image_shape(), dtype=dtypes, seed=seeds)
def test_fused_batchnorm_relu_equals_the_two_kernels(shape, dtype, seed):
    """The numba fusion computes its two numba kernels (the same values; the sums may be
    reassociated differently) and agrees with the reference twin to rounding."""
    if shape[0] * shape[2] * shape[3] < 2:
        shape = (2,) + shape[1:]
    rng, x, gamma, beta = bn_inputs(shape, dtype, seed)
    y, mean, var = jit.batchnorm_relu_forward(x, gamma, beta, 1e-5)
    y2, mean2, var2 = jit.batchnorm_forward(x, gamma, beta, 1e-5)
    np.testing.assert_array_equal(y, jit.relu_forward(y2))
    np.testing.assert_array_equal(mean, mean2)
    y_ref, _, _ = reference.batchnorm_relu_forward(x, gamma, beta, 1e-5)
    assert_close(y, y_ref, dtype, scale=np.abs(y_ref).max() + np.abs(beta).max() + 1)
    dy = rng.standard_normal(shape).astype(dtype)
    fused = jit.batchnorm_relu_backward(dy, y, x, gamma, mean, var, 1e-5)
    apart = jit.batchnorm_backward(jit.relu_backward(dy, y), x, gamma, mean, var, 1e-5)
    scale = (np.abs(dy).sum() + 1) * (np.abs(gamma).max() + 1)
    for a, b in zip(fused, apart):
        assert_close(a, b, dtype, scale=scale)
    np.testing.assert_array_equal(jit.batchnorm_relu_inference(x, gamma, beta, mean, var, 1e-5),
                                  jit.relu_forward(jit.batchnorm_inference(x, gamma, beta, mean,
                                                                            var, 1e-5)))


@st.composite
def pooled_image_shape(draw):
    """(N, C, H, W) with H, W >= 2, odd ones included (a last row or column no window covers)."""
    return (draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(2, 9)),
            draw(st.integers(2, 9)))


def pooled_gradients_fused_and_apart(dy, x, gamma, beta):
    """For the forward pass of ``x``: the fused BatchNorm-ReLU-MaxPool backward of ``dy``,
    and the layers' kernels one after another (``maxpool_backward``, then
    ``batchnorm_relu_backward`` with the ReLU's full-size output)."""
    y, argmax, mean, var = jit.batchnorm_relu_maxpool2_forward(x, gamma, beta, 1e-5)
    z, _, _ = jit.batchnorm_relu_forward(x, gamma, beta, 1e-5)
    fused = jit.batchnorm_relu_maxpool2_backward(dy, argmax, y, x, gamma, mean, var, 1e-5)
    apart = jit.batchnorm_relu_backward(jit.maxpool_backward(dy, argmax, x.shape, 2, 2), z, x,
                                        gamma, mean, var, 1e-5)
    return fused, apart


@SETTINGS
@given(shape=pooled_image_shape(), dtype=dtypes, seed=seeds)
def test_fused_batchnorm_relu_maxpool2_equals_the_kernels_one_after_another(shape, dtype, seed):
    """BatchNorm-ReLU-MaxPool in one kernel each way: forward, the same bits as
    ``batchnorm_relu_forward`` then ``maxpool_forward`` (the ReLU's zeros tie in many
    windows: the first one wins in both); backward, the same gradients as
    ``maxpool_backward`` then ``batchnorm_relu_backward`` to rounding; both twins agree."""
    rng, x, gamma, beta = bn_inputs(shape, dtype, seed)
    y, argmax, mean, var = jit.batchnorm_relu_maxpool2_forward(x, gamma, beta, 1e-5)
    z, mean2, var2 = jit.batchnorm_relu_forward(x, gamma, beta, 1e-5)
    y2, argmax2 = jit.maxpool_forward(z, 2, 2)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(argmax, argmax2)
    np.testing.assert_array_equal(mean, mean2)
    np.testing.assert_array_equal(var, var2)
    y_ref, argmax_ref, mean_ref, var_ref = reference.batchnorm_relu_maxpool2_forward(
        x, gamma, beta, 1e-5)
    assert_close(y, y_ref, dtype, scale=np.abs(y_ref).max() + np.abs(beta).max() + 1)
    assert_close(mean, mean_ref, dtype, scale=np.abs(x).max())
    assert_close(var, var_ref, dtype, scale=np.square(x).max())
    assert argmax_ref.dtype == argmax.dtype and argmax_ref.shape == argmax.shape
    np.testing.assert_array_equal(
        jit.batchnorm_relu_maxpool2_inference(x, gamma, beta, mean, var, 1e-5),
        jit.maxpool_forward(jit.batchnorm_relu_inference(x, gamma, beta, mean, var, 1e-5),
                            2, 2)[0])
    dy = rng.standard_normal(y.shape).astype(dtype)
    fused, apart = pooled_gradients_fused_and_apart(dy, x, gamma, beta)
    twin = reference.batchnorm_relu_maxpool2_backward(dy, argmax, y, x, gamma, mean, var, 1e-5)
    scale = (np.abs(dy).sum() + 1) * (np.abs(gamma).max() + 1)
    for a, b, c in zip(fused, apart, twin):
        assert a.shape == b.shape and a.dtype == b.dtype == x.dtype
        assert_close(a, b, dtype, scale=scale)
        assert_close(a, c, dtype, scale=scale)


@pytest.mark.parametrize("H, W", [(5, 9), (7, 2 * normalisation.LONG_ROWS + 1),
                                  (4, 2 * normalisation.LONG_ROWS)],
                         ids=["short-rows", "long-rows-odd", "long-rows-even"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", [7, 8])
def test_fused_batchnorm_relu_maxpool2_backward_on_short_and_long_rows(H, W, dtype, seed):
    """The input gradient is written a plane at a time on rows of fewer than
    ``LONG_ROWS`` windows and a row at a time on longer ones: both agree with the
    layers' kernels one after another, and so does the last row or column no window
    covers (BatchNorm's terms only), held to its own size."""
    rng, x, gamma, beta = bn_inputs((3, 2, H, W), dtype, seed)
    dy = rng.standard_normal((3, 2, H // 2, W // 2)).astype(dtype)
    fused, apart = pooled_gradients_fused_and_apart(dy, x, gamma, beta)
    scale = (np.abs(dy).sum() + 1) * (np.abs(gamma).max() + 1)
    for a, b in zip(fused, apart):
        assert_close(a, b, dtype, scale=scale)
    uncovered = [part for part in (np.s_[..., 2 * (H // 2):, :], np.s_[..., 2 * (W // 2):])
                 if fused[0][part].size]
    assert uncovered or (H % 2, W % 2) == (0, 0)
    for part in uncovered:               # no window's term: the line's own size
        assert_close(fused[0][part], apart[0][part], dtype)


# ---------------------------------------------------------------------------
# Element-wise kernels
# ---------------------------------------------------------------------------
@SETTINGS
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple), dtype=dtypes,
       seed=seeds)
def test_relu_matches_reference_exactly(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    x.flat[0] = 0.0   # the kink: the gradient there is 0 in both
    y_ref = reference.relu_forward(x)
    y_jit = jit.relu_forward(x)
    assert y_jit.dtype == y_ref.dtype
    np.testing.assert_array_equal(y_jit, y_ref)
    dy = rng.standard_normal(shape).astype(dtype)
    dx_ref = reference.relu_backward(dy, y_ref)
    dx_jit = jit.relu_backward(dy, y_ref)
    assert dx_jit.dtype == dx_ref.dtype == dtype
    np.testing.assert_array_equal(dx_jit, dx_ref)
    assert dx_ref.flat[0] == 0


@pytest.mark.parametrize("module", [reference, jit], ids=["reference", "numba"])
def test_nan_reaches_the_output_of_relu_maxpool_and_batchnorm_relu(module):
    """A NaN is never turned into a number on its way through (as in PyTorch): the ReLU
    keeps it, it is the maximum of its pooling window, BatchNorm-ReLU keeps it; so a
    broken value shows in the model's output, whose check then refuses it."""
    x = np.arange(2 * 3 * 4 * 6, dtype=np.float32).reshape(2, 3, 4, 6) - 50
    x[0, 1, 2, 3] = np.nan
    x[1, 2, 0, 0] = np.nan                                   # first in its window
    y = module.relu_forward(x)
    assert np.isnan(y[0, 1, 2, 3]) and np.isnan(y).sum() == 2
    for K, stride in [(2, 2), (3, 1)]:                       # the 2x2 kernel and the general one
        pooled, argmax = module.maxpool_forward(x, K, stride)
        want, want_argmax = reference.maxpool_forward(x, K, stride)
        np.testing.assert_array_equal(pooled, want)          # NaN where a window holds one
        np.testing.assert_array_equal(argmax, want_argmax)   # and the first NaN's place
        assert np.isnan(pooled[0, 1]).any() and np.isnan(pooled[1, 2, 0, 0])
        assert np.isnan(pooled).sum() == sum(np.isnan(window).any() for window in (
            x[n, c, i:i + K, j:j + K] for n in range(2) for c in range(3)
            for i in range(0, 4 - K + 1, stride) for j in range(0, 6 - K + 1, stride)))
    gamma, beta = np.ones(3, np.float32), np.zeros(3, np.float32)
    y, _, _ = module.batchnorm_relu_forward(x, gamma, beta, 1e-5)
    assert np.isnan(y[0, 1]).all() and np.isnan(y[1, 2]).all()  # NaN statistics: all NaN
    mean, var = np.zeros(3, np.float32), np.ones(3, np.float32)
    y = module.batchnorm_relu_inference(x, gamma, beta, mean, var, 1e-5)
    assert np.isnan(y).sum() == 2 and np.isnan(y[0, 1, 2, 3])
    pooled = module.batchnorm_relu_maxpool2_inference(x, gamma, beta, mean, var, 1e-5)
    np.testing.assert_array_equal(pooled, module.maxpool_forward(y, 2, 2)[0])
    assert np.isnan(pooled).sum() == 2
    assert np.isnan(pooled[0, 1, 1, 1]) and np.isnan(pooled[1, 2, 0, 0])


@pytest.mark.parametrize("module", [reference, jit], ids=["reference", "numba"])
def test_2x2_pool_windows_of_nans_infinities_and_ties(module):
    """Each 2x2 window's maximum and its place: the first NaN, an infinity beside its
    opposite (whose sum is NaN), all minus infinity, ties (the first wins)."""
    windows = np.array([[1, np.nan, 5, np.nan], [np.inf, -np.inf, 0, 1],
                        [-np.inf, -np.inf, -np.inf, -np.inf], [2, 2, 2, 2], [0, 3, 3, 1],
                        [-1, -2, np.inf, np.nan], [4, -np.inf, 4, np.inf]], np.float32)
    x = windows.reshape(1, len(windows), 2, 2)
    pooled, argmax = module.maxpool_forward(x, 2, 2)
    want = np.array([np.nan, np.inf, -np.inf, 2, 3, np.nan, np.inf], np.float32)
    np.testing.assert_array_equal(pooled.reshape(-1), want)
    np.testing.assert_array_equal(argmax.reshape(-1), [1, 0, 0, 0, 1, 3, 3])


@SETTINGS
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple), dtype=dtypes,
       p=st.sampled_from([0.0, 0.1, 0.5, 0.9]), seed=seeds)
def test_dropout_matches_reference_exactly(shape, dtype, p, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    draw = int(rng.integers(0, 2**63))
    mask_ref = reference.dropout_mask(draw, shape, p, x.dtype)
    mask_jit = jit.dropout_mask(draw, shape, p, x.dtype)
    y_ref, y_jit = reference.dropout_forward(x, draw, p), jit.dropout_forward(x, draw, p)
    assert y_jit.dtype == y_ref.dtype and mask_jit.dtype == mask_ref.dtype
    np.testing.assert_array_equal(mask_jit, mask_ref)
    np.testing.assert_array_equal(y_jit, y_ref)
    np.testing.assert_array_equal(y_ref, x * mask_ref)
    u = reference.uniform_from_seed(draw, shape)
    np.testing.assert_array_equal(mask_ref == 0, u < np.float32(p))
    dy = rng.standard_normal(shape).astype(dtype)
    np.testing.assert_array_equal(jit.dropout_backward(dy, draw, p),
                                  reference.dropout_backward(dy, draw, p))
    np.testing.assert_array_equal(reference.dropout_backward(dy, draw, p), dy * mask_ref)


@SETTINGS
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple), dtype=dtypes,
       decay=st.sampled_from([0.0, 1e-4]), t=st.integers(1, 50), seed=seeds)
def test_adam_update_matches_reference_exactly(shape, dtype, decay, t, seed):
    """One pass of numba gives the bits of the reference's NumPy lines, in place, and a
    strided array goes to the reference itself."""
    rng = np.random.default_rng(seed)
    param, grad, m = (rng.standard_normal(shape).astype(dtype) for _ in range(3))
    v = np.abs(rng.standard_normal(shape)).astype(dtype)
    expected, actual = [a.copy() for a in (param, grad, m, v)], [a.copy() for a in (param, grad, m, v)]
    reference.adam_update(*expected, 3e-3, (0.9, 0.999), 1e-8, t, decay)
    assert jit.adam_update(*actual, 3e-3, (0.9, 0.999), 1e-8, t, decay) is None
    for got, want, before in zip(actual, expected, (param, grad, m, v)):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == before.dtype
    assert not np.array_equal(expected[0], param)                 # the step moved the weights
    strided = [np.repeat(a[..., None], 2, axis=-1)[..., 0] for a in (param, grad, m, v)]
    jit.adam_update(*strided, 3e-3, (0.9, 0.999), 1e-8, t, decay)
    for got, want in zip(strided, expected):
        np.testing.assert_array_equal(got, want)


def test_uniform_from_seed_is_splitmix64_and_looks_uniform():
    """The first outputs of SplitMix64 from seed 0 (published reference values), to 24 bits."""
    known = [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
    u = reference.uniform_from_seed(0, (3,))
    np.testing.assert_array_equal(u, np.array([k >> 40 for k in known], np.float32) / 2**24)
    many = reference.uniform_from_seed(12345, (200_000,))
    assert 0 <= many.min() and many.max() < 1
    assert abs(many.mean() - 0.5) < 0.005 and abs(many.var() - 1 / 12) < 0.002
    counts = np.bincount((many * 10).astype(int), minlength=10)
    assert counts.min() > 19_000 and counts.max() < 21_000         # ten equal bins
    assert not np.array_equal(many[:100], reference.uniform_from_seed(12346, (100,)))


def test_kernels_accept_non_contiguous_input():
    """Layers may hand kernels views (slices, transposes); the jit twins must cope."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 8, 9)).astype(np.float32)[:, ::2, :, 1:]  # strided view
    np.testing.assert_array_equal(jit.im2col(x, 3, 2, 2, 1), reference.im2col(x, 3, 2, 2, 1))
    y_ref, a_ref = reference.maxpool_forward(x, 2, 2)
    y_jit, a_jit = jit.maxpool_forward(x, 2, 2)
    np.testing.assert_array_equal(y_jit, y_ref)
    np.testing.assert_array_equal(a_jit, a_ref)
    np.testing.assert_array_equal(jit.relu_forward(x), reference.relu_forward(x))
    gamma, beta = np.ones(2, np.float32), np.zeros(2, np.float32)
    assert_close(jit.batchnorm_forward(x, gamma, beta, 1e-5)[0],
                 reference.batchnorm_forward(x, gamma, beta, 1e-5)[0], np.float32)
