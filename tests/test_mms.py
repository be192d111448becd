"""Summaries of the whole MMS curve: eps_50 (via minimal_epsilon), max_epsilon and the bracketed area."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import repmatch
from repmatch.mms import HEADLINE_GRID, curve_area, eps_at_fraction, summarize_curve

pytestmark = pytest.mark.filterwarnings("ignore::repmatch.RepmatchWarning")


def _layers(seed, nx=5, ny=4, d=30, shared=2, noise=0.4, dead=0):
    g = np.random.default_rng(seed)
    z = g.standard_normal((d, shared))
    X = np.maximum(z @ g.standard_normal((shared, nx)) + noise * g.standard_normal((d, nx)), 0)
    Y = np.maximum(z @ g.standard_normal((shared, ny)) + noise * g.standard_normal((d, ny)), 0)
    if dead:
        X[:, :dead] = 0
    return X, Y


def test_grid_is_on_zero_one_with_the_authors_eps():
    assert HEADLINE_GRID[0] == 0 and max(HEADLINE_GRID) < 1 and len(HEADLINE_GRID) == 40
    from repmatch.reproduce import AUTHORS_EPS

    assert set(AUTHORS_EPS) <= set(HEADLINE_GRID)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), nx=st.integers(1, 6), ny=st.integers(1, 6), dead=st.integers(0, 2))
def test_area_bracket_holds_the_fine_grid_area(seed, nx, ny, dead):
    X, Y = _layers(seed, nx, ny, dead=min(dead, nx))
    s = summarize_curve(X, Y)
    fine = np.linspace(0, 1, 4001)[:-1]  # the step curve on a fine grid: a near-exact area
    c = repmatch.similarity_curve(X, Y, eps=fine)
    exact_ish = float(np.sum(c.similarity) / fine.size)
    step = 1 / fine.size
    assert s["area_low"] - step <= exact_ish <= s["area_high"] + step
    assert s["area_high"] - s["area_low"] <= 0.025 + 1e-12
    assert s["area_low"] <= s["area"] <= s["area_high"]


def test_area_of_identical_layers_is_the_live_fraction_exactly():
    X, _ = _layers(1, dead=1)
    s = summarize_curve(X, X.copy())
    lf = (2 * X.shape[1] - 2) / (2 * X.shape[1])
    assert s["max_epsilon"] == pytest.approx(0, abs=1e-6)
    assert s["area"] == pytest.approx(lf, abs=1e-6) and s["area_high"] - s["area_low"] < 1e-5
    assert s["eps_50"] == 0.0


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), nx=st.integers(2, 6), ny=st.integers(2, 6), frac=st.sampled_from([0.25, 0.5, 1.0]))
def test_eps_at_fraction_is_the_smallest_such_eps(seed, nx, ny, frac):
    X, Y = _layers(seed, nx, ny)
    res = eps_at_fraction(X, Y, fraction=frac)
    m0 = repmatch.maximum_match(X, Y, eps=0.0)
    k = math.ceil(frac * min(nx - len(m0.dead_x), ny - len(m0.dead_y)))
    if k == 0:
        assert res["eps"] is None
        return
    assert res["min_size"] == k
    e = res["eps"]
    at = repmatch.maximum_match(X, Y, eps=min(e + 1e-9, 0.999999))
    assert len(at.x) >= k and len(at.y) >= k
    if e > 1e-6:
        below = repmatch.maximum_match(X, Y, eps=e - 1e-6)
        assert len(below.x) < k or len(below.y) < k
    if frac == 1.0:  # every live neuron of the smaller side: never later than max_epsilon
        assert e <= repmatch.max_epsilon(X, Y) + 1e-9


def test_summary_from_a_reduction_equals_arrays():
    X, Y = _layers(3, 8, 6, d=200)
    a = summarize_curve(X, Y)
    b = summarize_curve(repmatch.Reduction.from_arrays(X, Y))
    assert a == b
    assert a["eps_50_min_size"] == 3 and a["samples_per_neuron"] == pytest.approx(200 / 14)


def test_curve_area_edge_cases():
    assert curve_area([0.0, 0.5], [0.0, 0.0], max_epsilon=1.0, live_fraction=0.0) == (0.0, 0.0, 0.0)
    area, lo, hi = curve_area([0.5], [0.2], max_epsilon=1.0, live_fraction=1.0)
    assert (lo, hi) == (pytest.approx(0.1), pytest.approx(0.1 + 0.5))
    with pytest.raises(ValueError, match="non-decreasing"):
        curve_area([0.0, 0.5], [0.5, 0.2], max_epsilon=1.0, live_fraction=1.0)
    with pytest.raises(ValueError, match="same non-zero length"):
        curve_area([0.0], [0.5, 0.2], max_epsilon=1.0, live_fraction=1.0)
    with pytest.raises(ValueError, match="fraction"):
        eps_at_fraction(*_layers(0), fraction=0)
