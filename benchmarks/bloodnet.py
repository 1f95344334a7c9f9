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
    loss SoftmaxCrossEntropy, optimizer Adam(1e-3) (the step benchmarks) or, as
    the default recipe of examples/bloodcells.py trains it, AdamW(1e-3,
    weight_decay=1e-4) (the epoch benchmark; ``optimizer="adamw"``)

The recipe's data (:func:`synthetic_images`, :func:`augmented_batches`): 64x64
random crops of 72x72 mean-subtracted images, flipped and turned
(``numcnn.data.crop_and_flip(64, rotate90=True)``), batches of 64.
``test_bench_recipe.py`` checks that all of this matches the example.
"""
import os
import sys
import time
from pathlib import Path

# The checkout this file belongs to, first: it is benchmarked, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numcnn  # before numpy, in every process that imports this first: its OpenBLAS setting
import numpy as np
from numcnn.layers import (BatchNorm, BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten,
                           MaxPool2D, ReLU)

REPO_ROOT = Path(__file__).resolve().parent.parent

#: compare.py --keep-freed-memory sets this for every benchmark process: malloc
#: keeps freed memory (numcnn.keep_freed_memory) for numcnn and PyTorch alike.
KEEP_FREED_MEMORY = os.environ.get("NUMCNN_KEEP_FREED_MEMORY") == "1"
#: What numcnn.keep_freed_memory() returned in this process (None: not asked for).
#: Every probe reports it, so that compare.py can check that the setting reached it.
FREED_MEMORY_KEPT = numcnn.keep_freed_memory() if KEEP_FREED_MEMORY else None

BATCH = 64
NUM_CLASSES = 4
DROPOUT = 0.4
CHANNELS = (3, 32, 64, 128)
HIDDEN = 128
#: Input sizes (H, W) of the whole-step benchmarks.
STEP_SIZES = ((60, 80), (120, 160))

#: The default recipe of examples/bloodcells.py (test_bench_recipe.py holds
#: these to the example): the network sees RECIPE_SIZE x RECIPE_SIZE random
#: crops of RECIPE_SOURCE x RECIPE_SOURCE stain crops, batches of BATCH,
#: AdamW(RECIPE_LR, weight_decay=RECIPE_WEIGHT_DECAY); about
#: RECIPE_TRAIN_IMAGES training images (TRAIN minus the validation cells).
RECIPE_SIZE = 64
RECIPE_SOURCE = 72
RECIPE_LR = 1e-3
RECIPE_WEIGHT_DECAY = 1e-4
RECIPE_TRAIN_IMAGES = 8860
#: ``model.predict``'s default batch, used by the inference benchmark.
PREDICT_BATCH = 256
#: The network inputs (H, W) at which every convolution is benchmarked: the
#: recipe's 64x64 and the 60x80 of the earlier benchmarks.
CONV_INPUTS = ((RECIPE_SIZE, RECIPE_SIZE), (60, 80))
KERNEL = 3      # every convolution: 3x3, stride 1, padding 1 (same size out)


def conv_layers(H, W):
    """The three convolutions of the network at input H x W: (C, F, H, W) of each conv input.

    Each block halves H and W (MaxPool2D(2) floors odd sizes).
    """
    shapes = []
    for c_in, c_out in zip(CHANNELS[:-1], CHANNELS[1:]):
        shapes.append((c_in, c_out, H, W))
        H, W = H // 2, W // 2
    return tuple(shapes)


#: The three convolutions at input 60x80 (the per-layer benchmarks' shapes).
CONV_LAYERS = conv_layers(60, 80)
#: Every convolution of the network at each of CONV_INPUTS:
#: ``(name, network input label, C, F, H, W)``, e.g. ``("conv2", "64x64", 32, 64, 32, 32)``.
NETWORK_CONVS = tuple((f"conv{k + 1}", f"{H}x{W}") + shape
                      for H, W in CONV_INPUTS for k, shape in enumerate(conv_layers(H, W)))


def conv_flops(C, F, H, W, N=BATCH, K=KERNEL):
    """FLOPs of one forward pass of a K x K convolution, stride 1, ``same`` padding:
    ``2 * N * F * C * K * K * OH * OW`` (a multiply and an add per weight and output).

    The weight gradient costs as much again (``dW[f, c, i, j]`` sums one
    product per output, N * OH * OW of them, for each of the F * C * K * K
    weights), and so does the input gradient: a backward pass costs 1x this
    for the weight gradient alone and 2x with the input gradient (the bias
    gradient, a sum, is not counted).
    """
    return 2 * N * F * C * K * K * H * W


def conv_info(name, network_input, C, F, H, W, kind, path, in_flop_table=True):
    """``extra_info`` of a convolution benchmark, for compare.py's efficiency table.

    ``kind``: "forward", "backward (dW, db)" or "backward (dx, dW, db)";
    ``path``: how numcnn computes it ("direct", "im2col") or "torch".
    """
    factor = {"forward": 1, "backward (dW, db)": 1, "backward (dx, dW, db)": 2}[kind]
    return dict(conv=name, network_input=network_input, conv_pass=kind, path=path,
                flops=factor * conv_flops(C, F, H, W), flop_table=in_flop_table)

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


def numcnn_optimizer(optimizer="adam"):
    """``"adam"``: Adam(1e-3), the step benchmarks'; ``"adamw"``: the recipe's AdamW."""
    if optimizer == "adamw":
        return numcnn.optim.AdamW(RECIPE_LR, weight_decay=RECIPE_WEIGHT_DECAY)
    if optimizer == "adam":
        return numcnn.optim.Adam(1e-3)
    raise ValueError(f"optimizer must be 'adam' or 'adamw'; got {optimizer!r}")


def build_numcnn(H, W, seed=0, optimizer="adam"):
    """The blood-cell network in numcnn, compiled with SoftmaxCrossEntropy and
    Adam(1e-3) (``optimizer="adamw"``: the recipe's AdamW(1e-3, weight_decay=1e-4))."""
    layers = []
    for c_in, c_out in zip(CHANNELS[:-1], CHANNELS[1:]):
        layers += [Conv2D(c_in, c_out, 3, padding=1), BatchNorm2D(c_out), ReLU(),
                   MaxPool2D(2), Dropout(DROPOUT)]
    layers += [Flatten(), Dense(flat_features(H, W), HIDDEN), BatchNorm1D(HIDDEN), ReLU(),
               Dropout(DROPOUT), Dense(HIDDEN, NUM_CLASSES)]
    model = numcnn.Sequential(layers, seed=seed, input_shape=(CHANNELS[0], H, W))
    return model.compile(numcnn_optimizer(optimizer), numcnn.losses.SoftmaxCrossEntropy())


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


def torch_train_step(torch, net, lr=1e-3, optimizer="adam"):
    """``step(x, y) -> loss``: zero_grad, forward, cross_entropy, backward, Adam step
    (``optimizer="adamw"``: ``torch.optim.AdamW(lr, weight_decay=1e-4)``, the recipe's)."""
    if optimizer == "adamw":
        optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=RECIPE_WEIGHT_DECAY)
    elif optimizer == "adam":
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'adamw'; got {optimizer!r}")
    cross_entropy = torch.nn.functional.cross_entropy

    def step(x, y):
        optimizer.zero_grad(set_to_none=True)
        loss = cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def synthetic_images(N, size=RECIPE_SOURCE, seed=0):
    """``N`` random images (N, 3, size, size) float32, mean-subtracted, and labels (N,) in [0, 4).

    Pixels uniform in [0, 1) as decoded images are; then the mean image is
    subtracted in place, as the recipe does (``numcnn.data.MeanImage``).
    """
    from numcnn.data import MeanImage
    rng = np.random.default_rng(seed)
    x = rng.random((N, CHANNELS[0], size, size), dtype=np.float32)
    y = rng.integers(0, NUM_CLASSES, size=N).astype(np.int64)
    MeanImage().fit(x).transform(x, copy=False)
    return x, y


