"""One-to-one alignment: semi-matching and bipartite matching on correlation and MI."""

import itertools
import json
import warnings

import numpy as np
import pytest

from repmatch import MIHistogram, Reduction, RepmatchWarning, bipartite_match, semi_match


def planted(n=4000, k=12, noise=0.5, seed=0, relu=False):
    """Y is X with its units permuted, plus independent noise."""
    g = np.random.default_rng(seed)
    X = g.standard_normal((n, k))
    perm = g.permutation(k)
    Y = X[:, perm] + noise * g.standard_normal((n, k))
    if relu:
        X, Y = np.maximum(X, 0), np.maximum(Y, 0)
    # unit i of X is copied to column j of Y where perm[j] == i
    truth = np.argsort(perm)
    return X, Y, truth


@pytest.mark.parametrize("measure, relu", [("correlation", False), ("correlation", True), ("mi", True)])
def test_planted_permutation_recovered_by_both_matchings(measure, relu):
    X, Y, truth = planted(relu=relu)
    s = semi_match(X, Y, measure=measure)
    b = bipartite_match(X, Y, measure=measure)
    assert s.y.tolist() == truth.tolist()
    assert b.x.tolist() == list(range(12)) and b.y.tolist() == truth.tolist()
    assert b.agree == 12 and b.agreement == 1.0
    assert b.mean > 5 * abs(b.chance)


def test_bipartite_is_optimal_against_brute_force_and_semi_bounds_it():
    g = np.random.default_rng(3)
    for trial in range(5):
        X = g.standard_normal((60, 6))
        Y = X @ g.standard_normal((6, 6)) + g.standard_normal((60, 6))
        S = np.corrcoef(X, Y, rowvar=False)[:6, 6:]
        best = max(sum(S[i, p[i]] for i in range(6)) for p in itertools.permutations(range(6)))
        b = bipartite_match(X, Y)
        assert b.values.sum() == pytest.approx(best, abs=1e-12)
        assert len(set(b.y.tolist())) == 6
        # semi-matching picks each row's maximum: never below the one-to-one mean
        assert b.semi.mean >= b.mean - 1e-15
        assert np.allclose(b.semi.values, S.max(axis=1), atol=1e-12)


def test_rectangular_lists_unmatched_units():
    X, Y, _ = planted(k=10)
    b = bipartite_match(X, Y[:, :6])
    assert len(b.x) == 6 and len(b.unmatched_x) == 4 and len(b.unmatched_y) == 0
    b2 = bipartite_match(X[:, :3], Y)
    assert len(b2.y) == 3 and len(b2.unmatched_y) == 7
    assert sorted(b2.permutation.tolist()) == list(range(10))
    s = semi_match(X[:, :3], Y)
    assert len(s.x) == 3 and len(s.unmatched_y) == 10 - s.n_distinct_y


def test_constant_units_are_excluded_and_listed():
    X, Y, truth = planted(k=6)
    X[:, 2] = 1.0
    Y[:, 0] = 0.0
    with pytest.warns(RepmatchWarning):
        b = bipartite_match(X, Y)
    assert 2 in b.unmatched_x.tolist() and 0 in b.unmatched_y.tolist()
    assert 2 not in b.x.tolist() and 0 not in b.y.tolist()
    assert 2 not in b.semi.x.tolist() and 0 not in b.semi.y.tolist()
    assert np.isfinite(b.values).all() and np.isfinite(b.chance)
    json.dumps(b.to_dict())
    json.dumps(b.semi.to_dict())


def test_all_constant_side_gives_empty_matching_not_nan():
    X = np.ones((50, 3))
    Y = np.random.default_rng(0).standard_normal((50, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)
        b = bipartite_match(X, Y)
    assert b.x.size == 0 and b.mean == 0.0 and b.chance == 0.0
    assert b.unmatched_x.tolist() == [0, 1, 2]


def test_reduction_and_histogram_inputs():
    X, Y, truth = planted(relu=True)
    r = Reduction.from_arrays(X, Y)
    assert np.array_equal(bipartite_match(r).y, bipartite_match(X, Y).y)
    h = MIHistogram.from_arrays(X, Y)
    assert np.array_equal(semi_match(h, measure="mi").values, semi_match(X, Y, measure="mi").values)
    with pytest.raises(ValueError, match="needs histograms"):
        semi_match(r, measure="mi")
    with pytest.raises(ValueError, match="holds no correlations"):
        semi_match(h)
    with pytest.raises(ValueError, match="measure must be one of"):
        semi_match(X, Y, measure="cosine")
    with pytest.raises(ValueError, match="same number of rows"):
        bipartite_match(X, Y[:-1])


def test_chance_is_mean_of_between_matrix():
    X, Y, _ = planted(k=5, noise=2.0)
    s = semi_match(X, Y)
    S = np.corrcoef(X, Y, rowvar=False)[:5, 5:]
    assert s.chance == pytest.approx(S.mean(), abs=1e-12)


def test_bipartite_recovers_a_planted_permutation_of_512_units():
    # its speed (the "512 units well under a second") is measured in benchmarks/bench_alignment.py
    g = np.random.default_rng(0)
    n = 512
    perm = g.permutation(n)
    X = g.standard_normal((2048, n))
    Y = X[:, perm] + 2.0 * g.standard_normal((2048, n))
    b = bipartite_match(Reduction.from_arrays(X, Y))
    assert len(b.x) == 512 and len(set(b.y.tolist())) == 512
    recovered = np.mean(perm[b.y] == b.x)  # Y's column j copies X's column perm[j]
    assert recovered > 0.99, recovered


def test_sorted_curve_follows_the_semi_matching_order():
    X, Y, _ = planted(k=8, noise=1.5)
    b = bipartite_match(X, Y[:, :6])
    c = b.sorted_curve()
    assert np.all(np.diff(c["semi"]) <= 0)
    assert len(c["x"]) == 8 and sum(v is None for v in c["bipartite"]) == 2
    for i, s_val, b_val in zip(c["x"], c["semi"], c["bipartite"]):
        assert s_val == b.semi.values[b.semi.x.tolist().index(i)]
        if b_val is not None:
            assert b_val <= s_val + 1e-15  # the semi-matching value is each row's maximum
