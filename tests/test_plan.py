"""The fused plan computes what the layers compute, one by one, to float32 rounding.

Training, ``evaluate`` and ``predict`` run ``numcnn.plan``'s steps (fused on the
numba backend); ``Sequential.forward`` runs the layers one by one. Here both
paths see the same weights, inputs and random numbers.
"""
import numpy as np
import pytest

import numcnn
from numcnn.layers import (BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D,
                           ReLU)
from numcnn.losses import SoftmaxCrossEntropy
from numcnn.optim import AdamW
from numcnn.plan import (BatchNormReLUMaxPoolStep, BatchNormReLUStep, ConvolutionStep,
                         DirectConvolutionStep, LayerStep, build_plan)


def small_network(seed=0, kernel=3):
    """Two convolution blocks: 3x3 kernels run the direct step on the vectors route, 5x5
    ones (and 3x3 ones on the portable route) the im2col step; then BatchNorm-ReLU."""
    pad = kernel // 2
    return numcnn.Sequential([
        Conv2D(3, 8, kernel, padding=pad), BatchNorm2D(8), ReLU(), MaxPool2D(2), Dropout(0.3),
        Conv2D(8, 16, kernel, padding=pad), BatchNorm2D(16), ReLU(), MaxPool2D(2), Dropout(0.3),
        Flatten(), Dense(16 * 4 * 4, 12), BatchNorm1D(12), ReLU(), Dense(12, 3),
    ], seed=seed, input_shape=(3, 16, 16))


def assert_same_gradients(fused, plain, atol):
    """Every layer's ``grads`` of two models of the same layers, to float32 rounding."""
    for a, b in zip(fused.layers, plain.layers):
        for name in a.grads:
            np.testing.assert_allclose(a.grads[name], b.grads[name], rtol=1e-3, atol=atol,
                                       err_msg=f"{a.name}.{name}")


#: Every test of the plan runs on both kinds of convolution step.
KERNELS = pytest.mark.parametrize("kernel", [3, 5], ids=["direct-3x3", "im2col-5x5"])


def test_the_numba_plan_fuses_convolution_blocks_and_batchnorm_relu():
    with numcnn.use_backend("numba"):
        plan = build_plan(small_network(kernel=5).layers)
        direct = build_plan(small_network(kernel=3).layers)
        lone = build_plan([Conv2D(3, 4, 3, stride=2), ReLU(), Flatten()])
        lone_direct = build_plan([Conv2D(3, 4, 3), ReLU(), Flatten()])
    kinds = [type(step) for step in plan.steps]
    assert kinds == [ConvolutionStep, BatchNormReLUMaxPoolStep, LayerStep,
                     ConvolutionStep, BatchNormReLUMaxPoolStep, LayerStep,
                     LayerStep, LayerStep, BatchNormReLUStep, LayerStep]
    assert [len(step.layers) for step in plan.steps] == [1, 3, 1, 1, 3, 1, 1, 1, 2, 1]
    assert sum(len(step.layers) for step in plan.steps) == 15
    if numcnn.route() == "vectors":                # 3x3 stride 1: the direct kernels
        assert [type(step) for step in direct.steps] == [
            DirectConvolutionStep, BatchNormReLUMaxPoolStep, LayerStep,
            DirectConvolutionStep, BatchNormReLUMaxPoolStep, LayerStep,
            LayerStep, LayerStep, BatchNormReLUStep, LayerStep]
        assert [type(step) for step in lone_direct.steps] == [DirectConvolutionStep, LayerStep,
                                                              LayerStep]
    else:                                           # the portable route: im2col, as for 5x5
        assert [type(step) for step in direct.steps] == kinds
        assert [type(step) for step in lone_direct.steps] == [ConvolutionStep, LayerStep,
                                                              LayerStep]
    assert sum(len(step.layers) for step in direct.steps) == 15
    assert [type(step) for step in lone.steps] == [ConvolutionStep, LayerStep, LayerStep]
    with numcnn.use_backend("numpy"):                             # the readable kernels: unfused
        for kernel in (3, 5):
            steps = build_plan(small_network(kernel=kernel).layers).steps
            assert all(type(step) is LayerStep for step in steps)


