"""The vector operations of the 3x3 kernels (numcnn.kernels.jit.vectors), one by one.

The block's size follows the processor (16 filters of one 64-byte vector
with AVX-512, 4 filters of three 32-byte vectors elsewhere), so the tests
read it from the module; ``test_the_blocks_of_an_avx2_processor`` runs them, and the forward
kernel's tests, again with numba compiling for a processor without AVX-512.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import llvmlite.binding as llvm
import numpy as np
import pytest
from numba import njit

from numcnn.kernels.jit import vectors
from numcnn.kernels.jit.vectors import BLOCK, VECTOR_BYTES, VECTORS, filled, multiply_add, store

LANES = VECTOR_BYTES // 4                      # float32 numbers in a vector


@njit
def block_of(bias, first_bias, source, at, weights, first_weight, taps):
    """A block started at the biases, plus ``taps`` times its input vectors times their
    weights, stored whole into rows of an array of NaN: filter f's vector v at
    ``[f, v * lanes:(v + 1) * lanes]``."""
    block = filled(bias, first_bias)
    for t in range(taps):
        block = multiply_add(block, source, at + t, weights, first_weight + t * BLOCK)
    lanes = VECTOR_BYTES // source.itemsize
    out = np.full(BLOCK * VECTORS * lanes, np.nan, dtype=source.dtype)
    for v in range(VECTORS):
        store(out, v * lanes, VECTORS * lanes, block, v, BLOCK, 0, lanes)
    return out.reshape(BLOCK, VECTORS * lanes)


@njit
def stored(block_value, vector, filters, lo, hi, start, stride, size):
    """``store`` of vector ``vector`` of a block whose vector v holds ``block_value + v``."""
    bias = np.full(BLOCK, block_value, dtype=np.float32)
    source = np.ones(VECTORS * VECTOR_BYTES // 4 + 1, dtype=np.float32)
    for v in range(VECTORS):          # vector v: 1 * v more than the bias
        source[v * (VECTOR_BYTES // 4):(v + 1) * (VECTOR_BYTES // 4)] = v
    weights = np.ones(BLOCK, dtype=np.float32)
    block = multiply_add(filled(bias, 0), source, 0, weights, 0)
    out = np.full(size, np.nan, dtype=np.float32)
    store(out, start, stride, block, vector, filters, lo, hi)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_block_sums_bias_and_products_filter_by_filter(dtype):
    rng = np.random.default_rng(0)
    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    source = rng.standard_normal(3 * VECTOR_BYTES).astype(dtype)
    weights = rng.standard_normal(3 * BLOCK + 5).astype(dtype)
    bias = rng.standard_normal(BLOCK + 2).astype(dtype)
    got = block_of(bias, 2, source, 3, weights, 5, 3)
    want = np.empty((BLOCK, VECTORS * lanes), dtype)
    for f in range(BLOCK):
        want[f] = bias[2 + f]
        for t in range(3):                      # the same order, one rounding a product (FMA)
            inputs = source[3 + t:3 + t + VECTORS * lanes]     # the block's vectors side by side
            want[f] = want[f] + inputs * weights[5 + t * BLOCK + f]
    np.testing.assert_allclose(got, want, rtol=4 * np.finfo(dtype).eps, atol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("vector", range(VECTORS))
def test_store_writes_only_its_vector_filters_and_lanes(vector):
    # 3 filters (or all, if fewer), lanes lo..hi-1 of each (the middle half), rows 20
    # apart, starting at 7: the numbers of the vector asked for
    filters = min(3, BLOCK)
    lo, hi = LANES // 4, LANES - LANES // 4
    out = stored(1.5, vector, filters, lo, hi, 7, 20, 80)
    written = np.zeros(80, bool)
    for f in range(filters):
        written[7 + 20 * f + lo:7 + 20 * f + hi] = True
    assert np.all(out[written] == 1.5 + vector)
    assert np.isnan(out[~written]).all()


def test_store_may_start_before_the_array_when_its_first_lane_does_not():
    # the last 6 lanes of a vector that would start LANES - 6 places before the array
    out = stored(2.0, VECTORS - 1, 1, LANES - 6, LANES, 6 - LANES, 0, 8)
    assert np.all(out[:6] == 2.0 + VECTORS - 1) and np.isnan(out[6:]).all()


def test_whole_vectors_of_all_filters():
    out = stored(3.0, 0, BLOCK, 0, LANES, 0, LANES, BLOCK * LANES + 3)
    assert np.all(out[:BLOCK * LANES] == 3.0) and np.isnan(out[BLOCK * LANES:]).all()


def test_the_block_follows_the_processor_numba_compiles_for():
    """16 filters of one 64-byte vector with AVX-512, else 4 of three 32-byte vectors: read from
    NUMBA_CPU_FEATURES when it is set (the AVX2 run below sets it; numba sets it
    empty for NUMBA_CPU_NAME=generic), else from the processor as LLVM reports it."""
    from numba.core import config
    if config.CPU_FEATURES is not None:
        has_avx512 = "+avx512f" in config.CPU_FEATURES.split(",")
    else:
        has_avx512 = bool(llvm.get_host_cpu_features().get("avx512f"))
    assert vectors._has_avx512() == has_avx512
    assert (VECTOR_BYTES, BLOCK, VECTORS) == ((64, 16, 1) if has_avx512 else (32, 4, 3))


#: What numba compiles for in the next test: a Haswell (AVX2 and FMA, no AVX-512).
AVX2_FEATURES = "+avx,+avx2,+fma,+sse4.2,+popcnt,+f16c,+bmi,+bmi2,+lzcnt,+movbe,+cx16,+xsave"


@pytest.mark.skipif(os.environ.get("NUMBA_CPU_FEATURES") == AVX2_FEATURES,
                    reason="already compiling for AVX2 (this is the inner run)")
@pytest.mark.skipif(
    (VECTOR_BYTES, BLOCK, VECTORS) == (32, 4, 3) and llvm.get_host_cpu_features().get("avx2"),
    reason="this processor has AVX2 and no AVX-512: the tests of this run compiled and ran "
           "the AVX2 blocks already (tests/routes.py runs them for a Haswell too)")
@pytest.mark.skipif(not (llvm.get_host_cpu_features().get("avx2")
                         and llvm.get_host_cpu_features().get("fma")),
                    reason="the processor cannot run AVX2 code")
@pytest.mark.subprocess
def test_the_blocks_of_an_avx2_processor(tmp_path):
    """This file's tests and those of the 3x3 kernels, with numba compiling for a
    processor without AVX-512 (blocks of 4 filters of three 32-byte vectors), in a
    process of their own with an empty numba cache."""
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES=AVX2_FEATURES,
               NUMBA_CACHE_DIR=str(tmp_path))
    tests = Path(__file__).parent
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(tests / "test_vectors.py"), str(tests / "test_kernels.py"), "-k",
         "not avx2_processor and (vectors or 3x3)"],
        env=env, capture_output=True, text=True, cwd=tests.parent)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " passed" in run.stdout and "failed" not in run.stdout


#: A Skylake server processor's features: AVX-512 (and all of AVX2's).
AVX512_FEATURES = "+avx512f,+avx512cd,+avx512bw,+avx512dq,+avx512vl," + AVX2_FEATURES


@pytest.mark.subprocess
def test_the_avx512_kernels_compile_to_zmm_registers(tmp_path):
    """The AVX-512 kernels cannot run on a processor without AVX-512, but numba can build
    them anywhere: compiled for a Skylake server processor, the forward 3x3 kernel takes
    the vectors route in blocks of 16 filters of 64-byte vectors, and its machine code
    multiply-adds in zmm (512-bit) registers; so does the weight gradient's row of taps,
    which is the one with its vectors written out there."""
    code = """
