"""SoftmaxCrossEntropy against float64 references computed another way, and the
optimizers against update rules written out by hand in this file.
"""
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.special import softmax as scipy_softmax

from numcnn.losses import SoftmaxCrossEntropy
from numcnn.optim import SGD, Adam, AdamW, Optimizer


# ---------------------------------------------------------------------------
# Loss: a different route to the same numbers
# ---------------------------------------------------------------------------
def reference_loss(logits, labels, class_weights=None, label_smoothing=0.0):
    """Loss and dlogits in float64 via logsumexp, by PyTorch's weighting rule.

    The smoothing term of class k is weighted by w_k, the true-class term by
    w[y_n]; the sum is divided by sum_n w[y_n].
    """
    z = np.asarray(logits, np.float64)
    N, K = z.shape
    w_class = np.ones(K) if class_weights is None else np.asarray(class_weights, np.float64)
    lse = logsumexp(z, axis=1)
    log_p = z - lse[:, None]                               # (N, K)
    w_true = w_class[labels]
    nll = -w_true * log_p[np.arange(N), labels]            # -w_y log p_y
    smooth = -(w_class[None, :] * log_p).sum(axis=1) / K   # -(1/K) sum_k w_k log p_k
    loss = ((1 - label_smoothing) * nll + label_smoothing * smooth).sum() / w_true.sum()
    p = scipy_softmax(z, axis=1)
    grad = np.empty_like(z)
    for n in range(N):                                     # d/dz of each sample's two terms
        onehot = np.eye(K)[labels[n]]
        d_nll = w_true[n] * (p[n] - onehot)
        d_smooth = (w_class.sum() * p[n] - w_class) / K
        grad[n] = (1 - label_smoothing) * d_nll + label_smoothing * d_smooth
    return loss, grad / w_true.sum()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_is_finite_for_huge_logits(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [0.0, 0.0, 1e4]], dtype=dtype)
    labels = np.array([1, 1, 0])
    loss_fn = SoftmaxCrossEntropy()
    loss = loss_fn.forward(logits, labels)
    grad = loss_fn.backward()
    assert np.isfinite(loss)
    assert np.isfinite(grad).all()
    assert grad.dtype == dtype
    expected_loss, expected_grad = reference_loss(logits, labels)
    # Sample 0 pays 2e4, sample 1 nothing, sample 2 pays 1e4.
    assert expected_loss == pytest.approx(3e4 / 3)
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-12)


def test_cross_entropy_matches_logsumexp_reference(rng):
    logits = 3.0 * rng.standard_normal((10, 5))
    labels = rng.integers(0, 5, 10)
    loss_fn = SoftmaxCrossEntropy()
    expected_loss, expected_grad = reference_loss(logits, labels)
    assert loss_fn.forward(logits, labels) == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(loss_fn.backward(), expected_grad, rtol=1e-10, atol=1e-14)
    # The mean of -log p_y, computed naively (fine at this scale).
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert expected_loss == pytest.approx(-np.log(p[np.arange(10), labels]).mean(), rel=1e-12)


def test_cross_entropy_class_weights_give_the_weighted_mean(rng):
    logits = rng.standard_normal((8, 3))
    labels = np.array([0, 0, 1, 2, 2, 2, 1, 0])
    weights = np.array([0.2, 1.0, 3.0])
    per_sample = logsumexp(logits, axis=1) - logits[np.arange(8), labels]
    w = weights[labels]
    expected = (w * per_sample).sum() / w.sum()
    loss_fn = SoftmaxCrossEntropy(class_weights=weights)
    assert loss_fn.forward(logits, labels) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(loss_fn.backward(),
                               reference_loss(logits, labels, weights)[1], rtol=1e-10, atol=1e-14)
    # Equal weights change nothing; weighting differs from the plain mean here.
    assert SoftmaxCrossEntropy(class_weights=[2.0, 2.0, 2.0]).forward(logits, labels) == \
        pytest.approx(per_sample.mean(), rel=1e-12)
    assert abs(expected - per_sample.mean()) > 1e-3


