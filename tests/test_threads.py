"""Models trained and used from several Python threads at once.

numba's workqueue threading layer aborts the whole process when two threads
enter parallel code at the same time; numcnn's parallel kernels take turns
(``numcnn.kernels.jit.compiling.PARALLEL_LOCK``). The runs here are in a
process of their own, so that a regression is a failed test, not a dead test
session.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

TWO_THREADS = textwrap.dedent("""
    import sys, threading
    import numpy as np
    import numcnn
    from numcnn.layers import BatchNorm2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU

    def model(seed):
        return numcnn.Sequential([
            Conv2D(3, 8, 3, padding=1), BatchNorm2D(8), ReLU(), MaxPool2D(2), Dropout(0.3),
            Conv2D(8, 8, 5, padding=2), BatchNorm2D(8), ReLU(), Flatten(), Dense(8 * 6 * 6, 3),
        ], seed=seed).compile(numcnn.optim.AdamW(1e-2), numcnn.losses.SoftmaxCrossEntropy())

    rng = np.random.default_rng(int(sys.argv[1]))
    data = [(rng.random((32, 3, 12, 12), dtype=np.float32), rng.integers(0, 3, 32))
            for _ in range(2)]

    def work(seed, results):
        m = model(seed)
        x, y = data[seed]
        m.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
        results[seed] = m.get_weights() + [m.predict(x)]

    alone, together = {}, {}
    for seed in (0, 1):                               # one after the other
        work(seed, alone)
    for repeat in range(int(sys.argv[2])):            # two threads at once, again and again
        threads = [threading.Thread(target=work, args=(seed, together)) for seed in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for seed in (0, 1):
            assert len(together[seed]) == len(alone[seed]), (repeat, seed)
            for a, b in zip(together[seed], alone[seed]):
                assert np.array_equal(a, b), (repeat, seed)
        together.clear()
    print("same results", int(sys.argv[2]), "times")
""")


@pytest.mark.subprocess
def test_two_threads_fit_and_predict_two_models_20_times(tmp_path):
    """Two threads, each fitting and predicting its own model, 20 times over: no abort,
    and each model's weights and probabilities bit for bit those of a run alone."""
    run = subprocess.run([sys.executable, "-c", TWO_THREADS, "7", "20"], cwd=tmp_path,
                         env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, f"status {run.returncode}\n{run.stdout}\n{run.stderr[-3000:]}"
    assert run.stdout.strip() == "same results 20 times"
