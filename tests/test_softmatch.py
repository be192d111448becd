"""Soft matching distance: exact against a linear program, metric properties, streaming, edge cases."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

import repmatch
from repmatch.softmatch import LINPROG_TOL, soft_match, transport_costs


def _layer(seed, m, n, shared=None, noise=0.5):
    g = np.random.default_rng(seed)
    base = shared if shared is not None else g.standard_normal((m, 3))
    return np.maximum(base @ g.standard_normal((base.shape[1], n)) + noise * g.standard_normal((m, n)), 0)


def _lp_value(costs):
    """The transportation LP written out densely, solved independently of the module's solvers."""
    nx, ny = costs.shape
    A = np.zeros((nx + ny, nx * ny))
    for i in range(nx):
        A[i, i * ny:(i + 1) * ny] = 1
    for j in range(ny):
        A[nx + j, j::ny] = 1
    b = np.r_[np.full(nx, 1 / nx), np.full(ny, 1 / ny)]
    res = linprog(costs.ravel(), A_eq=A, b_eq=b, bounds=(0, None), method="highs")
    assert res.status == 0
    return res.fun


sizes = st.integers(1, 7)


@settings(max_examples=40, deadline=None)
@given(nx=sizes, ny=sizes, seed=st.integers(0, 10_000), standardize=st.booleans())
def test_equals_the_linear_program(nx, ny, seed, standardize):
    m = 30
    X, Y = _layer(seed, m, nx), _layer(seed + 1, m, ny)
    costs, *_ = transport_costs(X, Y, standardize=standardize)
    lp = _lp_value(costs)
    for solver in ("assignment", "linprog"):
        s = soft_match(X, Y, standardize=standardize, solver=solver)
        scale = max(1.0, costs.max())
        assert s.distance ** 2 == pytest.approx(lp, abs=10 * LINPROG_TOL * scale)
        # the plan is feasible: non-negative with the right marginals
        assert s.plan.min() >= 0
        np.testing.assert_allclose(s.plan.sum(axis=1), 1 / nx, atol=10 * LINPROG_TOL)
        np.testing.assert_allclose(s.plan.sum(axis=0), 1 / ny, atol=10 * LINPROG_TOL)
        assert s.solver == solver


def test_auto_uses_the_lp_above_max_assignment():
    X, Y = _layer(0, 40, 5), _layer(1, 40, 7)  # lcm 35
    a = soft_match(X, Y)
    b = soft_match(X, Y, max_assignment=34)
    assert a.solver == "assignment" and b.solver == "linprog"
    assert a.distance == pytest.approx(b.distance, abs=1e-7)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n1=sizes, n2=sizes, n3=sizes)
def test_metric_properties(seed, n1, n2, n3):
    """Symmetry, identity, invariance to permutation and duplication, triangle inequality."""
    m = 40
    g = np.random.default_rng(seed)
    shared = g.standard_normal((m, 3))
    X, Y, Z = (_layer(seed + k, m, n, shared=shared) for k, n in enumerate((n1, n2, n3)))
    d = lambda A, B: soft_match(A, B).distance  # noqa: E731
    tol = 1e-7
    assert d(X, Y) == pytest.approx(d(Y, X), abs=tol)
    assert d(X, X) <= tol
    assert d(X, X[:, g.permutation(n1)]) <= tol
    assert d(X, np.hstack([X, X, X])) <= tol  # the same distribution of units
    assert d(X, Z) <= d(X, Y) + d(Y, Z) + tol
    assert d(X, Y) >= 0


def test_positive_for_different_layers_and_bounded():
    X, Y = _layer(0, 200, 6), _layer(1, 200, 9)
    s = soft_match(X, Y)
    assert 0.1 < s.distance <= 2.0
    # anti-correlated units are at the largest possible distance, 2
    assert soft_match(X[:, :1], -X[:, :1]).distance == pytest.approx(2.0, abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 8))
