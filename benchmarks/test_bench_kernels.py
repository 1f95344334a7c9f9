"""Benchmarks of the kernels that training's plan runs (``numcnn/plan.py``), each beside PyTorch.

On the numba backend, ``fit`` and ``train_step`` run every BatchNorm + ReLU
pair through ``batchnorm_relu_forward`` / ``batchnorm_relu_backward``
(``batchnorm_relu_inference`` in ``predict``), and every 3x3 convolution
with stride 1 through the direct kernels (``conv2d_direct`` /
``conv2d_direct_backward``), which need no column matrix.
``test_bench_layers.py`` times the layers one by one, as ``Sequential.forward``
and ``model.profile`` run them.

What is timed
-------------
- ``batchnorm_relu_forward`` / ``_inference`` / ``_backward``: the kernel
  alone (``numcnn.backend.kernels()``, so each backend's), on the three
  feature maps of the network at 60x80 and on the Dense layer's (64, 128)
  (as (64, 128, 1, 1), the way the fused step calls it). PyTorch:
  ``F.relu(F.batch_norm(x, ..., training=True))`` with ``weight`` and ``bias``
  requiring gradients (autograd records the graph, as while training; no
  running statistics, which the numcnn kernel does not update either), its
  backward (only ``y.backward(dy)``; the forward runs untimed before each
  round), and the inference form under ``torch.no_grad()``.
- ``conv2d_direct`` and ``conv2d_direct_backward``: what training runs for
  every 3x3 convolution of the network (``DirectConvolutionStep``), at
  network inputs 64x64 and 60x80; the backward as training runs it (conv1
  without the input gradient, ``input_grad=False``; conv2 and conv3 with it),
  and conv1's with the input gradient too. PyTorch: ``F.conv2d`` forward
  (weights requiring gradients) and backward, ``x.requires_grad`` set only
  when the input gradient is wanted.
- ``Conv2D backward (dW, db)``: the layer's im2col path for the first
  convolution as a first layer would run it (``layer.backward(dy,
  input_grad=False)``, its forward untimed before each round), to set beside
  the direct kernels.

What is checked
---------------
Before timing, each numcnn benchmark computes its result once and asserts
that it equals ``numcnn.kernels.reference``'s to float32 rounding (on the
NumPy backend the kernel *is* the reference: the check is then against
PyTorch, when it is installed). With PyTorch, the result is also compared
with PyTorch's. So the default ``--benchmark-disable`` run is a correctness
test of every kernel here.
"""
import functools

import numpy as np
import pytest

from bloodnet import (BATCH, CONV_INPUTS, FEATURE_MAPS, HIDDEN, KERNEL, NETWORK_CONVS, conv_info,
                      conv_layers, maybe_torch, random_array, shape_label, timed_once)
from numcnn.backend import kernels
from numcnn.testing import assert_close32
from numcnn.kernels import reference
from numcnn.layers import Conv2D

EPS = 1e-5
PAD = 1
STRIDE = 1

#: BatchNorm + ReLU inputs: the conv outputs at 60x80, and the Dense layer's (N, 128).
BN_SHAPES = FEATURE_MAPS + ((HIDDEN, 1, 1),)
BN_IDS = [shape_label((BATCH,) + shape) for shape in BN_SHAPES]

#: The first convolution at each network input: (name, input label, C, F, H, W).
CONV1 = tuple(("conv1", f"{H}x{W}") + conv_layers(H, W)[0] for H, W in CONV_INPUTS)
CONV1_IDS = [f"conv1-{size}" for _, size, *_ in CONV1]
#: Every convolution of the network at each input, as the direct kernels run them.
CONVS_IDS = [f"{name}-{size}" for name, size, *_ in NETWORK_CONVS]
#: ``input_grad`` of the backward benchmarks, and the label of what they compute.
GRADIENTS = {False: "dW, db", True: "dx, dW, db"}
#: The direct backward of every convolution as training runs it (conv1 without the input
#: gradient), and conv1's with it too.
DIRECT_BACKWARD = ([(conv, conv[0] != "conv1") for conv in NETWORK_CONVS]
                   + [(conv, True) for conv in CONV1])
