"""The blood-cell network, built twice (numcnn and PyTorch), and helpers shared
by the benchmarks, ``compare.py`` and the subprocess probes.

Kept out of ``conftest.py`` so that plain scripts (``peak_memory.py``,
``first_step.py``) can import it too. PyTorch is optional everywhere: nothing
here imports it at module level; functions that need it take the module as an
argument (see :func:`maybe_torch`).

The network (input 3 x H x W, batch 64, float32)::

    3 x [Conv2D(3x3, padding 1) - BatchNorm2D - ReLU - MaxPool2D(2) - Dropout(0.4)]
        channels 3 -> 32 -> 64 -> 128
    Flatten - Dense(128 * (H//8) * (W//8), 128) - BatchNorm1D(128) - ReLU
            - Dropout(0.4) - Dense(128, 4)
    loss SoftmaxCrossEntropy, optimizer Adam(1e-3)
"""
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # benchmark the checkout even when numcnn is not installed
    sys.path.insert(0, str(REPO_ROOT))

import numcnn  # noqa: E402

#: compare.py --keep-freed-memory sets this for every benchmark process: malloc
#: keeps freed memory (numcnn.keep_freed_memory) for numcnn and PyTorch alike.
KEEP_FREED_MEMORY = os.environ.get("NUMCNN_KEEP_FREED_MEMORY") == "1"
if KEEP_FREED_MEMORY:
    numcnn.keep_freed_memory()
from numcnn.layers import (BatchNorm, BatchNorm1D, BatchNorm2D, Conv2D, Dense,  # noqa: E402
                           Dropout, Flatten, MaxPool2D, ReLU)

BATCH = 64
NUM_CLASSES = 4
DROPOUT = 0.4
CHANNELS = (3, 32, 64, 128)
HIDDEN = 128
#: Input sizes (H, W) of the whole-step benchmarks.
STEP_SIZES = ((60, 80), (120, 160))

#: The three convolutions of the network at input 60x80: (C, F, H, W) of each
#: conv input. Each block halves H and W (MaxPool2D(2) floors odd sizes).
CONV_LAYERS = (
    (3, 32, 60, 80),
    (32, 64, 30, 40),
    (64, 128, 15, 20),
)
#: The feature maps that BatchNorm2D, ReLU, MaxPool2D and Dropout see in the
#: network at input 60x80: (C, H, W) after each convolution.
FEATURE_MAPS = tuple((F, H, W) for (_, F, H, W) in CONV_LAYERS)


def maybe_torch(threads=2):
    """PyTorch limited to ``threads`` threads and seeded, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    return torch


def shape_label(shape):
    """``(64, 3, 60, 80)`` -> ``"64x3x60x80"``."""
    return "x".join(str(int(s)) for s in shape)


def random_array(shape, seed=0, dtype=np.float32):
    """Standard-normal float32 array from ``np.random.default_rng(seed)``."""
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)


def make_batch(H, W, N=BATCH, seed=0):
    """Random images (N, 3, H, W) float32 and labels (N,) int64 in [0, 4)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, CHANNELS[0], H, W), dtype=np.float32)
    y = rng.integers(0, NUM_CLASSES, size=N).astype(np.int64)
    return x, y


def flat_features(H, W):
    return CHANNELS[-1] * (H // 8) * (W // 8)


def build_numcnn(H, W, seed=0):
    """The blood-cell network in numcnn, compiled with SoftmaxCrossEntropy and Adam(1e-3)."""
    layers = []
    for c_in, c_out in zip(CHANNELS[:-1], CHANNELS[1:]):
        layers += [Conv2D(c_in, c_out, 3, padding=1), BatchNorm2D(c_out), ReLU(),
                   MaxPool2D(2), Dropout(DROPOUT)]
    layers += [Flatten(), Dense(flat_features(H, W), HIDDEN), BatchNorm1D(HIDDEN), ReLU(),
               Dropout(DROPOUT), Dense(HIDDEN, NUM_CLASSES)]
    model = numcnn.Sequential(layers, seed=seed, input_shape=(CHANNELS[0], H, W))
    return model.compile(numcnn.optim.Adam(1e-3), numcnn.losses.SoftmaxCrossEntropy())


def build_torch(torch, H, W, like=None):
    """The same network in PyTorch (float32, training mode).

    With ``like`` (a network from :func:`build_numcnn`) the PyTorch network
    starts from exactly its weights, so both compute the same function.
    """
    nn = torch.nn
    modules = []
    for c_in, c_out in zip(CHANNELS[:-1], CHANNELS[1:]):
        modules += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                    nn.MaxPool2d(2), nn.Dropout(DROPOUT)]
    modules += [nn.Flatten(), nn.Linear(flat_features(H, W), HIDDEN), nn.BatchNorm1d(HIDDEN),
                nn.ReLU(), nn.Dropout(DROPOUT), nn.Linear(HIDDEN, NUM_CLASSES)]
    net = nn.Sequential(*modules).float().train()
    if like is not None:
        copy_weights(torch, like, net)
    return net


def copy_weights(torch, model, net):
    """Copy the parameters and BatchNorm statistics of a numcnn model into ``net``."""
    with torch.no_grad():
        for layer, module in zip(model.layers, net):
            if isinstance(layer, Conv2D):
                module.weight.copy_(torch.from_numpy(layer.params["W"]))
                module.bias.copy_(torch.from_numpy(layer.params["b"]))
            elif isinstance(layer, Dense):
                module.weight.copy_(torch.from_numpy(np.ascontiguousarray(layer.params["W"].T)))
                module.bias.copy_(torch.from_numpy(layer.params["b"]))
            elif isinstance(layer, BatchNorm):  # BatchNorm2D and BatchNorm1D
                module.weight.copy_(torch.from_numpy(layer.params["gamma"]))
                module.bias.copy_(torch.from_numpy(layer.params["beta"]))
                module.running_mean.copy_(torch.from_numpy(layer.buffers["running_mean"]))
                module.running_var.copy_(torch.from_numpy(layer.buffers["running_var"]))


def torch_train_step(torch, net, lr=1e-3):
    """``step(x, y) -> loss``: zero_grad, forward, cross_entropy, backward, Adam step."""
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    cross_entropy = torch.nn.functional.cross_entropy

    def step(x, y):
        optimizer.zero_grad(set_to_none=True)
        loss = cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def assert_close32(actual, expected, what="", rtol=1e-4, atol_scale=1e-5):
    """float32 agreement, with the absolute tolerance measured against the size of the values."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(float(np.abs(expected).max(initial=0.0)), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol_scale * scale,
                               err_msg=what)


def timed_once(fn, *args, **kwargs):
    """Run ``fn`` once, outside any benchmark timing; return (result, seconds)."""
    began = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - began