import numba, numcnn
from numba import types
from numcnn.kernels.jit import conv3x3, vectors
array = lambda ndim: types.Array(types.float32, ndim, "C")
signature = (array(4), array(1), array(1), types.int64, array(4))
conv3x3._conv3x3.compile(signature)
assembly = conv3x3._conv3x3.inspect_asm(signature)
fmas = [line for line in assembly.splitlines() if "vfmadd" in line]
print(numcnn.route(), vectors.BLOCK, vectors.VECTOR_BYTES, len(fmas),
      sum("zmm" in line for line in fmas))
row = (types.Array(types.float32, 2, "C"), array(1), types.int64, types.Array(types.float64, 2, "C"))
conv3x3._row_taps_dot.compile(row)
fmas = [line for line in conv3x3._row_taps_dot.inspect_asm(row).splitlines() if "vfmadd" in line]
print(conv3x3._row_taps_dot is conv3x3._row_taps_vectors, len(fmas),
      sum("zmm" in line for line in fmas))
"""
    env = dict(os.environ, NUMBA_CPU_NAME="skylake-avx512", NUMBA_CPU_FEATURES=AVX512_FEATURES,
               NUMBA_CACHE_DIR=str(tmp_path), NUMCNN_ROUTE="auto",
               PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    route, block, vector_bytes, fmas, zmm_fmas, written_out, row_fmas, row_zmm = run.stdout.split()
    assert (route, block, vector_bytes) == ("vectors", "16", "64")
    assert int(fmas) >= 16 and int(zmm_fmas) == int(fmas)
    assert written_out == "True" and int(row_fmas) >= 12 and int(row_zmm) == int(row_fmas)


@pytest.mark.subprocess
def test_an_edit_of_the_vector_operations_recompiles_the_kernels_built_from_them(tmp_path):
    """numba's cache keys a kernel on its own file; the kernels are also keyed on every
    source of numcnn.kernels.jit, so a student's edit of vectors.py is not hidden by a
    kernel compiled from the file before the edit."""
    package = tmp_path / "checkout"
    shutil.copytree(Path(__file__).resolve().parent.parent / "numcnn", package / "numcnn",
                    ignore=shutil.ignore_patterns("__pycache__"))
    code = """
from numba import types
from numcnn.kernels.jit import conv3x3
array = lambda ndim: types.Array(types.float32, ndim, "C")
signature = (array(4), array(1), array(1), types.int64, array(4))
conv3x3._conv3x3.compile(signature)
print(sum(conv3x3._conv3x3.stats.cache_hits.values()))
"""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(package))

    def cache_hits():
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, cwd=tmp_path)
        assert run.returncode == 0, run.stderr[-3000:]
        return int(run.stdout)

    assert [cache_hits(), cache_hits()] == [0, 1]         # compiled, then read from the cache
    with open(package / "numcnn" / "kernels" / "jit" / "vectors.py", "a") as source:
        source.write("\n# a student's edit\n")
    assert [cache_hits(), cache_hits()] == [0, 1]         # compiled again after the edit