DIRECT_BACKWARD_IDS = [f"{conv[0]}-{conv[1]}-{'dx-dW-db' if grad else 'dW-db'}"
                       for conv, grad in DIRECT_BACKWARD]


@functools.lru_cache(maxsize=None)
def data(shape, seed):
    """A cached standard-normal float32 input (never modified by the benchmarks)."""
    return random_array(shape, seed=seed)


def to_numpy(t):
    return t.detach().numpy()


def assert_results(got, expected, names, against):
    """Compare tuples of arrays (None entries must match None)."""
    for value, reference_value, name in zip(got, expected, names):
        if reference_value is None:
            assert value is None, f"{name}: expected None"
            continue
        assert_close32(value, reference_value, f"{name} vs {against}")


def check(backend, got, names, with_reference, with_torch):
    """``got`` against numcnn.kernels.reference (unless on the NumPy backend), and PyTorch."""
    if backend != "numpy":
        assert_results(got, with_reference(), names, "numcnn.kernels.reference")
    torch = maybe_torch()
    if torch is not None:
        assert_results(got, with_torch(torch), names, "PyTorch")


def bench_backward(benchmark, pedantic_rounds, forward, clear, dy):
    """Time only ``y.backward(dy)``; each round first clears the gradients and runs
    ``y = forward()``, untimed."""
    def forward_first():
        clear()
        return (forward(),), {}

    (y,), _ = forward_first()
    _, seconds = timed_once(y.backward, dy)
    benchmark.pedantic(lambda y: y.backward(dy), setup=forward_first,
                       rounds=pedantic_rounds(seconds))


# ---------------------------------------------------------------------------
# BatchNorm + ReLU
# ---------------------------------------------------------------------------
def bn_params(C):
    gamma = (1.0 + 0.2 * random_array((C,), seed=5)).astype(np.float32)
    beta = (0.1 * random_array((C,), seed=6)).astype(np.float32)
    return gamma, beta


def bn_running(C):
    mean = (0.1 * random_array((C,), seed=10)).astype(np.float32)
    var = (1.0 + 0.5 * np.abs(random_array((C,), seed=11))).astype(np.float32)
    return mean, var


def torch_bn_relu(torch, x, gamma, beta, training=True, mean=None, var=None):
    F = torch.nn.functional
    return F.relu(F.batch_norm(x, mean, var, gamma, beta, training=training, eps=EPS))


def torch_bn_tensors(torch, C):
    return [torch.from_numpy(p).requires_grad_(True) for p in bn_params(C)]


@pytest.mark.parametrize("shape", BN_SHAPES, ids=BN_IDS)
def test_batchnorm_relu_forward(benchmark, label, backend, shape):
    x_shape = (BATCH,) + shape
    label("batchnorm_relu_forward", shape_label(x_shape), "numcnn", backend)
    x = data(x_shape, 7)
    gamma, beta = bn_params(shape[0])
    got, _ = timed_once(kernels().batchnorm_relu_forward, x, gamma, beta, EPS)

    def with_torch(torch):
        xt = torch.from_numpy(x)
        return (to_numpy(torch_bn_relu(torch, xt, *torch_bn_tensors(torch, shape[0]))),
                to_numpy(xt.mean(dim=(0, 2, 3))), to_numpy(xt.var(dim=(0, 2, 3), unbiased=False)))

    check(backend, got, ["y", "mean", "var"],
          lambda: reference.batchnorm_relu_forward(x, gamma, beta, EPS), with_torch)
    y, mean, var = benchmark(kernels().batchnorm_relu_forward, x, gamma, beta, EPS)
    assert y.shape == x_shape and mean.shape == var.shape == (shape[0],)


@pytest.mark.parametrize("shape", BN_SHAPES, ids=BN_IDS)
def test_batchnorm_relu_forward_torch(benchmark, label, torch, shape):
    x_shape = (BATCH,) + shape
    label("batchnorm_relu_forward", shape_label(x_shape), "torch",
          op_torch="F.batch_norm + F.relu")
    x = torch.from_numpy(data(x_shape, 7))
    gamma, beta = torch_bn_tensors(torch, shape[0])
    y = benchmark(torch_bn_relu, torch, x, gamma, beta)
    assert tuple(y.shape) == x_shape and y.requires_grad


