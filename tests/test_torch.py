"""PyTorch as an oracle: the same weights and inputs give the same outputs and gradients.

Every test takes the ``torch`` fixture, so the whole file is skipped cleanly
when PyTorch is not installed. Layers are compared in float32 (as they train),
optimizers in float64 (no round-off to hide a wrong rule).

Dropout is not compared: the two libraries draw their masks from different
random streams, so there is nothing to match (its semantics are tested in
test_layers.py).
"""
import numpy as np
import pytest

import numcnn
from numcnn.layers import (BatchNorm1D, BatchNorm2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU,
                           Softmax)
from numcnn.losses import SoftmaxCrossEntropy
from numcnn.optim import SGD, Adam, AdamW
from numcnn.testing import assert_close32

pytestmark = pytest.mark.torch


def tensor(torch, array, grad=False):
    return torch.tensor(np.ascontiguousarray(array), requires_grad=grad)


# ---------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("C, F, kernel, stride, padding, H, W", [
    (3, 4, 3, 1, 0, 9, 8),
    (3, 4, 3, 1, 1, 9, 8),
    (2, 5, 3, 2, 1, 10, 11),
    (2, 3, 5, 2, 2, 12, 9),
    (3, 2, (3, 5), 1, 2, 7, 8),
    (4, 4, 1, 2, 0, 6, 6),
])
def test_conv2d_matches_torch(torch, backend, rng, C, F, kernel, stride, padding, H, W):
    layer = Conv2D(C, F, kernel, stride=stride, padding=padding, rng=0)
    layer.params["b"] = rng.standard_normal(F).astype(np.float32)
    x = rng.standard_normal((4, C, H, W)).astype(np.float32)
    y = layer.forward(x, training=True)

    xt = tensor(torch, x, grad=True)
    Wt = tensor(torch, layer.params["W"], grad=True)
    bt = tensor(torch, layer.params["b"], grad=True)
    yt = torch.nn.functional.conv2d(xt, Wt, bt, stride=stride, padding=padding)
    assert y.shape == tuple(yt.shape)
    assert_close32(y, yt.detach().numpy(), "y")

    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy)
    yt.backward(tensor(torch, dy))
    assert_close32(dx, xt.grad.numpy(), "dx")
    assert_close32(layer.grads["W"], Wt.grad.numpy(), "dW")
    assert_close32(layer.grads["b"], bt.grad.numpy(), "db")


def test_batchnorm2d_matches_torch(torch, backend, rng):
    C = 3
    layer = BatchNorm2D(C, momentum=0.1, eps=1e-5)
    layer.params["gamma"] = rng.uniform(0.5, 2.0, C).astype(np.float32)
    layer.params["beta"] = rng.standard_normal(C).astype(np.float32)
    bn = torch.nn.BatchNorm2d(C, momentum=0.1, eps=1e-5).double()   # float64 oracle
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(layer.params["gamma"]))
        bn.bias.copy_(torch.tensor(layer.params["beta"]))

    for step in range(3):   # running statistics accumulate over several steps
        x = (rng.standard_normal((4, C, 5, 6)) * [[[[0.5]], [[2.0]], [[4.0]]]] + step).astype(np.float32)
        bn.train()
        xt = tensor(torch, x.astype(np.float64), grad=True)
        yt = bn(xt)
        y = layer.forward(x, training=True)
        assert_close32(y, yt.detach().numpy(), f"train y, step {step}")
        assert_close32(layer.buffers["running_mean"], bn.running_mean.numpy(), "running_mean")
        assert_close32(layer.buffers["running_var"], bn.running_var.numpy(), "running_var")

        dy = rng.standard_normal(x.shape).astype(np.float32)
        bn.zero_grad()
        yt.backward(tensor(torch, dy.astype(np.float64)))
        dx = layer.backward(dy)
        assert_close32(dx, xt.grad.numpy(), "train dx")
        assert_close32(layer.grads["gamma"], bn.weight.grad.numpy(), "dgamma")
        assert_close32(layer.grads["beta"], bn.bias.grad.numpy(), "dbeta")

    bn.eval()
    x = rng.standard_normal((2, C, 4, 4)).astype(np.float32)
    xt = tensor(torch, x.astype(np.float64), grad=True)
    yt = bn(xt)
    y = layer.forward(x, training=False)
    assert_close32(y, yt.detach().numpy(), "eval y")
    dy = rng.standard_normal(x.shape).astype(np.float32)
    bn.zero_grad()
    yt.backward(tensor(torch, dy.astype(np.float64)))
    assert_close32(layer.backward(dy), xt.grad.numpy(), "eval dx")
    assert_close32(layer.grads["gamma"], bn.weight.grad.numpy(), "eval dgamma")
    assert_close32(layer.grads["beta"], bn.bias.grad.numpy(), "eval dbeta")


