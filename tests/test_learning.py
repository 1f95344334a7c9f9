"""Learning works on real data: a small CNN memorises a small subset of the blood-cell images.

The images are decoded here directly with scikit-image (not through numcnn.data or
numcnn.datasets' loader, which only finds the TRAIN folder), so this test checks
the layers, the loss and the optimizer on real pictures and nothing else:
decode -> block-mean downscale to 60x80 -> [0, 1] -> NCHW float32 -> subtract
the mean image.
"""
import math

import numpy as np
import pytest

import numcnn
from numcnn.datasets import bloodcells
from numcnn.layers import BatchNorm2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU
from numcnn.losses import SoftmaxCrossEntropy
from numcnn.optim import Adam

CLASSES = ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL")
PER_CLASS = 60
FACTOR = 4            # 240x320 -> 60x80


def load_subset(root, per_class=PER_CLASS):
    io = pytest.importorskip("skimage.io")
    images, labels = [], []
    for label, name in enumerate(CLASSES):
        files = sorted((bloodcells.split_dir("TRAIN", root) / name).glob("*.jpeg"))
        assert len(files) >= per_class, f"only {len(files)} images in {name}"
        for path in files[:per_class]:
            rgb = io.imread(path)                                  # (240, 320, 3) uint8, HWC
            h, w = rgb.shape[0] // FACTOR, rgb.shape[1] // FACTOR
            small = rgb[:h * FACTOR, :w * FACTOR].reshape(h, FACTOR, w, FACTOR, 3).mean(axis=(1, 3))
            images.append(small)
            labels.append(label)
    x = (np.stack(images) / 255.0).astype(np.float32).transpose(0, 3, 1, 2)   # NHWC -> NCHW
    x = np.ascontiguousarray(x - x.mean(axis=0, keepdims=True))
    return x, np.array(labels)


def test_small_cnn_memorises_real_blood_cells(bloodcells_dir):
    x, y = load_subset(bloodcells_dir)
    assert x.shape == (4 * PER_CLASS, 3, 60, 80) and x.dtype == np.float32
    assert np.bincount(y).tolist() == [PER_CLASS] * 4
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-5)

    model = numcnn.Sequential([
        Conv2D(3, 8, 3, padding=1), BatchNorm2D(8), ReLU(), MaxPool2D(2),     # 8 x 30 x 40
        Conv2D(8, 16, 3, padding=1), BatchNorm2D(16), ReLU(), MaxPool2D(2),   # 16 x 15 x 20
        Conv2D(16, 16, 3, padding=1), BatchNorm2D(16), ReLU(), MaxPool2D(2),  # 16 x 7 x 10
        Flatten(), Dense(16 * 7 * 10, 4),
    ], seed=0)
    model.compile(Adam(3e-3), SoftmaxCrossEntropy())
    history = model.fit(x, y, epochs=10, batch_size=32, verbose=0)

    losses = history.history["loss"]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0]
    assert losses[-1] < 0.5 * math.log(4)      # well below chance level (ln 4)
    scores = model.evaluate(x, y)              # evaluation mode: BatchNorm running statistics
    assert scores["loss"] < 0.5 * math.log(4)
    assert scores["accuracy"] > 0.85           # chance is 0.25
