"""Median training step and inference throughput of the blood-cell network, for one checkout.

    cd <a checkout of numcnn> && python <this file> numcnn [adamw|adam]
    cd <a checkout of numcnn> && python <this file> torch

Prints one JSON line: ``step_ms`` (median of 15 ``train_step`` calls on one
batch of 64 images 3x64x64, after 3 untimed ones) and ``predict_img_per_s``
(1,024 images at batch 256, median of 3 calls after an untimed one). It
imports ``numcnn`` and ``benchmarks/bloodnet.py`` from the current directory,
so the same command times any commit: that is how docs/performance.md
measures what each change bought (every checkout in turn, several rounds,
freed memory kept on both sides). ``adam`` is for checkouts older than
numcnn 0.2, whose ``bloodnet.build_numcnn`` takes no optimizer (0.1's
``Adam``: the same work per step as ``AdamW``). ``torch`` times PyTorch on
the same network (``bloodnet.build_torch``) and batches, with AdamW.
``interleaved.py`` is the fuller measurement (whole epochs of augmented
batches, numcnn and PyTorch in alternation); this one is small enough to run
on many commits.

OpenBLAS's thread setting (``OPENBLAS_THREAD_TIMEOUT``) is the timed
checkout's own: its numcnn is imported before numpy and sets it, as in a
user's run. A checkout from before numcnn set it runs with the environment's
value; the JSON line says which one ran (``openblas_thread_timeout``, null
when unset), and a note on stderr says how to give an older checkout the
current one.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.getcwd(), "benchmarks"))    # the timed checkout's bloodnet
sys.path.insert(0, os.getcwd())                                 # and its numcnn, first

import numcnn  # before numpy: the checkout's own OpenBLAS setting, if it makes one
import numpy as np

import bloodnet

STEPS, WARM_STEPS, PREDICTIONS = 15, 3, 3
IMAGES, BATCH, PREDICT_BATCH = 1024, 64, 256


def numcnn_runners(optimizer, x, y, xp):
    if optimizer == "adam":
        model = bloodnet.build_numcnn(64, 64)
    else:
        model = bloodnet.build_numcnn(64, 64, optimizer=optimizer)
    return (lambda: model.train_step(x, y)), (lambda: model.predict(xp, batch_size=PREDICT_BATCH))


def torch_runners(x, y, xp):
    import torch
    torch.set_num_threads(2)
    net = bloodnet.build_torch(torch, 64, 64)
    optimizer = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-4)
    tx, ty, txp = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(xp)

    def step():
        net.train()
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(tx), ty)
        loss.backward()
        optimizer.step()
        loss.item()

    def predict():
        net.eval()
        with torch.no_grad():
            for i in range(0, len(txp), PREDICT_BATCH):
                torch.softmax(net(txp[i:i + PREDICT_BATCH]), 1)

    return step, predict


def main(argv):
    numcnn.keep_freed_memory()                             # for PyTorch's process too
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 3, 64, 64), dtype=np.float32) - 0.5
    y = rng.integers(0, 4, BATCH)
    xp = rng.random((IMAGES, 3, 64, 64), dtype=np.float32) - 0.5
    if argv[0] == "torch":
        step, predict = torch_runners(x, y, xp)
    else:
        step, predict = numcnn_runners(argv[1] if len(argv) > 1 else "adamw", x, y, xp)
    for _ in range(WARM_STEPS):
        step()
    predict()
    print(json.dumps({"step_ms": 1000 * bloodnet.median_seconds(step, STEPS),
                      "predict_img_per_s": IMAGES / bloodnet.median_seconds(predict, PREDICTIONS),
                      "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT")}))


if __name__ == "__main__":
    if not sys.argv[1:] or sys.argv[1] not in ("numcnn", "torch"):
        sys.exit(__doc__)
    if "OPENBLAS_THREAD_TIMEOUT" not in os.environ:
        print("step_time.py: this checkout's numcnn does not set OPENBLAS_THREAD_TIMEOUT (it "
              "predates that setting); for a like-for-like time, set it in the command to the "
              "value numcnn/__init__.py of the current checkout gives", file=sys.stderr)
    main(sys.argv[1:])
