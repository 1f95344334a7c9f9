"""2-D convolution as im2col + one matrix multiply."""
import numpy as np

from .. import init
from ..backend import kernels
from ..kernels.reference import conv_output_size
from .base import Layer, as_generator
from .columns import ColumnWorkspace


class Conv2D(Layer):
    """2-D convolution (cross-correlation, as in every deep-learning library).

    Parameters
    ----------
    in_channels, out_channels : int
        ``C`` and ``F``.
    kernel_size : int or (int, int)
        ``KH, KW``.
    stride, padding : int
        Step of the window and zeros added on each side.
    init : {"he", "glorot"}
        Weight initialiser (biases start at zero).
    rng : Generator or int, optional
        Source for the initial weights; a model re-seeds every layer from its own.

    Shapes
    ------
    x : (N, C, H, W) -> y : (N, F, OH, OW), ``OH = (H + 2*pad - KH) // stride + 1``.
    Parameters ``W`` : (F, C, KH, KW), ``b`` : (F,).

    Notes
    -----
    Forward, for every image ``n``, filter ``f`` and output position ``(oh, ow)``:

    .. math:: y_{nf,oh,ow} = b_f + \\sum_{c,i,j} W_{fcij}\\, x_{n,c,\\,s\\,oh+i-p,\\,s\\,ow+j-p}

    (:func:`numcnn.kernels.reference.conv2d_direct` computes exactly this, with
    loops.) With ``cols = im2col(x)`` of shape ``(C*KH*KW, N*OH*OW)`` and
    ``Wm = W.reshape(F, C*KH*KW)`` it is one matrix multiply ``Wm @ cols``.
    Backward, with ``dY`` the upstream gradient laid out as ``(F, N*OH*OW)``:

    - ``db = dY.sum(columns)``
    - ``dW = dY @ cols.T``
    - ``dx = col2im(Wm.T @ dY)`` (col2im sums the patches that overlap).

    Which code runs it:

    - One layer at a time (``layer(x)``, ``model(x)``, ``model.profile``,
      Grad-CAM): the maths above, im2col, one matrix multiply, col2im, with
      :func:`numcnn.kernels.reference.im2col` and ``col2im`` on the
      ``"numpy"`` backend and their twins in :mod:`numcnn.kernels.jit.columns`
      on ``"numba"``. Large batches run in chunks of images that share one
      column buffer (:class:`numcnn.layers.columns.ColumnWorkspace`).
    - ``fit``, ``evaluate`` and ``predict`` on the ``"numba"`` backend run the
      model's plan (:mod:`numcnn.plan`). On the vectors route
      (:func:`numcnn.route`) a 3x3 convolution with stride 1 and padding up to
      2 runs the direct kernels of :mod:`numcnn.kernels.jit.conv3x3`, no
      column matrix (:class:`numcnn.plan.DirectConvolutionStep`). Every other
      convolution, and every one on the portable route, runs the same product
      as here, the bias added while the product is reordered into NCHW
      (:class:`numcnn.plan.ConvolutionStep`). The values are the same to
      float32 rounding; on ``"numpy"`` the plan runs the layers one by one.
    """

    sample_ndim = 3
    layout = "(N, C, H, W)"
    saved = ("_x",)

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 init="he", rng=None):
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if np.isscalar(kernel_size) else kernel_size
        for label, value in [("in_channels", in_channels), ("out_channels", out_channels),
                             ("kernel_size", kh), ("kernel_size", kw), ("stride", stride)]:
            if int(value) != value or value < 1:
                raise ValueError(f"Conv2D: {label} must be a positive integer; got {value!r}")
        if int(padding) != padding or padding < 0:
            raise ValueError(f"Conv2D: padding must be a non-negative integer; got {padding!r}")
        if init not in ("he", "glorot"):
            raise ValueError(f"Conv2D: init must be 'he' or 'glorot'; got {init!r}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.KH, self.KW = int(kh), int(kw)
        self.stride, self.padding = int(stride), int(padding)
        self.init = init
        self.layout = f"(N, {self.in_channels}, H, W)"
        self.columns = ColumnWorkspace(self.KH, self.KW, self.stride, self.padding)
        self.build(as_generator(rng))

    def build(self, rng):
        F, C, KH, KW = self.out_channels, self.in_channels, self.KH, self.KW
        fan_in, fan_out = C * KH * KW, F * KH * KW
        if self.init == "he":
            W = init.he_normal(rng, (F, C, KH, KW), fan_in)
        else:
            W = init.glorot_uniform(rng, (F, C, KH, KW), fan_in, fan_out)
        self.params = {"W": W, "b": np.zeros(F, dtype=np.float32)}
        self.grads = {"W": np.zeros_like(W), "b": np.zeros(F, dtype=np.float32)}

    @classmethod
    def array_shapes(cls, config):
        size = config["kernel_size"]
        KH, KW = (size, size) if np.isscalar(size) else size
        F, C = int(config["out_channels"]), int(config["in_channels"])
        return {"param/W": (F, C, int(KH), int(KW)), "param/b": (F,)}

    def config(self):
        return dict(in_channels=self.in_channels, out_channels=self.out_channels,
                    kernel_size=(self.KH, self.KW), stride=self.stride,
                    padding=self.padding, init=self.init)

    def output_shape(self, input_shape):
        self.check_sample_shape(input_shape)
        self.check_channels(input_shape, self.in_channels)
        C, H, W = input_shape
        OH = conv_output_size(H, self.KH, self.stride, self.padding)
        OW = conv_output_size(W, self.KW, self.stride, self.padding)
        if OH < 1 or OW < 1:
            raise ValueError(f"{self.describe()}: input {H}x{W} is smaller than the "
                             f"{self.KH}x{self.KW} kernel (padding {self.padding})")
        return (self.out_channels, OH, OW)

    @property
    def cols_nbytes(self):
        """Bytes of the column matrix of the last forward pass (its largest chunk)."""
        return self.columns.cols_nbytes

    # -- maths ------------------------------------------------------------
    def _forward(self, x, training):
        N = len(x)
        F, OH, OW = self.output_shape(x.shape[1:])
        Wm = self.params["W"].astype(x.dtype, copy=False).reshape(F, -1)     # (F, C*KH*KW)
        y = np.empty((N, F, OH * OW), dtype=x.dtype)
        for images, cols in self.columns.chunks(x, forward=True):          # cols = im2col(x)
            rows = self.columns.rows(F, cols.shape[1], x.dtype)
            np.matmul(Wm, cols, out=rows)                                  # Wm @ cols: (F, n*P)
            kernels().nchw_from_rows(rows, len(y[images]), out=y[images])   # as (n, F, P)
        kernels().add_channel_bias(y, self.params["b"].astype(x.dtype, copy=False))  # + b
        self._x = x
        return y.reshape(N, F, OH, OW)

    def _backward(self, dy, input_grad=True):
        x = self._x
        N, F = dy.shape[:2]
        Wm = self.params["W"].astype(x.dtype, copy=False).reshape(F, -1)     # (F, C*KH*KW)
        dy = np.ascontiguousarray(dy).reshape(N, F, -1)                     # (N, F, P)
        dW = np.zeros(Wm.shape, dtype=x.dtype)
        dx = np.empty(x.shape, dtype=x.dtype) if input_grad else None
        for images, cols in self.columns.chunks(x):                        # cols = im2col(x)
            dY = self.columns.rows(F, cols.shape[1], x.dtype)
            kernels().rows_from_nchw(dy[images], out=dY)                   # dY: (F, n*P)
            dW += dY @ cols.T                                              # dW = dY @ cols.T
            if input_grad:
                dcols = np.matmul(Wm.T, dY, out=cols)                      # Wm.T @ dY, in cols' buffer
                kernels().col2im(dcols, x[images].shape, self.KH, self.KW,
                                 self.stride, self.padding, out=dx[images])  # dx = col2im(...)
        self.grads["W"] = dW.reshape(self.params["W"].shape)
        self.grads["b"] = kernels().channel_sums(dy).astype(x.dtype)       # db = dY.sum(columns)
        return dx
