"""Flatten: from feature maps to feature vectors."""
import numpy as np

from .base import Layer


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W), keeping C-order; backward reshapes back."""

    layout = "(N, ...)"

    def output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def _forward(self, x, training):
        self._x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def _backward(self, dy, input_grad=True):
        return dy.reshape(self._x_shape)
