"""Streaming statistics: correlation matrices and constant-unit masks from a Reduction."""

import warnings

import numpy as np
import pytest

import repmatch
from repmatch import CONSTANT_TOL, Reduction, RepmatchWarning, correlation, correlation_from_reduction

#: Streamed and in-memory statistics must agree to this (spec issue: 1e-10).
AGREE = 1e-10


def _data(n=3000, nx=7, ny=5, seed=0, offset=0.0):
    g = np.random.default_rng(seed)
    Z = g.standard_normal((n, 4))
    X = Z @ g.standard_normal((4, nx)) + 0.3 * g.standard_normal((n, nx)) + offset
    Y = Z @ g.standard_normal((4, ny)) + 0.3 * g.standard_normal((n, ny)) - offset
    return X, Y


def test_streamed_equals_in_memory_corrcoef():
    X, Y = _data()
    st = correlation(X, Y)
    ref = np.corrcoef(np.hstack([X, Y]), rowvar=False)
    assert np.abs(st.between - ref[:7, 7:]).max() < AGREE
    assert np.abs(st.within_x - ref[:7, :7]).max() < AGREE
    assert np.abs(st.within_y - ref[7:, 7:]).max() < AGREE
    assert np.abs(st.joint - ref).max() < AGREE
    assert np.asarray(st).shape == (7, 5)
    assert st.n_samples == 3000
    assert np.allclose(st.std_x, X.std(axis=0), rtol=1e-12)


def test_batches_and_merge_equal_single_pass_with_large_offset():
    # large means relative to spread: a naive sum-of-squares formula loses digits here
    X, Y = _data(offset=1e4)
    single = correlation_from_reduction(Reduction.from_arrays(X, Y))
    parts = [Reduction.from_arrays(X[s : s + 257], Y[s : s + 257]) for s in range(0, 3000, 257)]
    merged = correlation_from_reduction(Reduction.merge_all(parts))
    streamed = Reduction(7, 5)
    for s in range(0, 3000, 100):
        streamed.update(X[s : s + 100], Y[s : s + 100])
    ref = np.corrcoef(np.hstack([X - 1e4, Y + 1e4]), rowvar=False)[:7, 7:]
    for st in (merged, correlation_from_reduction(streamed)):
        assert np.abs(st.between - single.between).max() < AGREE
        assert np.abs(st.within_x - single.within_x).max() < AGREE
    assert np.abs(single.between - ref).max() < 1e-9


def test_reduction_input_matches_arrays_and_is_cached():
    X, Y = _data()
    r = Reduction.from_arrays(X, Y)
    a = correlation(r)
    assert correlation(r) is a  # cached on the reduction
    assert np.array_equal(a.between, correlation(X, Y).between)
    with pytest.raises(ValueError, match="read-only"):
        a.between[0, 0] = 5.0  # the cached matrices are shared: callers cannot corrupt them
    r.update(X[:10], Y[:10])
    assert correlation(r) is not a  # cache invalidated by update


def test_constant_units_are_masked_zero_and_reported():
    X, Y = _data(nx=4, ny=3)
    X[:, 1] = 3.5
    Y[:, 2] = 0.0
    with pytest.warns(RepmatchWarning, match="constant"):
        st = correlation(X, Y)
    assert st.constant_x.tolist() == [False, True, False, False]
    assert st.constant_y.tolist() == [False, False, True]
    for M in (st.between, st.within_x, st.within_y):
        assert np.isfinite(M).all()
    assert np.all(st.between[1] == 0) and np.all(st.between[:, 2] == 0)
    assert st.within_x[1, 1] == 0 and st.within_x[0, 0] == 1
    d = st.to_dict()
    assert d["constant_x"] == [1] and d["constant_y"] == [2]


@pytest.mark.parametrize("rel, constant", [(1e-9, False), (1e-11, True)])
def test_constant_tolerance_edge(rel, constant):
    # CONSTANT_TOL = 1e-10: a relative spread 10x above counts as live, 10x below as constant
    assert CONSTANT_TOL == 1e-10
    g = np.random.default_rng(1)
    X = g.standard_normal((500, 2))
    X[:, 0] = 1.0 + rel * g.standard_normal(500)
    Y = g.standard_normal((500, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)
        st = correlation(X, Y)
    assert bool(st.constant_x[0]) is constant


def test_all_constant_zero_mean_unit():
    X = np.zeros((10, 2))
    X[:, 1] = np.arange(10)
    with pytest.warns(RepmatchWarning):
        st = correlation(X, np.arange(10.0)[:, None] ** 2)
    assert st.constant_x.tolist() == [True, False]


@pytest.mark.parametrize(
    "X, Y, match",
    [
        (np.ones((5, 2)), np.ones((4, 2)), "same number of rows"),
        (np.array([[np.nan, 1.0], [1.0, 2.0]]), np.ones((2, 2)), "X contains"),
        (np.ones(5), np.ones((5, 2)), "X must be 2-D"),
        (np.ones((5, 0)), np.ones((5, 2)), "X has no columns"),
        (np.ones((5, 2)), np.full((5, 2), np.inf), "Y contains"),
    ],
)
def test_bad_inputs_name_the_argument(X, Y, match):
    with pytest.raises(ValueError, match=match):
        correlation(X, Y)


def test_too_few_samples_and_misuse():
    with pytest.raises(ValueError, match="at least 2"):
        correlation(np.ones((1, 2)), np.ones((1, 2)))
    r = Reduction.from_arrays(*_data(n=20))
    with pytest.raises(ValueError, match="Y must be omitted"):
        correlation(r, np.ones((20, 5)))
    with pytest.raises(ValueError, match="Y is required"):
        correlation(np.ones((20, 5)))
    with pytest.raises(ValueError, match="no samples"):
        correlation(Reduction(2, 2))
    with pytest.raises(ValueError, match="r must be a Reduction"):
        correlation_from_reduction(np.ones((3, 3)))


def test_import_does_not_pull_heavy_dependencies():
    import subprocess
    import sys

    code = "import sys, repmatch; print(sorted(m for m in ('sklearn', 'matplotlib', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert "correlation" in repmatch.__all__


from hypothesis import given, settings, strategies as st_  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(cuts=st_.lists(st_.integers(min_value=1, max_value=199), max_size=6, unique=True), seed=st_.integers(0, 1000))
def test_merge_of_any_split_equals_single_pass(cuts, seed):
    X, Y = _data(n=200, nx=3, ny=4, seed=seed, offset=50.0)
    bounds = [0, *sorted(cuts), 200]
    parts = [Reduction.from_arrays(X[a:b], Y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    merged = correlation_from_reduction(Reduction.merge_all(parts))
    single = correlation_from_reduction(Reduction.from_arrays(X, Y))
    assert np.abs(merged.joint - single.joint).max() < AGREE
    assert np.abs(merged.mean_x - single.mean_x).max() < 1e-12 * 50
