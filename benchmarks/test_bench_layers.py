"""Per-layer benchmarks on the shapes of the blood-cell network (input 60x80, batch 64;
the convolutions also at the recipe's input, 64x64).

Every operation is timed three ways: numcnn on the numba kernels, numcnn on the
NumPy reference kernels (the ``backend`` fixture) and, when it is installed,
the same operation in PyTorch (the ``torch`` fixture; skipped otherwise).

What is timed
-------------
- forward: ``layer.forward(x, True, checked=True)``, the call training's plan
  makes for a layer it does not fuse (``numcnn/plan.py``; without
  ``checked=True``, ``layer.forward`` adds input checks that the model does once
  per batch, not per layer). On the numba backend, training runs the first
  convolution and every BatchNorm + ReLU pair through fused kernels instead:
  those are timed in ``test_bench_kernels.py``; the layer rows here are what
  ``Sequential.forward`` and ``model.profile`` run, and the NumPy backend. PyTorch:
  ``module(x)`` in training mode, with the parameters requiring gradients, so
  autograd records its graph as it does while training.
- backward: only ``layer.backward(dy)``. Each round runs the forward pass first,
  untimed (``benchmark.pedantic(setup=...)``), because a forward pass is what
  a real backward pass follows (Conv2D's backward reuses the column matrix its
  forward pass left in the layer's buffer). The input gradient is always
  computed. PyTorch: the setup clears the gradients and runs ``module(x)`` with
  ``x.requires_grad_(True)``; only ``y.backward(dy)`` is timed.
- im2col / col2im: the kernels alone, writing into preallocated buffers as
  Conv2D does. PyTorch's counterparts are ``F.unfold`` / ``F.fold`` (same
  values; their column layout is (N, K, P) instead of numcnn's (K, N*P)).

What is checked
---------------
Before timing, each numcnn benchmark computes its result once and compares it
with PyTorch given the same weights and inputs (float32 tolerance), or, without
PyTorch, the numba result with the NumPy reference result. So the default
``--benchmark-disable`` run (each benchmark once, as a plain test) is a real
correctness test. PyTorch benchmarks check shapes (and dropout's mask).
"""
import functools

import numpy as np
import pytest

import numcnn
from bloodnet import (BATCH, CONV_LAYERS, DROPOUT, FEATURE_MAPS, NETWORK_CONVS, conv_info,
                      maybe_torch, random_array, shape_label, timed_once)
from numcnn.backend import kernels
from numcnn.testing import assert_close32
from numcnn.layers import BatchNorm2D, Conv2D, Dropout, MaxPool2D, ReLU

KH = KW = 3
PAD = 1

