"""First-call cost of the numba kernels, in a fresh process.

    NUMBA_CACHE_DIR=/some/dir python benchmarks/first_step.py [--size HxW] [--batch N]

Times, on the numba backend: importing numcnn, then the first, second and third
``train_step`` of the blood-cell network (batch 64, the recipe's AdamW) at
input ``--size`` (default 64x64, the recipe's; ``H W`` as two positional
arguments also works). The first step compiles every kernel that training's
plan runs (with an empty cache directory) or loads them from the on-disk cache
(``cache=True``, with a cache filled by an earlier run); the later steps are
the steady state. Prints one JSON object on stdout (seconds).

``compare.py`` runs it twice per size on the same, initially empty, temporary
``NUMBA_CACHE_DIR``: the first run measures compilation, the second the cache load.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def parse_size(text):
    """``"64x64"`` -> ``(64, 64)``."""
    try:
        H, W = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 64x64; got {text!r}") from None
    return H, W


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, metavar="HxW", default=(64, 64),
                        help="input size (default 64x64, the recipe's)")
    parser.add_argument("H", type=int, nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("W", type=int, nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--optimizer", choices=("adamw", "adam"), default="adamw")
    args = parser.parse_args(argv)
    if (args.H is None) != (args.W is None):
        parser.error("give both H and W, or --size HxW")
    H, W = (args.H, args.W) if args.H is not None else args.size

    began = time.perf_counter()
    from bloodnet import build_numcnn, make_batch  # first: it puts the checkout on sys.path
    import numcnn
    numcnn.set_backend("numba")
    if numcnn.get_backend() != "numba":
        raise SystemExit("first_step.py: the numba backend is not available")
    import_seconds = time.perf_counter() - began

    model = build_numcnn(H, W, optimizer=args.optimizer)
    x, y = make_batch(H, W, N=args.batch)
    steps = []
    for _ in range(3):
        began = time.perf_counter()
        loss, _ = model.train_step(x, y)
        steps.append(time.perf_counter() - began)

    import numba
    import bloodnet
    print(json.dumps({
        "H": H, "W": W, "batch": args.batch, "optimizer": args.optimizer,
        "plan": model.plan().describe().splitlines(),
        "freed_memory_kept": bloodnet.FREED_MEMORY_KEPT,
        "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR"),
        "import_s": import_seconds,
        "first_step_s": steps[0], "second_step_s": steps[1], "third_step_s": steps[2],
        "threading_layer": numba.threading_layer(),
        "loss": float(loss),
    }))


if __name__ == "__main__":
    main()