@pytest.mark.parametrize("shape", BN_SHAPES, ids=BN_IDS)
def test_batchnorm_relu_inference(benchmark, label, backend, shape):
    x_shape = (BATCH,) + shape
    label("batchnorm_relu_inference", shape_label(x_shape), "numcnn", backend)
    x = data(x_shape, 7)
    gamma, beta = bn_params(shape[0])
    mean, var = bn_running(shape[0])
    y, _ = timed_once(kernels().batchnorm_relu_inference, x, gamma, beta, mean, var, EPS)

    def with_torch(torch):
        with torch.no_grad():
            return (to_numpy(torch_bn_relu(torch, torch.from_numpy(x), torch.from_numpy(gamma),
                                           torch.from_numpy(beta), False, torch.from_numpy(mean),
                                           torch.from_numpy(var))),)

    check(backend, (y,), ["y"],
          lambda: (reference.batchnorm_relu_inference(x, gamma, beta, mean, var, EPS),), with_torch)
    result = benchmark(kernels().batchnorm_relu_inference, x, gamma, beta, mean, var, EPS)
    assert result.shape == x_shape


@pytest.mark.parametrize("shape", BN_SHAPES, ids=BN_IDS)
def test_batchnorm_relu_inference_torch(benchmark, label, torch, shape):
    x_shape = (BATCH,) + shape
    label("batchnorm_relu_inference", shape_label(x_shape), "torch",
          op_torch="F.batch_norm + F.relu, eval, no_grad")
    x = torch.from_numpy(data(x_shape, 7))
    gamma, beta = (torch.from_numpy(p) for p in bn_params(shape[0]))
    mean, var = (torch.from_numpy(p) for p in bn_running(shape[0]))

    def run():
        with torch.no_grad():
            return torch_bn_relu(torch, x, gamma, beta, False, mean, var)

    y = benchmark(run)
    assert tuple(y.shape) == x_shape


@pytest.mark.parametrize("shape", BN_SHAPES, ids=BN_IDS)
def test_batchnorm_relu_backward(benchmark, label, backend, shape):
    x_shape = (BATCH,) + shape
    label("batchnorm_relu_backward", shape_label(x_shape), "numcnn", backend)
    x = data(x_shape, 7)
    dy = data(x_shape, 8)
    gamma, beta = bn_params(shape[0])
    # the forward outputs the backward needs, from the reference: both backends see the same
    y, mean, var = reference.batchnorm_relu_forward(x, gamma, beta, EPS)
    args = (dy, y, x, gamma, mean, var, EPS)
    got, _ = timed_once(kernels().batchnorm_relu_backward, *args)

    def with_torch(torch):
        xt = torch.from_numpy(x).requires_grad_(True)
        gt, bt = torch_bn_tensors(torch, shape[0])
        torch_bn_relu(torch, xt, gt, bt).backward(torch.from_numpy(dy))
        return to_numpy(xt.grad), to_numpy(gt.grad), to_numpy(bt.grad)

    check(backend, got, ["dx", "dgamma", "dbeta"],
          lambda: reference.batchnorm_relu_backward(*args), with_torch)
    dx, dgamma, dbeta = benchmark(kernels().batchnorm_relu_backward, *args)
    assert dx.shape == x_shape and dgamma.shape == dbeta.shape == (shape[0],)


@pytest.mark.parametrize("shape", BN_SHAPES, ids=BN_IDS)
def test_batchnorm_relu_backward_torch(benchmark, label, torch, pedantic_rounds, shape):
    x_shape = (BATCH,) + shape
    label("batchnorm_relu_backward", shape_label(x_shape), "torch",
          op_torch="backward of F.batch_norm + F.relu")
    x = torch.from_numpy(data(x_shape, 7)).requires_grad_(True)
    dy = torch.from_numpy(data(x_shape, 8))
    gamma, beta = torch_bn_tensors(torch, shape[0])

    def clear():
        x.grad = gamma.grad = beta.grad = None

    bench_backward(benchmark, pedantic_rounds, lambda: torch_bn_relu(torch, x, gamma, beta),
                   clear, dy)
    assert tuple(x.grad.shape) == x_shape and tuple(gamma.grad.shape) == (shape[0],)


