"""The fused BatchNorm-ReLU-MaxPool step against the two steps it replaces.

    python benchmarks/pool_step.py

For each input shape of the blood-cell network's BatchNorms (at 64x64 and at
60x80, batch 64), times ``BatchNormReLUMaxPoolStep`` forward and backward, and
``BatchNormReLUStep`` followed by the max pool's ``LayerStep``, alternating,
15 rounds after 2 untimed ones, in one process (a drift of the machine's speed
hits both alike). Prints the medians and their ratios (docs/performance.md,
"BatchNorm, ReLU and max pooling as one step").
"""
import time

import numpy as np

import numcnn
from numcnn.layers import BatchNorm2D, MaxPool2D, ReLU
from numcnn.plan import BatchNormReLUMaxPoolStep, BatchNormReLUStep, LayerStep

SHAPES = [(64, 32, 64, 64), (64, 64, 32, 32), (64, 128, 16, 16),
          (64, 32, 60, 80), (64, 64, 30, 40), (64, 128, 15, 20)]
ROUNDS, WARM = 15, 2


def timed(steps, x, dy):
    """(forward, backward) seconds of ``steps`` run one after another."""
    began = time.perf_counter()
    h = x
    for step in steps:
        h = step.forward(h, True)
    forward_done = time.perf_counter()
    g = dy
    for step in reversed(steps):
        g = step.backward(g, True)
        step.release()
    return forward_done - began, time.perf_counter() - forward_done


def main():
    numcnn.keep_freed_memory()
    rng = np.random.default_rng(0)
    with numcnn.use_backend("numba"):
        for N, C, H, W in SHAPES:
            x = rng.standard_normal((N, C, H, W)).astype(np.float32)
            dy = rng.standard_normal((N, C, H // 2, W // 2)).astype(np.float32)
            fused = [BatchNormReLUMaxPoolStep(BatchNorm2D(C), ReLU(), MaxPool2D(2))]
            apart = [BatchNormReLUStep(BatchNorm2D(C), ReLU()), LayerStep(MaxPool2D(2))]
            times = {"fused": [], "apart": []}
            for round_ in range(WARM + ROUNDS):
                for name, steps in (("fused", fused), ("apart", apart)):
                    spent = timed(steps, x, dy)
                    if round_ >= WARM:
                        times[name].append(spent)
            f, a = (np.array(times[name]) * 1e3 for name in ("fused", "apart"))
            ratio = np.median(f.sum(axis=1)) / np.median(a.sum(axis=1))
            (ff, fb), (af, ab) = np.median(f, axis=0), np.median(a, axis=0)
            print(f"{N}x{C}x{H}x{W}: fused forward {ff:.2f} ms, backward {fb:.2f} ms | apart "
                  f"forward {af:.2f} ms, backward {ab:.2f} ms | fused / apart {ratio:.2f}x")


if __name__ == "__main__":
    main()
