"""Run the kernel, plan and model tests once per route and processor, each in a fresh Python.

    python tests/routes.py                     # every configuration, then a summary
    python tests/routes.py generic portable    # some of them

numba compiles for the processor it is told to (``NUMBA_CPU_NAME``,
``NUMBA_CPU_FEATURES``), so this machine can build and run the code that
another processor would get, and each route can be forced
(``NUMCNN_ROUTE``). Each configuration runs the tests in a process of its own
with an empty numba cache (so nothing compiled for another one is reused),
holds every result to the reference kernels as the tests always do, and tells
``tests/test_routes.py`` which route must be in force
(``NUMCNN_EXPECTED_ROUTE``). It says what each run printed last and how long
it took; the exit status is 1 if any run failed.

CI runs it after the test suite (``.ci/run``).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from numcnn import routes  # noqa: E402

#: The tests that exercise the kernels on a route: the kernels against their
#: reference twins, the vector operations, the route itself, the plan's steps
#: against the layers, and models that train, predict and save.
TESTS = ["tests/test_kernels.py", "tests/test_vectors.py", "tests/test_routes.py",
         "tests/test_plan.py", "tests/test_model.py"]
#: Tests that start their own processes for other processors: the runs here cover them.
DESELECT = "not avx2_processor and not avx512 and not edit_of_the_vector"
#: A Haswell: AVX2 and FMA, no AVX-512 (blocks of 8 filters of 32-byte vectors).
HASWELL_FEATURES = "+avx,+avx2,+fma,+sse4.2,+popcnt,+f16c,+bmi,+bmi2,+lzcnt,+movbe,+cx16,+xsave"


def configurations():
    """``{name: (what it shows, environment, expected route, tests)}`` for this machine."""
    host = routes.compile_target()
    native = "vectors" if routes.vectors_tested_on(dict(host, jit=True)) else "portable"
    x86 = host["arch"] in ("x86_64", "amd64")
    runs = {
        "native": ("numba compiling for this processor, route auto", {}, native, TESTS),
        "portable": ("the portable route forced (NUMCNN_ROUTE=portable)",
                     {"NUMCNN_ROUTE": "portable"}, "portable", TESTS),
        "opaque-pointers": ("llvmlite's IR with opaque pointers",
                            {"LLVMLITE_ENABLE_IR_LAYER_TYPED_POINTERS": "0"}, native, TESTS),
    }
    if x86:
        runs["generic"] = ("numba compiling for a generic x86-64 (no AVX): route auto",
                           {"NUMBA_CPU_NAME": "generic"}, "portable", TESTS)
        runs["generic-vectors"] = (
            "the vector kernels forced on a generic x86-64 (LLVM splits their vectors)",
            {"NUMBA_CPU_NAME": "generic", "NUMCNN_ROUTE": "vectors"}, "vectors",
            ["tests/test_vectors.py", "tests/test_kernels.py::test_3x3_kernels_match_the_reference",
             "tests/test_kernels.py::test_3x3_forward_blocks_of_filters_and_columns",
             "tests/test_routes.py"])
        if {"avx2", "fma"} <= host["features"]:
            runs["haswell"] = ("numba compiling for Haswell (AVX2, FMA, no AVX-512)",
                               {"NUMBA_CPU_NAME": "haswell",
                                "NUMBA_CPU_FEATURES": HASWELL_FEATURES}, "vectors", TESTS)
    return runs


def run(name, what, environment, expected, tests):
    """One configuration: pytest in a fresh Python; (passed, summary line, seconds)."""
    with tempfile.TemporaryDirectory(prefix=f"numba-cache-{name}-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, NUMCNN_EXPECTED_ROUTE=expected,
                   **environment)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "-k", DESELECT, *tests], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True)
        seconds = time.perf_counter() - started
    lines = [line for line in done.stdout.strip().splitlines() if line.strip()]
    summary = lines[-1] if lines else done.stderr.strip()[-300:]
    if done.returncode != 0:
        print(done.stdout[-6000:], done.stderr[-3000:], sep="\n", file=sys.stderr)
    return done.returncode == 0, summary, seconds


def main(argv=None):
    available = configurations()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"configurations to run (default all: {', '.join(available)})")
    names = parser.parse_args(argv).names or list(available)
    unknown = [name for name in names if name not in available]
    if unknown:
        parser.error(f"unknown configuration(s) {unknown}; this machine has {list(available)}")
    results = []
    for name in names:
        what, environment, expected, tests = available[name]
        settings = " ".join(f"{key}={value}" for key, value in environment.items()) or "-"
        print(f"== {name}: {what}\n   {settings}; expects route {expected}", flush=True)
        passed, summary, seconds = run(name, what, environment, expected, tests)
        print(f"   {'ok' if passed else 'FAILED'}: {summary} ({seconds / 60:.1f} min)", flush=True)
        results.append((name, passed, summary, seconds))
    print("\nconfiguration      result  minutes  pytest")
    for name, passed, summary, seconds in results:
        print(f"{name:<18} {'ok' if passed else 'FAILED':<7} {seconds / 60:7.1f}  {summary}")
    return 0 if all(passed for _, passed, _, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
