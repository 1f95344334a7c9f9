"""The route: which kernels the numba backend runs, chosen in one place (numcnn.routes).

``tests/routes.py`` runs these tests, with the kernel, plan and model tests,
once per route and processor numba compiles for, each in a process of its own
with an empty numba cache; it sets ``NUMCNN_EXPECTED_ROUTE`` so that the first
test here asserts which route ran.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import numcnn
from numcnn import routes
from numcnn.layers import BatchNorm2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU
from numcnn.plan import ConvolutionStep, DirectConvolutionStep

REPO_ROOT = Path(__file__).resolve().parent.parent


def network(seed=0):
    return numcnn.Sequential([Conv2D(3, 8, 3, padding=1), BatchNorm2D(8), ReLU(), MaxPool2D(2),
                              Flatten(), Dense(8 * 5 * 6, 3)], seed=seed, input_shape=(3, 10, 12))


def run_python(code, tmp_path, **env):
    """``code`` in a fresh Python with an empty numba cache; its stdout (checked)."""
    environment = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"),
                       PYTHONPATH=str(REPO_ROOT), **env)
    for name, value in env.items():
        if value is None:
            del environment[name]
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=environment,
                         cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout, run.stderr


def test_the_route_in_force_is_the_one_expected_and_the_plan_follows_it():
    """auto: vectors on x86-64 with AVX2 and FMA or AVX-512, else portable; a forced
    route is kept. tests/routes.py says which route each of its runs expects."""
    target = routes.compile_target()
    expected = os.environ.get("NUMCNN_EXPECTED_ROUTE")
    if expected is None:
        chosen = routes.chosen_route()
        expected = chosen if chosen != "auto" else (
            "vectors" if routes.vectors_tested_on(target) else "portable")
    assert numcnn.route() == expected
    steps = {type(step) for step in network().plan().steps}
    if expected == "vectors":
        assert DirectConvolutionStep in steps and ConvolutionStep not in steps
    else:
        assert DirectConvolutionStep not in steps and ConvolutionStep in steps


def test_auto_takes_the_vectors_only_where_they_are_tested():
    x86 = dict(arch="x86_64", cpu="x", jit=True)
    assert routes.vectors_tested_on(dict(x86, features=frozenset({"avx2", "fma"})))
    assert routes.vectors_tested_on(dict(x86, features=frozenset({"avx512f"})))
    assert not routes.vectors_tested_on(dict(x86, features=frozenset({"avx2"})))      # no FMA
    assert not routes.vectors_tested_on(dict(x86, features=frozenset({"sse4.2", "avx"})))
    assert not routes.vectors_tested_on(dict(x86, features=frozenset()))
    assert not routes.vectors_tested_on(dict(x86, features=frozenset({"avx2", "fma"}), jit=False))
    assert not routes.vectors_tested_on(dict(arch="aarch64", cpu="apple-m1", jit=True,
                                             features=frozenset({"neon", "fma"})))


@pytest.fixture
def route_kept():
    """Whatever a test sets, the route of this process afterwards is what it was."""
    saved = dict(routes._state)
    yield
    routes._state.clear()
    routes._state.update(saved)


def test_set_route_forces_a_route_and_the_models_replan(route_kept):
    model = network()
    assert numcnn.set_route("portable") == "portable"
    assert not any(isinstance(step, DirectConvolutionStep) for step in model.plan().steps)
    if routes.fallback_reason() is None:
        assert numcnn.set_route("vectors") == "vectors"
        assert any(isinstance(step, DirectConvolutionStep) for step in model.plan().steps)
    with pytest.raises(ValueError, match="unknown route 'fast'"):
        numcnn.set_route("fast")


def test_both_routes_train_to_the_same_weights(rng, route_kept):
    """The same model, data and seed on each route: the same weights to float32 rounding.

    (SGD: Adam would scale the rounding noise of the bias gradient of a convolution
    followed by BatchNorm, zero by the maths, up to steps of the learning rate's size.)"""
    x = rng.standard_normal((24, 3, 10, 12)).astype(np.float32)
    y = np.arange(24) % 3
    weights = {}
    for name in ("vectors", "portable"):
        numcnn.set_route(name)
        model = network(seed=3)
        model.compile(numcnn.optim.SGD(0.05, momentum=0.9), numcnn.losses.SoftmaxCrossEntropy())
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
        weights[numcnn.route()] = model.get_weights()
    if len(weights) < 2:
        pytest.skip("the vector kernels fell back to the portable route in this process")
    for a, b in zip(weights["vectors"], weights["portable"]):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


@pytest.mark.subprocess
def test_an_unknown_route_in_the_environment_is_a_clear_error(tmp_path):
    run = subprocess.run([sys.executable, "-c", "import numcnn; numcnn.route()"],
                         env=dict(os.environ, NUMCNN_ROUTE="turbo", PYTHONPATH=str(REPO_ROOT)),
                         cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 1
    assert "NUMCNN_ROUTE='turbo' names no route; use auto, vectors or portable" in run.stderr


@pytest.mark.subprocess
def test_numcnn_route_portable_runs_no_vector_kernel(tmp_path):
    out, _ = run_python("""
        import numpy as np, numcnn
        from numcnn.layers import Conv2D, BatchNorm2D, ReLU, Flatten, Dense
        from numcnn.kernels.jit import conv3x3
        model = numcnn.Sequential([Conv2D(3, 4, 3, padding=1), BatchNorm2D(4), ReLU(),
                                   Flatten(), Dense(4 * 6 * 6, 2)], seed=0)
        model.compile(numcnn.optim.SGD(0.1), numcnn.losses.SoftmaxCrossEntropy())
        x = np.random.default_rng(0).random((8, 3, 6, 6), dtype=np.float32)
        model.fit(x, np.arange(8) % 2, epochs=1, verbose=0)
        model.predict(x)
        print(numcnn.route(), len(conv3x3._conv3x3.signatures))
        """, tmp_path, NUMCNN_ROUTE="portable")
    assert out.split() == ["portable", "0"]


@pytest.mark.subprocess
def test_a_vector_kernel_that_fails_to_compile_falls_back_with_one_warning(tmp_path, rng):
    """The vector operations made to refuse their arguments (as on a numba they do not
    know): the first call falls back to the portable route with one warning naming the
    kernel, and training ends where it ends on a working route, to float32 rounding."""
    x = rng.standard_normal((24, 3, 10, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out, err = run_python("""
        import warnings
        import numpy as np, numcnn
        from numcnn.kernels.jit import vectors
        vectors._flat = lambda *args, **kwargs: False   # every vector operation refuses
        from tests.test_routes import network
        x = np.load("x.npy")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = network(seed=3)
            model.compile(numcnn.optim.SGD(0.05, momentum=0.9), numcnn.losses.SoftmaxCrossEntropy())
            model.fit(x, np.arange(24) % 3, batch_size=8, epochs=2, verbose=0, shuffle=False)
            model.predict(x)
        said = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        print(len(said)); print(said[0]); print(numcnn.route())
        np.savez("weights.npz", *model.get_weights())
        """, tmp_path, NUMCNN_ROUTE="vectors")
    count, message, route = out.strip().splitlines()
    assert count == "1" and route == "portable"
    assert "_conv3x3 did not compile" in message and "taking the portable route" in message
    model = network(seed=3)
    model.compile(numcnn.optim.SGD(0.05, momentum=0.9), numcnn.losses.SoftmaxCrossEntropy())
    model.fit(x, np.arange(24) % 3, batch_size=8, epochs=2, verbose=0, shuffle=False)
    fallen_back = np.load(tmp_path / "weights.npz")
    for k, want in enumerate(model.get_weights()):
        np.testing.assert_allclose(fallen_back[f"arr_{k}"], want, rtol=2e-4, atol=2e-5)


@pytest.mark.subprocess
def test_numba_without_its_compiler_takes_the_portable_route(tmp_path):
    """NUMBA_DISABLE_JIT=1 runs the kernels as Python: the vector operations exist only
    as compiled code, so the portable route is taken (and a tiny model still trains)."""
    out, _ = run_python("""
        import numpy as np, numcnn
        from numcnn.layers import Conv2D, ReLU, Flatten, Dense
        model = numcnn.Sequential([Conv2D(1, 2, 3, padding=1), ReLU(), Flatten(),
                                   Dense(2 * 4 * 4, 2)], seed=0)
        model.compile(numcnn.optim.SGD(0.1), numcnn.losses.SoftmaxCrossEntropy())
        x = np.random.default_rng(0).random((4, 1, 4, 4), dtype=np.float32)
        history = model.fit(x, np.arange(4) % 2, epochs=1, verbose=0)
        print(numcnn.route(), np.isfinite(history.history["loss"][0]))
        """, tmp_path, NUMBA_DISABLE_JIT="1")
    assert out.split() == ["portable", "True"]
