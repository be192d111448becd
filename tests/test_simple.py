"""v-minimal and simple matches: exact cases, brute force, theorems as properties, naive agreement."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import repmatch
from repmatch import RepmatchWarning
from repmatch.testing import (
    brute_force_matches,
    independent_blocks,
    naive_maximum_match,
    naive_v_minimal_match,
    relu_layers,
    simple_from_matches,
)

from conftest import tiny_layers


def _keys(sm):
    return {(frozenset(m.x.tolist()), frozenset(m.y.tolist())) for m in sm}


@pytest.mark.parametrize("method", ["gram", "qr"])
def test_independent_blocks_v_minimum_for_every_order(method):
    X, Y, blocks = independent_blocks()
    expected = {(frozenset(bx.tolist()), frozenset(by.tolist())) for bx, by in blocks}
    sm = repmatch.simple_matches(X, Y, 0.0, method=method, restarts=3, rng=7)
    assert _keys(sm) == expected
    assert not sm.exhaustive and sm.restarts == 3
    for seed in range(6):
        for (bx, by) in blocks:
            for side, cols in (("x", bx), ("y", by)):
                for i in cols:
                    m = repmatch.v_minimal_match(X, Y, 0.0, side=side, index=int(i), rng=seed, method=method)
                    assert m.x.tolist() == bx.tolist() and m.y.tolist() == by.tolist()


def test_nested_simple_matches():
    # spec section 2: y1 = x1, y2 = x1 + x2 gives simple ({x1},{y1}) and ({x1,x2},{y1,y2})
    g = np.random.default_rng(0)
    x1, x2, r = g.standard_normal((3, 200))
    X = np.stack([x1, x2, r], axis=1)
    Y = np.stack([x1, x1 + x2, g.standard_normal(200)], axis=1)
    for method in ("gram", "qr"):
        sm = repmatch.simple_matches(X, Y, 0.0, method=method)
        assert _keys(sm) == {(frozenset({0}), frozenset({0})), (frozenset({0, 1}), frozenset({0, 1}))}
        assert sm.size_distribution() == {(1, 1): 1, (2, 2): 1}
        assert sm.found_for[0] == [("x", 0), ("y", 0)]


def test_exact_independent_case_equals_brute_force():
    X, Y, _ = independent_blocks(n_samples=60, rng=3)
    X, Y = X[:, [0, 1, 2, 3, 5]], Y[:, [0, 2, 3, 4, 6]]  # keep the brute force small
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)
        sm = repmatch.simple_matches(X, Y, 0.0, method="qr")
    brute = simple_from_matches(brute_force_matches(X, Y, 1e-9))
    assert _keys(sm) == set(brute)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), eps=st.sampled_from([0.3, 0.45, 0.6]))
def test_found_matches_are_simple_and_cover_the_maximum_match(seed, eps):
    X, Y = tiny_layers(seed, n_x=4, n_y=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)
        sm = repmatch.simple_matches(X, Y, eps, method="qr", restarts=2, rng=seed)
    matches = brute_force_matches(X, Y, eps)
    simple = set(simple_from_matches(matches))
    # every returned match is a simple match; v-minimal for the neurons that found it
    assert _keys(sm) <= simple
    mset = set(matches)
    for m, found in zip(sm, sm.found_for):
        key = (frozenset(m.x.tolist()), frozenset(m.y.tolist()))
        for side, v in found:
            for sub in mset:
                if sub != key and sub[0] <= key[0] and sub[1] <= key[1]:
                    assert v not in (sub[0] if side == "x" else sub[1])
    # the union of the simple matches found is the maximum match
    ux = set().union(*[set(m.x.tolist()) for m in sm]) if len(sm) else set()
    uy = set().union(*[set(m.y.tolist()) for m in sm]) if len(sm) else set()
    assert ux == set(sm.maximum.x.tolist()) and uy == set(sm.maximum.y.tolist())


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_v_minimal_equals_naive_deletion(seed):
    X, Y = relu_layers(n_samples=400, n_x=14, n_y=12, shared_dim=6, private_dim=6, noise=0.3, rng=seed)
    eps = 0.35
    m = repmatch.maximum_match(X, Y, eps=eps)
    for side, cols in (("x", m.x[:3]), ("y", m.y[:2])):
        for i in cols:
            ours = repmatch.v_minimal_match(X, Y, eps, side=side, index=int(i))
            nx, ny = naive_v_minimal_match(X, Y, eps, side=side, index=int(i))
            assert ours.x.tolist() == nx.tolist() and ours.y.tolist() == ny.tolist()
            # the result is a match: the naive maximum match restricted to it is itself
            rx, ry = naive_maximum_match(X, Y, eps, x_cols=ours.x, y_cols=ours.y)
            assert rx.tolist() == ours.x.tolist() and ry.tolist() == ours.y.tolist()


def test_union_of_simple_matches_is_maximum_match_on_relu_layers():
    X, Y = relu_layers(n_samples=3000, n_x=48, n_y=48, shared_dim=16, private_dim=16, noise=0.3, rng=1)
    sm = repmatch.simple_matches(X, Y, 0.3)
    assert len(sm) > 1
    ux = np.unique(np.concatenate([m.x for m in sm]))
    uy = np.unique(np.concatenate([m.y for m in sm]))
    np.testing.assert_array_equal(ux, sm.maximum.x)
    np.testing.assert_array_equal(uy, sm.maximum.y)
    assert sm.sizes.sum() >= sm.maximum.size
    d = sm.to_dict()
    assert d["n_matches"] == len(sm) and sum(e["count"] for e in d["size_distribution"]) == len(sm)


def test_deterministic_given_rng_and_none_outside_maximum_match():
    X, Y = relu_layers(n_samples=2000, n_x=30, n_y=30, shared_dim=10, private_dim=10, noise=0.3, rng=2)
    a = repmatch.simple_matches(X, Y, 0.3, restarts=2, rng=5)
    b = repmatch.simple_matches(X, Y, 0.3, restarts=2, rng=5)
    assert [m.key() for m in a] == [m.key() for m in b]
    mm = repmatch.maximum_match(X, Y, eps=0.3)
    outside = sorted(set(range(30)) - set(mm.x.tolist()))
    assert outside, "test data should leave some neuron unmatched"
    assert repmatch.v_minimal_match(X, Y, 0.3, side="x", index=outside[0]) is None


def test_bad_arguments():
    X, Y, _ = independent_blocks()
    with pytest.raises(ValueError, match="side must be"):
        repmatch.v_minimal_match(X, Y, 0.1, side="z", index=0)
    with pytest.raises(ValueError, match="index=9 is out of range"):
        repmatch.v_minimal_match(X, Y, 0.1, side="y", index=9)
    with pytest.raises(ValueError, match="eps"):
        repmatch.simple_matches(X, Y, 1.5)
    with pytest.raises(ValueError, match="restarts"):
        repmatch.simple_matches(X, Y, 0.1, restarts=-1)
    with pytest.raises(ValueError, match="rng"):
        repmatch.simple_matches(X, Y, 0.1, rng="seed")
    r = repmatch.Reduction.from_arrays(X, Y, method="qr")  # exact matches of streamed data: keep the factor
    assert len(repmatch.simple_matches(r, eps=0.0)) == 2
    assert len(repmatch.simple_matches(r, 0.0)) == 2
