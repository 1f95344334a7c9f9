"""Inverted dropout."""
import numbers


from ..backend import kernels
from .base import Layer, as_generator


class Dropout(Layer):
    """Randomly zero a fraction ``p`` of the units while training.

    Parameters
    ----------
    p : float
        Drop probability, ``0 <= p < 1``.
    rng : Generator or int, optional
        Source of the masks; a model hands every Dropout its own Generator.

    Shapes
    ------
    Any shape in, the same shape out.

    Notes
    -----
    *Inverted* dropout scales at training time so that evaluation is the
    identity: with ``u ~ Uniform[0, 1)`` per unit,
    ``mask = [u >= p] / (1 - p)``, ``y = x * mask`` and ``dx = dy * mask``.
    The expected value of ``y`` equals ``x``, so nothing changes at test time.

    The uniform numbers: each forward pass draws one 64-bit seed from the
    layer's Generator, and the kernel computes ``u`` for every unit from it
    (:func:`numcnn.kernels.reference.uniform_from_seed`, the SplitMix64
    sequence), without drawing or storing millions of numbers one by one.
    The layer keeps only the seed: the backward pass makes the same mask
    again from it (:func:`numcnn.kernels.reference.dropout_mask`) instead
    of storing a mask as large as the input.

    Which code runs it, one layer at a time and in the plan alike:
    :func:`numcnn.kernels.reference.dropout_forward` and ``dropout_backward``,
    or their twins in :mod:`numcnn.kernels.jit.elementwise` on ``"numba"``
    (the same masks, bit for bit).
    """

    def __init__(self, p, rng=None):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, numbers.Real):
            raise TypeError(f"Dropout: p must be a number in [0, 1); got {p!r}")
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1); got {p!r}")
        self.p = float(p)
        self.rng = as_generator(rng)

    def build(self, rng):
        self.rng = rng

    def config(self):
        return dict(p=self.p)

    def _forward(self, x, training):
        if not training or self.p == 0.0:
            self._seed = None
            return x
        self._seed = self.rng.integers(0, 2**63)   # one draw: the kernel makes the uniforms
        return kernels().dropout_forward(x, self._seed, self.p)

    def _backward(self, dy, input_grad=True):
        if self._seed is None:
            return dy
        return kernels().dropout_backward(dy, self._seed, self.p)   # the same mask, made again
