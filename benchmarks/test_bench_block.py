"""Benchmarks of a convolution block (Conv2D, BatchNorm2D, ReLU) as training's plan runs it.

On the numba backend, ``fit`` and ``train_step`` run a 3x3 Conv2D with
stride 1 through the direct kernels and the BatchNorm2D and ReLU after it as
one fused step. Any other Conv2D followed by BatchNorm2D and ReLU runs as one
``numcnn.plan.ConvolutionBlockStep``: the convolution's product stays in the
GEMM's layout (a row per channel), the ``rows_batchnorm_relu_*`` kernels take
their statistics along those rows and write the block's NCHW output once,
and the gradient comes back as rows.

What is timed
-------------
- ``rows_batchnorm_relu_forward`` / ``_inference`` / ``_backward``: the
  kernel alone, on the product of each convolution of the network at 64x64
  (``(F, N * H * W)``, bias added inside). PyTorch: ``F.relu(F.batch_norm(x))``
  on the same values already in NCHW (PyTorch's convolution writes NCHW, so
  it has no reordering to do), its backward, and the inference form.
- ``conv block forward + backward (training)``: the whole block as training
  runs it (the plan's steps for Conv2D, BatchNorm2D and ReLU: on numba the
  direct 3x3 kernels, then the fused BatchNorm-ReLU step), forward in
  training mode then backward with the input gradient (none for the first
  convolution, as for a first layer), on the network's three convolutions at
  64x64. PyTorch: ``F.conv2d``, ``F.batch_norm`` (training), ``F.relu``,
  then ``backward`` (``x.requires_grad`` only where the input gradient is
  wanted). ``(the im2col block step)``: the same with the one-step im2col
  block, which the plan runs for the convolutions the direct kernels do not
  take (other kernel sizes, strides).

What is checked
---------------
Before timing, each numcnn benchmark computes its result once and compares it
with the reference kernels (the rows kernels) or with the three layers run one
by one (the block), to float32 rounding, and with PyTorch when it is
installed. So the default ``--benchmark-disable`` run is a correctness test.
"""
import functools

import numpy as np
import pytest

from bloodnet import (BATCH, KERNEL, RECIPE_SIZE, conv_layers, maybe_torch, random_array,
                      shape_label, timed_once)
from numcnn.backend import kernels
from numcnn.testing import assert_close32
from numcnn.kernels import reference
from numcnn.layers import BatchNorm2D, Conv2D, ReLU
from numcnn.plan import (BatchNormReLUStep, ConvolutionBlockStep, DirectConvolutionStep,
                         build_plan)

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


def as_nchw(rows, N, bias):
    """The convolution's output in NCHW, bias added: what PyTorch's convolution hands on."""
    F = rows.shape[0]
    return np.ascontiguousarray((rows + bias[:, None]).reshape(F, N, -1).transpose(1, 0, 2))


def torch_bn_relu(torch, x, gamma, beta, training=True, mean=None, var=None):
    F = torch.nn.functional
    return F.relu(F.batch_norm(x, mean, var, gamma, beta, training=training, eps=EPS))


# ---------------------------------------------------------------------------
# The rows kernels
# ---------------------------------------------------------------------------
def rows_case(C, F, H, W):
    rows = data((F, BATCH * H * W), 7)
    dy = data((BATCH, F, H * W), 8)
    return rows, dy, norm_params(F)


@pytest.mark.parametrize("C, F, H, W", BLOCKS, ids=BLOCK_IDS)
def test_rows_batchnorm_relu_forward(benchmark, label, backend, C, F, H, W):
    label("rows_batchnorm_relu_forward", block_label(C, F, H, W), "numcnn", backend)
    rows, _, (gamma, beta, bias, _, _) = rows_case(C, F, H, W)
    (y, mean, var), _ = timed_once(kernels().rows_batchnorm_relu_forward, rows, bias, gamma,
                                   beta, EPS, BATCH)
    ry, rmean, rvar = reference.rows_batchnorm_relu_forward(rows, bias, gamma, beta, EPS, BATCH)
    for got, expected, name in ((y, ry, "y"), (mean, rmean, "mean"), (var, rvar, "var")):
        assert_close32(got, expected, f"{name} vs numcnn.kernels.reference")
    torch = maybe_torch()
    if torch is not None:
        x = torch.from_numpy(as_nchw(rows, BATCH, bias))
        expected = torch_bn_relu(torch, x, torch.from_numpy(gamma), torch.from_numpy(beta))
        assert_close32(y, expected.numpy().reshape(y.shape), "y vs PyTorch")
    result = benchmark(kernels().rows_batchnorm_relu_forward, rows, bias, gamma, beta, EPS, BATCH)
    assert result[0].shape == (BATCH, F, H * W)


@pytest.mark.parametrize("C, F, H, W", BLOCKS, ids=BLOCK_IDS)
def test_rows_batchnorm_relu_forward_torch(benchmark, label, torch, C, F, H, W):
    label("rows_batchnorm_relu_forward", block_label(C, F, H, W), "torch",
          op_torch="F.batch_norm + F.relu on NCHW")
    rows, _, (gamma, beta, bias, _, _) = rows_case(C, F, H, W)
    x = torch.from_numpy(as_nchw(rows, BATCH, bias).reshape(BATCH, F, H, W))
    g, b = (torch.from_numpy(p).requires_grad_(True) for p in (gamma, beta))
    y = benchmark(torch_bn_relu, torch, x, g, b)
    assert tuple(y.shape) == (BATCH, F, H, W)