def test_batchnorm1d_matches_torch(torch, backend, rng):
    F = 6
    layer = BatchNorm1D(F, momentum=0.2)
    layer.params["gamma"] = rng.uniform(0.5, 2.0, F).astype(np.float32)
    layer.params["beta"] = rng.standard_normal(F).astype(np.float32)
    bn = torch.nn.BatchNorm1d(F, momentum=0.2).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(layer.params["gamma"]))
        bn.bias.copy_(torch.tensor(layer.params["beta"]))
    x = (3 * rng.standard_normal((10, F)) + 1).astype(np.float32)
    xt = tensor(torch, x.astype(np.float64), grad=True)
    yt = bn(xt)
    assert_close32(layer.forward(x, training=True), yt.detach().numpy(), "y")
    dy = rng.standard_normal(x.shape).astype(np.float32)
    yt.backward(tensor(torch, dy.astype(np.float64)))
    assert_close32(layer.backward(dy), xt.grad.numpy(), "dx")
    assert_close32(layer.grads["gamma"], bn.weight.grad.numpy(), "dgamma")
    assert_close32(layer.buffers["running_mean"], bn.running_mean.numpy(), "running_mean")
    assert_close32(layer.buffers["running_var"], bn.running_var.numpy(), "running_var")
    bn.eval()
    assert_close32(layer.forward(x), bn(tensor(torch, x.astype(np.float64))).detach().numpy(), "eval")


@pytest.mark.parametrize("K, stride, H, W", [(2, 2, 8, 10), (2, 2, 7, 9), (3, 2, 9, 8), (3, 3, 9, 9)])
def test_maxpool2d_matches_torch(torch, backend, rng, K, stride, H, W):
    N, C = 2, 3
    x = (rng.permutation(N * C * H * W).reshape(N, C, H, W) * 0.01).astype(np.float32)  # no ties
    layer = MaxPool2D(K, stride)
    y = layer.forward(x, training=True)
    xt = tensor(torch, x, grad=True)
    yt = torch.nn.functional.max_pool2d(xt, K, stride)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(tensor(torch, dy))
    assert_close32(layer.backward(dy), xt.grad.numpy(), "dx")


def test_dense_matches_torch(torch, rng):
    layer = Dense(7, 5, rng=0)
    layer.params["b"] = rng.standard_normal(5).astype(np.float32)
    linear = torch.nn.Linear(7, 5)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(layer.params["W"].T))   # torch stores (out, in)
        linear.bias.copy_(torch.tensor(layer.params["b"]))
    x = rng.standard_normal((6, 7)).astype(np.float32)
    xt = tensor(torch, x, grad=True)
    yt = linear(xt)
    assert_close32(layer.forward(x, training=True), yt.detach().numpy(), "y")
    dy = rng.standard_normal((6, 5)).astype(np.float32)
    yt.backward(tensor(torch, dy))
    assert_close32(layer.backward(dy), xt.grad.numpy(), "dx")
    assert_close32(layer.grads["W"], linear.weight.grad.numpy().T, "dW")
    assert_close32(layer.grads["b"], linear.bias.grad.numpy(), "db")


def test_relu_and_softmax_match_torch(torch, backend, rng):
    x = rng.standard_normal((5, 6)).astype(np.float32)
    dy = rng.standard_normal((5, 6)).astype(np.float32)
    for layer, fn in ((ReLU(), torch.relu), (Softmax(), lambda t: torch.softmax(t, dim=1))):
        xt = tensor(torch, x, grad=True)
        yt = fn(xt)
        assert_close32(layer.forward(x, training=True), yt.detach().numpy(), type(layer).__name__)
        yt.backward(tensor(torch, dy))
        assert_close32(layer.backward(dy), xt.grad.numpy(), type(layer).__name__ + " dx")