def test_equal_widths_is_the_bipartite_matching_distance(seed, n):
    """Birkhoff: with n_x = n_y the optimal plan is a permutation, d^2 = 2 - 2 * bipartite mean."""
    g = np.random.default_rng(seed)
    X = g.standard_normal((60, n))
    Y = X[:, g.permutation(n)] + g.uniform(0.1, 2) * g.standard_normal((60, n))
    s = soft_match(X, Y)
    b = repmatch.bipartite_match(X, Y)
    assert s.distance ** 2 == pytest.approx(2 - 2 * b.mean, abs=1e-10)
    assert s.mean_correlation == pytest.approx(b.mean, abs=1e-10)
    assert np.all(np.isclose(s.plan, 0) | np.isclose(s.plan, 1 / n))  # a permutation / n


def test_splits_mass_between_duplicates():
    """One X unit copied into two Y units: the plan sends half of its mass to each."""
    g = np.random.default_rng(0)
    X = g.standard_normal((100, 2))
    Y = np.column_stack([X[:, 0], X[:, 0], X[:, 1], X[:, 1]])
    s = soft_match(X, Y)
    assert s.distance == pytest.approx(0, abs=1e-7)
    assert s.partners("x")[0] == pytest.approx({0: 0.5, 1: 0.5})
    assert s.partners("y")[3] == pytest.approx({1: 1.0})


def test_reduction_gives_the_same_numbers():
    X, Y = _layer(3, 300, 8), _layer(4, 300, 5)
    r = repmatch.Reduction.from_arrays(X, Y)
    for std in (True, False):
        a, b = soft_match(X, Y, standardize=std), soft_match(r, standardize=std)
        assert a.distance == pytest.approx(b.distance, abs=1e-12)
    # merged halves = one pass
    h = repmatch.Reduction.from_arrays(X[:150], Y[:150]).merge(repmatch.Reduction.from_arrays(X[150:], Y[150:]))
    assert soft_match(h).distance == pytest.approx(soft_match(r).distance, abs=1e-10)


def test_scale_and_offset():
    X, Y = _layer(5, 200, 4), _layer(6, 200, 4)
    base = soft_match(X, Y)
    assert soft_match(3 * X + 7, Y).distance == pytest.approx(base.distance, abs=1e-10)  # standardized
    raw = soft_match(X, Y, standardize=False).distance
    assert soft_match(2 * X, 2 * Y, standardize=False).distance == pytest.approx(2 * raw, rel=1e-10)
    assert soft_match(X + 5, Y - 1, standardize=False).distance == pytest.approx(raw, rel=1e-10)  # centred


def test_constant_units_are_zero_vectors():
    X = _layer(7, 100, 3)
    Xd = np.column_stack([X, np.zeros(100)])
    s = soft_match(Xd, X)
    assert s.constant_x.tolist() == [False, False, False, True]
    costs = s.costs
    np.testing.assert_allclose(costs[3], 1.0)  # a dead unit against a standardised live unit
    # two all-dead layers coincide
    assert soft_match(np.zeros((10, 2)), np.ones((10, 3))).distance == 0.0


def test_rotation_changes_the_distance():
    """Unlike CKA, the soft matching distance sees a rotation of a layer's basis."""
    g = np.random.default_rng(1)
    X = g.standard_normal((500, 6)) * np.arange(1, 7)
    Q, _ = np.linalg.qr(g.standard_normal((6, 6)))
    assert soft_match(X, X @ Q).distance > 0.2
    assert repmatch.linear_cka(X, X @ Q).value == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(solver="sinkhorn"), "solver must be one of"),
    (dict(standardize="yes"), "standardize must be True or False"),
    (dict(max_assignment=0), "max_assignment"),
])
def test_bad_arguments(kwargs, message):
    X = np.ones((5, 2)) * np.arange(5)[:, None]
    with pytest.raises(ValueError, match=message):
        soft_match(X, X, **kwargs)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="same number of rows"):
        soft_match(np.ones((5, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="Y is required"):
        soft_match(np.ones((5, 2)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        soft_match(np.ones((1, 2)), np.ones((1, 2)))


def test_lcm_replication_is_exact_for_coprime_widths():
    X, Y = _layer(8, 50, 7), _layer(9, 50, 11)  # L = 77
    s = soft_match(X, Y, solver="assignment")
    assert s.distance ** 2 == pytest.approx(_lp_value(s.costs), abs=1e-9)
    assert math.isclose(s.plan.sum(), 1.0)
