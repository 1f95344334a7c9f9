"""What taking turns in the parallel kernels costs one thread's training step.

    python benchmarks/lock_cost.py [--rounds 21] [--steps 5]

numcnn's parallel kernels take ``numcnn.kernels.jit.compiling.PARALLEL_LOCK``
so that two Python threads never run numba's parallel code at once (the
workqueue threading layer aborts the process when they do). A thread alone
takes the lock uncontended, once per kernel call. This times the blood-cell
network's ``train_step`` (64x64, batch 64, AdamW) with the lock taken, as
numcnn runs, and with it bypassed, in one process: each round times ``--steps``
steps of one way then of the other (the order alternating), and the report
gives the median of each, their ratio, and the spread of the per-round ratios.
Prints one JSON line.
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bloodnet  # first: the checkout's numcnn, before numpy
import numpy as np
from numcnn.kernels.jit import compiling


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3, 64, 64)).astype(np.float32)
    y = rng.integers(0, 4, 64)
    model = bloodnet.build_numcnn(64, 64, optimizer="adamw")
    locked = compiling._OneThreadAtATime.__call__

    def bypassed(self, *args):
        return self.dispatcher(*args)

    def seconds(call):
        began = time.perf_counter()
        for _ in range(args.steps):
            model.train_step(x, y)
        return (time.perf_counter() - began) / args.steps

    for _ in range(3):
        model.train_step(x, y)                                  # compile, warm up
    times = {"locked": [], "bypassed": []}
    try:
        for round_ in range(args.rounds):
            order = ("locked", "bypassed") if round_ % 2 == 0 else ("bypassed", "locked")
            for way in order:
                compiling._OneThreadAtATime.__call__ = locked if way == "locked" else bypassed
                times[way].append(seconds(way))
    finally:
        compiling._OneThreadAtATime.__call__ = locked
    ratios = np.array(times["locked"]) / np.array(times["bypassed"])
    print(json.dumps({
        "step_ms_locked": 1e3 * float(np.median(times["locked"])),
        "step_ms_bypassed": 1e3 * float(np.median(times["bypassed"])),
        "ratio_of_medians": float(np.median(times["locked"]) / np.median(times["bypassed"])),
        "round_ratios_quartiles": [float(q) for q in np.percentile(ratios, [25, 50, 75])],
        "rounds": args.rounds, "steps_per_round": args.steps}))


if __name__ == "__main__":
    main()