def test_cross_entropy_zero_weight_class_is_ignored(rng):
    logits = rng.standard_normal((6, 3))
    labels = np.array([0, 1, 2, 0, 1, 2])
    weighted = SoftmaxCrossEntropy(class_weights=[1.0, 1.0, 0.0]).forward(logits, labels)
    keep = labels != 2
    assert weighted == pytest.approx(SoftmaxCrossEntropy().forward(logits[keep], labels[keep]),
                                     rel=1e-12)


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_cross_entropy_label_smoothing(rng, eps):
    K = 4
    logits = 2.0 * rng.standard_normal((6, K))
    labels = np.array([0, 1, 2, 3, 0, 2])
    loss_fn = SoftmaxCrossEntropy(label_smoothing=eps)
    loss = loss_fn.forward(logits, labels)
    expected_loss, expected_grad = reference_loss(logits, labels, label_smoothing=eps)
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(loss_fn.backward(), expected_grad, rtol=1e-10, atol=1e-14)
    # Smoothing makes the loss a mixture of the plain loss and the uniform-target loss.
    plain = SoftmaxCrossEntropy().forward(logits, labels)
    uniform = (logsumexp(logits, axis=1) - logits.mean(axis=1)).mean()
    assert loss == pytest.approx((1 - eps) * plain + eps * uniform, rel=1e-12)
    # Gradient rows sum to zero (the target is a distribution).
    np.testing.assert_allclose(loss_fn.backward().sum(axis=1), 0.0, atol=1e-12)


def test_cross_entropy_weights_and_smoothing_together(rng):
    logits = rng.standard_normal((7, 3))
    labels = np.array([0, 1, 2, 2, 1, 0, 2])
    weights = [0.5, 2.0, 1.5]
    loss_fn = SoftmaxCrossEntropy(class_weights=weights, label_smoothing=0.2)
    expected_loss, expected_grad = reference_loss(logits, labels, weights, 0.2)
    assert loss_fn.forward(logits, labels) == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(loss_fn.backward(), expected_grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("labels, error, message", [
    (np.array([0, 1, 3, 2]), ValueError, r"class indices must lie in \[0, 3\); got 3"),
    (np.array([0, -1, 2, 2]), ValueError, r"class indices must lie in \[0, 3\); got -1"),
    (np.array([0.0, 1.0, 2.0, 1.0]), TypeError, r"integer class indices.*got dtype float64"),
    (np.array([0, 1, 2]), ValueError, r"expected shape \(4,\).*got \(3,\)"),
    (np.array([[0], [1], [2], [1]]), ValueError, r"expected shape \(4,\).*got \(4, 1\)"),
    ([0, 1, 2, 1], TypeError, r"NumPy integer array.*got list"),
])
def test_cross_entropy_label_errors(labels, error, message):
    logits = np.zeros((4, 3), np.float32)
    with pytest.raises(error, match="SoftmaxCrossEntropy labels.*" + message):
        SoftmaxCrossEntropy().forward(logits, labels)


def test_cross_entropy_logits_and_option_errors():
    labels = np.array([0, 1])
    with pytest.raises(ValueError, match=r"SoftmaxCrossEntropy expects logits of shape \(N, K\); got \(2, 3, 1\)"):
        SoftmaxCrossEntropy().forward(np.zeros((2, 3, 1)), labels)
    with pytest.raises(TypeError, match="SoftmaxCrossEntropy expects float logits; got dtype int64"):
        SoftmaxCrossEntropy().forward(np.zeros((2, 3), np.int64), labels)
    with pytest.raises(ValueError, match=r"class_weights has shape \(2,\) but the logits have 3 classes"):
        SoftmaxCrossEntropy(class_weights=[1.0, 2.0]).forward(np.zeros((2, 3)), labels)
    with pytest.raises(ValueError, match="label_smoothing"):
        SoftmaxCrossEntropy(label_smoothing=1.0)
    for bad in ([1.0, -1.0], [0.0, 0.0], [1.0, np.nan], [[1.0, 2.0]]):
        with pytest.raises(ValueError, match="class_weights"):
            SoftmaxCrossEntropy(class_weights=bad)


# ---------------------------------------------------------------------------
# Optimizers against hand-written updates
# ---------------------------------------------------------------------------
def gradients(params, step):
    """A deterministic, parameter-dependent gradient (a quadratic bowl plus a drift)."""
    return {key: 0.5 * p + np.sin(np.arange(p.size).reshape(p.shape) + step)
            for key, p in params.items()}


def initial_params():
    rng = np.random.default_rng(42)
    return {"0.W": rng.standard_normal((3, 4)), "0.b": rng.standard_normal(4),
            "2.gamma": rng.standard_normal(5)}


def run(optimizer, steps):
    params = initial_params()
    for t in range(steps):
        grads = gradients(params, t)
        optimizer.step([(key, params[key], grads[key]) for key in params])
    return params


def hand_sgd(lr, momentum, nesterov, weight_decay, steps):
    params = initial_params()
    velocity = {key: np.zeros_like(p) for key, p in params.items()}
    for t in range(steps):
        grads = gradients(params, t)
        for key, p in params.items():
            g = grads[key] + weight_decay * p
            if momentum:
                velocity[key] = momentum * velocity[key] + g
                g = g + momentum * velocity[key] if nesterov else velocity[key]
            params[key] = p - lr * g
    return params


def hand_adam(lr, b1, b2, eps, weight_decay, steps, decoupled):
    """Adam's update; the decay is an L2 penalty in the gradient (Adam) or a shrinking
    of the weights before the step (``decoupled``: AdamW)."""
    params = initial_params()
    m = {key: np.zeros_like(p) for key, p in params.items()}
    v = {key: np.zeros_like(p) for key, p in params.items()}
    for t in range(1, steps + 1):
        grads = gradients(params, t - 1)
        for key, p in params.items():
            g = grads[key]
            if decoupled:
                p = p * (1 - lr * weight_decay)             # decoupled decay (AdamW)
            else:
                g = g + weight_decay * p                    # coupled decay: L2 penalty (Adam)
            m[key] = b1 * m[key] + (1 - b1) * g
            v[key] = b2 * v[key] + (1 - b2) * g * g
            m_hat = m[key] / (1 - b1 ** t)
            v_hat = v[key] / (1 - b2 ** t)
            params[key] = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return params


@pytest.mark.parametrize("momentum, nesterov, weight_decay", [
    (0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 0.0), (0.0, False, 0.01),
    (0.8, True, 0.05), (0.5, False, 0.1)])
def test_sgd_matches_hand_written_update(momentum, nesterov, weight_decay):
    lr, steps = 0.05, 6
    got = run(SGD(lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay), steps)
    expected = hand_sgd(lr, momentum, nesterov, weight_decay, steps)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-12, atol=1e-12)


