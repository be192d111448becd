"""Null baselines: permutation tests (shuffled row correspondence) and bootstrap intervals."""

import json

import numpy as np
import pytest

from repmatch import Reduction, bootstrap_ci, linear_cka, permutation_test
from repmatch.inference import SCALARS


def related(n=150, seed=0, strength=1.0):
    g = np.random.default_rng(seed)
    X = g.standard_normal((n, 4))
    return X, strength * X + g.standard_normal((n, 4))


def test_related_layers_get_the_smallest_possible_p_value():
    X, Y = related()
    res = permutation_test("linear_cka", X, Y, n_permutations=99, rng=0)
    assert res.p_value == pytest.approx(1 / 100)
    assert res.observed > res.null.max()
    assert res.alternative == "greater"
    json.dumps(res.to_dict())


def test_p_values_are_roughly_uniform_under_the_null():
    # 60 independent datasets: the share of p <= 0.2 must be near 0.2 (binomial sd ~0.05)
    ps = []
    for seed in range(60):
        g = np.random.default_rng(100 + seed)
        X, Y = g.standard_normal((40, 3)), g.standard_normal((40, 3))
        ps.append(permutation_test("linear_cka", X, Y, n_permutations=49, rng=seed).p_value)
    share = np.mean(np.array(ps) <= 0.2)
    assert 0.05 <= share <= 0.4
    assert min(ps) >= 1 / 50


def test_shuffling_keeps_each_layers_own_statistics():
    X, Y = related()
    seen = []

    def stat(A, B):
        seen.append((A.copy(), np.cov(B, rowvar=False)))
        return float(np.corrcoef(A[:, 0], B[:, 0])[0, 1])

    permutation_test(stat, X, Y, n_permutations=5, rng=1)
    for A, cov in seen:
        assert np.array_equal(A, X)  # X untouched
        assert np.allclose(cov, np.cov(Y, rowvar=False), atol=1e-12)  # Y's own statistics kept


def test_distance_defaults_to_less_and_two_sided():
    X, Y = related()
    res = permutation_test("procrustes", X, Y, n_permutations=49, rng=0)
    assert res.alternative == "less" and res.p_value == pytest.approx(1 / 50)
    two = permutation_test(lambda A, B: linear_cka(A, B).value, X, Y, n_permutations=49, alternative="two-sided", rng=0)
    assert two.p_value == pytest.approx(1 / 50)


def test_determinism():
    X, Y = related(strength=0.1)
    a = permutation_test("semi_match", X, Y, n_permutations=30, rng=3)
    b = permutation_test("semi_match", X, Y, n_permutations=30, rng=3)
    c = permutation_test("semi_match", X, Y, n_permutations=30, rng=4)
    assert np.array_equal(a.null, b.null) and not np.array_equal(a.null, c.null)
    d = bootstrap_ci("linear_cka", X, Y, n_boot=50)
    e = bootstrap_ci("linear_cka", X, Y, n_boot=50)
    assert d.low == e.low and d.high == e.high  # rng=None is a fixed seed


def test_bootstrap_interval_properties():
    X, Y = related(n=400)
    ci90 = bootstrap_ci("bipartite_match", X, Y, n_boot=300, level=0.9, rng=0)
    ci99 = bootstrap_ci("bipartite_match", X, Y, n_boot=300, level=0.99, rng=0)
    assert ci99.low <= ci90.low <= ci90.observed <= ci90.high <= ci99.high
    assert np.quantile(ci90.samples, 0.05) == pytest.approx(ci90.low)
    Xb, Yb = related(n=4000)
    wide = bootstrap_ci("linear_cka", X, Y, n_boot=200, rng=0)
    narrow = bootstrap_ci("linear_cka", Xb, Yb, n_boot=200, rng=0)
    assert (narrow.high - narrow.low) < 0.6 * (wide.high - wide.low)  # ~ 1/sqrt(10)
    json.dumps(ci90.to_dict())


@pytest.mark.parametrize("name", sorted(SCALARS))
def test_every_registered_scalar_runs(name):
    g = np.random.default_rng(0)
    X = np.maximum(g.standard_normal((120, 3)), 0)
    Y = np.maximum(X + 0.5 * g.standard_normal((120, 3)), 0)
    res = permutation_test(name, X, Y, n_permutations=9, rng=0)
    assert np.isfinite(res.null).all() and 0 < res.p_value <= 1
    ci = bootstrap_ci(name, X, Y, n_boot=5, rng=0)
    assert ci.low <= ci.high


def test_bad_inputs():
    X, Y = related()
    with pytest.raises(ValueError, match="not a Reduction"):
        permutation_test("linear_cka", Reduction.from_arrays(X, Y))
    with pytest.raises(ValueError, match="not a Reduction"):
        bootstrap_ci("linear_cka", Reduction.from_arrays(X, Y))
    with pytest.raises(ValueError, match="stat must be"):
        permutation_test("nonsense", X, Y)
    with pytest.raises(ValueError, match="stat must be"):
        permutation_test(3, X, Y)
    with pytest.raises(ValueError, match="alternative"):
        permutation_test("linear_cka", X, Y, alternative="bigger")
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci("linear_cka", X, Y, level=1.0)
    with pytest.raises(ValueError, match="n_permutations"):
        permutation_test("linear_cka", X, Y, n_permutations=0)
    with pytest.raises(ValueError, match="same number of rows"):
        permutation_test("linear_cka", X, Y[:-1])
    with pytest.raises(ValueError, match="non-finite"):
        permutation_test(lambda A, B: float("nan"), X, Y, n_permutations=3)
    with pytest.raises(ValueError, match="rng"):
        permutation_test("linear_cka", X, Y, rng="seed")


def test_bootstrap_counts_resamples_on_which_the_statistic_is_undefined():
    # 4 rows: a resample that draws one row 4 times has no variance, so linear CKA is undefined
    # there; such resamples are NaN, counted, and left out of the interval (not a crash)
    g = np.random.default_rng(0)
    X = g.standard_normal((4, 2))
    Y = X + g.standard_normal((4, 2))
    res = bootstrap_ci("linear_cka", X, Y, n_boot=2000, rng=1)
    assert res.n_undefined == int(np.isnan(res.samples).sum()) > 0
    assert 0.0 <= res.low <= res.high <= 1.0 and res.to_dict()["n_undefined"] == res.n_undefined
