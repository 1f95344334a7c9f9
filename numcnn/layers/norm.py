"""Batch normalisation for feature maps (2-D) and feature vectors (1-D)."""
import numpy as np

from ..backend import kernels
from .base import Layer


class BatchNorm(Layer):
    """The shared base of :class:`BatchNorm2D` and :class:`BatchNorm1D` (Ioffe and Szegedy, 2015).

    Both normalise each feature (channel) over the batch, and over the positions
    of a feature map; the 1-D layer is the 2-D one with ``H = W = 1``. Use one
    of the two subclasses.

    Parameters
    ----------
    num_features : int
        ``C``, the number of channels (or features).
    eps : float
        Added to the variance before the square root.
    momentum : float
        Weight of the new batch in the running statistics:
        ``running = (1 - momentum) * running + momentum * batch`` (PyTorch's
        convention and defaults).

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

    Which code runs it: one layer at a time (``model(x)``, Grad-CAM),
    :func:`numcnn.kernels.reference.batchnorm_forward`, ``batchnorm_inference``
    and ``batchnorm_backward``, or their twins in
    :mod:`numcnn.kernels.jit.normalisation` on the ``"numba"`` backend. In
    ``fit``, ``evaluate`` and ``predict`` on ``"numba"`` (the plan,
    :mod:`numcnn.plan`), a BatchNorm followed by a ReLU runs fused with it,
    one pass each way (``batchnorm_relu_*``,
    :class:`numcnn.plan.BatchNormReLUStep`), and with a 2x2 max pool after
    the ReLU, the three together (``batchnorm_relu_maxpool2_*``,
    :class:`numcnn.plan.BatchNormReLUMaxPoolStep`); the same values to float32
    rounding, the same running statistics.
    """

    saved = ("_x", "_mean", "_var")

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        where = type(self).__name__
        if int(num_features) != num_features or num_features < 1:
            raise ValueError(f"{where}: num_features must be a positive integer; "
                             f"got {num_features!r}")
        if not eps > 0 or not np.isfinite(eps):
            raise ValueError(f"{where}: eps must be a finite number > 0; got {eps!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{where}: momentum must be in [0, 1]; got {momentum!r}")
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        C = self.num_features
        self.params = {"gamma": np.ones(C, dtype=np.float32), "beta": np.zeros(C, dtype=np.float32)}
        self.grads = {"gamma": np.zeros(C, dtype=np.float32), "beta": np.zeros(C, dtype=np.float32)}
        self.buffers = {"running_mean": np.zeros(C, dtype=np.float32),
                        "running_var": np.ones(C, dtype=np.float32)}

    @classmethod
    def array_shapes(cls, config):
        C = (int(config["num_features"]),)
        return {"param/gamma": C, "param/beta": C, "buffer/running_mean": C,
                "buffer/running_var": C}

    def config(self):
        return dict(num_features=self.num_features, eps=self.eps, momentum=self.momentum)

    def output_shape(self, input_shape):
        self.check_sample_shape(input_shape)
        self.check_channels(input_shape, self.num_features)
        return tuple(input_shape)

    def _forward(self, x, training):
        x4 = x if x.ndim == 4 else x.reshape(x.shape + (1, 1))  # (N, C, H, W); 1-D: H = W = 1
        gamma = self.params["gamma"].astype(x.dtype, copy=False)
        beta = self.params["beta"].astype(x.dtype, copy=False)
        self._x, self._training = x4, training
        if training:
            M = x4.shape[0] * x4.shape[2] * x4.shape[3]
            self.check_values_per_channel(M, x.shape)
            y, self._mean, self._var = kernels().batchnorm_forward(x4, gamma, beta, self.eps)
            self.update_running_statistics(self._mean, self._var, M)
        else:
            self._mean = self.buffers["running_mean"].astype(x.dtype)
            self._var = self.buffers["running_var"].astype(x.dtype)
            y = kernels().batchnorm_inference(x4, gamma, beta, self._mean, self._var, self.eps)
        return y.reshape(x.shape)

    def check_values_per_channel(self, M, shape):
        """ValueError unless a training batch gives each channel ``M`` >= 2 values: one value
        has no spread (and the unbiased variance would divide by ``M - 1 = 0``)."""
        if M < 2:
            raise ValueError(f"{self.describe()} needs more than one value per channel in "
                             f"training mode; got input of shape {tuple(shape)} (a batch of "
                             f"one feature vector): train with batches of at least 2")

    def update_running_statistics(self, mean, var, M):
        """Fold a training batch's ``mean`` and biased ``var`` (over ``M`` values) into the buffers.

        ``running = (1 - momentum) * running + momentum * batch``, the variance
        made unbiased (``var * M / (M - 1)``) first, as PyTorch does.
        """
        self.check_values_per_channel(M, (M,))
        m, running = self.momentum, self.buffers
        running["running_mean"] = ((1 - m) * running["running_mean"] + m * mean).astype(np.float32)
        running["running_var"] = ((1 - m) * running["running_var"]
                                  + m * var * (M / (M - 1))).astype(np.float32)

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


class BatchNorm2D(BatchNorm):
    """Batch normalisation of feature maps, statistics over (N, H, W) per channel.

    ``BatchNorm2D(num_features, eps=1e-5, momentum=0.1)``, as PyTorch's
    ``BatchNorm2d``. The maths is :class:`BatchNorm`'s.

    Shapes
    ------
    x : (N, C, H, W) -> y : (N, C, H, W); ``gamma``, ``beta`` : (C,).
    Buffers ``running_mean``, ``running_var`` : (C,).
    """

    sample_ndim = 3

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps, momentum)
        self.layout = f"(N, {self.num_features}, H, W)"


class BatchNorm1D(BatchNorm):
    """Batch normalisation of feature vectors: (N, F) -> (N, F), statistics over N.

    ``BatchNorm1D(num_features, eps=1e-5, momentum=0.1)``, as PyTorch's
    ``BatchNorm1d``: the maths of :class:`BatchNorm` with ``H = W = 1``. Put it
    after a Dense layer to keep its ReLUs alive (a dense layer whose every
    ReLU stays at zero stops learning: it "dies").
    """

    sample_ndim = 1

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps, momentum)
        self.layout = f"(N, {self.num_features})"
