"""numba-jitted kernels: the fast twins of :mod:`numcnn.kernels.reference`.

Every public function here has the same name, signature and result as its
reference twin (the tests compare them over random shapes). Each is a thin
Python wrapper that allocates the output when none is given and calls a
compiled loop. Only loops live here; matrix multiplies stay in BLAS.

The kernels live in rooms, in :mod:`numcnn.kernels.reference`'s order:

- :mod:`~numcnn.kernels.jit.direct`: convolution by its definition, which on
  the vectors route hands 3x3 convolutions with stride 1 to
  :mod:`~numcnn.kernels.jit.conv3x3` (outputs kept in vector registers, with
  the operations of :mod:`~numcnn.kernels.jit.vectors`);
- :mod:`~numcnn.kernels.jit.columns`: im2col, col2im and the layouts around
  a convolution's matrix multiply;
- :mod:`~numcnn.kernels.jit.pooling`: max pooling;
- :mod:`~numcnn.kernels.jit.normalisation`: BatchNorm, alone or fused with
  the ReLU after it (and with a 2x2 max pool after that);
- :mod:`~numcnn.kernels.jit.elementwise`: ReLU, dropout and Adam's step.

:mod:`~numcnn.kernels.jit.compiling` says how they are compiled (threads, the
disk cache). Parallelism: ``prange`` runs over images (or channels), and no
two iterations ever write the same element, so col2im and the pooling
backward are race-free.
"""
from ..reference import conv_output_size
from .columns import add_channel_bias, channel_sums, col2im, im2col, nchw_from_rows, rows_from_nchw
from .direct import conv2d_direct, conv2d_direct_backward
from .elementwise import (adam_update, dropout_backward, dropout_forward, dropout_mask,
                          relu_backward, relu_forward, uniform_from_seed)
from .normalisation import (batchnorm_backward, batchnorm_forward, batchnorm_inference,
                            batchnorm_relu_backward, batchnorm_relu_forward,
                            batchnorm_relu_inference, batchnorm_relu_maxpool2_backward,
                            batchnorm_relu_maxpool2_forward, batchnorm_relu_maxpool2_inference)
from .pooling import maxpool_backward, maxpool_forward

__all__ = ["conv_output_size", "conv2d_direct", "conv2d_direct_backward", "im2col", "col2im",
           "nchw_from_rows", "rows_from_nchw", "add_channel_bias", "channel_sums",
           "maxpool_forward", "maxpool_backward", "batchnorm_forward", "batchnorm_inference",
           "batchnorm_backward", "batchnorm_relu_forward", "batchnorm_relu_inference",
           "batchnorm_relu_backward", "batchnorm_relu_maxpool2_forward",
           "batchnorm_relu_maxpool2_inference", "batchnorm_relu_maxpool2_backward",
           "relu_forward", "relu_backward", "uniform_from_seed", "dropout_mask", "dropout_forward",
           "dropout_backward", "adam_update"]
