"""The run of a whole study: the header, every seed, the results after each, the exit status.

A study example defines how to load its images, its network and how one seed
is trained (the story); this module runs the seeds one after the other,
rewriting results.json and summary.txt after each, so that an interrupted
run keeps what it finished, and turns the outcome into the exit status.
"""

from __future__ import annotations

import numcnn
from numcnn.errors import NonFiniteOutputError

from .cli import EXIT

__all__ = ["speaker", "plots_wanted", "announce", "run_seeds"]


def speaker(settings):
    """``say(*parts)``: print, unless ``--quiet``."""
    def say(*parts):
        if not settings.quiet:
            print(*parts, flush=True)
    return say


def plots_wanted(settings):
    """True unless ``--no-plots``, or matplotlib is missing."""
    from numcnn import plots
    return not settings.no_plots and plots.available()


def announce(run, data_dir, say, note=""):
    """The first line of a run: numcnn's version and backend, the data, the output."""
    say(f"numcnn {numcnn.__version__}, backend {numcnn.get_backend()}; data {data_dir}; "
        f"output {run.out}" + (f"\n({note})" if note else ""))


def run_seeds(settings, run, train_seed, write_results):
    """Train ``train_seed(seed)`` for every seed, ``write_results(results)`` after each.

    Returns the exit status: 3 when some seed's training diverged, or its
    trained model's outputs are not finite (the others still ran), else 0.
    """
    results = []
    for seed in settings.seed_list:
        try:
            results.append(train_seed(seed))
        except NonFiniteOutputError as error:      # finite weights, but outputs that are not
            results.append(run.discard_seed(seed, f"the trained model cannot be evaluated: "
                                                  f"{error}"))
        summary = write_results(results)
    print("\n" + summary)
    print(f"\nresults: {run.out / 'results.json'}, {run.out / 'summary.txt'}")
    return EXIT.DIVERGED if any("diverged" in result for result in results) else EXIT.DONE
