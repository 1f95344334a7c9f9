"""First-call cost of the numba kernels, in a fresh process.

    NUMBA_CACHE_DIR=/some/dir python benchmarks/first_step.py [H W] [--batch N]

Times, on the numba backend: importing numcnn, then the first, second and third
``train_step`` of the blood-cell network (batch 64 by default). The first step
compiles every kernel (with an empty cache directory) or loads them from the
on-disk cache (``cache=True``, with a cache filled by an earlier run); the
later steps are the steady state. Prints one JSON object on stdout (seconds).

``compare.py`` runs it twice on the same, initially empty, temporary
``NUMBA_CACHE_DIR``: the first run measures compilation, the second the cache load.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("H", type=int, nargs="?", default=60)
    parser.add_argument("W", type=int, nargs="?", default=80)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args(argv)

    began = time.perf_counter()
    from bloodnet import build_numcnn, make_batch  # first: it puts the checkout on sys.path
    import numcnn
    numcnn.set_backend("numba")
    if numcnn.get_backend() != "numba":
        raise SystemExit("first_step.py: the numba backend is not available")
    import_seconds = time.perf_counter() - began

    model = build_numcnn(args.H, args.W)
    x, y = make_batch(args.H, args.W, N=args.batch)
    steps = []
    for _ in range(3):
        began = time.perf_counter()
        loss, _ = model.train_step(x, y)
        steps.append(time.perf_counter() - began)

    import numba
    print(json.dumps({
        "H": args.H, "W": args.W, "batch": args.batch,
        "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR"),
        "import_s": import_seconds,
        "first_step_s": steps[0], "second_step_s": steps[1], "third_step_s": steps[2],
        "threading_layer": numba.threading_layer(),
        "loss": float(loss),
    }))


if __name__ == "__main__":
    main()
