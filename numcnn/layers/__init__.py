"""Layers: each one a forward/backward pair with ``params`` and ``grads``.

All image layers take NCHW arrays: ``(N, C, H, W)``.
"""
from .activation import ReLU, Softmax
from .base import Layer
from .conv import Conv2D
from .dense import Dense
from .dropout import Dropout
from .norm import BatchNorm, BatchNorm1D, BatchNorm2D
from .pool import MaxPool2D
from .reshape import Flatten

__all__ = ["Layer", "Conv2D", "BatchNorm", "BatchNorm2D", "BatchNorm1D", "MaxPool2D", "Dropout",
           "Dense", "ReLU", "Softmax", "Flatten"]
