"""2-D convolution as im2col + one matrix multiply."""
import numpy as np

from .. import init
from ..backend import kernels
from ..kernels.reference import conv_output_size
from .base import Layer, as_generator

#: Largest column matrix (bytes) one Conv2D builds at once. Bigger batches are
#: processed in chunks of images, so memory stays bounded whatever the batch.
COLS_BUDGET_BYTES = 128 * 2**20


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

    With ``cols = im2col(x)`` of shape ``(C*KH*KW, N*OH*OW)`` and
    ``Wm = W.reshape(F, C*KH*KW)`` this is one matrix multiply ``Wm @ cols``.
    Backward, with ``dY`` the upstream gradient laid out as ``(F, N*OH*OW)``:

    - ``db = dY.sum(columns)``
    - ``dW = dY @ cols.T``
    - ``dx = col2im(Wm.T @ dY)`` (col2im sums the patches that overlap).

    Kernels: :func:`numcnn.kernels.reference.im2col` and ``col2im``. Batches
    whose column matrix would exceed ``COLS_BUDGET_BYTES`` run in chunks of
    images, re-using one buffer per layer.
    """

    sample_ndim = 3
    layout = "(N, C, H, W)"

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
        self._cols_buffer = np.empty(0, dtype=np.float32)
        self._rows_buffer = np.empty(0, dtype=np.float32)
        self.cols_nbytes = 0  # size of the column matrix of the last forward (largest chunk)
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

    def check_input(self, x):
        super().check_input(x)
        self.output_shape(x.shape[1:])

    # -- buffers and chunks -------------------------------------------------
    def _chunk_size(self, N, K, P, itemsize):
        per_image = K * P * itemsize
        return max(1, min(N, COLS_BUDGET_BYTES // per_image))

    def _buffer(self, attr, rows, columns, dtype):
        """A (rows, columns) view into a flat buffer that only ever grows."""
        buf = getattr(self, attr)
        if buf.dtype != dtype or buf.size < rows * columns:
            buf = np.empty(rows * columns, dtype=dtype)
            setattr(self, attr, buf)
        return buf[:rows * columns].reshape(rows, columns)

    def _im2col(self, x_chunk):
        N, C, H, W = x_chunk.shape
        OH, OW = self.output_shape(x_chunk.shape[1:])[1:]
        cols = self._buffer("_cols_buffer", C * self.KH * self.KW, N * OH * OW, x_chunk.dtype)
        return kernels().im2col(x_chunk, self.KH, self.KW, self.stride, self.padding, out=cols)

    # -- maths ------------------------------------------------------------
    def _forward(self, x, training):
        N = x.shape[0]
        F, OH, OW = self.output_shape(x.shape[1:])
        K, P = self.in_channels * self.KH * self.KW, OH * OW
        W = self.params["W"].astype(x.dtype, copy=False).reshape(F, K)
        chunk = self._chunk_size(N, K, P, x.dtype.itemsize)
        y = np.empty((N, F, P), dtype=x.dtype)
        for n0 in range(0, N, chunk):
            x_chunk = x[n0:n0 + chunk]
            n = x_chunk.shape[0]
            cols = self._im2col(x_chunk)                                   # (K, n*P)
            self.cols_nbytes = max(self.cols_nbytes, cols.nbytes) if n0 else cols.nbytes
            rows = self._buffer("_rows_buffer", F, n * P, x.dtype)
            np.matmul(W, cols, out=rows)                                   # (F, n*P)
            kernels().nchw_from_rows(rows, n, out=y[n0:n0 + n])            # (n, F, P)
        kernels().add_channel_bias(y, self.params["b"].astype(x.dtype, copy=False))
        self._x = x
        self._cols_hold_x = chunk >= N   # one chunk: the buffer still holds im2col(x)
        return y.reshape(N, F, OH, OW)

    def _backward(self, dy, input_grad=True):
        x = self._x
        N = x.shape[0]
        F, OH, OW = dy.shape[1:]
        K, P = self.in_channels * self.KH * self.KW, OH * OW
        W = self.params["W"].astype(x.dtype, copy=False).reshape(F, K)
        dy = np.ascontiguousarray(dy).reshape(N, F, P)
        chunk = self._chunk_size(N, K, P, x.dtype.itemsize)
        dW = np.zeros((F, K), dtype=x.dtype)
        dx = np.empty(x.shape, dtype=x.dtype) if input_grad else None
        for n0 in range(0, N, chunk):
            x_chunk = x[n0:n0 + chunk]
            n = x_chunk.shape[0]
            rows = self._buffer("_rows_buffer", F, n * P, x.dtype)
            kernels().rows_from_nchw(dy[n0:n0 + n], out=rows)              # (F, n*P)
            if self._cols_hold_x:
                cols = self._buffer("_cols_buffer", K, n * P, x.dtype)
            else:
                cols = self._im2col(x_chunk)                               # (K, n*P)
            dW += rows @ cols.T                                            # (F, K)
            if input_grad:
                dcols = np.matmul(W.T, rows, out=cols)                     # (K, n*P), reuses the buffer
                kernels().col2im(dcols, x_chunk.shape, self.KH, self.KW,
                                 self.stride, self.padding, out=dx[n0:n0 + n])
        self._cols_hold_x = False  # the buffer now holds dcols
        self.grads["W"] = dW.reshape(self.params["W"].shape)
        self.grads["b"] = kernels().channel_sums(dy).astype(x.dtype)                # (F,)
        return dx
