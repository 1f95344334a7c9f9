"""numcnn against PyTorch, and numba against NumPy, on the blood-cell network.

    python benchmarks/compare.py [--quick] [--json PATH] [-k EXPR] [--keep-freed-memory]
                                 [--skip-memory] [--skip-compile] [--skip-epoch]
                                 [--skip-inference] [--skip-conv1] [--skip-peak]
                                 [--epoch-images N] [--epoch-repeats R] [--predict-repeats R]
                                 [--conv1-repeats R] [--conv1-calls K]
                                 [--first-step-sizes 64x64,60x80] [--keep-blas-env]
                                 [--route native|avx2|avx512|portable]

Prints a markdown report with these sections (each measured in subprocesses;
this process imports neither numpy nor numcnn):

1. Machine: CPU, cores, library versions, numba threading layer, the BLAS
   and the kernels it chose (threadpoolctl's ``architecture``), PyTorch's CPU
   capability, the environment, load average (timings need a quiet machine).
   ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE``, when set where compare.py
   starts, are unset for every measuring subprocess (a user's machine has
   them unset: OpenBLAS then picks its kernels from the CPU), and the report
   says so; ``--keep-blas-env`` keeps them. (pytest and CI keep the
   environment as it is: only this command changes it.)
2. Speed: the pytest-benchmark files of this directory, run in a subprocess
   with benchmarking enabled, summarised as ONE table of medians (ms):
   numcnn on numba, PyTorch, their ratio, numcnn on NumPy and the numba
   speed-up over NumPy.
3. Convolutions: the first convolution forward + backward (weight and bias
   gradients only, as training runs a first layer) three ways: the direct
   kernels (what training runs), the layer's im2col path (what
   ``Sequential.forward`` and ``model.profile`` run), PyTorch; then every
   convolution of the network at 64x64 and 60x80 as achieved GFLOP/s and a
   share of the machine's FP32 peak, measured by ``sgemm_peak.py`` as the
   best of a few 2048x2048 SGEMMs on 2 threads.
4. A training epoch of the default blood-cell recipe and inference
   throughput (``interleaved.py``): numcnn's ``train_step`` over precomputed
   augmented batches, PyTorch over the same batches, numcnn's ``fit`` for one
   epoch, then ``model.predict`` at batch 256 against PyTorch in eval mode;
   medians of interleaved rounds, each framework in its own worker process;
   then conv1's forward pass and weight gradient the same way (the two
   workers alternating round by round, each round the median of K calls), so
   that a drift of the machine's speed hits both frameworks alike, which the
   pytest-benchmark rows of section 3 (each side timed after the other) do not
   promise.
5. Peak memory of training steps at 60x80 and 120x160 (batch 64), numcnn
   (numba) and PyTorch, each measured in a fresh process by ``peak_memory.py``.
6. First-call cost of the numba kernels (``first_step.py``) at 64x64 and
   60x80: a fresh process with an empty ``NUMBA_CACHE_DIR`` (compilation),
   then again with the same, now filled, cache directory (loading from the
   ``cache=True`` cache); the target is a first step under 30 s.

``--route`` limits both frameworks alike for every measuring process (both
sides read the settings from the environment they inherit):

- ``native``: nothing forced (each side picks its kernels from the processor);
- ``avx2``: numba compiles for Haswell (AVX2, FMA), PyTorch
  ``ATEN_CPU_CAPABILITY=avx2`` and ``ONEDNN_MAX_CPU_ISA=AVX2``, OpenBLAS its
  Haswell kernels;
- ``avx512``: numba for the processor (it must have AVX-512), PyTorch
  ``avx512`` and ``AVX512_CORE``, OpenBLAS SkylakeX;
- ``portable``: numcnn's portable route (``NUMCNN_ROUTE=portable``) with numba
  compiling for a generic x86-64 (no AVX), PyTorch ``default`` and ``SSE41``,
  OpenBLAS its Nehalem kernels (SSE4.2, no AVX).

The report's first section says which kernels each side ran: numcnn's route
and the processor numba compiled for, PyTorch's CPU capability and the ISA
oneDNN reports (``ONEDNN_VERBOSE``), OpenBLAS's kernels (threadpoolctl).

``--keep-freed-memory`` makes every measuring process call
``numcnn.keep_freed_memory()`` (PyTorch's too); the report checks that each did.
``--quick`` runs every benchmark about once, a tiny epoch and fewer repeats
everywhere: a smoke test of the whole pipeline, not a measurement. Progress
goes to stderr, the report to stdout. ``--json PATH`` also writes everything
(with the raw pytest-benchmark data) to PATH.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# OpenBLAS's thread setting (OPENBLAS_THREAD_TIMEOUT) is numcnn's: every measuring
# process imports numcnn (or bloodnet) before numpy, which sets it unless the user
# did; the version probe reports the value they run with.

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
# As bloodnet's constants (not imported: keep this process light; test_bench_recipe.py checks them)
STEP_SIZES = ((60, 80), (120, 160))            # bloodnet.STEP_SIZES
CONV_INPUTS = ((64, 64), (60, 80))             # bloodnet.CONV_INPUTS
RECIPE_TRAIN_IMAGES = 8860                     # bloodnet.RECIPE_TRAIN_IMAGES
FIRST_STEP_TARGET_S = 30.0                     # the performance target for a cold first step
#: Set where compare.py starts (e.g. by a sandbox), these force OpenBLAS's kernel
#: choice; a user's machine has them unset. Unset for the measuring subprocesses.
BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

#: A Haswell processor's features, as numba is told them (AVX2 and FMA, no AVX-512).
HASWELL_FEATURES = "+avx,+avx2,+fma,+sse4.2,+popcnt,+f16c,+bmi,+bmi2,+lzcnt,+movbe,+cx16,+xsave"
#: What --route sets for every measuring process: numba's target and numcnn's route,
#: PyTorch's kernels (ATen's dispatch and oneDNN's instruction set), OpenBLAS's kernels.
ROUTES = {
    "native": {},
    "avx2": {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": HASWELL_FEATURES,
             "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "OPENBLAS_CORETYPE": "Haswell"},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
               "OPENBLAS_CORETYPE": "SkylakeX"},
    "portable": {"NUMCNN_ROUTE": "portable", "NUMBA_CPU_NAME": "generic",
                 "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                 "OPENBLAS_CORETYPE": "Nehalem"},
}

#: pytest-benchmark settings: (min rounds, max seconds per benchmark, warm-up)
FULL = dict(min_rounds=5, max_time=1.0, warmup="on")
QUICK = dict(min_rounds=1, max_time=0.02, warmup="off")
#: interleaved.py settings (epoch images, epoch rounds, inference images, inference rounds),
#: SGEMM repeats and first-step sizes.
FULL_RUN = dict(epoch_images=RECIPE_TRAIN_IMAGES, epoch_repeats=5, predict_images=2048,
                predict_repeats=11, conv1_repeats=11, conv1_calls=20, sgemm_repeats=5,
                first_step_sizes="64x64,60x80")
QUICK_RUN = dict(epoch_images=150, epoch_repeats=2, predict_images=512, predict_repeats=2,
                 conv1_repeats=2, conv1_calls=2, sgemm_repeats=2, first_step_sizes="64x64")

PROBE = r"""
import json, os, platform, sys
sys.path.insert(0, sys.argv[1])
try:
    import numcnn   # before numpy, as every measuring process: its OpenBLAS setting
