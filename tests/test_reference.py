"""Reference measures: golden values, oracles, the invariance table, degenerate input."""

import warnings

import numpy as np
import pytest

import repmatch
from repmatch import (
    REFERENCE_MEASURES,
    Reduction,
    RepmatchWarning,
    cca,
    debiased_linear_cka,
    linear_cka,
    mean_squared_cca,
    procrustes_distance,
    pwcca,
    rbf_cka,
    svcca,
)

FUNCS = {
    "linear_cka": linear_cka,
    "debiased_linear_cka": debiased_linear_cka,
    "rbf_cka": rbf_cka,
    "mean_squared_cca": mean_squared_cca,
    "svcca": svcca,
    "pwcca": pwcca,
    "procrustes": procrustes_distance,
}
STREAMING = [k for k, v in REFERENCE_MEASURES.items() if v.streaming]


@pytest.fixture(scope="module")
def golden():
    np.random.seed(1337)
    X = np.random.randn(100, 10)
    Y = np.random.randn(100, 10) + X
    return X, Y


def test_golden_values_to_five_decimals(golden):
    X, Y = golden
    assert round(linear_cka(X, Y).value, 5) == 0.55761
    assert round(rbf_cka(X, Y, threshold=0.5).value, 5) == 0.65483
    assert round(debiased_linear_cka(X, Y).value, 5) == 0.51346
    # the CKA authors' demo computes CCA on uncentred columns (see mean_squared_cca)
    assert round(mean_squared_cca(X, Y, center=False).value, 5) == 0.54312


def test_linear_cka_equals_gram_form_and_streams(golden):
    X, Y = golden
    H = np.eye(100) - 1 / 100
    K, L = H @ X @ X.T @ H, H @ Y @ Y.T @ H
    oracle = np.sum(K * L) / (np.linalg.norm(K) * np.linalg.norm(L))
    assert linear_cka(X, Y).value == pytest.approx(oracle, abs=1e-12)
    parts = [Reduction.from_arrays(X[s : s + 7], Y[s : s + 7]) for s in range(0, 100, 7)]
    assert linear_cka(Reduction.merge_all(parts)).value == pytest.approx(oracle, abs=1e-12)


def test_debiased_cka_equals_n_by_n_unbiased_hsic(golden):
    X, Y = golden
    n = 100

    def hsic_u(K, L):
        K, L = K.copy(), L.copy()
        np.fill_diagonal(K, 0)
        np.fill_diagonal(L, 0)
        one = np.ones(n)
        return (np.trace(K @ L) + one @ K @ one * (one @ L @ one) / ((n - 1) * (n - 2)) - 2 / (n - 2) * one @ K @ L @ one) / (n * (n - 3))

    K, L = X @ X.T, Y @ Y.T
    oracle = hsic_u(K, L) / np.sqrt(hsic_u(K, K) * hsic_u(L, L))
    assert debiased_linear_cka(X, Y).value == pytest.approx(oracle, abs=1e-12)


def test_cca_equals_qr_oracle_and_uncentred_variant(golden):
    X, Y = golden
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    rho = np.linalg.svd(np.linalg.qr(Xc)[0].T @ np.linalg.qr(Yc)[0], compute_uv=False)
    assert np.allclose(cca(X, Y), rho, atol=1e-10)
    assert mean_squared_cca(X, Y).value == pytest.approx(np.mean(rho**2), abs=1e-10)
    rho_u = np.linalg.svd(np.linalg.qr(X)[0].T @ np.linalg.qr(Y)[0], compute_uv=False)
    assert np.allclose(cca(X, Y, center=False), rho_u, atol=1e-10)


def test_pwcca_and_svcca_against_direct_computation(golden):
    X, Y = golden
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    Qx, Rx = np.linalg.qr(Xc)
    Qy, _ = np.linalg.qr(Yc)
    U, rho, _ = np.linalg.svd(Qx.T @ Qy)
    H = Qx @ U  # unit-norm canonical variates of X
    alpha = np.abs(H.T @ Xc).sum(axis=1)
    assert pwcca(X, Y).value == pytest.approx(alpha @ rho / alpha.sum(), abs=1e-10)
    # SVCCA keeping everything is the mean canonical correlation
    assert svcca(X, Y, keep=1.0).value == pytest.approx(rho.mean(), abs=1e-10)
    # keeping 50% of the variance keeps the top principal components only
    s = svcca(X, Y, keep=0.5)
    ev = np.linalg.svd(Xc, compute_uv=False) ** 2
    assert s.details["kept_x"] == int(np.searchsorted(np.cumsum(ev) / ev.sum(), 0.5) + 1)


def test_procrustes_against_scipy(golden):
    import scipy.linalg

    X, Y = golden
    Xn = (X - X.mean(0)) / np.linalg.norm(X - X.mean(0))
    Yn = (Y - Y.mean(0)) / np.linalg.norm(Y - Y.mean(0))
    Q, _ = scipy.linalg.orthogonal_procrustes(Xn, Yn)
    assert procrustes_distance(X, Y).value == pytest.approx(np.linalg.norm(Xn @ Q - Yn), abs=1e-10)


def _transforms(X, g):
    p = X.shape[1]
    Q = np.linalg.qr(g.standard_normal((p, p)))[0]
    return {
        "invariant_to_permutation": X[:, g.permutation(p)],
        "invariant_to_orthogonal": X @ Q,
        "invariant_to_isotropic_scaling": 3.7 * X,
        "invariant_to_invertible_linear": X @ (g.standard_normal((p, p)) + 3 * np.eye(p)),
        "invariant_to_translation": X + g.standard_normal(p) * 5,
        "invariant_to_unit_scaling": X * g.uniform(0.2, 5.0, p),
    }


