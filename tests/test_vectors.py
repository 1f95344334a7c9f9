"""The vector operations of the 3x3 kernels (numcnn.kernels.vectors), one by one."""
import numpy as np
import pytest
from numba import njit

from numcnn.kernels.vectors import BLOCK, filled, multiply_add, store


@njit
def block_of(bias, first_bias, source, at, weights, first_weight, taps):
    """A block started at the biases, plus ``taps`` input vectors times their weights,
    stored whole into rows of an array of NaN."""
    block = filled(bias, first_bias)
    for t in range(taps):
        block = multiply_add(block, source, at + t, weights, first_weight + t * BLOCK)
    lanes = 64 // source.itemsize
    out = np.full(BLOCK * lanes, np.nan, dtype=source.dtype)
    store(out, 0, lanes, block, BLOCK, 0, lanes)
    return out.reshape(BLOCK, lanes)


@njit
def stored(block_value, filters, lo, hi, start, stride, size):
    bias = np.full(BLOCK, block_value, dtype=np.float32)
    out = np.full(size, np.nan, dtype=np.float32)
    store(out, start, stride, filled(bias, 0), filters, lo, hi)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_block_sums_bias_and_products_filter_by_filter(dtype):
    rng = np.random.default_rng(0)
    lanes = 64 // np.dtype(dtype).itemsize
    source = rng.standard_normal(40).astype(dtype)
    weights = rng.standard_normal(3 * BLOCK + 5).astype(dtype)
    bias = rng.standard_normal(BLOCK + 2).astype(dtype)
    got = block_of(bias, 2, source, 3, weights, 5, 3)
    want = np.empty((BLOCK, lanes), dtype)
    for f in range(BLOCK):
        want[f] = bias[2 + f]
        for t in range(3):                      # the same order, one rounding a product (FMA)
            want[f] = want[f] + source[3 + t:3 + t + lanes] * weights[5 + t * BLOCK + f]
    np.testing.assert_allclose(got, want, rtol=4 * np.finfo(dtype).eps, atol=4 * np.finfo(dtype).eps)


def test_store_writes_only_its_filters_and_lanes():
    # 3 filters, lanes 4..10 of each, rows 20 apart, starting at 7
    out = stored(1.5, 3, 4, 11, 7, 20, 80)
    written = np.zeros(80, bool)
    for f in range(3):
        written[7 + 20 * f + 4:7 + 20 * f + 11] = True
    assert np.all(out[written] == 1.5)
    assert np.isnan(out[~written]).all()


def test_store_may_start_before_the_array_when_its_first_lane_does_not():
    # lanes 10..15 of a vector that would start 10 places before the array
    out = stored(2.0, 1, 10, 16, -10, 0, 8)
    assert np.all(out[:6] == 2.0) and np.isnan(out[6:]).all()


def test_whole_vectors_of_all_filters():
    out = stored(3.0, BLOCK, 0, 16, 0, 16, BLOCK * 16 + 3)
    assert np.all(out[:BLOCK * 16] == 3.0) and np.isnan(out[BLOCK * 16:]).all()