except Exception:
    pass
import numpy as np
info = {"python": platform.python_version(), "numpy": np.__version__,
        "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT")}
try:
    import numba
    info["numba"] = numba.__version__
    from numcnn.kernels import jit
    jit.relu_forward(np.ones(1000, dtype=np.float32))  # a parallel kernel: picks the layer
    info["threading_layer"] = numba.threading_layer()
    info["numba_threads"] = numba.get_num_threads()
except Exception as error:
    info["numba"] = f"unavailable ({error})"
try:
    import numcnn
    from numcnn import info as numcnn_info
    record = numcnn_info.machine_info()
    info["numcnn_route"] = record["route"]
    info["numba_cpu"] = record["numba_cpu"]
    info["numba_features"] = record["numba_features"]
except Exception as error:
    info["numcnn_route"] = f"unknown ({error})"
try:
    import threadpoolctl
    info["blas"] = [
        dict({k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture")},
             package=p.get("filepath", "").split("site-packages/")[-1].split("/")[0])
        for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"]
except Exception:
    pass
try:
    import torch
    torch.set_num_threads(2)
    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
    try:
        info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except Exception:
        pass
    import subprocess
    verbose = subprocess.run(
        [sys.executable, "-c", "import torch; torch.set_num_threads(2); "
         "torch.nn.functional.conv2d(torch.ones(8, 32, 32, 32), torch.ones(64, 32, 3, 3), "
         "padding=1)"],
        env=dict(os.environ, ONEDNN_VERBOSE="1"), capture_output=True, text=True)
    isa = [line.split("isa:", 1)[1].strip() for line in verbose.stdout.splitlines()
           if "isa:" in line]
    info["onednn_isa"] = isa[0] if isa else "not reported"
except ImportError:
    info["torch"] = None
print(json.dumps(info))
"""


def log(message):
    print(message, file=sys.stderr, flush=True)


def run_json(args, env=None, what="subprocess"):
    """Run a Python subprocess that prints one JSON object last on stdout."""
    done = subprocess.run([sys.executable] + args, cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def median(values):
    return statistics.median(values) if values else None


def parse_sizes(text):
    """``"64x64,60x80"`` -> ``[(64, 64), (60, 80)]``."""
    sizes = []
    for part in text.split(","):
        H, W = (int(v) for v in part.strip().lower().split("x"))
        sizes.append((H, W))
    return sizes


# ---------------------------------------------------------------------------
# 1. Machine
# ---------------------------------------------------------------------------
def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def prepare_blas_environment(keep):
    """Unset BLAS_OVERRIDES in this process (so in every subprocess) unless ``keep``.

    Returns ``{"unset": {name: value}, "kept": {name: value}}``.
    """
    found = {k: os.environ[k] for k in BLAS_OVERRIDES if k in os.environ}
    if keep:
        return {"unset": {}, "kept": found}
    for name in found:
        del os.environ[name]
    return {"unset": found, "kept": {}}


def machine_info(blas_env):
    info = run_json(["-c", PROBE, str(REPO_ROOT)], what="version probe")
    info["cpu"] = cpu_model()
    info["processor"] = platform.processor()
    info["logical_cpus"] = os.cpu_count()
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:
        info["usable_cpus"] = os.cpu_count()
    info["platform"] = platform.platform()
    info["env"] = {k: os.environ.get(k) for k in (
        "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT",
        "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER",
        "NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "NUMCNN_ROUTE", "ATEN_CPU_CAPABILITY",
        "ONEDNN_MAX_CPU_ISA", "NUMCNN_BACKEND", "NUMCNN_KEEP_FREED_MEMORY")}
    # as the measuring processes have it once numcnn is imported (the probe's), not as here
    info["env"]["OPENBLAS_THREAD_TIMEOUT"] = info.pop("openblas_thread_timeout", None)
    info["blas_env"] = blas_env
    info["loadavg_start"] = os.getloadavg()
    return info


def numpy_blas(info):
    """numpy's own BLAS entry of the probe (threadpoolctl lists scipy's too)."""
    blas = info.get("blas", [])
    own = [b for b in blas if b.get("package") == "numpy.libs"]
    return (own or blas or [None])[0]


def blas_environment_line(info):
    env = info["blas_env"]
    ran = numpy_blas(info)
    kernel = (f"**{ran.get('architecture')}** (numpy's {ran.get('internal_api')} "
              f"{ran.get('version')}, threadpoolctl's `architecture`)" if ran else "unknown")
    if env["unset"]:
        what = ", ".join(f"{k}={v}" for k, v in env["unset"].items())
        note = (f"{what} set where compare.py started: **unset** for every measuring process, "
                "as on a user's machine (OpenBLAS picks its kernels from the CPU; "
                "`--keep-blas-env` keeps them)")
    elif env["kept"]:
        what = ", ".join(f"{k}={v}" for k, v in env["kept"].items())
        note = f"{what} set and **kept** (`--keep-blas-env`): OpenBLAS's kernel choice is forced"
    else:
        note = "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE not set (nothing to unset)"
    return f"- OpenBLAS kernels that ran in the measuring processes: {kernel}; {note}"


def machine_section(info):
    blas = "; ".join(
        f"{b.get('internal_api')} {b.get('version')} from {b.get('package')} "
        f"({b.get('architecture')} kernels, {b.get('num_threads')} threads)"
        for b in info.get("blas", [])) or "unknown"
    env = ", ".join(f"{k}={v}" for k, v in info["env"].items() if v is not None) or "none set"
    load = " / ".join(f"{x:.2f}" for x in info["loadavg_start"])
    torch_cpu = info.get("torch_cpu_capability")
    lines = [
        "## Machine",
        "",
        f"- CPU: {info['cpu']} (platform.processor: {info['processor'] or 'n/a'}); "
        f"{info['logical_cpus']} logical CPUs, {info['usable_cpus']} usable",
        f"- {info['platform']}, Python {info['python']}",
        f"- numpy {info['numpy']}, numba {info.get('numba')}, torch {info.get('torch') or 'not installed'}",
        f"- numba threading layer: {info.get('threading_layer', 'n/a')} "
        f"({info.get('numba_threads', '?')} threads); torch threads: {info.get('torch_threads', 'n/a')}"
        + (f", PyTorch CPU capability: {torch_cpu}" if torch_cpu else ""),
        f"- numcnn's route: **{info.get('numcnn_route')}**, numba compiling for "
        f"{info.get('numba_cpu')} ({', '.join(info.get('numba_features') or []) or 'no AVX'})",
        f"- PyTorch's kernels: CPU capability {torch_cpu or 'n/a'}, oneDNN ISA "
        f"{info.get('onednn_isa', 'n/a')}",
        f"- BLAS libraries loaded with numcnn (threadpoolctl): {blas}",
        blas_environment_line(info),
        f"- environment of the measuring processes: {env}",
        f"- load average (1/5/15 min) at start: {load}",
    ]
    return "\n".join(lines)


def freed_memory_line(requested, seen):
    """``seen``: {what: [values of FREED_MEMORY_KEPT reported by its processes]}."""
    if not requested:
        bad = sorted(what for what, values in seen.items() if any(v is not None for v in values))
        return ("- Freed memory: glibc's default malloc in every measuring process "
                "(`--keep-freed-memory` not given)"
                + (f"; but {', '.join(bad)} kept freed memory" if bad else ""))
    ok = sorted(what for what, values in seen.items() if values and all(v is True for v in values))
    bad = sorted(what for what, values in seen.items()
                 if not values or any(v is not True for v in values))
    line = ("- Freed memory kept (`--keep-freed-memory`): numcnn.keep_freed_memory() "
            f"returned True in {', '.join(ok) or 'no process'}")
    if bad:
        line += f"; **not applied in {', '.join(bad)}**"
    return line


# ---------------------------------------------------------------------------
# 2. Speed
# ---------------------------------------------------------------------------
def run_benchmarks(settings, keyword, workdir):
    out = Path(workdir) / "benchmarks.json"
    log_path = Path(workdir) / "pytest.log"
    cmd = [sys.executable, "-m", "pytest", str(HERE), "-q", "-p", "no:cacheprovider",
           "--benchmark-enable", f"--benchmark-json={out}",
           f"--benchmark-min-rounds={settings['min_rounds']}",
           f"--benchmark-max-time={settings['max_time']}",
           f"--benchmark-warmup={settings['warmup']}",
           "--benchmark-warmup-iterations=1",
           "--benchmark-columns=median,rounds", "--benchmark-sort=name"]
    if keyword:
        cmd += ["-k", keyword]
    log(f"compare.py: running the benchmarks ({' '.join(cmd[2:])}) ...")
    began = time.perf_counter()
    with open(log_path, "w") as handle:
        code = subprocess.run(cmd, cwd=REPO_ROOT, stdout=handle, stderr=subprocess.STDOUT).returncode
    log(f"compare.py: benchmarks finished in {time.perf_counter() - began:.0f} s (exit {code})")
    data = json.loads(out.read_text()) if out.exists() else None
    return data, code, log_path.read_text()


def collect(data):
    """One row per (op, shape), in run order: ``{"op", "shape", "median_s": {"numba"|"numpy"|
    "torch": seconds}, "torch_op", "info"}`` (``info``: the extra_info shared by the entries,
    e.g. a convolution's FLOPs; per column in ``info_by_column``)."""
    rows = {}
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info", {})
        if "op" not in info:
            continue
        key = (info["op"], info["shape"])
        column = info["backend"] if info["framework"] == "numcnn" else "torch"
        row = rows.setdefault(key, {"op": key[0], "shape": key[1], "median_s": {},
                                    "torch_op": None, "info": {}, "info_by_column": {}})
        row["median_s"][column] = bench["stats"]["median"]
        row["info_by_column"][column] = info
        if "op_torch" in info:
            row["torch_op"] = info["op_torch"]
        for k in ("conv", "network_input", "conv_pass", "flops", "flop_table"):
            if k in info:
                row["info"][k] = info[k]
        if info["framework"] == "numcnn" and "path" in info:
            row["info"]["path"] = info["path"]
    # keep the order of first appearance of each operation, then of each shape
    keys = list(rows)
    op_order = list(dict.fromkeys(op for op, _ in keys))
    return [rows[k] for k in sorted(keys, key=lambda k: (op_order.index(k[0]), keys.index(k)))]


def fmt_ms(seconds):
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def fmt_s(seconds):
    return "-" if seconds is None else f"{seconds:.2f}" if seconds < 100 else f"{seconds:.0f}"


def fmt_ratio(a, b):
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def speed_section(rows, settings, quick):
    lines = [
        "## Speed (median ms, batch 64, float32)",
        "",
        "| Operation | Shape | numcnn numba (ms) | PyTorch (ms) | numcnn / PyTorch "
        "| numcnn NumPy (ms) | numba speed-up over NumPy |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        medians = row["median_s"]
        numba_s, numpy_s, torch_s = medians.get("numba"), medians.get("numpy"), medians.get("torch")
        name = f"{row['op']} (PyTorch: {row['torch_op']})" if row["torch_op"] else row["op"]
        lines.append(f"| {name} | {row['shape']} | {fmt_ms(numba_s)} | {fmt_ms(torch_s)} | "
                     f"{fmt_ratio(numba_s, torch_s)} | {fmt_ms(numpy_s)} | "
                     f"{fmt_ratio(numpy_s, numba_s)} |")
    lines += [
        "",
        "numcnn / PyTorch above 1 means numcnn is slower. Shapes are the inputs "
        "(`->F`: output channels); the layer rows use the network's shapes at 60x80, "
        "the convolutions also at 64x64 (the recipe's input). Backward rows time the "
        "backward call only (the forward pass runs untimed before each round). "
        "Training on numba runs the plan (numcnn/plan.py): each 3x3 Conv2D with stride 1 "
        "through the direct kernels (`conv2d_direct`, `conv2d_direct_backward`: no column "
        "matrix), each BatchNorm + ReLU pair with the `batchnorm_relu_*` kernels, and with "
        "a 2x2 max pool after them the `batchnorm_relu_maxpool2_*` ones (other "
        "convolutions as im2col and one matrix multiply); the "
        "`Conv2D`, `BatchNorm2D` and `ReLU` rows are the layers one by one "
        "(`Sequential.forward`, `model.profile`: im2col and one matrix multiply).",
        f"pytest-benchmark: --benchmark-min-rounds={settings['min_rounds']} "
        f"--benchmark-max-time={settings['max_time']} --benchmark-warmup={settings['warmup']}"
        + (" (--quick: numbers are a smoke test, not a measurement)" if quick else ""),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# 3. Convolutions: conv1 three ways, and every convolution against the FP32 peak
# ---------------------------------------------------------------------------
def sgemm_peak(repeats):
    log("compare.py: FP32 peak (best of 2048x2048 SGEMMs, 2 threads) ...")
    return run_json([str(HERE / "sgemm_peak.py"), "--repeats", str(repeats), "--threads", "2"],
                    what="sgemm_peak.py")


def find(rows, op, shape, column):
    for row in rows:
        if row["op"] == op and row["shape"] == shape:
            return row["median_s"].get(column)
    return None


def conv1_label(H, W):
    return f"64x3x{H}x{W}->32"


def conv1_results(rows):
    """Forward, backward (dW, db) and their sum, per input size and way."""
    results = []
    for H, W in CONV_INPUTS:
        shape = conv1_label(H, W)
        ways = {
            "numcnn direct (training)": (find(rows, "conv2d_direct", shape, "numba"),
                                         find(rows, "conv2d_direct_backward (dW, db)", shape, "numba")),
            "numcnn im2col (layer)": (find(rows, "Conv2D forward", shape, "numba"),
                                      find(rows, "Conv2D backward (dW, db)", shape, "numba")),
            "PyTorch": (find(rows, "conv2d_direct", shape, "torch")
                        or find(rows, "Conv2D forward", shape, "torch"),
                        find(rows, "conv2d_direct_backward (dW, db)", shape, "torch")
                        or find(rows, "Conv2D backward (dW, db)", shape, "torch")),
        }
        for way, (forward, backward) in ways.items():
            total = None if forward is None or backward is None else forward + backward
            results.append({"input": f"{H}x{W}", "shape": shape, "way": way, "forward_s": forward,
                            "backward_s": backward, "total_s": total})
    return results


def conv1_section(results):
    torch_total = {r["input"]: r["total_s"] for r in results if r["way"] == "PyTorch"}
    lines = [
        "## First convolution, forward + backward (64x3xHxW -> 32, 3x3, padding 1; median ms)",
        "",
        "| Input | Way | forward (ms) | backward: dW, db (ms) | forward + backward (ms) "
        "| / PyTorch |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['input']} | {r['way']} | {fmt_ms(r['forward_s'])} | "
                     f"{fmt_ms(r['backward_s'])} | {fmt_ms(r['total_s'])} | "
                     f"{fmt_ratio(r['total_s'], torch_total.get(r['input']))} |")
    lines += [
        "",
        "numcnn direct: `numcnn.kernels.jit.conv2d_direct`, then "
        "`conv2d_direct_backward(..., input_grad=False)` (the direct kernels, what "
        "training runs for a 3x3 convolution with stride 1). numcnn im2col: "
        "`Conv2D.forward` and `Conv2D.backward(dy, input_grad=False)` (what "
        "`Sequential.forward` / `model.profile` run). PyTorch: `F.conv2d` forward and "
        "its backward with `x.requires_grad=False` (weight and bias gradients only). "
        "Backward times exclude the forward pass (run untimed before each round).",
    ]
    return "\n".join(lines)


def efficiency_results(rows, peak_gflops):
    """Every convolution's achieved GFLOP/s and share of the peak, numcnn (numba) and PyTorch."""
    passes = ("forward", "backward (dW, db)", "backward (dx, dW, db)")
    paths = ("direct", "im2col")
    inputs = [f"{H}x{W}" for H, W in CONV_INPUTS]
    chosen = [r for r in rows if r["info"].get("flop_table") and "flops" in r["info"]]
    chosen.sort(key=lambda r: (inputs.index(r["info"]["network_input"])
                               if r["info"]["network_input"] in inputs else 99,
                               r["info"]["conv"], passes.index(r["info"]["conv_pass"]),
                               paths.index(r["info"].get("path", "im2col"))))
    results = []
    for r in chosen:
        flops = r["info"]["flops"]
        entry = {"conv": r["info"]["conv"], "input": r["info"]["network_input"],
                 "shape": r["shape"], "pass": r["info"]["conv_pass"],
                 "numcnn_path": r["info"].get("path"), "op": r["op"], "gflop": flops / 1e9}
        for column, name in (("numba", "numcnn"), ("torch", "torch")):
            seconds = r["median_s"].get(column)
            gflops = None if seconds is None else flops / seconds / 1e9
            entry[f"{name}_s"] = seconds
            entry[f"{name}_gflops"] = gflops
            entry[f"{name}_peak_share"] = (None if gflops is None or not peak_gflops
                                           else gflops / peak_gflops)
        results.append(entry)
    return results


def efficiency_section(results, peak):
    def pct(share):
        return "-" if share is None else f"{100 * share:.0f}%"

    def gf(value):
        return "-" if value is None else f"{value:.1f}"

    best = peak["best_gflops"] if peak else None
    lines = [
        "## Convolutions against the FP32 peak (batch 64, 3x3, padding 1)",
        "",
        "| Convolution | Input | Shape | Pass | GFLOP | numcnn path | numcnn ms | numcnn GFLOP/s "
        "| numcnn % of peak | PyTorch ms | PyTorch GFLOP/s | PyTorch % of peak |",
        "|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for e in results:
        path = e["numcnn_path"]
        if path == "im2col":
            path = "im2col (the layer)"
        lines.append(
            f"| {e['conv']} | {e['input']} | {e['shape']} | {e['pass']} | {e['gflop']:.2f} | {path} | "
            f"{fmt_ms(e['numcnn_s'])} | {gf(e['numcnn_gflops'])} | {pct(e['numcnn_peak_share'])} | "
            f"{fmt_ms(e['torch_s'])} | {gf(e['torch_gflops'])} | {pct(e['torch_peak_share'])} |")
    if peak:
        blas = [b for b in peak["blas"] if b.get("library") == "numpy.libs"] or peak["blas"]
        kernel = blas[0].get("architecture") if blas else "unknown"
        peak_text = (f"**Peak = {best:.1f} GFLOP/s: the best of {peak['repeats']} "
                     f"{peak['size']}x{peak['size']} float32 `np.matmul` products on "
                     f"{peak['threads']} threads measured on this machine** (median "
                     f"{peak['median_gflops']:.1f}; numpy's OpenBLAS, {kernel} kernels), not a "
                     "datasheet figure.")
    else:
        peak_text = "Peak not measured (`--skip-peak`): shares left empty."
    lines += [
        "",
        "Achieved GFLOP/s = FLOPs / median time, with FLOPs = 2 * N * F * C * KH * KW * OH * OW "
        "for the forward pass, the same for a backward pass computing the weight gradient only "
        "(the first convolution, which needs no input gradient), 2x with the input gradient "
        "(conv2, conv3); bias gradients are not counted. Rows are the passes training runs "
        "(PyTorch likewise: `x.requires_grad` only where the input gradient is needed), "
        "each on numcnn's two paths: `direct` (the kernels training runs) and `im2col` "
        "(the layer, as `Sequential.forward` runs it). " + peak_text,
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# 4. Training epoch and inference (interleaved.py)
# ---------------------------------------------------------------------------
def interleaved_results(run, epochs, inference, with_torch, skip_fit=False, conv1=False):
    images = run["epoch_images"] if epochs else 150   # no epochs: a token training set
    cmd = [str(HERE / "interleaved.py"), "--images", str(images),
           "--repeats", str(run["epoch_repeats"] if epochs else 0),
           "--predict-images", str(run["predict_images"]),
           "--predict-repeats", str(run["predict_repeats"] if inference else 0),
           "--conv1-repeats", str(run["conv1_repeats"] if conv1 else 0),
           "--conv1-calls", str(run["conv1_calls"])]
    if not with_torch:
        cmd.append("--no-torch")
    if skip_fit:
        cmd.append("--skip-fit")
    log(f"compare.py: training epochs, inference, conv1, interleaved ({' '.join(cmd[1:])}); "
        "progress below ...")
    done = subprocess.run([sys.executable] + cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                          stderr=None, text=True)   # progress straight to our stderr
    if done.returncode != 0:
        raise RuntimeError(f"interleaved.py failed (exit {done.returncode}); its error is above")
    return json.loads(done.stdout.strip().splitlines()[-1])


def epoch_summary(result):
    scale = RECIPE_TRAIN_IMAGES / result["images"]
    summary = {"images": result["images"], "scale_to_recipe": scale,
               "steps_per_epoch": result["steps_per_epoch"], "last_batch": result["last_batch"],
               "repeats": result["repeats"], "order": result["epoch_order"], "rows": {}}
    for name, seconds in result["epoch_seconds"].items():
        m = median(seconds)
        summary["rows"][name] = {
            "median_s": m, "min_s": min(seconds), "max_s": max(seconds), "all_s": seconds,
            "median_s_per_recipe_epoch": m * scale,
            "median_ms_per_step": 1e3 * m / result["steps_per_epoch"]}
    rows = summary["rows"]
    steps, torch_steps, fit = (rows.get("numcnn steps"), rows.get("torch steps"),
                               rows.get("numcnn fit"))
    summary["numcnn_over_torch"] = (steps["median_s"] / torch_steps["median_s"]
                                    if steps and torch_steps else None)
    summary["fit_over_steps"] = fit["median_s"] / steps["median_s"] if fit and steps else None
    summary["fit_minus_steps_s_per_recipe_epoch"] = (
        (fit["median_s"] - steps["median_s"]) * scale if fit and steps else None)
    return summary


def epoch_section(result, summary, quick):
    full = result["images"] == RECIPE_TRAIN_IMAGES
    lines = [
        "## A training epoch of the blood-cell recipe (64x64 crops, batch 64, AdamW)",
        "",
        "| What runs | median s / epoch"
        + ("" if full else f" (scaled to {RECIPE_TRAIN_IMAGES:,} images)")
        + " | min - max (s, measured) | ms / step | vs PyTorch |",
        "|---|---:|---:|---:|---:|",
    ]
    names = {"numcnn steps": "numcnn: `model.train_step` over the precomputed batches",
             "torch steps": "PyTorch 2 threads: the same batches, `torch.optim.AdamW`",
             "numcnn fit": "numcnn: `model.fit`, one epoch (shuffle, augmentation, loop)"}
    torch_row = summary["rows"].get("torch steps")
    for name in result["epoch_order"]:
        row = summary["rows"][name]
        versus = (fmt_ratio(row["median_s"], torch_row["median_s"]) if torch_row else "-")
        lines.append(f"| {names.get(name, name)} | {fmt_s(row['median_s_per_recipe_epoch'])} | "
                     f"{fmt_s(row['min_s'])} - {fmt_s(row['max_s'])} | "
                     f"{row['median_ms_per_step']:.0f} | {versus} |")
    lines.append("")
    if summary["numcnn_over_torch"] is not None:
        lines.append(f"numcnn / PyTorch per epoch, same batches: "
                     f"**{summary['numcnn_over_torch']:.2f}x** (above 1: numcnn is slower).")
    if summary["fit_over_steps"] is not None:
        lines.append(f"`fit` against `train_step` over precomputed batches: "
                     f"{summary['fit_over_steps']:.2f}x, "
                     f"{summary['fit_minus_steps_s_per_recipe_epoch']:+.2f} s per "
                     f"{RECIPE_TRAIN_IMAGES:,}-image epoch: what fit's loop adds (its shuffling, "
                     "indexing and augmentation of each batch, the input checks; no validation, "
                     "no callbacks, verbose=0).")
    lines.append("")
    data = (f"{result['images']:,} synthetic images 3x72x72 float32 (uniform pixels, mean image "
            f"subtracted), labels 0..3: {result['steps_per_epoch']} steps per epoch, the last of "
            f"{result['last_batch']} images. ")
    data += ("This is the recipe's training-set size." if full else
             f"Epoch times are scaled by {RECIPE_TRAIN_IMAGES:,}/{result['images']:,} = "
             f"{summary['scale_to_recipe']:.2f} to a {RECIPE_TRAIN_IMAGES:,}-image epoch; "
             "the min - max column is as measured.")
    checks = result.get("checks") or {}
    lines += [
        "Data: " + data + " The batches (a random order; 64x64 random crops, flips and quarter "
        "turns by `crop_and_flip(64, rotate90=True)`) are computed once from a fixed seed"
        + (f", identically in both workers (same bytes: hash "
           f"{result['setup']['numcnn']['batches_digest']} in both)"
           if checks.get("same_batches") else "")
        + "; `fit` shuffles and augments by itself from the model's Generator.",
        f"Method: medians of {result['repeats']} interleaved rounds "
        f"({', '.join(result['epoch_order'])}, then again), each framework in its own "
        "long-lived worker process (`interleaved.py`): each runs alone in its process as a "
        "user's training would (no PyTorch thread pool or allocator in numcnn's process and "
        "no numba threads in PyTorch's), while the idle worker waits on a pipe; alternating "
        "round by round makes a drift of the machine's load hit both alike. Both start from "
        "the same weights; two untimed warm-up steps each; every epoch keeps training."
        + (f" Peak RSS of the workers: numcnn {result['max_rss_mib']['numcnn']:.0f} MiB"
           + (f", PyTorch {result['max_rss_mib']['torch']:.0f} MiB"
              if "torch" in result["max_rss_mib"] else "") + " (data included).")
        + (" (--quick: a smoke test, not a measurement.)" if quick else ""),
    ]
    if result["repeats"] < 5 and not quick:
        lines.append(f"**Only {result['repeats']} rounds: fewer than the 5 the targets ask for.**")
    return "\n".join(lines)


def inference_summary(result):
    rows = {}
    for framework, seconds in result["predict_seconds"].items():
        m = median(seconds)
        rows[framework] = {"median_s": m, "all_s": seconds,
                           "images_per_s": result["predict_images"] / m,
                           "ms_per_batch": 1e3 * m * result["predict_batch"] / result["predict_images"]}
    return rows


def inference_section(result, rows, quick):
    names = {"numcnn": "numcnn `model.predict(x, batch_size=256)`",
             "torch": "PyTorch 2 threads, `eval()`, `torch.no_grad()`, softmax"}
    torch_row = rows.get("torch")
    lines = [
        f"## Inference throughput (64x64, one view, batch {result['predict_batch']})",
        "",
        "| What runs | images / s (median) | ms per batch of 256 | numcnn / PyTorch (time) |",
        "|---|---:|---:|---:|",
    ]
    for framework, row in rows.items():
        lines.append(f"| {names.get(framework, framework)} | {row['images_per_s']:.0f} | "
                     f"{row['ms_per_batch']:.1f} | "
                     f"{fmt_ratio(row['median_s'], torch_row['median_s']) if torch_row else '-'} |")
    check = (result.get("checks") or {}).get("predict_max_abs_difference")
    lines += [
        "",
        f"{result['predict_images']:,} random images 3x64x64 per round, medians of "
        f"{result['predict_repeats']} interleaved rounds (numcnn, PyTorch, ...) in the same "
        "worker processes as the epochs, each with a fresh copy of the network (same weights; "
        "BatchNorm on its running statistics)"
        + (f"; both give the same probabilities (max difference {check:.1e})"
           if check is not None else "")
        + ". numcnn's predict runs the plan's fused inference kernels and returns float32 "
        "probabilities; PyTorch's time includes its softmax."
        + (" (--quick: a smoke test, not a measurement.)" if quick else ""),
    ]
    return "\n".join(lines)


def conv1_interleaved_summary(result):
    """Medians over rounds per framework and input, the ratio of the medians, and the
    ratio within each round (numcnn's round over PyTorch's same round)."""
    seconds = result["conv1_seconds"]
    rows = []
    for size, numcnn_s in seconds["numcnn"].items():
        torch_s = seconds.get("torch", {}).get(size)
        row = {"input": size, "numcnn_median_s": median(numcnn_s), "numcnn_all_s": numcnn_s,
               "torch_median_s": None, "ratio": None, "round_ratios": None}
        if torch_s:
            ratios = [a / b for a, b in zip(numcnn_s, torch_s)]
            row.update(torch_median_s=median(torch_s), torch_all_s=torch_s,
                       ratio=median(numcnn_s) / median(torch_s), round_ratios=ratios,
                       rounds_below_1=sum(r < 1 for r in ratios))
        rows.append(row)
    return rows


def conv1_interleaved_section(result, rows, quick):
    lines = [
        "## First convolution, interleaved (forward + weight gradient; median ms of a call)",
        "",
        "| Input | numcnn direct (ms) | PyTorch (ms) | numcnn / PyTorch (medians) "
        "| the same round's ratio: median (min - max) | rounds with numcnn faster |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ratios = row["round_ratios"]
        spread = ("-" if not ratios else
                  f"{median(ratios):.2f}x ({min(ratios):.2f} - {max(ratios):.2f})")
        faster = "-" if not ratios else f"{row['rounds_below_1']} of {len(ratios)}"
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        lines.append(f"| {row['input']} | {fmt_ms(row['numcnn_median_s'])} | "
                     f"{fmt_ms(row['torch_median_s'])} | {ratio} | {spread} | {faster} |")
    lines += [
        "",
        f"conv1 (64x3xHxW -> 32, 3x3, padding 1) as training runs it: numcnn's "
        "`conv2d_direct` then `conv2d_direct_backward(..., input_grad=False)`, PyTorch's "
        "`F.conv2d` then its backward with `x.requires_grad=False`, one call timing the "
        "pair, on the same arrays. Each of "
        f"{result['conv1_repeats']} rounds: numcnn's worker times {result['conv1_calls']} "
        "calls at each input and reports the median, then PyTorch's worker does the "
        "same (`interleaved.py`, the worker processes of the epochs). Unlike the "
        "pytest-benchmark table of the first convolution above, where each side's "
        "rounds run one after the other, a drift of the machine's speed here hits both "
        "alike."
        + (" (--quick: a smoke test, not a measurement.)" if quick else ""),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# 5. Peak memory
# ---------------------------------------------------------------------------
def memory_results(steps, with_torch):
    results = {}
    frameworks = ["numcnn"] + (["torch"] if with_torch else [])
    for H, W in STEP_SIZES:
        for framework in frameworks:
            log(f"compare.py: peak memory, {framework} at {H}x{W} ...")
            results[(framework, H, W)] = run_json(
                [str(HERE / "peak_memory.py"), framework, str(H), str(W), "--steps", str(steps)],
                what=f"peak_memory.py {framework} {H} {W}")
    return results


def memory_section(results, steps):
    def get(framework, H, W, field):
        r = results.get((framework, H, W))
        return None if r is None else r[field]

    def mib(value):
        return "-" if value is None else f"{value:.0f}"

    lines = [
        "## Peak memory of training steps (batch 64, fresh process each)",
        "",
        "| Input | numcnn growth (MiB) | PyTorch growth (MiB) | numcnn / PyTorch "
        "| numcnn baseline -> peak RSS (MiB) | PyTorch baseline -> peak RSS (MiB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for H, W in STEP_SIZES:
        n_growth, t_growth = get("numcnn", H, W, "growth_mib"), get("torch", H, W, "growth_mib")
        lines.append(
            f"| {H}x{W} | {mib(n_growth)} | {mib(t_growth)} | {fmt_ratio(n_growth, t_growth)} | "
            f"{mib(get('numcnn', H, W, 'baseline_mib'))} -> {mib(get('numcnn', H, W, 'peak_mib'))} | "
            f"{mib(get('torch', H, W, 'baseline_mib'))} -> {mib(get('torch', H, W, 'peak_mib'))} |")
    reset = all(r["hwm_reset"] for r in results.values())
    lines += [
        "",
        f"Growth = peak RSS during 2 warm-up + {steps} training steps minus the RSS after "
        "imports, kernel loading (a tiny 16x16 warm-up model) and building the network "
        "and batch: activations, gradients, Adam state, work buffers and temporaries. "
        "numcnn runs the numba backend. "
        + ("Peak counter reset at the baseline (/proc/self/clear_refs)."
           if reset else "The peak counter could not be reset: peaks include start-up."),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# 6. First-call (compile) cost
# ---------------------------------------------------------------------------
def compile_results(sizes):
    """For each size: first_step.py with a new, empty NUMBA_CACHE_DIR, then with it filled."""
    results = {}
    for H, W in sizes:
        cache = tempfile.mkdtemp(prefix="numcnn-numba-cache-")
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        args = [str(HERE / "first_step.py"), "--size", f"{H}x{W}"]
        try:
            log(f"compare.py: first step at {H}x{W} with an empty numba cache (compiling) ...")
            cold = run_json(args, env=env, what=f"first_step.py {H}x{W} (cold)")
            log(f"compare.py: first step at {H}x{W} with the filled cache (loading) ...")
            warm = run_json(args, env=env, what=f"first_step.py {H}x{W} (warm)")
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        results[f"{H}x{W}"] = {"cold": cold, "warm": warm}
    return results


def compile_section(results):
    lines = [
        "## First-call cost of the numba kernels (train step, batch 64, AdamW, fresh process)",
        "",
        "| Input | NUMBA_CACHE_DIR | import numcnn (s) | 1st step (s) | 2nd step (s) "
        "| 3rd step (s) | 1st - 2nd (s) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for size, runs in results.items():
        for name, title in (("cold", "empty (compile)"), ("warm", "filled (cache load)")):
            r = runs[name]
            lines.append(f"| {size} | {title} | {r['import_s']:.2f} | {r['first_step_s']:.2f} | "
                         f"{r['second_step_s']:.2f} | {r['third_step_s']:.2f} | "
                         f"{r['first_step_s'] - r['second_step_s']:.2f} |")
    lines.append("")
    verdicts = []
    for size, runs in results.items():
        cold = runs["cold"]
        first, total = cold["first_step_s"], cold["import_s"] + cold["first_step_s"]
        verdicts.append(f"{size}: first step {first:.1f} s, with the import {total:.1f} s "
                        f"({'met' if total < FIRST_STEP_TARGET_S else 'NOT met'})")
    lines.append(f"Target: the first training step of a fresh installation (empty cache, "
                 f"compilation included) under {FIRST_STEP_TARGET_S:.0f} s. "
                 + "; ".join(verdicts) + ". Each size compiles into its own empty cache "
                 "directory; the second run loads the kernels that the first compiled.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="about one round per benchmark, a tiny epoch, fewer repeats: "
                             "a smoke test")
    parser.add_argument("--json", metavar="PATH", help="also write all results to PATH")
    parser.add_argument("-k", dest="keyword", help="pytest -k expression to select benchmarks")
    parser.add_argument("--skip-benchmarks", action="store_true",
                        help="no pytest-benchmark run (no speed or convolution sections)")
    parser.add_argument("--skip-peak", action="store_true", help="no SGEMM peak measurement")
    parser.add_argument("--skip-epoch", action="store_true", help="no training-epoch section")
    parser.add_argument("--skip-inference", action="store_true", help="no inference section")
    parser.add_argument("--skip-conv1", action="store_true",
                        help="no interleaved conv1 section (the pytest-benchmark one stays)")
    parser.add_argument("--skip-fit", action="store_true",
                        help="epoch section without the model.fit epochs")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="every benchmark process calls numcnn.keep_freed_memory() "
                             "(malloc keeps freed memory; applies to PyTorch too)")
    parser.add_argument("--keep-blas-env", action="store_true",
                        help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for the measuring "
                             "processes (by default they are unset)")
    parser.add_argument("--min-rounds", type=int, help="override --benchmark-min-rounds")
    parser.add_argument("--max-time", type=float, help="override --benchmark-max-time (s)")
    parser.add_argument("--epoch-images", type=int,
                        help=f"training images per epoch (default {RECIPE_TRAIN_IMAGES}; "
                             "fewer: times are scaled, and the report says so)")
    parser.add_argument("--epoch-repeats", type=int, help="interleaved epoch rounds (default 5)")
    parser.add_argument("--predict-images", type=int, help="images per inference round (2048)")
    parser.add_argument("--predict-repeats", type=int, help="interleaved inference rounds (11)")
    parser.add_argument("--conv1-repeats", type=int, help="interleaved conv1 rounds (11)")
    parser.add_argument("--conv1-calls", type=int, help="timed conv1 calls a round (20)")
    parser.add_argument("--sgemm-repeats", type=int, help="timed SGEMMs for the peak (5)")
    parser.add_argument("--first-step-sizes", metavar="HxW,...",
                        help="input sizes of the first-call measurement (default 64x64,60x80; "
                             "--quick: 64x64)")
    parser.add_argument("--route", choices=sorted(ROUTES), default="native",
                        help="limit both frameworks alike (default native: nothing forced)")
    args = parser.parse_args(argv)
    blas_env = prepare_blas_environment(args.keep_blas_env)  # before any subprocess
    if args.route == "avx512" and "avx512f" not in open("/proc/cpuinfo").read():
        parser.error("--route avx512: this processor has no AVX-512")
    os.environ.update(ROUTES[args.route])             # inherited by every measuring process
    if args.keep_freed_memory:
        os.environ["NUMCNN_KEEP_FREED_MEMORY"] = "1"     # inherited by every subprocess

    settings = dict(QUICK if args.quick else FULL)
    if args.min_rounds is not None:
        settings["min_rounds"] = args.min_rounds
    if args.max_time is not None:
        settings["max_time"] = args.max_time
    run = dict(QUICK_RUN if args.quick else FULL_RUN)
    for key in run:
        if getattr(args, key) is not None:
            run[key] = getattr(args, key)
    try:
        first_step_sizes = parse_sizes(run["first_step_sizes"])
    except ValueError:
        parser.error(f"--first-step-sizes: expected e.g. 64x64,60x80; got {run['first_step_sizes']!r}")
    if run["epoch_images"] < 2:
        parser.error("--epoch-images must be at least 2")
    memory_steps = 1 if args.quick else 3

    report = {"settings": settings, "run": run, "quick": args.quick, "route": args.route,
              "keep_freed_memory": args.keep_freed_memory}
    freed = {}          # what: [FREED_MEMORY_KEPT of each of its processes]
    failed = False
    info = machine_info(blas_env)
    report["machine"] = info
    print(machine_section(info), end="\n\n", flush=True)
    if info["loadavg_start"][0] > 0.5:
        log(f"compare.py: warning: load average {info['loadavg_start'][0]:.2f}; "
            "timings are only meaningful on a quiet machine")
    with_torch = bool(info.get("torch"))

    peak = None
    if not args.skip_peak:
        try:
            peak = sgemm_peak(run["sgemm_repeats"])
            report["sgemm_peak"] = peak
            freed["SGEMM peak"] = [peak["freed_memory_kept"]]
        except RuntimeError as error:
            failed = True
            print(f"SGEMM peak: failed ({error})\n")

    if not args.skip_benchmarks:
        with tempfile.TemporaryDirectory(prefix="numcnn-bench-") as workdir:
            data, code, pytest_log = run_benchmarks(settings, args.keyword, workdir)
        if code != 0:
            failed = True
            log("compare.py: pytest reported failures; end of its output:\n" + pytest_log[-4000:])
        if data is None:
            print("No benchmark results (pytest did not write its JSON file).\n")
        else:
            rows = collect(data)
            report["benchmarks_raw"] = data
            report["speed"] = [dict(op=r["op"], shape=r["shape"], median_s=r["median_s"],
                                    torch_op=r["torch_op"], info=r["info"]) for r in rows]
            freed["pytest benchmarks"] = [b.get("extra_info", {}).get("freed_memory_kept")
                                          for b in data.get("benchmarks", [])]
            print(speed_section(rows, settings, args.quick), end="\n\n", flush=True)
            conv1 = conv1_results(rows)
            if any(r["total_s"] is not None for r in conv1):
                report["conv1"] = conv1
                print(conv1_section(conv1), end="\n\n", flush=True)
            efficiency = efficiency_results(rows, peak["best_gflops"] if peak else None)
            if efficiency:
                report["conv_efficiency"] = efficiency
                print(efficiency_section(efficiency, peak), end="\n\n", flush=True)

    epochs, inference = not args.skip_epoch, not args.skip_inference
    conv1_rounds = not args.skip_conv1 and run["conv1_repeats"] > 0
    if epochs or inference or conv1_rounds:
        try:
            result = interleaved_results(run, epochs, inference, with_torch, args.skip_fit,
                                         conv1_rounds)
            report["interleaved_raw"] = result
            freed["epoch/inference workers"] = list(result["freed_memory_kept"].values())
            if epochs:
                summary = epoch_summary(result)
                report["epoch"] = summary
                print(epoch_section(result, summary, args.quick), end="\n\n", flush=True)
            if inference:
                rows = inference_summary(result)
                report["inference"] = rows
                print(inference_section(result, rows, args.quick), end="\n\n", flush=True)
            if conv1_rounds:
                rows = conv1_interleaved_summary(result)
                report["conv1_interleaved"] = rows
                print(conv1_interleaved_section(result, rows, args.quick), end="\n\n",
                      flush=True)
        except RuntimeError as error:
            failed = True
            print(f"Training epoch / inference / conv1: failed ({error})\n")

    if not args.skip_memory:
        try:
            memory = memory_results(memory_steps, with_torch=with_torch)
            report["memory"] = [dict(r) for r in memory.values()]
            freed["peak memory"] = [r.get("freed_memory_kept") for r in memory.values()]
            print(memory_section(memory, memory_steps), end="\n\n", flush=True)
        except RuntimeError as error:
            failed = True
            print(f"Peak memory: failed ({error})\n")

    if not args.skip_compile and "threading_layer" in info:
        try:
            compiled = compile_results(first_step_sizes)
            report["first_call"] = compiled
            freed["first step"] = [r.get("freed_memory_kept") for runs in compiled.values()
                                   for r in runs.values()]
            print(compile_section(compiled), end="\n\n", flush=True)
        except RuntimeError as error:
            failed = True
            print(f"First-call cost: failed ({error})\n")

    report["freed_memory"] = freed
    report["loadavg_end"] = os.getloadavg()
    print("## Environment of this run, checked\n")
    print(blas_environment_line(info))
    print(freed_memory_line(args.keep_freed_memory, freed))
    print(f"- load average (1/5/15 min) at the start: "
          f"{' / '.join(f'{x:.2f}' for x in info['loadavg_start'])}; at the end: "
          f"{' / '.join(f'{x:.2f}' for x in report['loadavg_end'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
        log(f"compare.py: wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
