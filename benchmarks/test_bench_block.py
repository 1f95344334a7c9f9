"""Benchmarks of a convolution block (Conv2D, BatchNorm2D, ReLU) as training's plan runs it.

On the numba backend, ``fit`` and ``train_step`` run a 3x3 Conv2D with
stride 1 through the direct kernels on the vectors route, and any other
Conv2D (every one on the portable route) as im2col and one matrix multiply
(``numcnn.plan.ConvolutionStep``); the BatchNorm2D and ReLU after it are one
fused step (``numcnn.plan.BatchNormReLUStep``).

What is timed
-------------
- ``conv block forward + backward (training)``: the whole block as training
  runs it here (the plan's steps for Conv2D, BatchNorm2D and ReLU), forward
  in training mode then backward with the input gradient (none for the first
  convolution, as for a first layer), on the network's three convolutions at
  64x64. PyTorch: ``F.conv2d``, ``F.batch_norm`` (training), ``F.relu``,
  then ``backward`` (``x.requires_grad`` only where the input gradient is
  wanted). ``(the im2col steps)``: the same with the im2col convolution step
  and the fused BatchNorm-ReLU step, what the portable route runs and what
  the plan runs for the convolutions the direct kernels do not take (other
  kernel sizes, strides).

What is checked
---------------
Before timing, each numcnn benchmark computes its result once and compares it
with the three layers run one by one, to float32 rounding. So the default
``--benchmark-disable`` run is a correctness test.
"""
import functools

import numpy as np
import pytest

import numcnn

from bloodnet import (BATCH, KERNEL, RECIPE_SIZE, conv_layers, random_array,
                      shape_label, timed_once)
from numcnn.testing import assert_close32
from numcnn.layers import BatchNorm2D, Conv2D, ReLU
from numcnn.plan import BatchNormReLUStep, ConvolutionStep, DirectConvolutionStep, build_plan

EPS = 1e-5
PAD = 1

#: The network's convolutions at the recipe's 64x64 input: (C, F, H, W) each.
BLOCKS = conv_layers(RECIPE_SIZE, RECIPE_SIZE)
BLOCK_IDS = [f"conv{k + 1}" for k in range(len(BLOCKS))]


def block_label(C, F, H, W):
    return f"{shape_label((BATCH, C, H, W))}->{F}"


@functools.lru_cache(maxsize=None)
def data(shape, seed):
    """A cached standard-normal float32 array (never modified by the benchmarks)."""
    return random_array(shape, seed=seed)


def norm_params(F):
    gamma = (1.0 + 0.2 * random_array((F,), seed=5)).astype(np.float32)
    beta = (0.1 * random_array((F,), seed=6)).astype(np.float32)
    bias = (0.1 * random_array((F,), seed=2)).astype(np.float32)
    mean = (0.1 * random_array((F,), seed=10)).astype(np.float32)
    var = (1.0 + 0.5 * np.abs(random_array((F,), seed=11))).astype(np.float32)
    return gamma, beta, bias, mean, var


def torch_bn_relu(torch, x, gamma, beta, training=True, mean=None, var=None):
    F = torch.nn.functional
    return F.relu(F.batch_norm(x, mean, var, gamma, beta, training=training, eps=EPS))


# ---------------------------------------------------------------------------
# The whole block: Conv2D + BatchNorm2D + ReLU, forward and backward
# ---------------------------------------------------------------------------
def block_layers(C, F):
    conv = Conv2D(C, F, KERNEL, padding=PAD, rng=0)
    conv.params["b"] = (0.1 * random_array((F,), seed=2)).astype(np.float32)
    norm = BatchNorm2D(F)
    norm.params["gamma"], norm.params["beta"] = norm_params(F)[:2]
    return conv, norm, ReLU()


def run_steps(steps, x, dy, input_grad):
    """Steps forward then backward, as training runs them (``input_grad``: the first step's)."""
    h = x
    for step in steps:
        h = step.forward(h, True)
    g = dy
    for k in range(len(steps) - 1, -1, -1):
        g = steps[k].backward(g, input_grad or k > 0)
    return h, g


