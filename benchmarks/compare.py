"""numcnn against PyTorch, and numba against NumPy, on the blood-cell network.

    python benchmarks/compare.py [--quick] [--json PATH] [-k EXPR]
                                 [--skip-memory] [--skip-compile]

Prints a markdown report with four sections:

1. Machine: CPU, cores, library versions, numba threading layer, BLAS,
   ``OPENBLAS_CORETYPE``, load average (timings need a quiet machine).
2. Speed: the pytest-benchmark files of this directory, run in a subprocess
   with benchmarking enabled, summarised as ONE table of medians (ms):
   numcnn on numba, PyTorch, their ratio, numcnn on NumPy and the numba
   speed-up over NumPy.
3. Peak memory of training steps at 60x80 and 120x160 (batch 64), numcnn
   (numba) and PyTorch, each measured in a fresh process by ``peak_memory.py``.
4. First-call cost of the numba kernels: ``first_step.py`` in a fresh process
   with an empty ``NUMBA_CACHE_DIR`` (compilation), then again with the same,
   now filled, cache directory (loading from the ``cache=True`` cache).

``--quick`` runs every benchmark about once and fewer memory steps: a smoke
test of the whole pipeline, not a measurement. Progress goes to stderr, the
report to stdout. ``--json PATH`` also writes everything (with the raw
pytest-benchmark data) to PATH.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# As numcnn does when it is imported before numpy: OpenBLAS threads spin only
# briefly after a GEMM (docs/performance.md, "Threads"). Inherited by every
# subprocess below; a value set by the user is kept.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
STEP_SIZES = ((60, 80), (120, 160))  # as bloodnet.STEP_SIZES (not imported: keep this process light)

#: pytest-benchmark settings: (min rounds, max seconds per benchmark, warm-up)
FULL = dict(min_rounds=5, max_time=1.0, warmup="on")
QUICK = dict(min_rounds=1, max_time=0.02, warmup="off")

PROBE = r"""
import json, os, platform, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
info = {"python": platform.python_version(), "numpy": np.__version__}
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


def machine_info():
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
        "OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT", "OMP_NUM_THREADS", "OMP_WAIT_POLICY",
        "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "NUMCNN_BACKEND", "NUMCNN_KEEP_FREED_MEMORY")}
    info["loadavg_start"] = os.getloadavg()
    return info


def machine_section(info):
    blas = "; ".join(
        f"{b.get('internal_api')} {b.get('version')} from {b.get('package')} "
        f"({b.get('architecture')} kernels, {b.get('num_threads')} threads)"
        for b in info.get("blas", [])) or "unknown"
    env = ", ".join(f"{k}={v}" for k, v in info["env"].items() if v is not None) or "none set"
    load = " / ".join(f"{x:.2f}" for x in info["loadavg_start"])
    lines = [
        "## Machine",
        "",
        f"- CPU: {info['cpu']} (platform.processor: {info['processor'] or 'n/a'}); "
        f"{info['logical_cpus']} logical CPUs, {info['usable_cpus']} usable",
        f"- {info['platform']}, Python {info['python']}",
        f"- numpy {info['numpy']}, numba {info.get('numba')}, torch {info.get('torch') or 'not installed'}",
        f"- numba threading layer: {info.get('threading_layer', 'n/a')} "
        f"({info.get('numba_threads', '?')} threads); torch threads: {info.get('torch_threads', 'n/a')}",
        f"- BLAS libraries loaded with numcnn (threadpoolctl): {blas}",
        f"- OPENBLAS_CORETYPE: {os.environ.get('OPENBLAS_CORETYPE', 'unset')}; "
        f"related environment: {env}",
        f"- load average (1/5/15 min) at start: {load}",
    ]
    return "\n".join(lines)


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
    """{(op, shape): {"numba"|"numpy"|"torch": median seconds}} in run order."""
    rows, extra = {}, {}
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info", {})
        if "op" not in info:
            continue
        key = (info["op"], info["shape"])
        column = info["backend"] if info["framework"] == "numcnn" else "torch"
        rows.setdefault(key, {})[column] = bench["stats"]["median"]
        if "op_torch" in info:
            extra[key] = info["op_torch"]
    # keep the order of first appearance of each operation, then of each shape
    op_order = list(dict.fromkeys(op for op, _ in rows))
    ordered = sorted(rows, key=lambda k: (op_order.index(k[0]), list(rows).index(k)))
    return [(key, rows[key], extra.get(key)) for key in ordered]