@KERNELS
@pytest.mark.parametrize("training", [True, False])
def test_plan_and_layers_agree_forward_and_backward(rng, training, kernel):
    x = rng.standard_normal((6, 3, 16, 16)).astype(np.float32)
    fused, plain = small_network(kernel=kernel), small_network(kernel=kernel)
    dy = rng.standard_normal((6, 3)).astype(np.float32)
    with numcnn.use_backend("numba"):
        out_fused = build_plan(fused.layers).forward(x, training)
        out_plain = plain.forward(x, training)
        np.testing.assert_allclose(out_fused, out_plain, rtol=1e-4, atol=1e-5)
        for a, b in zip(fused.layers, plain.layers):                 # running statistics
            for name in a.buffers:
                np.testing.assert_allclose(a.buffers[name], b.buffers[name], rtol=1e-5, atol=1e-6)
        if training:
            plan = build_plan(fused.layers)
            plan.forward(x, True)
            plain.forward(x, True)
            plan.backward(dy)
            plain.backward(dy)
            assert_same_gradients(fused, plain, atol=1e-4)


@KERNELS
def test_training_runs_the_plan_and_matches_layer_by_layer_training(rng, kernel):
    x = rng.standard_normal((40, 3, 16, 16)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    models = []
    for fuse in (True, False):
        model = small_network(kernel=kernel).compile(AdamW(1e-3), SoftmaxCrossEntropy())
        with numcnn.use_backend("numba"):
            model._plan = None
            if not fuse:                  # the same training, each layer on its own
                import numcnn.plan as plan_module
                model.plan = lambda m=model: plan_module.build_plan(m.layers, fuse=False)
            model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        models.append(model)
    fused, plain = models
    assert fused.history.history["loss"] == pytest.approx(plain.history.history["loss"], rel=1e-4)
    # A convolution's bias right before a BatchNorm has, exactly, a zero gradient (the
    # normalisation removes any constant); AdamW turns the rounding noise in it into
    # full-size steps, so those biases wander differently on the two paths. Nothing
    # downstream depends on them: every other weight and the predictions agree.
    from numcnn.layers import BatchNorm
    before_batchnorm = {f"{i}.b" for i, layer in enumerate(fused.layers[:-1])
                        if isinstance(fused.layers[i + 1], BatchNorm)}
    assert before_batchnorm == {"0.b", "5.b", "11.b"}
    for (key, a, _), (_, b, _) in zip(fused.param_slots(), plain.param_slots()):
        if key not in before_batchnorm:
            np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4, err_msg=key)
    with numcnn.use_backend("numba"):
        np.testing.assert_allclose(fused.predict(x), plain.predict(x), atol=2e-3)


def test_the_direct_step_checks_the_input_like_the_layer(rng):
    with numcnn.use_backend("numba"):
        step = DirectConvolutionStep(small_network(kernel=3).layers[0])     # on any route
        with pytest.raises(ValueError, match="channel"):
            step.forward(rng.standard_normal((2, 4, 16, 16)).astype(np.float32), True)


def pooling_block(pool, size):
    """A convolution, BatchNorm-ReLU, a max pool, then a Dense head, for inputs ``size``."""
    features = int(np.prod(pool.output_shape((4,) + size)))
    return numcnn.Sequential([Conv2D(3, 4, 3, padding=1), BatchNorm2D(4), ReLU(), pool, Flatten(),
                              Dense(features, 3)], seed=1, input_shape=(3,) + size)


