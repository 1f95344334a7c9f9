"""Peak memory of training steps of the blood-cell network, in a fresh process.

    python benchmarks/peak_memory.py FRAMEWORK H W [--steps N] [--batch N]

FRAMEWORK is ``numcnn`` (numba kernels), ``numcnn-numpy`` (NumPy reference
kernels) or ``torch``. Prints one JSON object on stdout (sizes in MiB).

Method (Linux):

1. import the library, then run two steps of a *tiny* copy of the network
   (4 images of 16x16) and delete it: this loads the compiled numba kernels
   (or PyTorch's lazily initialised kernels) so that one-time start-up costs
   do not count as training memory;
2. build the real network and the batch; the resident set size now is the
   **baseline**;
3. reset the peak-RSS counter to the current RSS (``echo 5 >
   /proc/self/clear_refs``; without it the process-lifetime peak is used, and
   ``hwm_reset`` in the output is false);
4. run 2 warm-up steps and ``--steps`` more on the real batch; the peak RSS
   since the reset (``VmHWM``, the same counter as ``getrusage(RUSAGE_SELF)
   .ru_maxrss``) minus the baseline is the **growth**: activations, gradients,
   optimizer state, work buffers and temporaries of training.

Run one process per measurement: the peak counter covers the whole process.
"""
import argparse
import gc
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

FRAMEWORKS = ("numcnn", "numcnn-numpy", "torch")


def status_kib(field):
    """A ``/proc/self/status`` field in KiB (VmRSS, VmHWM), or None off Linux."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def maxrss_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def numcnn_runner(H, W, batch, backend):
    from bloodnet import build_numcnn, make_batch  # first: it puts the checkout on sys.path
    import numcnn

    numcnn.set_backend(backend)
    model = build_numcnn(H, W)
    x, y = make_batch(H, W, N=batch)
    return lambda: model.train_step(x, y)[0]


def torch_runner(H, W, batch):
    from bloodnet import build_numcnn, build_torch, make_batch, maybe_torch, torch_train_step

    torch = maybe_torch()
    if torch is None:
        raise SystemExit("peak_memory.py: PyTorch is not installed")
    net = build_torch(torch, H, W, like=build_numcnn(H, W))
    x, y = make_batch(H, W, N=batch)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    step = torch_train_step(torch, net)
    return lambda: step(xt, yt)


def make_runner(framework, H, W, batch):
    if framework == "torch":
        return torch_runner(H, W, batch)
    return numcnn_runner(H, W, batch, "numpy" if framework == "numcnn-numpy" else "numba")


def measure(framework, H, W, steps=3, batch=64):
    if framework not in FRAMEWORKS:
        raise SystemExit(f"peak_memory.py: FRAMEWORK must be one of {FRAMEWORKS}; got {framework!r}")
    if framework == "torch":
        from bloodnet import maybe_torch
        maybe_torch()
    else:
        from bloodnet import numcnn  # noqa: F401
        from numcnn.kernels import jit  # noqa: F401  (imports numba)
    after_import_kib = status_kib("VmRSS")

    tiny = make_runner(framework, 16, 16, 4)  # load kernels / lazy initialisation
    tiny()
    tiny()
    del tiny
    gc.collect()

    run = make_runner(framework, H, W, batch)
    gc.collect()
    baseline_kib = status_kib("VmRSS") or maxrss_kib()
    hwm_reset = reset_peak()

    began = time.perf_counter()
    losses = [run() for _ in range(2 + steps)]
    seconds = (time.perf_counter() - began) / len(losses)

    peak_kib = status_kib("VmHWM") or maxrss_kib()
    mib = 1.0 / 1024.0
    return {
        "framework": framework, "H": H, "W": W, "batch": batch, "steps": len(losses),
        "baseline_mib": baseline_kib * mib,
        "peak_mib": peak_kib * mib,
        "growth_mib": (peak_kib - baseline_kib) * mib,
        "after_import_mib": None if after_import_kib is None else after_import_kib * mib,
        "hwm_reset": hwm_reset,
        "freed_memory_kept": sys.modules["bloodnet"].FREED_MEMORY_KEPT,
        "seconds_per_step": seconds,
        "last_loss": float(losses[-1]),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("framework", choices=FRAMEWORKS)
    parser.add_argument("H", type=int)
    parser.add_argument("W", type=int)
    parser.add_argument("--steps", type=int, default=3, help="measured steps after 2 warm-up steps")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.framework, args.H, args.W, args.steps, args.batch)))


if __name__ == "__main__":
    main()