def fmt_ms(seconds):
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


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
    for (op, shape), medians, op_torch in rows:
        numba_s, numpy_s, torch_s = medians.get("numba"), medians.get("numpy"), medians.get("torch")
        name = f"{op} (PyTorch: {op_torch})" if op_torch else op
        lines.append(f"| {name} | {shape} | {fmt_ms(numba_s)} | {fmt_ms(torch_s)} | "
                     f"{fmt_ratio(numba_s, torch_s)} | {fmt_ms(numpy_s)} | "
                     f"{fmt_ratio(numpy_s, numba_s)} |")
    lines += [
        "",
        "numcnn / PyTorch above 1 means numcnn is slower. Shapes are the inputs "
        "(`->F`: output channels); conv shapes are the three convolutions of the "
        "network at 60x80. Backward rows time the backward call only (the forward "
        "pass runs untimed before each round).",
        f"pytest-benchmark: --benchmark-min-rounds={settings['min_rounds']} "
        f"--benchmark-max-time={settings['max_time']} --benchmark-warmup={settings['warmup']}"
        + (" (--quick: numbers are a smoke test, not a measurement)" if quick else ""),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# 3. Peak memory
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
# 4. First-call (compile) cost
# ---------------------------------------------------------------------------
def compile_results():
    cache = tempfile.mkdtemp(prefix="numcnn-numba-cache-")
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    try:
        log("compare.py: first step with an empty numba cache (compiling) ...")
        cold = run_json([str(HERE / "first_step.py")], env=env, what="first_step.py (cold)")
        log("compare.py: first step with the filled cache (loading) ...")
        warm = run_json([str(HERE / "first_step.py")], env=env, what="first_step.py (warm)")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return {"cold": cold, "warm": warm}


def compile_section(results):
    lines = [
        "## First-call cost of the numba kernels (train step, 60x80, batch 64, fresh process)",
        "",
        "| NUMBA_CACHE_DIR | import numcnn (s) | 1st step (s) | 2nd step (s) | 3rd step (s) "
        "| 1st - 2nd (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, title in (("cold", "empty (compile)"), ("warm", "filled (cache load)")):
        r = results[name]
        lines.append(f"| {title} | {r['import_s']:.2f} | {r['first_step_s']:.2f} | "
                     f"{r['second_step_s']:.2f} | {r['third_step_s']:.2f} | "
                     f"{r['first_step_s'] - r['second_step_s']:.2f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="about one round per benchmark and one measured memory step")
    parser.add_argument("--json", metavar="PATH", help="also write all results to PATH")
    parser.add_argument("-k", dest="keyword", help="pytest -k expression to select benchmarks")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="every benchmark process calls numcnn.keep_freed_memory() "
                             "(malloc keeps freed memory; applies to PyTorch too)")
    parser.add_argument("--min-rounds", type=int, help="override --benchmark-min-rounds")
    parser.add_argument("--max-time", type=float, help="override --benchmark-max-time (s)")
    args = parser.parse_args(argv)
    if args.keep_freed_memory:
        os.environ["NUMCNN_KEEP_FREED_MEMORY"] = "1"     # inherited by every subprocess

    settings = dict(QUICK if args.quick else FULL)
    if args.min_rounds is not None:
        settings["min_rounds"] = args.min_rounds
    if args.max_time is not None:
        settings["max_time"] = args.max_time
    memory_steps = 1 if args.quick else 3

    report = {"settings": settings, "quick": args.quick}
    failed = False
    info = machine_info()
    report["machine"] = info
    print(machine_section(info), end="\n\n", flush=True)
    if info["loadavg_start"][0] > 0.5:
        log(f"compare.py: warning: load average {info['loadavg_start'][0]:.2f}; "
            "timings are only meaningful on a quiet machine")

    with tempfile.TemporaryDirectory(prefix="numcnn-bench-") as workdir:
        data, code, pytest_log = run_benchmarks(settings, args.keyword, workdir)
    if code != 0:
        failed = True
        log("compare.py: pytest reported failures; end of its output:\n" + pytest_log[-4000:])
    if data is None:
        print("No benchmark results (pytest did not write its JSON file).")
    else:
        rows = collect(data)
        report["benchmarks_raw"] = data
        report["speed"] = [dict(op=op, shape=shape, median_s=medians, torch_op=op_torch)
                           for (op, shape), medians, op_torch in rows]
        print(speed_section(rows, settings, args.quick), end="\n\n", flush=True)

    if not args.skip_memory:
        try:
            memory = memory_results(memory_steps, with_torch=bool(info.get("torch")))
            report["memory"] = [dict(r) for r in memory.values()]
            print(memory_section(memory, memory_steps), end="\n\n", flush=True)
        except RuntimeError as error:
            failed = True
            print(f"Peak memory: failed ({error})\n")

    if not args.skip_compile and "threading_layer" in info:
        try:
            compiled = compile_results()
            report["first_call"] = compiled
            print(compile_section(compiled), end="\n\n", flush=True)
        except RuntimeError as error:
            failed = True
            print(f"First-call cost: failed ({error})\n")

    report["loadavg_end"] = os.getloadavg()
    print(f"Load average (1/5/15 min) at the end: "
          f"{' / '.join(f'{x:.2f}' for x in report['loadavg_end'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
        log(f"compare.py: wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