# ---------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("class_weights, label_smoothing", [
    (None, 0.0), ([0.5, 2.0, 1.0, 3.0], 0.0), (None, 0.1), (None, 0.3)])
def test_cross_entropy_matches_torch(torch, rng, class_weights, label_smoothing):
    logits = (3 * rng.standard_normal((9, 4))).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 3, 2, 1, 0, 3])
    loss_fn = SoftmaxCrossEntropy(class_weights=class_weights, label_smoothing=label_smoothing)
    loss = loss_fn.forward(logits, labels)
    zt = tensor(torch, logits.astype(np.float64), grad=True)
    weight = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float64)
    lt = torch.nn.functional.cross_entropy(zt, torch.tensor(labels), weight=weight,
                                           label_smoothing=label_smoothing)
    lt.backward()
    assert loss == pytest.approx(lt.item(), rel=1e-6)
    assert_close32(loss_fn.backward(), zt.grad.numpy(), "dlogits")


def test_cross_entropy_weights_with_smoothing_matches_torch(torch, rng):
    logits = rng.standard_normal((7, 3))
    labels = np.array([0, 1, 2, 2, 1, 0, 2])
    weights = [0.5, 2.0, 1.5]
    loss_fn = SoftmaxCrossEntropy(class_weights=weights, label_smoothing=0.2)
    loss = loss_fn.forward(logits, labels)
    zt = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(
        zt, torch.tensor(labels), weight=torch.tensor(weights, dtype=torch.float64),
        label_smoothing=0.2)
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-9)
    np.testing.assert_allclose(loss_fn.backward(), zt.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_cross_entropy_with_huge_logits_matches_torch(torch):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]], np.float32)
    labels = np.array([1, 1])
    loss_fn = SoftmaxCrossEntropy()
    zt = tensor(torch, logits, grad=True)
    lt = torch.nn.functional.cross_entropy(zt, torch.tensor(labels))
    lt.backward()
    assert loss_fn.forward(logits, labels) == pytest.approx(lt.item(), rel=1e-6)
    assert_close32(loss_fn.backward(), zt.grad.numpy())


# ---------------------------------------------------------------------------
# Optimizers, float64, several steps
# ---------------------------------------------------------------------------
def run_both(torch, ours, make_theirs, steps=8):
    rng = np.random.default_rng(3)
    shapes = {"0.W": (4, 3), "0.b": (3,), "1.gamma": (5,)}
    params = {k: rng.standard_normal(s) for k, s in shapes.items()}
    tparams = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    theirs = make_theirs(list(tparams.values()))
    for t in range(steps):
        grads = {k: 0.7 * p + np.cos(np.arange(p.size).reshape(p.shape) * (t + 1))
                 for k, p in params.items()}
        ours.step([(k, params[k], grads[k]) for k in params])
        for k, p in tparams.items():
            p.grad = torch.tensor(grads[k])
        theirs.step()
        for k in params:
            np.testing.assert_allclose(params[k], tparams[k].detach().numpy(), rtol=1e-11,
                                       atol=1e-12, err_msg=f"{k} after step {t + 1}")


@pytest.mark.parametrize("momentum, nesterov, weight_decay", [
    (0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 0.0), (0.9, True, 0.01), (0.5, False, 0.1)])
def test_sgd_matches_torch(torch, momentum, nesterov, weight_decay):
    lr = 0.05
    run_both(torch, SGD(lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay),
             lambda ps: torch.optim.SGD(ps, lr=lr, momentum=momentum, nesterov=nesterov,
                                        weight_decay=weight_decay))


DECAY_CASES = [(1e-3, (0.9, 0.999), 1e-8, 0.01), (1e-2, (0.8, 0.99), 1e-6, 0.1),
               (5e-3, (0.9, 0.999), 1e-8, 0.5)]


