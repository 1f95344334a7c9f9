"""Weight initialisers.

He (Kaiming) normal keeps the variance of ReLU activations steady from layer
to layer: ``std = sqrt(2 / fan_in)`` (He et al., 2015). Glorot (Xavier)
uniform does the same for symmetric activations:
``limit = sqrt(6 / (fan_in + fan_out))`` (Glorot and Bengio, 2010).
``fan_in`` counts the inputs of one output unit: ``C * KH * KW`` for a
convolution, ``in_features`` for a dense layer.
"""
import numpy as np


def he_normal(rng, shape, fan_in, dtype=np.float32):
    """Normal(0, 2 / fan_in) samples of the given shape."""
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


def glorot_uniform(rng, shape, fan_in, fan_out, dtype=np.float32):
    """Uniform(-limit, limit) samples, ``limit = sqrt(6 / (fan_in + fan_out))``."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


INITIALISERS = ("he", "glorot")
