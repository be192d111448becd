"""The report's sentences: computed from the same numbers, never claiming what the permutation count cannot give."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repmatch.report.summary import can_test, min_p, pairs_phrase, sentence, verdicts


def _arrays(draw_seed, n_pairs, n_layers, n_perm):
    g = np.random.default_rng(draw_seed)
    t = g.uniform(0, 1, (n_pairs, n_layers))
    u = g.uniform(0, 1, (n_pairs, n_layers))
    p = g.integers(1, n_perm + 2, (n_pairs, n_layers)) / (n_perm + 1)
    return t, u, p


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n_pairs=st.integers(1, 4), n_layers=st.integers(1, 19),
       n_perm=st.sampled_from([3, 10, 19, 99, 999]), larger=st.booleans(), alpha=st.sampled_from([0.01, 0.05, 0.1]))
def test_claims_follow_the_numbers(seed, n_pairs, n_layers, n_perm, larger, alpha):
    layers = [f"layer{j}" for j in range(n_layers)]
    t, u, p = _arrays(seed, n_pairs, n_layers, n_perm)
    vs = verdicts(layers, t, u, p, larger=larger, alpha=alpha, n_permutations=n_perm)
    text = sentence("stat", vs, larger=larger, alpha=alpha, n_permutations=n_perm)
    for j, v in enumerate(vs):
        better = t[:, j] > u[:, j] if larger else t[:, j] < u[:, j]
        assert v.beats_untrained == int(better.sum())
        if v.shuffled == "significant":
            assert can_test(n_perm, alpha) and np.all(p[:, j] <= alpha)
        if v.beats_both:
            assert np.all(better) and np.all(p[:, j] <= alpha)
    if not can_test(n_perm, alpha):
        assert f"not testable at {n_perm} permutations" in text
        assert "p ≤" not in text and "Both nulls beaten" not in text
        assert all(v.shuffled == "not testable" for v in vs)
    else:
        both = [v.layer for v in vs if v.beats_both]
        assert f"Both nulls beaten: {', '.join(both) if both else 'no layer'}." in text
    assert "significant" not in text  # the word is never used: the text gives the test and its level
    assert "1 pairs" not in text


def test_ten_permutations_cannot_reach_five_percent():
    """The issue's case: 10 permutations floor p at 1/11 = 0.09; the text must not claim anything."""
    assert min_p(10) == pytest.approx(1 / 11)
    layers = ["conv1", "fc"]
    t = np.array([[0.9, 0.8]])
    u = np.array([[0.1, 0.1]])
    p = np.array([[1 / 11, 1 / 11]])
    text = sentence("bipartite", verdicts(layers, t, u, p, larger=True, alpha=0.05, n_permutations=10), larger=True,
                    alpha=0.05, n_permutations=10)
    assert "not testable at 10 permutations" in text and "--permutations 19" in text
    assert "exceeds" not in text and "beaten" not in text
    assert "in the one pair of seeds in conv1, fc" in text
    text99 = sentence("bipartite", verdicts(layers, t, u, np.full((1, 2), 0.01), larger=True, alpha=0.05,
                                            n_permutations=99), larger=True, alpha=0.05, n_permutations=99)
    assert "Both nulls beaten: conv1, fc." in text99


def test_untrained_as_good_is_named():
    layers = ["a", "b"]
    t = np.array([[0.5, 0.5], [0.5, 0.5]])
    u = np.array([[0.4, 0.6], [0.4, 0.4]])  # b: the untrained network is better in one pair
    vs = verdicts(layers, t, u, np.full((2, 2), 0.01), larger=True, alpha=0.05, n_permutations=99)
    assert [v.beats_untrained for v in vs] == [2, 1]
    text = sentence("MMS", vs, larger=True, alpha=0.05, n_permutations=99)
    assert "above the untrained-network value in every pair of seeds in a; not in b" in text
    assert "Both nulls beaten: a." in text


def test_undefined_values_never_count():
    vs = verdicts(["a"], np.array([[np.nan]]), np.array([[0.5]]), np.array([[np.nan]]), larger=False, alpha=0.05,
                  n_permutations=99)
    assert vs[0].beats_untrained == 0 and vs[0].shuffled == "undefined" and not vs[0].beats_both


def test_pairs_phrase_and_shapes():
    assert pairs_phrase(1) == "the one pair of seeds" and pairs_phrase(3) == "the 3 pairs of seeds"
    with pytest.raises(ValueError, match="n_pairs"):
        verdicts(["a"], np.zeros((2, 1)), np.zeros((2, 2)), np.zeros((2, 1)), larger=True, alpha=0.05,
                 n_permutations=9)