def layers_one_by_one(layers, x, dy, input_grad):
    """The three layers as ``Sequential.forward`` runs them: the block's reference."""
    h = x
    for layer in layers:
        h = layer.forward(h, True)
    g = dy
    for k, layer in enumerate(reversed(layers)):
        g = layer.backward(g, input_grad=input_grad or k < len(layers) - 1)
    return h, g


ROUTES = {"training": "conv block forward + backward (training)",
          "im2col": "conv block forward + backward (the im2col steps)"}


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("C, F, H, W", BLOCKS, ids=BLOCK_IDS)
def test_conv_block(benchmark, label, backend, C, F, H, W, route):
    """``training``: the plan's steps for the block (on numba, the direct 3x3 kernels, then
    the fused BatchNorm-ReLU step); ``im2col``: the im2col convolution step and the fused
    BatchNorm-ReLU step, which the portable route runs (timed here on the same shapes)."""
    label(ROUTES[route], block_label(C, F, H, W), "numcnn", backend)
    input_grad = C > 3                                         # the first layer needs no dx
    x, dy = data((BATCH, C, H, W), 1), data((BATCH, F, H, W), 3)
    layers = block_layers(C, F)
    if route == "training":
        steps = build_plan(list(layers)).steps
        if backend == "numba":                  # the route's convolution step, then BN-ReLU
            first = DirectConvolutionStep if numcnn.route() == "vectors" else ConvolutionStep
            assert [type(step) for step in steps] == [first, BatchNormReLUStep]
    else:
        steps = [ConvolutionStep(layers[0]), BatchNormReLUStep(*layers[1:])]
    (y, dx), _ = timed_once(run_steps, steps, x, dy, input_grad)
    fused = (y, dx, layers[0].grads["W"], layers[0].grads["b"], layers[1].grads["gamma"],
             layers[1].grads["beta"])
    reference_layers = block_layers(C, F)
    y_ref, dx_ref = layers_one_by_one(reference_layers, x, dy, input_grad)
    expected = (y_ref, dx_ref if input_grad else None, reference_layers[0].grads["W"],
                reference_layers[0].grads["b"], reference_layers[1].grads["gamma"],
                reference_layers[1].grads["beta"])
    # The convolution's bias gradient is, exactly, zero (BatchNorm removes any constant):
    # both sides are rounding noise in a sum of N*H*W terms, held to the size of those terms.
    bias_terms = reference_layers[1].backward(reference_layers[2].backward(dy))
    db_scale = float(np.abs(bias_terms).sum(axis=(0, 2, 3)).max())
    for got, want, name in zip(fused, expected, ("y", "dx", "dW", "db", "dgamma", "dbeta")):
        if want is None:
            assert got is None, f"{name}: the first layer computes no input gradient"
        elif name == "db":
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * db_scale,
                                       err_msg="db: fused block vs the layers one by one")
        else:
            assert_close32(got, want, f"{name}: fused block vs the layers one by one")
    result = benchmark(run_steps, steps, x, dy, input_grad)
    assert result[0].shape == (BATCH, F, H, W)


@pytest.mark.parametrize("C, F, H, W", BLOCKS, ids=BLOCK_IDS)
def test_conv_block_torch(benchmark, label, torch, C, F, H, W):
    label("conv block forward + backward (training)", block_label(C, F, H, W), "torch",
          op_torch="F.conv2d + F.batch_norm + F.relu, then backward")
    input_grad = C > 3
    conv, norm, _ = block_layers(C, F)
    x = torch.from_numpy(data((BATCH, C, H, W), 1)).requires_grad_(input_grad)
    dy = torch.from_numpy(data((BATCH, F, H, W), 3))
    params = [torch.from_numpy(p).requires_grad_(True)
              for p in (conv.params["W"], conv.params["b"], norm.params["gamma"],
                        norm.params["beta"])]
    F_ = torch.nn.functional

    def run():
        for p in params + [x]:
            p.grad = None
        y = torch_bn_relu(torch, F_.conv2d(x, params[0], params[1], padding=PAD),
                          params[2], params[3])
        y.backward(dy)
        return y

    y = benchmark(run)
    assert tuple(y.shape) == (BATCH, F, H, W) and params[0].grad is not None
