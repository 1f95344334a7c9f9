"""Batch normalisation for feature maps (2-D) and feature vectors (1-D)."""
import numpy as np

from ..backend import kernels
from .base import Layer


class BatchNorm2D(Layer):
    """Batch normalisation over (N, H, W) for each channel (Ioffe and Szegedy, 2015).

    Parameters
    ----------
    num_features : int
        ``C``, the number of channels.
    momentum : float
        Weight of the new batch in the running statistics:
        ``running = (1 - momentum) * running + momentum * batch``.
    eps : float
        Added to the variance before the square root.

    Shapes
    ------
    x : (N, C, H, W) -> y : (N, C, H, W); ``gamma``, ``beta`` : (C,).
    Buffers ``running_mean``, ``running_var`` : (C,).

    Notes
    -----
    Training, per channel with ``M = N*H*W`` values:
    ``mu = mean(x)``, ``var = mean((x - mu)**2)``,
    ``xhat = (x - mu) / sqrt(var + eps)``, ``y = gamma * xhat + beta``.
    The running variance uses the unbiased ``var * M / (M - 1)`` (as PyTorch).

    Backward (training): ``dbeta = sum(dy)``, ``dgamma = sum(dy * xhat)``,
    ``dx = gamma / (M * sqrt(var + eps)) * (M * dy - dbeta - xhat * dgamma)``;
    the two subtracted terms are the paths through ``mu`` and ``var``.

    Evaluation uses the running statistics, so ``y`` is a fixed affine map
    of ``x`` and ``dx = dy * gamma / sqrt(running_var + eps)``.

    Kernels: :func:`numcnn.kernels.reference.batchnorm_forward`,
    ``batchnorm_inference`` and ``batchnorm_backward``.
    """

    sample_ndim = 3

    def __init__(self, num_features, momentum=0.1, eps=1e-5):
        super().__init__()
        if int(num_features) != num_features or num_features < 1:
            raise ValueError(f"{type(self).__name__}: num_features must be a positive "
                             f"integer; got {num_features!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{type(self).__name__}: momentum must be in [0, 1]; got {momentum!r}")
        if not eps > 0:
            raise ValueError(f"{type(self).__name__}: eps must be positive; got {eps!r}")
        self.num_features, self.momentum, self.eps = int(num_features), float(momentum), float(eps)
        self.layout = self._layout()
        C = self.num_features
        self.params = {"gamma": np.ones(C, dtype=np.float32), "beta": np.zeros(C, dtype=np.float32)}
        self.grads = {"gamma": np.zeros(C, dtype=np.float32), "beta": np.zeros(C, dtype=np.float32)}
        self.buffers = {"running_mean": np.zeros(C, dtype=np.float32),
                        "running_var": np.ones(C, dtype=np.float32)}

    def _layout(self):
        return f"(N, {self.num_features}, H, W)"

    def config(self):
        return dict(num_features=self.num_features, momentum=self.momentum, eps=self.eps)

    def output_shape(self, input_shape):
        self.check_sample_shape(input_shape)
        self.check_channels(input_shape, self.num_features)
        return tuple(input_shape)

    def check_input(self, x):
        super().check_input(x)
        self.output_shape(x.shape[1:])

    def _forward(self, x, training):
        x4 = self._as_4d(x)
        gamma = self.params["gamma"].astype(x.dtype, copy=False)
        beta = self.params["beta"].astype(x.dtype, copy=False)
        self._x, self._training = x4, training
        if training:
            M = x4.shape[0] * x4.shape[2] * x4.shape[3]
            if M < 2:
                raise ValueError(f"{self.describe()} needs more than one value per channel "
                                 f"in training mode; got input of shape {x.shape}")
            y, self._mean, self._var = kernels().batchnorm_forward(x4, gamma, beta, self.eps)
            m = self.momentum
            running = self.buffers
            running["running_mean"] = ((1 - m) * running["running_mean"]
                                       + m * self._mean).astype(np.float32)
            running["running_var"] = ((1 - m) * running["running_var"]
                                      + m * self._var * (M / (M - 1))).astype(np.float32)
        else:
            self._mean = self.buffers["running_mean"].astype(x.dtype)
            self._var = self.buffers["running_var"].astype(x.dtype)
            y = kernels().batchnorm_inference(x4, gamma, beta, self._mean, self._var, self.eps)
        return y.reshape(x.shape)

    def _backward(self, dy, input_grad=True):
        x = self._x
        dy4 = dy.reshape(x.shape)
        gamma = self.params["gamma"].astype(x.dtype, copy=False)
        if self._training:
            dx, dgamma, dbeta = kernels().batchnorm_backward(
                dy4, x, gamma, self._mean, self._var, self.eps)
        else:  # fixed statistics: a per-channel affine map
            inv_std = (1.0 / np.sqrt(self._var + self.eps)).astype(x.dtype)
            xhat = (x - self._mean[None, :, None, None]) * inv_std[None, :, None, None]
            dbeta = dy4.sum(axis=(0, 2, 3))
            dgamma = (dy4 * xhat).sum(axis=(0, 2, 3))
            dx = dy4 * (gamma * inv_std)[None, :, None, None]
        self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
        return dx.reshape(dy.shape)

    def _as_4d(self, x):
        return x


class BatchNorm1D(BatchNorm2D):
    """Batch normalisation of feature vectors: (N, F) -> (N, F), statistics over N.

    The same maths as :class:`BatchNorm2D` with ``H = W = 1`` (it runs the same
    kernels on an ``(N, F, 1, 1)`` view). Put it after a Dense layer to keep its
    ReLUs alive: on the blood-cell network the first dense layer dies without it.
    """

    sample_ndim = 1

    def _layout(self):
        return f"(N, {self.num_features})"

    def _as_4d(self, x):
        return x.reshape(x.shape[0], x.shape[1], 1, 1)
