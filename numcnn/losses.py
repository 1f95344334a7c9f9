"""Softmax cross-entropy, fused with the softmax so that it is stable and cheap."""
import numpy as np

from .validation import class_labels, fraction


def log_softmax(logits):
    """``log softmax`` along axis 1, computed as ``z - max z - log sum exp(z - max z)``.

    Subtracting the row maximum makes the largest exponent ``exp(0) = 1``, so
    nothing overflows and the sum is at least 1, so its log is finite: logits of
    any size give finite values.
    """
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def check_labels(labels, n, num_classes, where="labels"):
    """Raise a clear error unless ``labels`` are n integers in [0, num_classes)."""
    class_labels(labels, n, num_classes, where)


class Loss:
    """Base class of the losses: ``forward(logits, labels) -> float``, ``backward() -> dlogits``.

    A loss takes the model's logits (its last layer's output), never
    probabilities.
    """

    def forward(self, logits, labels):
        """The mean loss of a batch: logits (N, K) float, labels (N,) int -> float."""
        raise NotImplementedError

    def backward(self):
        """The gradient of the last ``forward``'s loss w.r.t. its logits, (N, K)."""
        raise NotImplementedError

    def config(self):
        """Constructor arguments, enough to rebuild the loss (for save/load)."""
        return {}


class SoftmaxCrossEntropy(Loss):
    """Mean cross-entropy of softmax(logits) against integer labels.

    Parameters
    ----------
    class_weights : array-like of shape (K,), optional
        Weight of each class, for imbalanced data (see Notes).
    label_smoothing : float
        ``eps`` in [0, 1): the target is ``(1 - eps) * onehot + eps / K``.

    Notes
    -----
    With ``p = softmax(z)`` and target distribution ``t``, the loss of one
    sample is ``l = -sum_k t_k log p_k`` and its gradient is simply
    ``dl/dz = p - t`` (because ``sum_k t_k = 1``): fusing softmax with the loss
    avoids the unstable ``log(softmax)`` and the softmax Jacobian.

    With class weights ``w`` the rule is PyTorch's: each term ``t_k log p_k``
    is weighted by its own class, ``c_k = w_k t_k``, and the batch loss is
    ``sum_n sum_k -c_nk log p_nk / sum_n w[y_n]``; its gradient is
    ``(p * sum_k c_k - c) / sum_n w[y_n]``. Without smoothing this is the
    weighted mean ``sum_n w[y_n] l_n / sum_n w[y_n]``.

    ``forward(logits, labels)`` with logits (N, K) float and labels (N,) int
    returns a float; ``backward()`` returns dlogits (N, K).
    """

    def __init__(self, class_weights=None, label_smoothing=0.0):
        fraction(label_smoothing, "label_smoothing", "SoftmaxCrossEntropy")
        if class_weights is not None:
            class_weights = np.asarray(class_weights, dtype=np.float64)
            if class_weights.ndim != 1 or not np.all(np.isfinite(class_weights)) \
                    or np.any(class_weights < 0) or not class_weights.sum() > 0:
                raise ValueError("SoftmaxCrossEntropy: class_weights must be a 1-D array of "
                                 f"finite, non-negative numbers, not all zero; got {class_weights}")
        self.class_weights = class_weights
        self.label_smoothing = float(label_smoothing)

    def config(self):
        weights = None if self.class_weights is None else self.class_weights.tolist()
        return dict(class_weights=weights, label_smoothing=self.label_smoothing)

    def forward(self, logits, labels):
        if not isinstance(logits, np.ndarray) or logits.ndim != 2:
            shape = getattr(logits, "shape", type(logits).__name__)
            raise ValueError(f"SoftmaxCrossEntropy expects logits of shape (N, K); got {shape}")
        if not np.issubdtype(logits.dtype, np.floating):
            raise TypeError(f"SoftmaxCrossEntropy expects float logits; got dtype {logits.dtype}")
        N, K = logits.shape
        check_labels(labels, N, K, where="SoftmaxCrossEntropy labels")
        if self.class_weights is not None and self.class_weights.shape != (K,):
            raise ValueError(f"SoftmaxCrossEntropy: class_weights has shape "
                             f"{self.class_weights.shape} but the logits have {K} classes")
        logp = log_softmax(logits.astype(np.float64))               # (N, K)
        target = np.full((N, K), self.label_smoothing / K)
        target[np.arange(N), labels] += 1.0 - self.label_smoothing   # (N, K)
        if self.class_weights is None:
            coefficients, norm = target, float(N)
        else:
            coefficients = target * self.class_weights[None, :]     # (N, K)
            norm = float(self.class_weights[labels].sum())
            if norm == 0:
                raise ValueError("SoftmaxCrossEntropy: every sample of this batch has "
                                 "class weight 0")
        self._cache = (np.exp(logp), coefficients, norm, logits.dtype)
        return float(-(coefficients * logp).sum() / norm)

    def backward(self):
        probs, coefficients, norm, dtype = self._cache
        grad = probs * coefficients.sum(axis=1, keepdims=True) - coefficients
        return (grad / norm).astype(dtype)                           # (N, K)
