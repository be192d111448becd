"""Sparse prediction: exact LASSO path from streamed moments, checked against scikit-learn."""

import json
import warnings

import numpy as np
import pytest

from repmatch import Reduction, RepmatchWarning, sparse_prediction
from repmatch.sparse import CD_TOL, lasso_path_from_moments

sklearn_linear = pytest.importorskip("sklearn.linear_model")

#: Weights must equal scikit-learn's Lasso (run to tol 1e-14) to this (spec issue: 1e-6).
SK_AGREE = 1e-6


def data(n=800, nx=10, ny=6, seed=1):
    g = np.random.default_rng(seed)
    X = g.standard_normal((n, nx)) @ g.standard_normal((nx, nx)) + 3.0
    Y = X[:, :4] @ g.standard_normal((4, ny)) + 2.0 * g.standard_normal((n, ny)) - 1.0
    return X, Y


def split(n, frac, seed):
    order = np.random.default_rng(seed).permutation(n)
    k = int(round(frac * n))
    return order[k:], order[:k]


def sk_path(Z, T, alphas):
    out = []
    for a in alphas:
        if a == 0:
            A = np.c_[Z, np.ones(len(Z))]
            out.append(np.linalg.lstsq(A, T, rcond=None)[0][:-1])
        else:
            m = sklearn_linear.Lasso(alpha=a, tol=1e-14, max_iter=1_000_000).fit(Z, T)
            out.append(m.coef_.T)
    return np.array(out)


ALPHAS = [0.0, 1e-4, 1e-3, 10**-2.6, 1e-2, 0.05, 0.2]


def test_path_equals_scikit_learn_both_directions_and_fvu_is_held_out():
    X, Y = data()
    res = sparse_prediction(X, Y, alphas=ALPHAS, test_fraction=0.25, rng=7)
    tr, te = split(len(X), 0.25, 7)
    for path, A, B in ((res.x_to_y, X, Y), (res.y_to_x, Y, X)):
        At, Bt = A[tr], B[tr]
        ma, sa, mb, sb = At.mean(0), At.std(0), Bt.mean(0), Bt.std(0)
        W = sk_path((At - ma) / sa, (Bt - mb) / sb, ALPHAS)
        assert np.abs(path.weights - W).max() < SK_AGREE
        assert path.converged.all() and path.held_out and path.n_test == 200 and path.n_train == 600
        for k in range(len(ALPHAS)):
            pred = mb + sb * (((A[te] - ma) / sa) @ path.weights[k])
            fvu = ((B[te] - pred) ** 2).mean(0) / B[te].var(0)
            assert np.abs(path.fvu[k] - fvu).max() < 1e-10
            assert np.array_equal(path.n_nonzero[k], (path.weights[k] != 0).sum(axis=0))


def test_reductions_train_test_equal_arrays_split():
    X, Y = data()
    tr, te = split(len(X), 0.2, 3)
    a = sparse_prediction(X, Y, alphas=ALPHAS, test_fraction=0.2, rng=3)
    train = Reduction.merge_all([Reduction.from_arrays(X[tr[s:s + 100]], Y[tr[s:s + 100]]) for s in range(0, len(tr), 100)])
    b = sparse_prediction(train, alphas=ALPHAS, test=Reduction.from_arrays(X[te], Y[te]))
    assert np.abs(a.x_to_y.weights - b.x_to_y.weights).max() < 1e-8
    assert np.abs(a.y_to_x.fvu - b.y_to_x.fvu).max() < 1e-8
    c = sparse_prediction(train, alphas=ALPHAS)
    assert not c.x_to_y.held_out and c.x_to_y.n_test == 0


def test_large_penalty_gives_empty_model_and_sparsity_grows():
    X, Y = data()
    Z = (X - X.mean(0)) / X.std(0)
    T = (Y - Y.mean(0)) / Y.std(0)
    lam_max = np.abs(Z.T @ T / len(X)).max()
    res = sparse_prediction(X, Y, alphas=[0.0, 1e-3, 1e-2, 0.1, lam_max * 1.0001], direction="x_to_y", test_fraction=0.0)
    p = res.x_to_y
    assert p.n_nonzero[-1].sum() == 0
    # training FVU of the empty model is exactly 1
    assert np.allclose(p.fvu[-1], 1.0, atol=1e-12)
    assert np.all(np.diff(p.mean_nonzero) <= 0)
    # training error is non-decreasing in the penalty (exact solutions, unlike the authors' SGD)
    assert np.all(np.diff(p.mean_fvu) >= -1e-12)


