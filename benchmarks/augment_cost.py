"""What the laboratory augmentation costs beside a training step.

    python benchmarks/augment_cost.py [--calls 21]

Times, in one process, the medians of ``--calls`` calls of: ``lab_augment``
(numcnn.data.stain, at the strengths docs/twolabs.md registered) on a batch
of 64 mean-subtracted 72x72 images, the same with the camera of
``--augment lab+camera`` (blur, noise, JPEG), the crops, flips and turns alone
(``crop_and_flip``), and a training step of the blood-cell network on a batch
of 64 64x64 crops (AdamW). Prints one JSON line, in milliseconds.
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bloodnet  # first: the checkout's numcnn, before numpy
import numpy as np
from numcnn.data import crop_and_flip
from numcnn.data.stain import lab_augment


def median_ms(call, calls):
    """The median of ``calls`` timed calls, after one untimed."""
    call()
    seconds = []
    for _ in range(calls):
        began = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - began)
    return 1e3 * float(np.median(seconds))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=21)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    images = rng.random((64, 3, 72, 72), dtype=np.float32)
    mean = images.mean(axis=0)
    batch = images - mean
    lab = lab_augment(64, mean, stain=(0.2, 0.1), rescale=(0.85, 1.18), light=(0.1, 0.2),
                      rotate90=True)
    camera = lab_augment(64, mean, stain=(0.2, 0.1), rescale=(0.85, 1.18), light=(0.1, 0.2),
                         rotate90=True, camera={"blur": 1.5, "noise": 0.03, "quality": (20, 95)})
    standard = crop_and_flip(64, rotate90=True)
    model = bloodnet.build_numcnn(64, 64, optimizer="adamw")
    draws = np.random.default_rng(1)
    crops, labels = standard(batch, draws), rng.integers(0, 4, 64)
    print(json.dumps({
        "lab_augment_ms": median_ms(lambda: lab(batch, draws), args.calls),
        "lab_camera_augment_ms": median_ms(lambda: camera(batch, draws), args.calls),
        "crop_and_flip_ms": median_ms(lambda: standard(batch, draws), args.calls),
        "train_step_ms": median_ms(lambda: model.train_step(crops, labels), args.calls // 2 + 1)}))


if __name__ == "__main__":
    main()