CONV_IDS = [f"conv{i + 1}" for i in range(len(CONV_LAYERS))]
#: Conv2D forward and backward: every convolution at input 64x64 and 60x80.
NETWORK_CONV_IDS = [f"{name}-{size}" for name, size, *_ in NETWORK_CONVS]
MAP_IDS = [shape_label((BATCH,) + shape) for shape in FEATURE_MAPS]
#: Dropout follows MaxPool2D in the network, so it sees the pooled maps.
POOLED_MAPS = tuple((C, H // 2, W // 2) for (C, H, W) in FEATURE_MAPS)
POOLED_IDS = [shape_label((BATCH,) + shape) for shape in POOLED_MAPS]


@functools.lru_cache(maxsize=None)
def data(shape, seed):
    """A cached standard-normal float32 input (never modified by the benchmarks)."""
    return random_array(shape, seed=seed)


def conv_label(C, F, H, W):
    return f"{shape_label((BATCH, C, H, W))}->{F}"


def cross_check(backend, got, with_torch, again, names, torch_view=None, **tolerance):
    """Compare ``got`` with PyTorch, or without it with the NumPy reference backend.

    ``with_torch(torch)`` and ``again()`` (run on the NumPy backend) return
    tuples like ``got``; ``torch_view(got)`` rearranges ``got`` into PyTorch's
    layout where the two differ. Returns what was compared against.
    """
    torch = maybe_torch()
    if torch is not None:
        expected, against = with_torch(torch), "torch"
        if torch_view is not None:
            got = torch_view(got)
    elif backend != "numpy":
        with numcnn.use_backend("numpy"):
            expected, against = again(), "numpy"
    else:
        return None
    for value, reference, name in zip(got, expected, names):
        assert_close32(value, reference, f"{name} vs {against}", **tolerance)
    return against


def to_numpy(t):
    return t.detach().numpy()


# ---------------------------------------------------------------------------
# Conv2D
# ---------------------------------------------------------------------------
def bench_torch_backward(benchmark, pedantic_rounds, module, x, dy):
    """Time only ``y.backward(dy)``: each round first runs the forward, untimed."""
    def forward_first():
        x.grad = None
        module.zero_grad(set_to_none=True)
        return (module(x),), {}

    (y,), _ = forward_first()
    _, seconds = timed_once(y.backward, dy)
    benchmark.pedantic(lambda y: y.backward(dy), setup=forward_first,
                       rounds=pedantic_rounds(seconds))


def numcnn_conv(C, F):
    layer = Conv2D(C, F, 3, padding=PAD, rng=0)
    layer.params["b"] = random_array((F,), seed=2) * np.float32(0.1)
    return layer


def torch_conv(torch, layer):
    conv = torch.nn.Conv2d(layer.in_channels, layer.out_channels, (KH, KW), padding=PAD)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(layer.params["W"]))
        conv.bias.copy_(torch.from_numpy(layer.params["b"]))
    return conv


@pytest.mark.parametrize("name, size, C, F, H, W", NETWORK_CONVS, ids=NETWORK_CONV_IDS)
def test_conv2d_forward(benchmark, label, backend, name, size, C, F, H, W):
    # conv1 trains on the direct kernel (test_bench_kernels.py); this is its layer path
    label("Conv2D forward", conv_label(C, F, H, W), "numcnn", backend,
          **conv_info(name, size, C, F, H, W, "forward", "im2col"))
    x = data((BATCH, C, H, W), 1)
    layer = numcnn_conv(C, F)
    y, _ = timed_once(layer.forward, x, True, checked=True)
    assert y.shape == (BATCH, F, H, W) and y.dtype == np.float32

    def again():
        return (numcnn_conv(C, F).forward(x, True, checked=True),)

    cross_check(backend, (y,),
                lambda torch: (to_numpy(torch_conv(torch, layer)(torch.from_numpy(x))),),
                again, ["y"])
    result = benchmark(layer.forward, x, True, checked=True)
    assert result.shape == (BATCH, F, H, W)


@pytest.mark.parametrize("name, size, C, F, H, W", NETWORK_CONVS, ids=NETWORK_CONV_IDS)
def test_conv2d_forward_torch(benchmark, label, torch, name, size, C, F, H, W):
    label("Conv2D forward", conv_label(C, F, H, W), "torch",
          **conv_info(name, size, C, F, H, W, "forward", "torch"))
    conv = torch_conv(torch, numcnn_conv(C, F)).train()
    x = torch.from_numpy(data((BATCH, C, H, W), 1))
    y = benchmark(conv, x)
    assert tuple(y.shape) == (BATCH, F, H, W) and y.requires_grad


@pytest.mark.parametrize("name, size, C, F, H, W", NETWORK_CONVS, ids=NETWORK_CONV_IDS)
def test_conv2d_backward(benchmark, label, backend, pedantic_rounds, name, size, C, F, H, W):
    # with the input gradient, as conv2 and conv3 train (conv1 needs none: test_bench_kernels.py)
    label("Conv2D backward", conv_label(C, F, H, W), "numcnn", backend,
          **conv_info(name, size, C, F, H, W, "backward (dx, dW, db)", "im2col",
                      in_flop_table=name != "conv1"))
    x = data((BATCH, C, H, W), 1)
    dy = data((BATCH, F, H, W), 3)
    layer = numcnn_conv(C, F)
    layer.forward(x, True, checked=True)
    dx, seconds = timed_once(layer.backward, dy)
    got = (dx, layer.grads["W"], layer.grads["b"])

    def with_torch(torch):
        conv = torch_conv(torch, layer)
        xt = torch.from_numpy(x).requires_grad_(True)
        conv(xt).backward(torch.from_numpy(dy))
        return to_numpy(xt.grad), to_numpy(conv.weight.grad), to_numpy(conv.bias.grad)

    def again():
        other = numcnn_conv(C, F)
        other.forward(x, True, checked=True)
        return other.backward(dy), other.grads["W"], other.grads["b"]

    cross_check(backend, got, with_torch, again, ["dx", "dW", "db"])

    def forward_first():  # untimed: backward follows a forward pass, as in training
        layer.forward(x, True, checked=True)
        return (dy,), {}

    result = benchmark.pedantic(layer.backward, setup=forward_first,
                                rounds=pedantic_rounds(seconds))
    assert result.shape == x.shape and layer.grads["W"].shape == (F, C, KH, KW)


@pytest.mark.parametrize("name, size, C, F, H, W", NETWORK_CONVS, ids=NETWORK_CONV_IDS)
def test_conv2d_backward_torch(benchmark, label, torch, pedantic_rounds, name, size, C, F, H, W):
    label("Conv2D backward", conv_label(C, F, H, W), "torch",
          **conv_info(name, size, C, F, H, W, "backward (dx, dW, db)", "torch",
                      in_flop_table=name != "conv1"))
    conv = torch_conv(torch, numcnn_conv(C, F)).train()
    x = torch.from_numpy(data((BATCH, C, H, W), 1)).requires_grad_(True)
    dy = torch.from_numpy(data((BATCH, F, H, W), 3))
    bench_torch_backward(benchmark, pedantic_rounds, conv, x, dy)
    assert tuple(x.grad.shape) == tuple(x.shape)
    assert tuple(conv.weight.grad.shape) == (F, C, KH, KW)


# ---------------------------------------------------------------------------
# im2col / col2im alone
# ---------------------------------------------------------------------------
def torch_columns(cols, N):
    """numcnn's (K, N*P) column matrix in PyTorch's (N, K, P) layout."""
    K = cols.shape[0]
    return np.ascontiguousarray(cols.reshape(K, N, -1).transpose(1, 0, 2))


@pytest.mark.parametrize("C, F, H, W", CONV_LAYERS, ids=CONV_IDS)
def test_im2col(benchmark, label, backend, C, F, H, W):
    label("im2col", shape_label((BATCH, C, H, W)), "numcnn", backend)
    x = data((BATCH, C, H, W), 1)
    cols = np.empty((C * KH * KW, BATCH * H * W), dtype=np.float32)
    timed_once(kernels().im2col, x, KH, KW, 1, PAD, out=cols)

    def with_torch(torch):
        unfolded = torch.nn.functional.unfold(torch.from_numpy(x), (KH, KW), padding=PAD)
        return (to_numpy(unfolded),)

    def again():
        return (kernels().im2col(x, KH, KW, 1, PAD),)

    cross_check(backend, (cols,), with_torch, again, ["cols"],
                torch_view=lambda got: (torch_columns(got[0], BATCH),))
    result = benchmark(kernels().im2col, x, KH, KW, 1, PAD, out=cols)
    assert result.shape == (C * KH * KW, BATCH * H * W)


@pytest.mark.parametrize("C, F, H, W", CONV_LAYERS, ids=CONV_IDS)
def test_im2col_torch(benchmark, label, torch, C, F, H, W):
    label("im2col", shape_label((BATCH, C, H, W)), "torch", op_torch="F.unfold")
    x = torch.from_numpy(data((BATCH, C, H, W), 1))
    cols = benchmark(torch.nn.functional.unfold, x, (KH, KW), padding=PAD)
    assert tuple(cols.shape) == (BATCH, C * KH * KW, H * W)


@pytest.mark.parametrize("C, F, H, W", CONV_LAYERS, ids=CONV_IDS)
def test_col2im(benchmark, label, backend, C, F, H, W):
    label("col2im", shape_label((BATCH, C, H, W)), "numcnn", backend)
    x_shape = (BATCH, C, H, W)
    cols = data((C * KH * KW, BATCH * H * W), 4)
    dx = np.empty(x_shape, dtype=np.float32)
    timed_once(kernels().col2im, cols, x_shape, KH, KW, 1, PAD, out=dx)

    def with_torch(torch):
        folded = torch.nn.functional.fold(torch.from_numpy(torch_columns(cols, BATCH)),
                                          (H, W), (KH, KW), padding=PAD)
        return (to_numpy(folded),)

    def again():
        return (kernels().col2im(cols, x_shape, KH, KW, 1, PAD),)

    cross_check(backend, (dx,), with_torch, again, ["x"])
    result = benchmark(kernels().col2im, cols, x_shape, KH, KW, 1, PAD, out=dx)
    assert result.shape == x_shape


@pytest.mark.parametrize("C, F, H, W", CONV_LAYERS, ids=CONV_IDS)
def test_col2im_torch(benchmark, label, torch, C, F, H, W):
    label("col2im", shape_label((BATCH, C, H, W)), "torch", op_torch="F.fold")
    cols = torch.from_numpy(torch_columns(data((C * KH * KW, BATCH * H * W), 4), BATCH))
    x = benchmark(torch.nn.functional.fold, cols, (H, W), (KH, KW), padding=PAD)
    assert tuple(x.shape) == (BATCH, C, H, W)


# ---------------------------------------------------------------------------
# MaxPool2D, BatchNorm2D, ReLU: forward and backward on the conv outputs
# ---------------------------------------------------------------------------
def numcnn_bn(C):
    layer = BatchNorm2D(C)
    layer.params["gamma"] = (1.0 + 0.2 * random_array((C,), seed=5)).astype(np.float32)
    layer.params["beta"] = (0.1 * random_array((C,), seed=6)).astype(np.float32)
    return layer


def torch_bn(torch, layer):
    bn = torch.nn.BatchNorm2d(layer.num_features, eps=layer.eps, momentum=layer.momentum)
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(layer.params["gamma"]))
        bn.bias.copy_(torch.from_numpy(layer.params["beta"]))
    return bn.train()


