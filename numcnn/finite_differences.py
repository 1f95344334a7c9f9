"""Finite-difference gradient checks, the proof that every backward is right.

Public as ``numcnn.gradcheck``, ``numcnn.gradcheck_loss`` and
``numcnn.numerical_gradient``.
"""
import numpy as np


def numerical_gradient(f, array, h=1e-5):
    """Central differences ``(f(a + h) - f(a - h)) / 2h`` for every entry of ``array``.

    ``f`` takes no argument and reads ``array``, which is perturbed in place and
    restored.
    """
    grad = np.zeros_like(array, dtype=np.float64)
    flat, flat_grad = array.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + h
        plus = f()
        flat[i] = original - h
        minus = f()
        flat[i] = original
        flat_grad[i] = (plus - minus) / (2 * h)
    return grad


def relative_error(analytic, numeric):
    """Worst ``|a - n| / max(|a| + |n|, tiny)`` over all entries, scaled to the largest gradient.

    Entries whose gradients are both tiny compared with the largest one are
    measured against that largest one, so round-off on near-zero entries does
    not read as a failure.
    """
    analytic, numeric = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    scale = max(np.abs(analytic).max(initial=0), np.abs(numeric).max(initial=0), 1e-12)
    denominator = np.maximum(np.abs(analytic) + np.abs(numeric), 1e-3 * scale)
    return float((np.abs(analytic - numeric) / denominator).max(initial=0.0))


def gradcheck(layer, x, training=True, seed=0, h=1e-5, dy=None):
    """Compare a layer's backward with finite differences, in float64.

    The scalar checked is ``sum(forward(x) * dy)`` with a *random* upstream
    gradient ``dy`` (checking ``sum(forward(x))`` would make BatchNorm's input
    gradient vanish by construction and prove nothing).

    Parameters
    ----------
    layer : Layer
        Its parameters are switched to float64 for the check, then restored.
    x : ndarray
        Input (cast to float64).
    training : bool
        Mode of the forward pass. Random layers (Dropout) are re-seeded before
        every forward so that the same mask is used throughout.
    seed : int
        Seeds ``dy`` and any random layer.
    h : float
        Finite-difference step.

    Returns
    -------
    dict
        Worst relative error for ``"x"`` and for every parameter name.
    """
    rng = np.random.default_rng((seed, 7))  # not the stream default_rng(seed) gives a user's x
    x = np.array(x, dtype=np.float64)
    originals = dict(layer.params)
    saved_buffers = {k: v.copy() for k, v in layer.buffers.items()}
    layer.params = {k: v.astype(np.float64) for k, v in originals.items()}
    has_rng = hasattr(layer, "rng")
    original_rng = getattr(layer, "rng", None)

    def forward():
        if has_rng:
            layer.rng = np.random.default_rng(seed + 1)
        layer.buffers.update({k: v.copy() for k, v in saved_buffers.items()})
        return layer.forward(x, training=training)

    try:
        y = forward()
        upstream = rng.standard_normal(y.shape) if dy is None else np.asarray(dy, np.float64)
        dx = layer.backward(upstream)
        analytic = {"x": dx, **{k: np.array(g, dtype=np.float64) for k, g in layer.grads.items()}}
        objective = lambda: float((forward() * upstream).sum())  # noqa: E731
        errors = {"x": relative_error(analytic["x"], numerical_gradient(objective, x, h))}
        for name, param in layer.params.items():
            errors[name] = relative_error(analytic[name], numerical_gradient(objective, param, h))
    finally:
        layer.params = originals
        layer.buffers.update(saved_buffers)
        if has_rng:
            layer.rng = original_rng
    return errors


def gradcheck_loss(loss, logits, labels, h=1e-5):
    """Worst relative error of ``loss.backward()`` against finite differences of ``loss.forward``."""
    logits = np.array(logits, dtype=np.float64)
    loss.forward(logits, labels)
    analytic = loss.backward()
    numeric = numerical_gradient(lambda: loss.forward(logits, labels), logits, h)
    return relative_error(analytic, numeric)
