"""numcnn.metrics: the accuracy interval over groups of correlated samples, and over
independent samples."""
import numpy as np
import pytest

from numcnn.metrics import accuracy_interval, accuracy_interval_over_groups


def test_whole_groups_right_or_wrong_give_the_interval_of_the_groups(rng):
    """Copies of one cell carry no more information than the cell itself."""
    cell_right = rng.random(71) < 0.89                       # one outcome per cell
    once = accuracy_interval_over_groups(cell_right, np.arange(71), seed=3)
    copies = np.repeat(np.arange(71), 35)                     # every cell 35 times
    copied = accuracy_interval_over_groups(cell_right[copies], copies, seed=3)
    assert copied == once                                     # same resamples, same ratios
    assert copied["groups"] == 71 and copied["accuracy"] == pytest.approx(cell_right.mean())
    # ...and that interval is far wider than the one that treats the images as independent
    independent = accuracy_interval_over_groups(cell_right[copies], np.arange(len(copies)),
                                                n_resamples=2000)
    assert copied["high"] - copied["low"] > 3 * (independent["high"] - independent["low"])


def test_independent_samples_match_the_normal_approximation(rng):
    n, p = 4000, 0.9
    right = rng.random(n) < p
    result = accuracy_interval_over_groups(right, np.arange(n), n_resamples=4000)
    half_width = 1.96 * np.sqrt(p * (1 - p) / n)
    assert result["low"] < result["accuracy"] < result["high"]
    assert (result["high"] - result["low"]) / 2 == pytest.approx(half_width, rel=0.15)


def test_strata_keep_their_number_of_groups():
    """Class A always right, class B always wrong, 10 cells each: every resample of
    10 + 10 cells scores 0.5; without strata the share of A's cells varies."""
    groups = np.repeat(np.arange(20), 5)
    strata = (groups >= 10).astype(int)
    right = strata == 0
    stratified = accuracy_interval_over_groups(right, groups, strata=strata)
    assert stratified["low"] == stratified["high"] == stratified["accuracy"] == 0.5
    pooled = accuracy_interval_over_groups(right, groups)
    assert pooled["low"] < 0.4 and pooled["high"] > 0.6


def test_several_models_give_the_interval_of_their_mean():
    groups = np.repeat(np.arange(8), 3)
    always, never = np.ones(24, bool), np.zeros(24, bool)
    result = accuracy_interval_over_groups(np.stack([always, never]), groups)
    assert result["accuracy"] == result["low"] == result["high"] == 0.5


def test_interval_errors_name_the_problem():
    with pytest.raises(ValueError, match="correct has 3 samples, groups 2"):
        accuracy_interval_over_groups([True, False, True], [0, 1])
    with pytest.raises(ValueError, match="spans several strata"):
        accuracy_interval_over_groups([True, False], [0, 0], strata=[0, 1])
    with pytest.raises(ValueError, match="confidence"):
        accuracy_interval_over_groups([True], [0], confidence=1.5)
    with pytest.raises(ValueError, match="no samples"):
        accuracy_interval_over_groups([], [])
    with pytest.raises(ValueError, match="n_resamples"):
        accuracy_interval_over_groups([True], [0], n_resamples=0)


def reference_interval(correct, groups, strata, n_resamples, rng):
    """The same bootstrap written as plainly as possible: a loop over resamples."""
    correct = np.atleast_2d(correct)
    cells = {g: np.flatnonzero(groups == g) for g in np.unique(groups)}
    by_stratum = {s: sorted({g for g, s2 in zip(groups, strata) if s2 == s}) for s in set(strata)}
    scores = []
    for _ in range(n_resamples):
        right = seen = 0
        for members in by_stratum.values():
            for g in rng.choice(members, size=len(members)):
                right += correct[:, cells[g]].sum()
                seen += correct.shape[0] * len(cells[g])
        scores.append(right / seen)
    return np.quantile(scores, [0.025, 0.975])


def test_interval_agrees_with_a_plain_loop_for_several_seeds_and_unequal_groups(rng):
    sizes = rng.integers(3, 30, size=24)                      # 24 cells of unequal size
    groups = np.repeat(np.arange(24), sizes)
    strata = np.repeat(np.arange(24) % 3, sizes)              # 3 classes, 8 cells each
    hard = np.repeat(rng.random(24), sizes)                   # some cells are hard for every seed
    correct = rng.random((3, len(groups))) > hard             # (seeds, N)
    result = accuracy_interval_over_groups(correct, groups, strata=strata, n_resamples=3000)
    low, high = reference_interval(correct, groups, strata, 3000, np.random.default_rng(1))
    assert result["accuracy"] == pytest.approx(correct.mean())
    assert result["low"] == pytest.approx(low, abs=0.015)
    assert result["high"] == pytest.approx(high, abs=0.015)


def test_accuracy_interval_is_the_grouped_one_with_one_sample_per_group(rng):
    right = rng.random(300) < 0.8
    strata = rng.integers(0, 4, 300)
    for kwargs in ({}, {"strata": strata}, {"confidence": 0.9, "n_resamples": 500, "seed": 4}):
        assert accuracy_interval(right, **kwargs) == \
            accuracy_interval_over_groups(right, np.arange(300), **kwargs)
    several = rng.random((2, 300)) < 0.7                    # two models on the same samples
    assert accuracy_interval(several) == accuracy_interval_over_groups(several, np.arange(300))
    result = accuracy_interval(right)
    assert result["groups"] == 300 and result["accuracy"] == pytest.approx(right.mean())