@pytest.mark.parametrize("size", [(8, 8), (9, 11), (2, 3)], ids=["even", "odd", "one-window-row"])
def test_the_pooling_step_and_the_layers_agree_on_any_size(rng, size):
    """BatchNorm-ReLU and a 2x2 max pool are one step; on odd sizes the last row or column,
    which no window covers, still gets BatchNorm's gradient."""
    x = rng.standard_normal((5,) + (3,) + size).astype(np.float32)
    dy = rng.standard_normal((5, 3)).astype(np.float32)
    fused, plain = pooling_block(MaxPool2D(2), size), pooling_block(MaxPool2D(2), size)
    with numcnn.use_backend("numba"):
        plan = build_plan(fused.layers)
        assert BatchNormReLUMaxPoolStep in [type(step) for step in plan.steps]
        np.testing.assert_allclose(plan.forward(x, True), plain.forward(x, True), rtol=1e-5,
                                   atol=1e-6)
        plan.backward(dy)
        plain.backward(dy)
        assert_same_gradients(fused, plain, atol=1e-5)
        np.testing.assert_allclose(plan.forward(x, False), plain.forward(x, False), rtol=1e-5,
                                   atol=1e-6)


def test_only_2x2_pools_with_stride_2_join_the_fused_step():
    with numcnn.use_backend("numba"):
        for pool in (MaxPool2D(3), MaxPool2D(2, stride=1)):
            kinds = [type(step) for step in build_plan(pooling_block(pool, (9, 9)).layers).steps]
            assert BatchNormReLUMaxPoolStep not in kinds and BatchNormReLUStep in kinds


def test_the_pooling_step_checks_its_input_and_its_mode(rng):
    with numcnn.use_backend("numba"):
        step = BatchNormReLUMaxPoolStep(BatchNorm2D(4), ReLU(), MaxPool2D(2))
        with pytest.raises(ValueError, match="smaller than the 2x2 window"):
            step.forward(rng.standard_normal((2, 4, 1, 6)).astype(np.float32), True)
        step.forward(rng.standard_normal((2, 4, 4, 6)).astype(np.float32), False)
        with pytest.raises(RuntimeError, match="training pass"):
            step.backward(np.ones((2, 4, 2, 3), np.float32), True)


@KERNELS
def test_the_fused_step_goes_backward_only_after_training(rng, kernel):
    with numcnn.use_backend("numba"):
        plan = build_plan(small_network(kernel=kernel).layers)
        plan.forward(rng.standard_normal((2, 3, 16, 16)).astype(np.float32), False)
        with pytest.raises(RuntimeError, match="training pass"):
            plan.backward(np.ones((2, 3), np.float32))


@KERNELS
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_backward_lets_go_of_every_activation(rng, kernel, backend):
    """Once the plan's backward pass is through, no step and no layer holds an activation
    (each let go as soon as its gradients were made), and a second backward is refused."""
    model = small_network(kernel=kernel)
    x = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    dy = rng.standard_normal((4, 3)).astype(np.float32)
    with numcnn.use_backend(backend):
        plan = build_plan(model.layers)
        plan.forward(x, True)
        holders = list(plan.steps) + list(model.layers)
        held = [getattr(owner, name, None) for owner in holders for name in owner.saved]
        assert sum(isinstance(array, np.ndarray) for array in held) >= 8
        plan.backward(dy)
        assert [(owner, name) for owner in holders for name in owner.saved
                if getattr(owner, name, None) is not None] == []
        with pytest.raises(RuntimeError, match="forward before backward"):
            model.layers[-1].backward(dy)


@KERNELS
def test_training_is_still_deterministic_with_the_plan(rng, kernel):
    x = rng.standard_normal((24, 3, 16, 16)).astype(np.float32)
    y = rng.integers(0, 3, 24)
    runs = []
    for _ in range(2):
        model = small_network(kernel=kernel).compile(AdamW(1e-3), SoftmaxCrossEntropy())
        model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        runs.append(model.state_dict())
    assert all(np.array_equal(runs[0][k], runs[1][k]) for k in runs[0])