@pytest.mark.parametrize("lr, betas, eps, weight_decay", DECAY_CASES)
def test_adam_with_weight_decay_matches_torch_adam(torch, lr, betas, eps, weight_decay):
    """Adam's decay is coupled (an L2 penalty in the gradient), as torch.optim.Adam's."""
    run_both(torch, Adam(lr, betas=betas, eps=eps, weight_decay=weight_decay),
             lambda ps: torch.optim.Adam(ps, lr=lr, betas=betas, eps=eps,
                                         weight_decay=weight_decay))


@pytest.mark.parametrize("lr, betas, eps, weight_decay", DECAY_CASES)
def test_adamw_matches_torch_adamw(torch, lr, betas, eps, weight_decay):
    """AdamW's decay is decoupled (the weights shrink directly), as torch.optim.AdamW's."""
    run_both(torch, AdamW(lr, betas=betas, eps=eps, weight_decay=weight_decay),
             lambda ps: torch.optim.AdamW(ps, lr=lr, betas=betas, eps=eps,
                                          weight_decay=weight_decay))


def test_adamw_defaults_match_torch_adamw(torch):
    run_both(torch, AdamW(), lambda ps: torch.optim.AdamW(ps))


def test_adam_without_weight_decay_matches_torch_adam(torch):
    run_both(torch, Adam(1e-2), lambda ps: torch.optim.Adam(ps, lr=1e-2))


# ---------------------------------------------------------------------------
# A whole model, one training step
# ---------------------------------------------------------------------------
def test_small_model_training_step_matches_torch(torch, backend, rng):
    layers = [Conv2D(3, 4, 3, padding=1), BatchNorm2D(4), ReLU(), MaxPool2D(2),
              Conv2D(4, 6, 3, stride=2, padding=1), ReLU(), Flatten(), Dense(6 * 2 * 2, 5)]
    model = numcnn.Sequential(layers, seed=0).compile(Adam(1e-2), SoftmaxCrossEntropy())
    for layer in model.layers:
        if "b" in layer.params:
            layer.params["b"] = (0.1 * rng.standard_normal(layer.params["b"].shape)).astype(np.float32)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Conv2d(4, 6, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(24, 5))
    pairs = [(model.layers[0], net[0], {"W": "weight", "b": "bias"}),
             (model.layers[1], net[1], {"gamma": "weight", "beta": "bias"}),
             (model.layers[4], net[4], {"W": "weight", "b": "bias"}),
             (model.layers[7], net[7], {"W": "weight", "b": "bias"})]

    def torch_value(ours, name, value):
        return value.T if isinstance(ours, Dense) and name == "W" else value

    with torch.no_grad():
        for ours, theirs, names in pairs:
            for name, tname in names.items():
                getattr(theirs, tname).copy_(torch.tensor(torch_value(ours, name, ours.params[name])))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)

    x = rng.standard_normal((6, 3, 8, 8)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 4, 0])
    loss, _ = model.train_step(x, y)
    out = net(torch.tensor(x))
    lt = torch.nn.functional.cross_entropy(out, torch.tensor(y))
    optimizer.zero_grad()
    lt.backward()
    optimizer.step()
    assert loss == pytest.approx(lt.item(), rel=1e-5)
    # One scale for all gradients: the bias of a conv followed by BatchNorm has an exactly
    # zero gradient, so its computed value is round-off with no size of its own.
    scale = max(np.abs(p.grad.numpy()).max() for p in net.parameters())
    for ours, theirs, names in pairs:
        for name, tname in names.items():
            t = getattr(theirs, tname)
            np.testing.assert_allclose(ours.grads[name], torch_value(ours, name, t.grad.numpy()),
                                       rtol=1e-4, atol=1e-5 * scale, err_msg=f"grad {name}")
            # After one Adam step each weight moved by about lr * sign(grad): compare the
            # new weights to round-off of that step (bias of a conv before BatchNorm has a
            # zero gradient up to round-off, so its sign is noise: skip it).
            if ours is model.layers[0] and name == "b":
                continue
            np.testing.assert_allclose(ours.params[name],
                                       torch_value(ours, name, t.detach().numpy()),
                                       rtol=1e-5, atol=1e-6, err_msg=f"param {name}")
    assert_close32(model.layers[1].buffers["running_mean"], net[1].running_mean.numpy())
    assert_close32(model.layers[1].buffers["running_var"], net[1].running_var.numpy())
