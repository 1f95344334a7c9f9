"""The FP32 "peak" of this machine as compare.py uses it: the best of a few large square SGEMMs.

    python benchmarks/sgemm_peak.py [--size 2048] [--repeats 5] [--threads 2]

Times ``np.matmul(a, b, out=c)`` for float32 ``size x size`` matrices with
numpy's BLAS limited to ``--threads`` threads (threadpoolctl), after one
untimed call, and prints one JSON object: the best and median GFLOP/s
(``2 * size**3`` FLOPs per product) and which BLAS kernels ran
(threadpoolctl's ``architecture``). The best measured SGEMM, not a datasheet
figure: the achieved share of it says how close a convolution comes to what
this machine's BLAS does on the friendliest matrix shape.
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import bloodnet  # first: numcnn before numpy, the checkout, --keep-freed-memory
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    rng = np.random.default_rng(0)
    n = args.size
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    seconds = []
    with threadpool_limits(limits=args.threads, user_api="blas"):
        blas = [dict(api=p.get("internal_api"), version=p.get("version"),
                     architecture=p.get("architecture"), threads=p.get("num_threads"),
                     library=p.get("filepath", "").split("site-packages/")[-1].split("/")[0])
                for p in threadpool_info() if p.get("user_api") == "blas"]
        np.matmul(a, b, out=c)                      # untimed: threads started, pages touched
        for _ in range(args.repeats):
            began = time.perf_counter()
            np.matmul(a, b, out=c)
            seconds.append(time.perf_counter() - began)
    flops = 2.0 * n ** 3
    gflops = sorted(flops / s / 1e9 for s in seconds)
    print(json.dumps({
        "size": n, "threads": args.threads, "repeats": args.repeats,
        "seconds": seconds, "best_gflops": gflops[-1], "median_gflops": gflops[len(gflops) // 2],
        "blas": blas, "numpy": np.__version__, "freed_memory_kept": bloodnet.FREED_MEMORY_KEPT,
    }))


if __name__ == "__main__":
    main()