def test_sgd_variants_really_differ():
    plain = run(SGD(0.05), 4)
    for other in (SGD(0.05, momentum=0.9), SGD(0.05, momentum=0.9, nesterov=True),
                  SGD(0.05, weight_decay=0.1)):
        assert np.abs(run(other, 4)["0.W"] - plain["0.W"]).max() > 1e-3


ADAM_CASES = [(1e-3, (0.9, 0.999), 1e-8, 0.0), (1e-2, (0.8, 0.99), 1e-6, 0.0),
              (1e-2, (0.9, 0.999), 1e-8, 0.1), (5e-3, (0.5, 0.9), 1e-7, 0.01)]


@pytest.mark.parametrize("lr, betas, eps, weight_decay", ADAM_CASES)
def test_adam_matches_hand_written_update(lr, betas, eps, weight_decay):
    steps = 7
    got = run(Adam(lr, betas=betas, eps=eps, weight_decay=weight_decay), steps)
    expected = hand_adam(lr, betas[0], betas[1], eps, weight_decay, steps, decoupled=False)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lr, betas, eps, weight_decay", ADAM_CASES)
def test_adamw_matches_hand_written_update(lr, betas, eps, weight_decay):
    steps = 7
    got = run(AdamW(lr, betas=betas, eps=eps, weight_decay=weight_decay), steps)
    expected = hand_adam(lr, betas[0], betas[1], eps, weight_decay, steps, decoupled=True)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-12, atol=1e-12)


def test_adam_and_adamw_differ_only_by_where_the_decay_goes():
    same = run(Adam(1e-2), 5), run(AdamW(1e-2, weight_decay=0.0), 5)
    for key in same[0]:
        np.testing.assert_array_equal(same[0][key], same[1][key])
    coupled, decoupled = run(Adam(1e-2, weight_decay=0.1), 5), run(AdamW(1e-2, weight_decay=0.1), 5)
    assert np.abs(coupled["0.W"] - decoupled["0.W"]).max() > 1e-4
    assert AdamW().weight_decay == 0.01 and Adam().weight_decay == 0.0   # PyTorch's defaults
    assert issubclass(AdamW, Adam)


