"""Which kernels the numba backend runs on this processor: the route, chosen in one place.

A kernel is worth running only where it has been tested. numcnn has two routes:

- ``"vectors"``: every 3x3 convolution with stride 1 (padding up to 2) runs
  the explicit-vector kernels of :mod:`numcnn.kernels.jit.conv3x3` (a block of
  outputs kept in vector registers, built with :mod:`numcnn.kernels.jit.vectors`).
  They are tested on x86-64 processors with AVX2 and FMA, and with AVX-512,
  so ``auto`` takes this route only there.
- ``"portable"``: only ordinary numba loops and the BLAS. Convolutions run
  as im2col and one matrix multiply (the plan's
  :class:`~numcnn.plan.ConvolutionStep`). Every other processor takes it:
  arm64 (Apple Silicon, Linux arm64), x86-64 without AVX2, and any run with
  numba's compiler switched off (``NUMBA_DISABLE_JIT=1``).

The processor that counts is the one numba compiles for: the host, unless
``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES`` say otherwise (numba then
builds code for that processor, and the route follows it).

>>> import numcnn
>>> numcnn.route() in ("vectors", "portable")
True

The environment variable ``NUMCNN_ROUTE`` (``auto``, the default;
``vectors``; ``portable``) forces a route for the whole process, and
:func:`set_route` does the same from Python. If a vector kernel fails to
compile at its first call, numcnn takes the portable route from then on,
with one :class:`RuntimeWarning` that says why (:func:`fall_back`).
"""
import os
import platform
import warnings

__all__ = ["ROUTES", "ROUTE_ENV_VAR", "route", "set_route", "chosen_route", "compile_target",
           "vectors_tested_on", "fall_back", "fallback_reason"]

ROUTES = ("vectors", "portable")
"""The routes, fastest first."""
ROUTE_ENV_VAR = "NUMCNN_ROUTE"
"""The environment variable that may force a route (``auto``, ``vectors`` or ``portable``)."""

_state = {"chosen": None, "route": None, "fallback": None}


def compile_target():
    """What numba compiles for: ``{"arch", "cpu", "features", "jit"}``.

    ``arch`` is the machine of the process (``x86_64``, ``aarch64``, ...),
    ``cpu`` the processor name LLVM is given, ``features`` the set of its
    features that are on (``{"avx2", "fma", ...}``), ``jit`` whether numba
    compiles at all. Without numba: ``jit`` False, no features.
    """
    try:
        import llvmlite.binding as llvm
        from numba.core import config
        from numba.core.codegen import get_host_cpu_features
    except ImportError:
        return {"arch": platform.machine(), "cpu": None, "features": frozenset(), "jit": False}
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()
    return {"arch": llvm.get_process_triple().split("-")[0],
            "cpu": config.CPU_NAME or llvm.get_host_cpu_name(),
            "features": frozenset(name[1:] for name in features.split(",") if name.startswith("+")),
            "jit": not config.DISABLE_JIT}


def vectors_tested_on(target=None):
    """Whether the explicit-vector kernels are tested on this target (x86-64 with
    AVX2 and FMA, or with AVX-512, and numba compiling)."""
    target = compile_target() if target is None else target
    features = target["features"]
    return (target["jit"] and target["arch"] in ("x86_64", "amd64")
            and ({"avx2", "fma"} <= features or "avx512f" in features))


def chosen_route():
    """What was asked for: ``"auto"``, ``"vectors"`` or ``"portable"`` (``NUMCNN_ROUTE``,
    or the last :func:`set_route`)."""
    if _state["chosen"] is None:
        chosen = os.environ.get(ROUTE_ENV_VAR, "auto").strip().lower() or "auto"
        if chosen not in ("auto",) + ROUTES:
            raise ValueError(f"the environment variable {ROUTE_ENV_VAR}={chosen!r} names no "
                             f"route; use auto, vectors or portable")
        _state["chosen"] = chosen
    return _state["chosen"]


def route():
    """The route in force: ``"vectors"`` or ``"portable"``.

    ``auto`` gives ``"vectors"`` where those kernels are tested
    (:func:`vectors_tested_on`), else ``"portable"``; a forced route is kept,
    except that a vector kernel that failed to compile moves every later call
    to ``"portable"``. Numba without its compiler (``NUMBA_DISABLE_JIT=1``)
    always takes ``"portable"``: the vector operations exist only as compiled code.
    """
    if _state["route"] is None:
        chosen, target = chosen_route(), compile_target()
        if _state["fallback"] is not None or not target["jit"]:
            _state["route"] = "portable"
        elif chosen == "auto":
            _state["route"] = "vectors" if vectors_tested_on(target) else "portable"
        else:
            _state["route"] = chosen
    return _state["route"]


def set_route(name):
    """Force ``"vectors"`` or ``"portable"``, or ``"auto"`` to choose by the processor.

    Returns the route now in force (see :func:`route`). Models re-plan at their
    next step.
    """
    if name not in ("auto",) + ROUTES:
        raise ValueError(f"unknown route {name!r}; choose auto, vectors or portable")
    _state.update(chosen=name, route=None)
    return route()


def fall_back(reason):
    """Take the portable route from now on, because a vector kernel failed (``reason``).

    Warns once per process, with the reason; the state is what
    ``python -m numcnn info`` reports.
    """
    if _state["fallback"] is None:
        _state["fallback"] = str(reason)
        warnings.warn(f"numcnn: the vector kernels cannot be used here ({reason}); "
                      f"taking the portable route (im2col and BLAS) from now on",
                      RuntimeWarning, stacklevel=3)
    _state["route"] = "portable"


def fallback_reason():
    """Why the vector kernels were given up in this process, or None."""
    return _state["fallback"]