#: name -> (make the numcnn layer, make the same PyTorch module from it)
ELEMENTWISE = {
    "MaxPool2D": (lambda C: MaxPool2D(2), lambda torch, layer: torch.nn.MaxPool2d(2)),
    "BatchNorm2D": (numcnn_bn, torch_bn),
    "ReLU": (lambda C: ReLU(), lambda torch, layer: torch.nn.ReLU()),
}


def out_shape(name, shape):
    N, C, H, W = shape
    return (N, C, H // 2, W // 2) if name == "MaxPool2D" else shape


@pytest.mark.parametrize("shape", FEATURE_MAPS, ids=MAP_IDS)
@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_layer_forward(benchmark, label, backend, name, shape):
    make, make_torch = ELEMENTWISE[name]
    x_shape = (BATCH,) + shape
    label(f"{name} forward", shape_label(x_shape), "numcnn", backend)
    x = data(x_shape, 7)
    layer = make(shape[0])
    y, _ = timed_once(layer.forward, x, True, checked=True)

    def with_torch(torch):
        return (to_numpy(make_torch(torch, layer)(torch.from_numpy(x))),)

    def again():
        return (make(shape[0]).forward(x, True, checked=True),)

    cross_check(backend, (y,), with_torch, again, ["y"])
    result = benchmark(layer.forward, x, True, checked=True)
    assert result.shape == out_shape(name, x_shape)


@pytest.mark.parametrize("shape", FEATURE_MAPS, ids=MAP_IDS)
@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_layer_forward_torch(benchmark, label, torch, name, shape):
    make, make_torch = ELEMENTWISE[name]
    x_shape = (BATCH,) + shape
    label(f"{name} forward", shape_label(x_shape), "torch")
    module = make_torch(torch, make(shape[0])).train()
    x = torch.from_numpy(data(x_shape, 7))
    y = benchmark(module, x)
    assert tuple(y.shape) == out_shape(name, x_shape)


@pytest.mark.parametrize("shape", FEATURE_MAPS, ids=MAP_IDS)
@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_layer_backward(benchmark, label, backend, pedantic_rounds, name, shape):
    make, make_torch = ELEMENTWISE[name]
    x_shape = (BATCH,) + shape
    label(f"{name} backward", shape_label(x_shape), "numcnn", backend)
    x = data(x_shape, 7)
    dy = data(out_shape(name, x_shape), 8)
    layer = make(shape[0])
    layer.forward(x, True, checked=True)
    dx, seconds = timed_once(layer.backward, dy)
    got = (dx,) + tuple(layer.grads[k] for k in ("gamma", "beta") if k in layer.grads)
    names = ["dx", "dgamma", "dbeta"][:len(got)]

    def with_torch(torch):
        module = make_torch(torch, layer)
        xt = torch.from_numpy(x).requires_grad_(True)
        module(xt).backward(torch.from_numpy(dy))
        grads = [xt.grad] + ([module.weight.grad, module.bias.grad] if len(got) > 1 else [])
        return tuple(to_numpy(g) for g in grads)

    def again():
        other = make(shape[0])
        other.forward(x, True, checked=True)
        dx = other.backward(dy)
        return (dx,) + tuple(other.grads[k] for k in ("gamma", "beta") if k in other.grads)

    cross_check(backend, got, with_torch, again, names)

    def forward_first():  # untimed: backward follows a forward pass, as in training
        layer.forward(x, True, checked=True)
        return (dy,), {}

    result = benchmark.pedantic(layer.backward, setup=forward_first,
                                rounds=pedantic_rounds(seconds))
    assert result.shape == x_shape


@pytest.mark.parametrize("shape", FEATURE_MAPS, ids=MAP_IDS)
@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_layer_backward_torch(benchmark, label, torch, pedantic_rounds, name, shape):
    make, make_torch = ELEMENTWISE[name]
    x_shape = (BATCH,) + shape
    label(f"{name} backward", shape_label(x_shape), "torch")
    module = make_torch(torch, make(shape[0])).train()
    x = torch.from_numpy(data(x_shape, 7)).requires_grad_(True)
    dy = torch.from_numpy(data(out_shape(name, x_shape), 8))
    bench_torch_backward(benchmark, pedantic_rounds, module, x, dy)
    assert tuple(x.grad.shape) == x_shape


# ---------------------------------------------------------------------------
# Dropout forward (training) on the pooled maps it sees in the network
# ---------------------------------------------------------------------------
def check_dropout(x, y):
    """About a fraction p dropped; the kept units scaled by 1 / (1 - p)."""
    x, y = np.asarray(x), np.asarray(y)
    kept = y != 0
    assert abs((1.0 - kept.mean()) - DROPOUT) < 0.01
    np.testing.assert_allclose(y[kept], x[kept] / np.float32(1.0 - DROPOUT), rtol=1e-6)


@pytest.mark.parametrize("shape", POOLED_MAPS, ids=POOLED_IDS)
def test_dropout_forward(benchmark, label, backend, shape):
    x_shape = (BATCH,) + shape
    label("Dropout forward", shape_label(x_shape), "numcnn", backend)
    x = data(x_shape, 9)
    layer = Dropout(DROPOUT, rng=0)
    y, _ = timed_once(layer.forward, x, True, checked=True)
    check_dropout(x, y)
    result = benchmark(layer.forward, x, True, checked=True)
    assert result.shape == x_shape


@pytest.mark.parametrize("shape", POOLED_MAPS, ids=POOLED_IDS)
def test_dropout_forward_torch(benchmark, label, torch, shape):
    x_shape = (BATCH,) + shape
    label("Dropout forward", shape_label(x_shape), "torch")
    module = torch.nn.Dropout(DROPOUT).train()
    x = data(x_shape, 9)
    y = benchmark(module, torch.from_numpy(x))
    check_dropout(x, to_numpy(y))