def test_planted_copies_give_single_inputs_and_mutual_pairs():
    g = np.random.default_rng(0)
    X = g.standard_normal((3000, 8))
    perm = g.permutation(8)
    Y = X[:, perm] + 0.3 * g.standard_normal((3000, 8))
    res = sparse_prediction(X, Y, alphas=[0.05], rng=1)
    assert res.x_to_y.strongest_input(0).tolist() == perm.tolist()
    assert sorted(res.mutual_pairs[0]) == sorted((int(i), j) for j, i in enumerate(perm))
    one = sparse_prediction(X, Y, alphas=[0.05], direction="y_to_x", rng=1)
    assert sorted(one.mutual_pairs[0]) == sorted(res.mutual_pairs[0])
    assert one.x_to_y is None
    json.dumps(res.to_dict())


def test_constant_units_are_left_out():
    X, Y = data()
    X[:, 3] = 2.0
    Y[:, 1] = -1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)
        res = sparse_prediction(X, Y, alphas=[0.0, 0.01], rng=0)
    p = res.x_to_y
    assert p.constant_inputs.tolist() == [3] and p.constant_targets.tolist() == [1]
    assert np.all(p.weights[:, 3, :] == 0) and np.all(p.weights[:, :, 1] == 0)
    assert 1 not in p.targets.tolist() and p.fvu.shape == (2, 5)
    assert np.isfinite(p.fvu).all()


def test_duplicated_inputs_fall_back_to_coordinate_descent_and_report_non_convergence():
    # a duplicated input makes the active block singular (the LASSO solution is not unique):
    # the exact active-set step fails and coordinate descent takes over
    X, Y = data()
    Xd = np.hstack([X, X[:, :1]])
    with pytest.warns(RepmatchWarning, match="did not reach"):
        res = sparse_prediction(Xd, Y, alphas=[1e-4], max_iter=1, direction="x_to_y")
    assert not res.x_to_y.converged[0]
    full = sparse_prediction(Xd, Y, alphas=[1e-4], direction="x_to_y")
    ref = sparse_prediction(X, Y, alphas=[1e-4], direction="x_to_y")
    assert full.x_to_y.converged[0]
    # the optimum value is unique even if the weights are not: same predictions
    assert np.abs(full.x_to_y.fvu - ref.x_to_y.fvu).max() < 1e-6


@pytest.mark.parametrize("warm_sweeps", [0, 1, 20])
def test_lasso_core_satisfies_kkt_conditions(warm_sweeps):
    # strongly correlated inputs (slow for plain coordinate descent): the active-set step must land
    # on the exact optimum whatever the starting support
    g = np.random.default_rng(2)
    A = g.standard_normal((500, 3)) @ g.standard_normal((3, 12)) + 0.05 * g.standard_normal((500, 12))
    C = np.corrcoef(A, rowvar=False)
    c = np.corrcoef(A, A[:, :4] @ g.standard_normal((4, 5)) + g.standard_normal((500, 5)), rowvar=False)[:12, 12:]
    W, n_iter, conv = lasso_path_from_moments(C, c, [0.05, 0.01, 0.001], tol=CD_TOL, warm_sweeps=warm_sweeps)
    assert conv.all() and np.all(n_iter <= max(warm_sweeps, 0))
    for k, alpha in enumerate([0.05, 0.01, 0.001]):
        grad = c - C @ W[k]
        nz = W[k] != 0
        assert np.allclose(grad[nz], alpha * np.sign(W[k][nz]), atol=1e-10)
        assert np.all(np.abs(grad[~nz]) <= alpha + 1e-10)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"alphas": [-1.0]}, "alphas"),
        ({"alphas": []}, "alphas"),
        ({"direction": "sideways"}, "direction"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"test_fraction": 0.001}, "too few rows"),
    ],
)
def test_bad_arguments(kwargs, match):
    X, Y = data(n=100)
    with pytest.raises(ValueError, match=match):
        sparse_prediction(X, Y, **kwargs)


def test_bad_inputs():
    X, Y = data(n=100)
    with pytest.raises(ValueError, match="same number of rows"):
        sparse_prediction(X, Y[:-1])
    r = Reduction.from_arrays(X, Y)
    with pytest.raises(ValueError, match="test must be a Reduction"):
        sparse_prediction(r, test=(X, Y))
    with pytest.raises(ValueError, match="test has"):
        sparse_prediction(r, test=Reduction.from_arrays(X[:, :3], Y))
    with pytest.raises(ValueError, match="only used with a Reduction"):
        sparse_prediction(X, Y, test=r)


def test_all_constant_inputs_give_the_empty_model():
    g = np.random.default_rng(0)
    X = np.ones((100, 3))
    Y = g.standard_normal((100, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)
        res = sparse_prediction(X, Y, alphas=[0.0, 0.1], test_fraction=0.0)
    assert np.allclose(res.x_to_y.fvu, 1.0) and np.all(res.x_to_y.n_nonzero == 0)
    assert res.y_to_x.fvu.shape == (2, 0) and res.y_to_x.targets.size == 0
    assert res.mutual_pairs == ((), ())
    json.dumps(res.to_dict())
