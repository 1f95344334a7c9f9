"""Fixtures of the benchmarks alone (``backend``, ``torch`` and the others every
test folder shares are in the repository's root conftest.py).

- ``pedantic_rounds``: how many timed rounds a ``benchmark.pedantic`` call
  (used where each round needs an untimed setup) should run, following
  ``--benchmark-min-rounds`` and ``--benchmark-max-time`` like plain
  ``benchmark(...)`` calls do.
- ``label``: sets ``benchmark.group`` and ``benchmark.extra_info``, which
  ``compare.py`` reads to build its tables (with ``freed_memory_kept``: what
  ``numcnn.keep_freed_memory()`` returned in this process, None when
  ``--keep-freed-memory`` was not asked for).

The network builders live in ``bloodnet.py`` (importable from plain scripts too).
In the default configuration (``--benchmark-disable`` in setup.cfg) every
benchmark runs its function once, as a plain test, and its assertions run.
"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import bloodnet`, whatever the mode

import bloodnet  # (compare.py --keep-freed-memory reaches every benchmark through it)


@pytest.fixture
def pedantic_rounds(request):
    """``rounds(seconds_per_call) -> int`` for ``benchmark.pedantic``.

    At least ``--benchmark-min-rounds``; more while they fit in
    ``--benchmark-max-time`` (capped at 200).
    """
    min_rounds = int(request.config.getoption("benchmark_min_rounds", 5))
    max_time = float(request.config.getoption("benchmark_max_time", 1.0))

    def rounds(seconds_per_call):
        fit = int(max_time / max(seconds_per_call, 1e-6))
        return max(min_rounds, min(fit, 200))

    return rounds


@pytest.fixture
def label(benchmark):
    """``label(op, shape, framework, backend=None, **extra)`` names a benchmark for compare.py."""

    def apply(op, shape, framework, backend=None, **extra):
        benchmark.group = f"{op} {shape}"
        benchmark.extra_info.update(op=op, shape=shape, framework=framework,
                                    backend=backend, freed_memory_kept=bloodnet.FREED_MEMORY_KEPT,
                                    **extra)

    return apply