@pytest.mark.parametrize("name", sorted(REFERENCE_MEASURES))
def test_invariance_table_is_true(name):
    """Every flag of REFERENCE_MEASURES is checked: True -> unchanged, False -> changes."""
    g = np.random.default_rng(11)
    X = g.standard_normal((300, 8)) @ g.standard_normal((8, 8))
    Y = X[:, :5] @ g.standard_normal((5, 6)) + g.standard_normal((300, 6))
    f = FUNCS[name]
    base = f(X, Y).value
    info = REFERENCE_MEASURES[name]
    for flag, Xt in _transforms(X, g).items():
        v = f(Xt, Y).value
        if getattr(info, flag):
            assert v == pytest.approx(base, abs=1e-9), (name, flag)
        else:
            assert abs(v - base) > 1e-6, (name, flag)
    assert info.larger_is_more_similar == f(X, Y).larger_is_more_similar
    lo, hi = info.range
    assert lo - 1e-12 <= base <= hi + 1e-12
    if info.symmetric:
        assert f(Y, X).value == pytest.approx(base, abs=1e-9)


@pytest.mark.parametrize("name", sorted(REFERENCE_MEASURES))
def test_identical_layers_score_perfectly(name):
    g = np.random.default_rng(0)
    X = g.standard_normal((200, 5))
    v = FUNCS[name](X, X).value
    assert v == pytest.approx(0.0 if name == "procrustes" else 1.0, abs=1e-8)


@pytest.mark.parametrize("name", STREAMING)
def test_streaming_measures_accept_a_reduction(name, golden):
    X, Y = golden
    r = Reduction.from_arrays(X, Y)
    assert FUNCS[name](r).value == pytest.approx(FUNCS[name](X, Y).value, abs=1e-12)


@pytest.mark.parametrize("name", ["debiased_linear_cka", "rbf_cka"])
def test_in_memory_measures_reject_a_reduction(name, golden):
    with pytest.raises(ValueError, match="not a Reduction"):
        FUNCS[name](Reduction.from_arrays(*golden))


@pytest.mark.parametrize("name", sorted(REFERENCE_MEASURES))
def test_degenerate_inputs_raise_clear_errors(name):
    f = FUNCS[name]
    g = np.random.default_rng(0)
    with pytest.raises(ValueError, match="at least"):
        f(np.ones((1, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="X has no variance"):
        f(np.ones((50, 3)), g.standard_normal((50, 3)))
    with pytest.raises(ValueError, match="same number of rows"):
        f(np.ones((50, 3)), np.ones((49, 3)))
    with pytest.raises(ValueError, match="Y contains"):
        f(g.standard_normal((50, 3)), np.full((50, 3), np.nan))


@pytest.mark.parametrize("name", sorted(REFERENCE_MEASURES))
def test_rank_deficient_input_gives_a_finite_documented_value(name):
    g = np.random.default_rng(1)
    X = g.standard_normal((200, 4))
    X = np.hstack([X, X[:, :2], np.zeros((200, 1))])  # duplicated and dead columns
    Y = X[:, :3] + 0.5 * g.standard_normal((200, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)
        s = FUNCS[name](X, Y)
    assert np.isfinite(s.value)
    if "rank_x" in s.details:
        assert s.details["rank_x"] == 4


def test_cca_warns_when_samples_do_not_exceed_ranks():
    g = np.random.default_rng(0)
    # centred, 12 rows span 11 dimensions: two 6-dim layers share at least one direction
    with pytest.warns(RepmatchWarning, match="1 of them equal 1"):
        rho = cca(g.standard_normal((12, 6)), g.standard_normal((12, 6)))
    assert rho[0] == pytest.approx(1.0, abs=1e-8) and rho[1] < 1 - 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("error", RepmatchWarning)  # one row more: no forced correlation, no warning
        assert cca(g.standard_normal((13, 6)), g.standard_normal((13, 6)))[0] < 1 - 1e-3


def test_debiased_needs_four_rows_and_rbf_threshold():
    g = np.random.default_rng(0)
    with pytest.raises(ValueError, match="at least 4"):
        debiased_linear_cka(g.standard_normal((3, 2)), g.standard_normal((3, 2)))
    with pytest.raises(ValueError, match="threshold"):
        rbf_cka(g.standard_normal((10, 2)), g.standard_normal((10, 2)), threshold=0)
    with pytest.raises(ValueError, match="keep"):
        svcca(g.standard_normal((10, 2)), g.standard_normal((10, 2)), keep=0)


def test_scores_serialise(golden):
    import json

    for f in FUNCS.values():
        d = f(*golden).to_dict()
        json.dumps(d)
        assert "larger_is_more_similar" in d
    assert float(repmatch.linear_cka(*golden)) == linear_cka(*golden).value


@pytest.mark.parametrize("rel, rank", [(1e-5, 4), (1e-8, 3)])
def test_rank_tolerance_edge(rel, rank):
    # RANK_TOL = 1e-12 on covariance eigenvalues, i.e. ~1e-6 on singular values: a near-duplicate
    # column 10x above that is its own direction, one 100x below is not
    assert repmatch.reference.RANK_TOL == 1e-12
    g = np.random.default_rng(3)
    X = g.standard_normal((400, 3))
    X = np.hstack([X, X[:, :1] + rel * g.standard_normal((400, 1))])
    Y = g.standard_normal((400, 4)) + X
    s = mean_squared_cca(X, Y)
    assert s.details["rank_x"] == rank and np.isfinite(s.value)
