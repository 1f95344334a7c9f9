"""The benchmarks' copy of the blood-cell recipe is the example's (a plain test, no timing).

``bloodnet.py`` rebuilds the network and the recipe of ``examples/bloodcells.py``
without importing the example (which pulls in the whole study), and
``compare.py`` repeats a few of bloodnet's constants so as not to import numpy.
These tests fail when either drifts from what it copies.
"""

import pytest

from numcnn.testing import load_script

import bloodnet
import compare

EXAMPLE = bloodnet.REPO_ROOT / "examples" / "bloodcells.py"


@pytest.fixture(scope="module")
def example():
    try:                                    # (cellstudy: examples/ is on sys.path, conftest.py)
        return load_script(EXAMPLE, "bloodcells_example_for_benchmarks")
    except ImportError as error:
        pytest.skip(f"examples/bloodcells.py cannot be imported here ({error})")


@pytest.fixture(scope="module")
def settings():
    from cellstudy.bloodcells.command import BloodCellSettings
    return BloodCellSettings()


def layer_configs(model):
    return [(type(layer).__name__, layer.config()) for layer in model.layers]


def test_bloodnet_builds_the_examples_network(example, settings):
    size = bloodnet.RECIPE_SIZE
    assert settings.input_shape == (3, size, size)
    ours = bloodnet.build_numcnn(size, size, seed=3, optimizer="adamw")
    theirs = example.network(settings, 3)
    assert layer_configs(ours) == layer_configs(theirs)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):  # same seed: same initial weights
        assert (a == b).all()


def test_bloodnet_uses_the_examples_recipe(example, settings):
    assert example.DROPOUT == bloodnet.DROPOUT
    assert example.WEIGHT_DECAY == bloodnet.RECIPE_WEIGHT_DECAY
    assert settings.lr == bloodnet.RECIPE_LR
    assert settings.batch_size == bloodnet.BATCH
    assert settings.input_size == bloodnet.RECIPE_SIZE
    assert settings.crop // settings.factor == bloodnet.RECIPE_SOURCE   # 144 / 2 = 72
    assert settings.square and settings.colour_jitter == 0.0 and settings.class_weights == "none"
    optimizer = bloodnet.build_numcnn(8, 8, optimizer="adamw").optimizer
    assert type(optimizer).__name__ == "AdamW"
    assert (optimizer.lr, optimizer.weight_decay) == (bloodnet.RECIPE_LR,
                                                      bloodnet.RECIPE_WEIGHT_DECAY)


def test_augmented_batches_are_the_recipes_and_reproducible():
    x, y = bloodnet.synthetic_images(150, seed=0)
    assert x.shape == (150, 3, bloodnet.RECIPE_SOURCE, bloodnet.RECIPE_SOURCE)
    assert abs(float(x.mean())) < 1e-3                       # mean image subtracted
    batches = bloodnet.augmented_batches(x, y, seed=1)
    assert [len(yb) for _, yb in batches] == [64, 64, 22]    # numcnn.training.batch_starts
    assert all(xb.shape[1:] == (3, 64, 64) and xb.flags.c_contiguous for xb, _ in batches)
    again = bloodnet.augmented_batches(x, y, seed=1)
    assert bloodnet.digest(a for b in batches for a in b) == bloodnet.digest(a for b in again for a in b)
    assert sorted(int(v) for _, yb in batches for v in yb) == sorted(int(v) for v in y)


def test_compare_repeats_bloodnets_constants():
    assert compare.STEP_SIZES == bloodnet.STEP_SIZES
    assert compare.CONV_INPUTS == bloodnet.CONV_INPUTS
    assert compare.RECIPE_TRAIN_IMAGES == bloodnet.RECIPE_TRAIN_IMAGES
    assert compare.FULL_RUN["epoch_images"] == bloodnet.RECIPE_TRAIN_IMAGES