# ---------------------------------------------------------------------------
# The first convolution: direct kernels, and the layer's im2col path
# ---------------------------------------------------------------------------
def conv_label(C, F, H, W):
    return f"{shape_label((BATCH, C, H, W))}->{F}"


def conv_params(C, F):
    """The weights of ``Conv2D(C, F, 3, padding=1, rng=0)`` and a small random bias."""
    W = Conv2D(C, F, KERNEL, padding=PAD, rng=0).params["W"]
    b = random_array((F,), seed=2) * np.float32(0.1)
    return W, b


def torch_conv_tensors(torch, C, F):
    return [torch.from_numpy(p).requires_grad_(True) for p in conv_params(C, F)]


def torch_conv(torch, x, W, b):
    return torch.nn.functional.conv2d(x, W, b, stride=STRIDE, padding=PAD)


@pytest.mark.parametrize("name, size, C, F, H, W", NETWORK_CONVS, ids=CONVS_IDS)
def test_conv2d_direct(benchmark, label, backend, name, size, C, F, H, W):
    label("conv2d_direct", conv_label(C, F, H, W), "numcnn", backend,
          **conv_info(name, size, C, F, H, W, "forward", "direct"))
    x = data((BATCH, C, H, W), 1)
    Wt, b = conv_params(C, F)
    y, _ = timed_once(kernels().conv2d_direct, x, Wt, b, STRIDE, PAD)

    def with_torch(torch):
        return (to_numpy(torch_conv(torch, torch.from_numpy(x), *torch_conv_tensors(torch, C, F))),)

    check(backend, (y,), ["y"], lambda: (reference.conv2d_direct(x, Wt, b, STRIDE, PAD),),
          with_torch)
    result = benchmark(kernels().conv2d_direct, x, Wt, b, STRIDE, PAD)
    assert result.shape == (BATCH, F, H, W) and result.dtype == np.float32


@pytest.mark.parametrize("name, size, C, F, H, W", NETWORK_CONVS, ids=CONVS_IDS)
def test_conv2d_direct_torch(benchmark, label, torch, name, size, C, F, H, W):
    label("conv2d_direct", conv_label(C, F, H, W), "torch", op_torch="F.conv2d",
          **conv_info(name, size, C, F, H, W, "forward", "torch"))
    x = torch.from_numpy(data((BATCH, C, H, W), 1))
    Wt, b = torch_conv_tensors(torch, C, F)
    y = benchmark(torch_conv, torch, x, Wt, b)
    assert tuple(y.shape) == (BATCH, F, H, W) and y.requires_grad


def conv_gradients_from_torch(torch, x, dy, C, F, input_grad):
    xt = torch.from_numpy(x).requires_grad_(input_grad)
    Wt, bt = torch_conv_tensors(torch, C, F)
    torch_conv(torch, xt, Wt, bt).backward(torch.from_numpy(dy))
    return (to_numpy(xt.grad) if input_grad else None), to_numpy(Wt.grad), to_numpy(bt.grad)


@pytest.mark.parametrize("conv, input_grad", DIRECT_BACKWARD, ids=DIRECT_BACKWARD_IDS)
def test_conv2d_direct_backward(benchmark, label, backend, conv, input_grad):
    name, size, C, F, H, W = conv
    kind = f"backward ({GRADIENTS[input_grad]})"
    label(f"conv2d_direct_backward ({GRADIENTS[input_grad]})", conv_label(C, F, H, W), "numcnn",
          backend, **conv_info(name, size, C, F, H, W, kind, "direct",
                               in_flop_table=input_grad == (name != "conv1")))
    x = data((BATCH, C, H, W), 1)
    dy = data((BATCH, F, H, W), 3)
    Wt, _ = conv_params(C, F)
    args = (dy, x, Wt, STRIDE, PAD)
    got, _ = timed_once(kernels().conv2d_direct_backward, *args, input_grad=input_grad)
    check(backend, got, ["dx", "dW", "db"],
          lambda: reference.conv2d_direct_backward(*args, input_grad=input_grad),
          lambda torch: conv_gradients_from_torch(torch, x, dy, C, F, input_grad))
    dx, dW, db = benchmark(kernels().conv2d_direct_backward, *args, input_grad=input_grad)
    assert (dx is None) != input_grad and dW.shape == Wt.shape and db.shape == (F,)