def augmented_batches(x, y, batch=BATCH, size=RECIPE_SIZE, seed=1):
    """One epoch of training batches as ``fit`` makes them, computed once from ``seed``.

    A random order of the images, cut into the batches of
    ``numcnn.training.batch_starts`` (the last one smaller), each augmented by
    the recipe's ``crop_and_flip(size, rotate90=True)``. Returns a list of
    ``(xb, yb)``: contiguous float32 (n, 3, size, size) and int64 (n,).
    The same seed gives the same batches in any process.
    """
    from numcnn.data import crop_and_flip
    from numcnn.training import batch_starts
    rng = np.random.default_rng(seed)
    augment = crop_and_flip(size, rotate90=True)
    order = rng.permutation(len(x))
    starts = batch_starts(len(x), batch)
    batches = []
    for a, b in zip(starts[:-1], starts[1:]):
        index = order[a:b]
        batches.append((np.ascontiguousarray(augment(x[index], rng), dtype=np.float32),
                        np.ascontiguousarray(y[index])))
    return batches


def digest(arrays):
    """A short hash of the bytes of ``arrays`` (to show two processes saw the same data)."""
    import hashlib
    h = hashlib.blake2b(digest_size=8)
    for a in arrays:
        h.update(np.ascontiguousarray(a).view(np.uint8).reshape(-1))
    return h.hexdigest()


def median_seconds(fn, repeats):
    """The median time of ``repeats`` calls of ``fn()`` (seconds)."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return float(np.median(times))


def timed_once(fn, *args, **kwargs):
    """Run ``fn`` once, outside any benchmark timing; return (result, seconds)."""
    began = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - began