def test_adam_first_step_moves_each_weight_by_about_lr():
    """With bias correction the first Adam step is lr * g / (|g| + eps) = lr * sign(g)."""
    params = initial_params()
    before = {k: v.copy() for k, v in params.items()}
    grads = gradients(params, 0)
    Adam(0.01).step([(k, params[k], grads[k]) for k in params])
    for key in params:
        np.testing.assert_allclose(before[key] - params[key], 0.01 * np.sign(grads[key]), rtol=1e-5)


def test_optimizer_keeps_parameter_dtype_and_updates_in_place():
    param = np.ones(3, np.float32)
    alias = param
    SGD(0.1, momentum=0.9).step([("0.W", param, np.array([1.0, 2.0, 3.0]))])  # float64 gradient
    assert param is alias and param.dtype == np.float32
    np.testing.assert_allclose(param, [0.9, 0.8, 0.7], rtol=1e-6)


@pytest.mark.parametrize("make", [
    lambda: SGD(0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda: Adam(0.01, weight_decay=0.05),
    lambda: AdamW(0.01, weight_decay=0.05),
], ids=["sgd", "adam", "adamw"])
def test_optimizer_state_round_trip(make):
    original = make()
    params = run(original, 3)
    twin_params = {k: v.copy() for k, v in params.items()}
    arrays = original.state_arrays()
    assert int(arrays["iterations"]) == 3
    assert all(isinstance(v, np.ndarray) for v in arrays.values())
    restored = make()
    restored.load_state_arrays({k: np.array(v) for k, v in arrays.items()})
    assert restored.iterations == 3
    assert set(restored.state) == set(original.state) == set(params)
    for t in range(3, 6):
        for opt, ps in ((original, params), (restored, twin_params)):
            grads = gradients(ps, t)
            opt.step([(k, ps[k], grads[k]) for k in ps])
    for key in params:
        np.testing.assert_array_equal(twin_params[key], params[key])
    # A fresh optimizer (no state) would have taken different steps.
    fresh_params = {k: v.copy() for k, v in run(make(), 3).items()}
    fresh = make()
    for t in range(3, 6):
        grads = gradients(fresh_params, t)
        fresh.step([(k, fresh_params[k], grads[k]) for k in fresh_params])
    assert np.abs(fresh_params["0.W"] - params["0.W"]).max() > 1e-6


def test_optimizer_errors():
    with pytest.raises(ValueError, match="SGD: lr must be a finite number > 0; got 0.0"):
        SGD(0.0)
    for bad in (float("nan"), float("inf"), -0.1):
        with pytest.raises(ValueError, match="AdamW: lr must be a finite number > 0"):
            AdamW(bad)
    with pytest.raises(ValueError, match="nesterov=True needs a momentum"):
        SGD(0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"Adam: betas\[0\] must be a number in \[0, 1\)"):
        Adam(betas=(1.0, 0.999))
    with pytest.raises(TypeError, match=r"AdamW: betas must be a pair"):
        AdamW(betas=0.9)
    with pytest.raises(ValueError, match="Adam: weight_decay must be a finite number >= 0"):
        Adam(weight_decay=-0.1)
    with pytest.raises(ValueError, match=r"gradient of 0.W has shape \(2,\), parameter has \(3,\)"):
        SGD(0.1).step([("0.W", np.zeros(3), np.zeros(2))])


@pytest.mark.parametrize("make", [lambda: SGD(0.1), lambda: Adam(1e-3), lambda: AdamW(1e-3)],
                         ids=["sgd", "adam", "adamw"])
def test_learning_rate_assignment_is_checked(make):
    optimizer = make()
    name = type(optimizer).__name__
    for bad in (float("nan"), float("inf"), -float("inf"), -1e-4, "0.1", None, True):
        with pytest.raises(ValueError, match=rf"{name}: lr must be a finite number >= 0"):
            optimizer.lr = bad
    assert optimizer.lr == optimizer.config()["lr"] > 0      # unchanged by the refusals
    optimizer.lr = 0                                          # a schedule may reach 0
    assert optimizer.lr == 0.0 and isinstance(optimizer.lr, float)
    optimizer.lr = np.float32(0.5)
    assert optimizer.lr == 0.5 and type(optimizer.lr) is float
    assert isinstance(optimizer, Optimizer)