def bench_torch_conv_backward(benchmark, pedantic_rounds, torch, C, F, H, W, input_grad):
    x = torch.from_numpy(data((BATCH, C, H, W), 1)).requires_grad_(input_grad)
    dy = torch.from_numpy(data((BATCH, F, H, W), 3))
    Wt, bt = torch_conv_tensors(torch, C, F)

    def clear():
        x.grad = Wt.grad = bt.grad = None

    bench_backward(benchmark, pedantic_rounds, lambda: torch_conv(torch, x, Wt, bt), clear, dy)
    assert (x.grad is not None) == input_grad and tuple(Wt.grad.shape) == (F, C, KERNEL, KERNEL)


@pytest.mark.parametrize("conv, input_grad", DIRECT_BACKWARD, ids=DIRECT_BACKWARD_IDS)
def test_conv2d_direct_backward_torch(benchmark, label, torch, pedantic_rounds, conv, input_grad):
    name, size, C, F, H, W = conv
    kind = f"backward ({GRADIENTS[input_grad]})"
    label(f"conv2d_direct_backward ({GRADIENTS[input_grad]})", conv_label(C, F, H, W), "torch",
          op_torch=f"F.conv2d backward, x.requires_grad={input_grad}",
          **conv_info(name, size, C, F, H, W, kind, "torch",
                      in_flop_table=input_grad == (name != "conv1")))
    bench_torch_conv_backward(benchmark, pedantic_rounds, torch, C, F, H, W, input_grad)


def numcnn_conv1(C, F):
    layer = Conv2D(C, F, KERNEL, padding=PAD, rng=0)
    layer.params["b"] = conv_params(C, F)[1]
    return layer


@pytest.mark.parametrize("name, size, C, F, H, W", CONV1, ids=CONV1_IDS)
def test_conv2d_layer_backward_first_layer(benchmark, label, backend, pedantic_rounds,
                                           name, size, C, F, H, W):
    label("Conv2D backward (dW, db)", conv_label(C, F, H, W), "numcnn", backend,
          **conv_info(name, size, C, F, H, W, "backward (dW, db)", "im2col"))
    x = data((BATCH, C, H, W), 1)
    dy = data((BATCH, F, H, W), 3)
    layer = numcnn_conv1(C, F)
    layer.forward(x, True, checked=True)
    dx, seconds = timed_once(layer.backward, dy, input_grad=False)
    got = (dx, layer.grads["W"], layer.grads["b"])
    # the reference here is the direct convolution's gradient, by its definition
    check("numba", got, ["dx", "dW", "db"],
          lambda: reference.conv2d_direct_backward(dy, x, layer.params["W"], STRIDE, PAD,
                                                   input_grad=False),
          lambda torch: conv_gradients_from_torch(torch, x, dy, C, F, False))

    def forward_first():  # untimed: backward follows a forward pass, as in training
        layer.forward(x, True, checked=True)
        return (dy,), {"input_grad": False}

    result = benchmark.pedantic(layer.backward, setup=forward_first,
                                rounds=pedantic_rounds(seconds))
    assert result is None and layer.grads["W"].shape == (F, C, KERNEL, KERNEL)


@pytest.mark.parametrize("name, size, C, F, H, W", CONV1, ids=CONV1_IDS)
def test_conv2d_layer_backward_first_layer_torch(benchmark, label, torch, pedantic_rounds,
                                                 name, size, C, F, H, W):
    label("Conv2D backward (dW, db)", conv_label(C, F, H, W), "torch",
          op_torch="F.conv2d backward, x.requires_grad=False",
          **conv_info(name, size, C, F, H, W, "backward (dW, db)", "torch"))
    bench_torch_conv_backward(benchmark, pedantic_rounds, torch, C, F, H, W, False)
