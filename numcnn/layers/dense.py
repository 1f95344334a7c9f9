"""Fully connected (dense) layer."""
import numpy as np

from .. import init
from .base import Layer, as_generator


class Dense(Layer):
    """Affine map ``y = x @ W + b``.

    Parameters
    ----------
    in_features, out_features : int
    init : {"he", "glorot"}
    rng : Generator or int, optional

    Shapes
    ------
    x : (N, in_features) -> y : (N, out_features);
    ``W`` : (in_features, out_features), ``b`` : (out_features,).

    Notes
    -----
    Backward: ``dW = x.T @ dy``, ``db = sum_n dy``, ``dx = dy @ W.T``.

    Which code runs it: the three products above, in NumPy (BLAS), on either
    backend and in the plan alike: no kernel of numcnn's own.
    """

    sample_ndim = 1
    saved = ("_x",)

    def __init__(self, in_features, out_features, init="he", rng=None):
        super().__init__()
        for label, value in [("in_features", in_features), ("out_features", out_features)]:
            if int(value) != value or value < 1:
                raise ValueError(f"Dense: {label} must be a positive integer; got {value!r}")
        if init not in ("he", "glorot"):
            raise ValueError(f"Dense: init must be 'he' or 'glorot'; got {init!r}")
        self.in_features, self.out_features, self.init = int(in_features), int(out_features), init
        self.layout = f"(N, {self.in_features})"
        self.build(as_generator(rng))

    def build(self, rng):
        shape = (self.in_features, self.out_features)
        if self.init == "he":
            W = init.he_normal(rng, shape, self.in_features)
        else:
            W = init.glorot_uniform(rng, shape, self.in_features, self.out_features)
        self.params = {"W": W, "b": np.zeros(self.out_features, dtype=np.float32)}
        self.grads = {"W": np.zeros_like(W), "b": np.zeros(self.out_features, dtype=np.float32)}

    @classmethod
    def array_shapes(cls, config):
        features_in, features_out = int(config["in_features"]), int(config["out_features"])
        return {"param/W": (features_in, features_out), "param/b": (features_out,)}

    def config(self):
        return dict(in_features=self.in_features, out_features=self.out_features, init=self.init)

    def output_shape(self, input_shape):
        self.check_sample_shape(input_shape)
        self.check_channels(input_shape, self.in_features, what="features")
        return (self.out_features,)

    def _forward(self, x, training):
        self._x = x
        W = self.params["W"].astype(x.dtype, copy=False)
        return x @ W + self.params["b"].astype(x.dtype, copy=False)

    def _backward(self, dy, input_grad=True):
        x = self._x
        self.grads["W"] = x.T @ dy
        self.grads["b"] = dy.sum(axis=0)
        if not input_grad:
            return None
        return dy @ self.params["W"].astype(dy.dtype, copy=False).T
