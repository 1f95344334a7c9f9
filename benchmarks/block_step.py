"""The fused convolution block against its two steps, on the portable route's shapes.

    NUMCNN_ROUTE=portable python benchmarks/block_step.py [--rounds 21] [--steps 3]

On the portable route (and for every convolution the direct kernels do not
take) the plan runs Conv2D - BatchNorm2D - ReLU as one ``ConvolutionBlockStep``:
BatchNorm's statistics taken on the matrix product's rows, before they are
reordered into NCHW. The alternative is two steps the plan has anyway: a
``ConvolutionStep`` (product, reordered with the bias added) and a
``BatchNormReLUStep``. This times the blood-cell network's ``train_step``
(batch 64, AdamW) both ways in one process: each round times ``--steps`` steps
of one plan then of the other (the order alternating), at 64x64 and 60x80.
Prints one JSON line per size: the medians, their ratio (block over two
steps) and the quartiles of the per-round ratios.
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bloodnet  # first: the checkout's numcnn, before numpy
import numcnn
import numpy as np
from numcnn.plan import (BatchNormReLUStep, ConvolutionBlockStep, ConvolutionStep, Plan)


def two_steps(plan):
    """The same plan with each ConvolutionBlockStep split into its two steps."""
    steps = []
    for step in plan.steps:
        if isinstance(step, ConvolutionBlockStep):
            conv, norm, relu = step.layers
            steps += [ConvolutionStep(conv), BatchNormReLUStep(norm, relu)]
        else:
            steps.append(step)
    return Plan(steps)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    for height, width in ((64, 64), (60, 80)):
        x = rng.standard_normal((64, 3, height, width)).astype(np.float32)
        y = rng.integers(0, 4, 64)
        model = bloodnet.build_numcnn(height, width, optimizer="adamw")
        model.train_step(x, y)                                   # builds the plan, compiles
        key, block = model._plan
        plans = {"block": block, "two_steps": two_steps(block)}
        if not any(isinstance(step, ConvolutionBlockStep) for step in block.steps):
            sys.exit(f"no ConvolutionBlockStep on route {numcnn.route()}: "
                     "run with NUMCNN_ROUTE=portable")

        def seconds(way):
            model._plan = (key, plans[way])
            began = time.perf_counter()
            for _ in range(args.steps):
                model.train_step(x, y)
            return (time.perf_counter() - began) / args.steps

        for way in plans:                                         # compile, warm up
            seconds(way)
        times = {"block": [], "two_steps": []}
        for round_ in range(args.rounds):
            order = ("block", "two_steps") if round_ % 2 == 0 else ("two_steps", "block")
            for way in order:
                times[way].append(seconds(way))
        ratios = np.array(times["block"]) / np.array(times["two_steps"])
        print(json.dumps({
            "size": f"{height}x{width}", "route": numcnn.route(),
            "step_ms_block": 1e3 * float(np.median(times["block"])),
            "step_ms_two_steps": 1e3 * float(np.median(times["two_steps"])),
            "ratio_of_medians": float(np.median(times["block"]) / np.median(times["two_steps"])),
            "round_ratios_quartiles": [float(q) for q in np.percentile(ratios, [25, 50, 75])],
            "rounds": args.rounds, "steps_per_round": args.steps}), flush=True)


if __name__ == "__main__":
    main()
