"""Column matrices for a convolution: bounded memory and one reused buffer.

``Conv2D`` computes ``y = W @ im2col(x)``. The column matrix has shape
``(C*KH*KW, N*OH*OW)``, which grows with the batch: a 3x3 convolution of 32
channels on 32x32 maps at batch 256 would need 300 MB for it. A
:class:`ColumnWorkspace` keeps that memory bounded and allocation-free:

- :meth:`ColumnWorkspace.chunks` cuts a batch into chunks of images whose
  column matrix fits in ``budget_bytes`` and yields each chunk with its
  columns, built in one buffer that only ever grows;
- when the last forward pass fitted in one chunk, the buffer still holds its
  columns, and the backward pass gets them without building them again;
- :meth:`ColumnWorkspace.rows` is a second buffer for the ``(F, n*OH*OW)``
  result of the matrix multiply.

The maths stays in the layer; only this bookkeeping lives here.
"""
import numpy as np

from ..backend import kernels
from ..kernels.reference import conv_output_size

COLS_BUDGET_BYTES = 128 * 2**20
"""Largest column matrix (bytes) one Conv2D builds at once. Bigger batches are
processed in chunks of images, so memory stays bounded whatever the batch."""


class ColumnWorkspace:
    """The column buffer of one convolution (kernel ``KH x KW``, ``stride``, ``padding``).

    Attributes
    ----------
    cols_nbytes : int
        Bytes of the largest column matrix built for the last forward pass
        (what :func:`numcnn.profiler.profile` reports).
    """

    def __init__(self, KH, KW, stride, padding):
        self.KH, self.KW, self.stride, self.padding = KH, KW, stride, padding
        self._cols = np.empty(0, dtype=np.float32)
        self._rows = np.empty(0, dtype=np.float32)
        self._holds = None          # the batch whose columns the buffer holds, if all of it
        self.cols_nbytes = 0

    def chunk_size(self, x):
        """Images per chunk for the batch ``x`` (N, C, H, W)."""
        N, C, H, W = x.shape
        P = (conv_output_size(H, self.KH, self.stride, self.padding)
             * conv_output_size(W, self.KW, self.stride, self.padding))
        per_image = C * self.KH * self.KW * P * x.dtype.itemsize
        return max(1, min(N, COLS_BUDGET_BYTES // per_image))

    def chunks(self, x, forward=False):
        """Yield ``(images, cols)``: a slice of the batch and ``im2col(x[images])``.

        ``cols`` has shape ``(C*KH*KW, n*OH*OW)`` and lives in the shared buffer,
        valid until the next chunk. ``forward=True`` marks a forward pass (its
        columns are kept for the backward pass when one chunk holds them all).
        """
        N = len(x)
        step = self.chunk_size(x)
        if not forward and step >= N and self._holds is x:
            self._holds = None              # the caller may now overwrite the buffer
            yield slice(0, N), self._buffer("_cols", self._cols_shape(x), x.dtype)
            return
        self._holds = None
        if forward:
            self.cols_nbytes = 0
        for n0 in range(0, N, step):
            images = slice(n0, min(N, n0 + step))
            chunk = x[images]
            cols = self._buffer("_cols", self._cols_shape(chunk), x.dtype)
            kernels().im2col(chunk, self.KH, self.KW, self.stride, self.padding, out=cols)
            if forward:
                self.cols_nbytes = max(self.cols_nbytes, cols.nbytes)
            yield images, cols
        if forward and step >= N:
            self._holds = x

    def rows(self, F, columns, dtype):
        """A scratch ``(F, columns)`` array for the result of the matrix multiply."""
        return self._buffer("_rows", (F, columns), dtype)

    def _cols_shape(self, x):
        N, C, H, W = x.shape
        OH = conv_output_size(H, self.KH, self.stride, self.padding)
        OW = conv_output_size(W, self.KW, self.stride, self.padding)
        return (C * self.KH * self.KW, N * OH * OW)

    def _buffer(self, attr, shape, dtype):
        """A view of ``shape`` into a flat buffer that only ever grows."""
        buffer = getattr(self, attr)
        size = shape[0] * shape[1]
        if buffer.dtype != dtype or buffer.size < size:
            buffer = np.empty(size, dtype=dtype)
            setattr(self, attr, buffer)
        return buffer[:size].reshape(shape)
