"""The one constant-unit rule (issue 15): every centred measure finds the same constant units
(``std <= CONSTANT_TOL * |mean|``, repmatch._validate), gives its defined answer on them and reports
them (a RepmatchWarning and the result's masks or lists)."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import repmatch
from repmatch import RepmatchWarning
from repmatch._resolve import as_reduction, as_rows
from repmatch._validate import CONSTANT_TOL, constant_units, report_constant


@st.composite
def layers_with_constant_units(draw):
    """(X, Y, constant X positions, constant Y positions): live Gaussian units with constant
    columns (any value, zero included, up to 1e6 in size) inserted at random places."""
    n = draw(st.integers(40, 90))
    seed = draw(st.integers(0, 2**31 - 1))
    g = np.random.default_rng(seed)

    def layer(n_live, n_const):
        live = g.standard_normal((n, n_live)) @ g.standard_normal((n_live, n_live)) + g.standard_normal(n_live)
        values = draw(st.lists(st.one_of(st.just(0.0), st.floats(-1e6, 1e6, allow_nan=False)),
                               min_size=n_const, max_size=n_const))
        pos = np.sort(g.choice(n_live + n_const, size=n_const, replace=False))
        out = np.empty((n, n_live + n_const))
        mask = np.zeros(n_live + n_const, dtype=bool)
        mask[pos] = True
        out[:, ~mask] = live
        out[:, mask] = np.asarray(values, dtype=np.float64)[None, :]
        return out, mask

    X, cx = layer(draw(st.integers(2, 5)), draw(st.integers(1, 3)))
    Y, cy = layer(draw(st.integers(2, 5)), draw(st.integers(0, 3)))
    return X, Y, cx, cy


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)
        return fn(*args, **kwargs)


def _reported(fn, *args, **kwargs):
    with pytest.warns(RepmatchWarning, match="constant") as rec:
        out = fn(*args, **kwargs)
    return out, [str(w.message) for w in rec]


SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class TestConstantUnits:
    """Every measure on layers with constant units: the defined answer, and a report."""

    @SETTINGS
    @given(layers_with_constant_units())
    def test_correlation_zeroes_and_flags_them(self, case):
        X, Y, cx, cy = case
        c, msgs = _reported(repmatch.correlation, X, Y)
        assert np.array_equal(c.constant_x, cx) and np.array_equal(c.constant_y, cy)
        assert np.all(c.between[cx, :] == 0) and np.all(c.between[:, cy] == 0)
        assert np.all(np.diag(c.within_x)[cx] == 0) and np.all(np.diag(c.within_x)[~cx] == 1)
        live = _quiet(repmatch.correlation, X[:, ~cx], Y[:, ~cy])
        np.testing.assert_allclose(c.between[np.ix_(~cx, ~cy)], live.between, atol=1e-12)
        assert any(f"{cx.sum()} unit(s) of X and {cy.sum()} of Y" in m for m in msgs)

    @SETTINGS
    @given(layers_with_constant_units())
    def test_matchings_leave_them_unmatched(self, case):
        X, Y, cx, cy = case
        s, _ = _reported(repmatch.semi_match, X, Y)
        b, _ = _reported(repmatch.bipartite_match, X, Y)
        for m in (s, b):
            assert not cx[m.x].any() and not cy[m.y].any()
            assert set(np.flatnonzero(cx)) <= set(m.unmatched_x.tolist())
        live_b = _quiet(repmatch.bipartite_match, X[:, ~cx], Y[:, ~cy])
        assert b.mean == pytest.approx(live_b.mean, abs=1e-12)

    @SETTINGS
    @given(layers_with_constant_units())
    def test_soft_match_flags_them(self, case):
        X, Y, cx, cy = case
        m, _ = _reported(repmatch.soft_match, X, Y)
        assert np.array_equal(m.constant_x, cx) and np.array_equal(m.constant_y, cy)
        assert np.isfinite(m.distance)
        # a constant unit is the zero vector after centring: cost 1 against every live unit
        assert np.allclose(m.costs[np.ix_(cx, ~cy)], 1.0)

    @SETTINGS
    @given(layers_with_constant_units())
    def test_sparse_prediction_lists_them(self, case):
        X, Y, cx, cy = case
        res, _ = _reported(repmatch.sparse_prediction, X, Y, alphas=[0.1], direction="x_to_y", test_fraction=0.0)
        p = res.x_to_y
        assert np.array_equal(p.constant_inputs, np.flatnonzero(cx))
        assert np.array_equal(p.constant_targets, np.flatnonzero(cy))
        assert np.all(p.weights[:, cx, :] == 0)

    @SETTINGS
    @given(layers_with_constant_units())
    def test_clusters_label_them_minus_one(self, case):
        pytest.importorskip("sklearn")
        X, Y, cx, cy = case
        res, _ = _reported(repmatch.spectral_clusters, X, Y, n_clusters=2, n_random=0, rng=0)
        assert np.all(res.labels_x[cx] == -1) and np.all(res.labels_y[cy] == -1)
        assert np.all(res.labels_x[~cx] >= 0) and np.all(res.labels_y[~cy] >= 0)

    @SETTINGS
    @given(layers_with_constant_units())
    def test_reference_scores_ignore_them(self, case):
        X, Y, cx, cy = case
        for f in (repmatch.linear_cka, repmatch.mean_squared_cca, repmatch.procrustes_distance, repmatch.pwcca):
            full, msgs = _reported(f, X, Y)
            live = _quiet(f, X[:, ~cx], Y[:, ~cy])
            assert float(full) == pytest.approx(float(live), abs=1e-9), f.__name__
            r = repmatch.Reduction.from_arrays(X, Y)
            assert float(_quiet(f, r)) == pytest.approx(float(live), abs=1e-9), f.__name__
        full, _ = _reported(repmatch.debiased_linear_cka, X, Y)
        assert float(full) == pytest.approx(float(_quiet(repmatch.debiased_linear_cka, X[:, ~cx], Y[:, ~cy])),
                                            abs=1e-9)

    @SETTINGS
    @given(layers_with_constant_units())
    def test_mutual_information_zeroes_them(self, case):
        X, Y, cx, cy = case
        mi = repmatch.mutual_information(X, Y)
        assert np.all(mi[cx, :] == 0) and np.all(mi[:, cy] == 0)
        s, msgs = _reported(repmatch.semi_match, X, Y, measure="mi")
        assert not cx[s.x].any()
        assert any("one bin" in m for m in msgs)

    def test_every_layer_constant_is_an_error_for_reference_scores(self):
        X = np.ones((30, 3)) * np.array([1.0, -2.0, 0.0])
        Y = np.random.default_rng(0).standard_normal((30, 2))
        with pytest.raises(ValueError, match="X has no variance"):
            _quiet(repmatch.linear_cka, X, Y)


class TestConstantTolEdge:
    """CONSTANT_TOL at its edge, directly and through the measures' ``constant_tol``."""

    def test_rule_at_the_edge(self):
        mean = np.array([1.0, 1.0, 1.0, 0.0, -4.0])
        std = np.array([CONSTANT_TOL, 2 * CONSTANT_TOL, 0.0, 0.0, 4 * CONSTANT_TOL])
        assert constant_units(mean, std).tolist() == [True, False, True, True, True]
        assert constant_units(mean, std, tol=0.0).tolist() == [False, False, True, True, False]
        with pytest.raises(ValueError, match="tol must be a finite number >= 0, got -1.0"):
            constant_units(mean, std, tol=-1.0)

    @pytest.mark.parametrize("spread, constant", [(1e-12, True), (1e-8, False)])
    def test_a_nearly_constant_unit(self, spread, constant):
        g = np.random.default_rng(1)
        signs = np.tile([1.0, -1.0], 50)
        X = np.column_stack([1.0 + spread * signs, g.standard_normal(100)])
        Y = g.standard_normal((100, 2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RepmatchWarning)
            c = repmatch.correlation(X, Y)
            loose = repmatch.correlation(X, Y, constant_tol=1e-6)
            sm = repmatch.soft_match(X, Y)
            sp = repmatch.sparse_prediction(X, Y, alphas=[0.1], direction="x_to_y", test_fraction=0.0)
        assert bool(c.constant_x[0]) is constant
        assert bool(loose.constant_x[0]) is True  # 1e-8 <= 1e-6 * 1
        assert bool(sm.constant_x[0]) is constant
        assert (0 in sp.x_to_y.constant_inputs.tolist()) is constant

    def test_report_is_silent_without_constant_units(self):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            report_constant(np.zeros(3, bool), np.zeros(2, bool), measure="m")
        with pytest.warns(RepmatchWarning, match=r"m: 1 unit\(s\) of X and 0 of Y are constant"):
            report_constant(np.array([True, False]), np.zeros(2, bool), measure="m")


class TestResolver:
    """The one input resolver: what it returns and how it names the argument on bad input."""

    def test_returns_the_reduction_itself_or_a_new_one(self):
        g = np.random.default_rng(0)
        X, Y = g.standard_normal((20, 3)), g.standard_normal((20, 2))
        r = repmatch.Reduction.from_arrays(X, Y)
        assert as_reduction(r) is r
        r2 = as_reduction(X, Y, keep_rows=True)
        assert (r2.n_x, r2.n_y, r2.n_samples) == (3, 2, 20)
        assert np.array_equal(r2.rows[0], X) and np.array_equal(r2.rows[1], Y)
        assert as_reduction(X, Y).rows is None
        Xa, Ya = as_rows(X.astype(np.float32), Y)
        assert Xa.dtype == np.float64 and Ya.shape == (20, 2)

    @pytest.mark.parametrize("call, message", [
        (lambda r, X, Y: as_reduction(r, Y), "Y must be omitted when X is a Reduction"),
        (lambda r, X, Y: as_reduction(X), "Y is required for this measure when X is an activation array"),
        (lambda r, X, Y: as_reduction(repmatch.Reduction(3, 2)), "X is a Reduction that has seen no samples"),
        (lambda r, X, Y: as_reduction(r, method="qr"), "method='qr' does not apply to a 'gram' Reduction"),
        (lambda r, X, Y: as_reduction(r, min_samples=50, measure="m"), "X is a Reduction of 20 sample"),
        (lambda r, X, Y: as_rows(r, measure="m"), "X is a Reduction, but m needs the rows themselves"),
        (lambda r, X, Y: as_rows(X, Y[:5]), "X and Y must have the same number of rows"),
        (lambda r, X, Y: as_rows(X, Y, min_samples=30, measure="m"), "X and Y have 20 row.*m needs at least 30"),
        (lambda r, X, Y: as_rows(X, Y, names=("fit", "score"), min_samples=30), "fit and score have 20"),
    ])
    def test_errors_name_the_argument(self, call, message):
        g = np.random.default_rng(0)
        X, Y = g.standard_normal((20, 3)), g.standard_normal((20, 2))
        r = repmatch.Reduction.from_arrays(X, Y)
        with pytest.raises(ValueError, match=message):
            call(r, X, Y)