@pytest.mark.parametrize("C, F, H, W", BLOCKS, ids=BLOCK_IDS)
def test_rows_batchnorm_relu_inference(benchmark, label, backend, C, F, H, W):
    label("rows_batchnorm_relu_inference", block_label(C, F, H, W), "numcnn", backend)
    rows, _, (gamma, beta, bias, mean, var) = rows_case(C, F, H, W)
    args = (rows, bias, gamma, beta, mean, var, EPS, BATCH)
    y, _ = timed_once(kernels().rows_batchnorm_relu_inference, *args)
    assert_close32(y, reference.rows_batchnorm_relu_inference(*args), "y vs reference")
    torch = maybe_torch()
    if torch is not None:
        with torch.no_grad():
            expected = torch_bn_relu(torch, torch.from_numpy(as_nchw(rows, BATCH, bias)),
                                     torch.from_numpy(gamma), torch.from_numpy(beta), False,
                                     torch.from_numpy(mean), torch.from_numpy(var))
        assert_close32(y, expected.numpy().reshape(y.shape), "y vs PyTorch")
    result = benchmark(kernels().rows_batchnorm_relu_inference, *args)
    assert result.shape == (BATCH, F, H * W)


@pytest.mark.parametrize("C, F, H, W", BLOCKS, ids=BLOCK_IDS)
def test_rows_batchnorm_relu_inference_torch(benchmark, label, torch, C, F, H, W):
    label("rows_batchnorm_relu_inference", block_label(C, F, H, W), "torch",
          op_torch="F.batch_norm + F.relu on NCHW, eval, no_grad")
    rows, _, (gamma, beta, bias, mean, var) = rows_case(C, F, H, W)
    x = torch.from_numpy(as_nchw(rows, BATCH, bias).reshape(BATCH, F, H, W))
    tensors = [torch.from_numpy(p) for p in (gamma, beta, mean, var)]

    def run():
        with torch.no_grad():
            return torch_bn_relu(torch, x, tensors[0], tensors[1], False, tensors[2], tensors[3])

    assert tuple(benchmark(run).shape) == (BATCH, F, H, W)


@pytest.mark.parametrize("C, F, H, W", BLOCKS, ids=BLOCK_IDS)
def test_rows_batchnorm_relu_backward(benchmark, label, backend, C, F, H, W):
    label("rows_batchnorm_relu_backward", block_label(C, F, H, W), "numcnn", backend)
    rows, dy, (gamma, beta, bias, _, _) = rows_case(C, F, H, W)
    y, mean, var = reference.rows_batchnorm_relu_forward(rows, bias, gamma, beta, EPS, BATCH)
    args = (dy, y, rows, bias, gamma, mean, var, EPS)
    got, _ = timed_once(kernels().rows_batchnorm_relu_backward, *args)
    for value, expected, name in zip(got, reference.rows_batchnorm_relu_backward(*args),
                                     ("dx rows", "dgamma", "dbeta")):
        assert_close32(value, expected, f"{name} vs numcnn.kernels.reference")
    torch = maybe_torch()
    if torch is not None:
        x = torch.from_numpy(as_nchw(rows, BATCH, bias)).requires_grad_(True)
        g, b = (torch.from_numpy(p).requires_grad_(True) for p in (gamma, beta))
        torch_bn_relu(torch, x, g, b).backward(torch.from_numpy(dy))
        dx_rows = x.grad.numpy().transpose(1, 0, 2).reshape(F, -1)
        for value, expected, name in zip(got, (dx_rows, g.grad.numpy(), b.grad.numpy()),
                                         ("dx rows", "dgamma", "dbeta")):
            assert_close32(value, expected, f"{name} vs PyTorch")
    result = benchmark(kernels().rows_batchnorm_relu_backward, *args)
    assert result[0].shape == rows.shape


@pytest.mark.parametrize("C, F, H, W", BLOCKS, ids=BLOCK_IDS)
def test_rows_batchnorm_relu_backward_torch(benchmark, label, torch, pedantic_rounds,
                                            C, F, H, W):
    label("rows_batchnorm_relu_backward", block_label(C, F, H, W), "torch",
          op_torch="backward of F.batch_norm + F.relu on NCHW")
    rows, dy, (gamma, beta, bias, _, _) = rows_case(C, F, H, W)
    x = torch.from_numpy(as_nchw(rows, BATCH, bias).reshape(BATCH, F, H, W)).requires_grad_(True)
    g, b = (torch.from_numpy(p).requires_grad_(True) for p in (gamma, beta))
    dyt = torch.from_numpy(dy.reshape(BATCH, F, H, W))

    def forward_first():
        x.grad = g.grad = b.grad = None
        return (torch_bn_relu(torch, x, g, b),), {}

    (y,), _ = forward_first()
    _, seconds = timed_once(y.backward, dyt)
    benchmark.pedantic(lambda y: y.backward(dyt), setup=forward_first,
                       rounds=pedantic_rounds(seconds))
    assert tuple(x.grad.shape) == (BATCH, F, H, W)


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
          "im2col": "conv block forward + backward (the im2col block step)"}


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("C, F, H, W", BLOCKS, ids=BLOCK_IDS)
def test_conv_block(benchmark, label, backend, C, F, H, W, route):
    """``training``: the plan's steps for the block (on numba, the direct 3x3 kernels, then
    the fused BatchNorm-ReLU step); ``im2col``: the one-step im2col block, which the plan
    runs for convolutions the direct kernels do not take (timed here on the same shapes)."""
    label(ROUTES[route], block_label(C, F, H, W), "numcnn", backend)
    input_grad = C > 3                                         # the first layer needs no dx
    x, dy = data((BATCH, C, H, W), 1), data((BATCH, F, H, W), 3)
    layers = block_layers(C, F)
    if route == "training":
        steps = build_plan(list(layers)).steps
        if backend == "numba":
            assert [type(step) for step in steps] == [DirectConvolutionStep, BatchNormReLUStep]
    else:
        steps = [ConvolutionBlockStep(*layers)]
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
