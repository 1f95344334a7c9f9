"""One whole training step of the blood-cell network, batch 64.

numcnn: ``model.train_step(x, y)`` (forward, SoftmaxCrossEntropy, backward,
Adam) on each backend. PyTorch: ``zero_grad``, forward, ``cross_entropy``,
``backward``, ``Adam.step``, starting from the very same weights.

When timing, one step runs untimed first (it loads or compiles the numba
kernels and lets both libraries allocate their optimizer state); with
``--benchmark-disable`` the single step is the test. Each step updates the
weights, as training does. The PyTorch test first checks, untimed, that both
networks compute the same probabilities in evaluation mode.
"""
import math

import numpy as np
import pytest

from bloodnet import (BATCH, STEP_SIZES, build_numcnn, build_torch, make_batch, shape_label,
                      torch_train_step)
from numcnn.testing import assert_close32

SIZE_IDS = [f"{H}x{W}" for H, W in STEP_SIZES]


def step_label(H, W):
    return shape_label((BATCH, 3, H, W))


@pytest.mark.parametrize("H, W", STEP_SIZES, ids=SIZE_IDS)
def test_train_step(benchmark, label, backend, H, W):
    label("train step", step_label(H, W), "numcnn", backend)
    model = build_numcnn(H, W)
    x, y = make_batch(H, W)
    if not benchmark.disabled:  # untimed warm-up step (kernels, optimizer state)
        assert math.isfinite(model.train_step(x, y)[0])
    before = model.layers[0].params["W"].copy()
    loss, correct = benchmark(model.train_step, x, y)
    assert math.isfinite(loss) and 0 <= correct <= BATCH
    assert not np.array_equal(before, model.layers[0].params["W"]), "Adam did not update"


@pytest.mark.parametrize("H, W", STEP_SIZES, ids=SIZE_IDS)
def test_train_step_torch(benchmark, label, torch, H, W):
    label("train step", step_label(H, W), "torch")
    model = build_numcnn(H, W)
    net = build_torch(torch, H, W, like=model)
    x, y = make_batch(H, W)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    # The two networks are the same function: compare in evaluation mode
    # (dropout off, BatchNorm on its running statistics), once, untimed.
    net.eval()
    with torch.no_grad():
        probs = torch.softmax(net(xt), dim=1).numpy()
    net.train()
    assert_close32(model.predict(x), probs, "eval-mode probabilities vs PyTorch")

    step = torch_train_step(torch, net)
    if not benchmark.disabled:  # untimed warm-up step
        assert math.isfinite(step(xt, yt))
    before = net[0].weight.detach().clone()
    loss = benchmark(step, xt, yt)
    assert math.isfinite(loss)
    assert not torch.equal(before, net[0].weight.detach()), "Adam did not update"
