"""What numcnn sees of this machine: one paste for a bug report.

>>> from numcnn import info
>>> sorted(info.machine_info())[:3]
['blas', 'cpu_count', 'cpus_usable']

``python -m numcnn info`` prints :func:`report`: the versions of numcnn and
of what it runs on, the processor and the features numba compiles for, the
route (:mod:`numcnn.routes`) and why, the cache folder, and where each
dataset was found or where to get it. The examples write
:func:`machine_info` into their ``results.json``.
"""
import os
import platform
import subprocess
import sys
from importlib import metadata

__all__ = ["machine_info", "processor_name", "report"]

#: Environment variables that change how numcnn or its libraries run.
SETTINGS = ("NUMCNN_ROUTE", "NUMCNN_BACKEND", "NUMCNN_CACHE", "NUMBA_CPU_NAME",
            "NUMBA_CPU_FEATURES", "NUMBA_CACHE_DIR", "NUMBA_DISABLE_JIT", "NUMBA_NUM_THREADS",
            "NUMBA_THREADING_LAYER", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
            "OPENBLAS_CORETYPE", "LLVMLITE_ENABLE_IR_LAYER_TYPED_POINTERS")
#: The processor features that decide the route and the vector width.
ROUTE_FEATURES = ("sse4.2", "avx", "avx2", "fma", "avx512f", "neon")


def processor_name():
    """The processor's marketing name, as the operating system tells it."""
    system = platform.system()
    try:
        if system == "Linux":
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    if line.lower().startswith(("model name", "hardware")):
                        return line.split(":", 1)[1].strip()
        elif system == "Darwin":
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"],
                                  capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def _version(distribution):
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _blas():
    """The BLAS libraries loaded, as threadpoolctl reports them (one line each)."""
    try:
        import numpy  # noqa: F401  (loads its BLAS)
        import threadpoolctl
    except ImportError:
        return ["unknown (threadpoolctl is not installed)"]
    return [f"{pool.get('internal_api')} {pool.get('version')} ({pool.get('architecture')} "
            f"kernels, {pool.get('num_threads')} threads)"
            for pool in threadpoolctl.threadpool_info() if pool.get("user_api") == "blas"]


def machine_info():
    """Platform, processor, versions, the route, the backend and the settings, as a dict."""
    import numpy as np

    import numcnn
    from . import routes
    from .data.cache import default_cache_dir
    target = routes.compile_target()
    try:
        cpus_usable = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus_usable = None
    try:
        route = routes.route()
    except ValueError as error:                  # NUMCNN_ROUTE names no route
        route = f"unusable: {error}"
    return {
        "numcnn": numcnn.__version__, "python": platform.python_version(),
        "numpy": np.__version__, "numba": _version("numba"), "llvmlite": _version("llvmlite"),
        "scikit_image": _version("scikit-image"), "scikit_learn": _version("scikit-learn"),
        "blas": _blas(),
        "platform": platform.platform(), "machine": platform.machine(),
        "processor": processor_name(), "cpu_count": os.cpu_count(), "cpus_usable": cpus_usable,
        "numba_cpu": target["cpu"],
        "numba_features": sorted(name for name in ROUTE_FEATURES if name in target["features"]),
        "route": route, "route_asked": os.environ.get(routes.ROUTE_ENV_VAR, "auto"),
        "route_fallback": routes.fallback_reason(),
        "numcnn_backend": numcnn.get_backend(),
        "cache": str(default_cache_dir()),
        "environment": {key: os.environ[key] for key in SETTINGS if key in os.environ},
    }


def report():
    """The text ``python -m numcnn info`` prints."""
    info = machine_info()
    lines = [f"numcnn {info['numcnn']} on Python {info['python']} ({info['platform']})",
             f"processor: {info['processor']} ({info['machine']}, {info['cpu_count']} logical "
             f"CPUs, {info['cpus_usable']} usable)",
             f"numba {info['numba']} (llvmlite {info['llvmlite']}) compiles for "
             f"{info['numba_cpu']}: " + " ".join(info["numba_features"] or ["none"]) + " (not "
             + " ".join(name for name in ROUTE_FEATURES if name not in info["numba_features"])
             + ")",
             f"route: {info['route']} (asked: {info['route_asked']})"
             + (f"; fell back because {info['route_fallback']}" if info["route_fallback"] else ""),
             f"backend: {info['numcnn_backend']}",
             f"numpy {info['numpy']}, scikit-image {info['scikit_image']}, "
             f"scikit-learn {info['scikit_learn']}",
             "BLAS: " + ("; ".join(info["blas"]) or "none found"),
             f"cache folder: {info['cache']}"]
    from .datasets import places
    for name, (folder, how) in places().items():
        lines.append(f"dataset {name}: {folder or how}")
    if info["environment"]:
        lines.append("settings: " + " ".join(f"{key}={value}"
                                             for key, value in info["environment"].items()))
    return "\n".join(lines)


def main(argv=None):
    """``python -m numcnn info``: print :func:`report`."""
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["info"]:
        print("usage: python -m numcnn info\n  prints what numcnn sees of this machine "
              "(versions, processor, route, cache, datasets) for a bug report",
              file=sys.stderr)
        return 0 if argv in (["-h"], ["--help"]) else 2
    print(report())
    return 0
