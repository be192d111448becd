"""Bipartite matching on a torch device: the auction solver (issue 6), against SciPy's exact LAPJV.

Runs on CPU torch in CI (REPMATCH_TEST_DEVICE=cuda runs it on a GPU); the code is the one a GPU runs.
"""

import os
import warnings

import numpy as np
import pytest
import scipy.optimize

torch = pytest.importorskip("torch")

import repmatch  # noqa: E402
from repmatch import Reduction, RepmatchWarning  # noqa: E402
from repmatch import _torch as backend  # noqa: E402
from repmatch import ASSIGN_TOL  # noqa: E402
from repmatch.correlation import device_between_correlation  # noqa: E402
from repmatch.testing import relu_layers  # noqa: E402

pytestmark = pytest.mark.torch

DEVICE = os.environ.get("REPMATCH_TEST_DEVICE", "cpu")


def _solve(S):
    return backend.auction_assignment(torch.as_tensor(S, device=DEVICE), ASSIGN_TOL)


def _exact(S):
    return scipy.optimize.linear_sum_assignment(S, maximize=True)


def _correlations(rng, n_x, n_y, n=600):
    """A between-net correlation matrix with structure (a noisy mix), as bipartite matching sees."""
    Z = rng.standard_normal((n, max(n_x, n_y)))
    W = Z[:, :n_y] @ (0.3 * rng.standard_normal((n_y, n_y))) + rng.standard_normal((n, n_y))
    return np.corrcoef(Z[:, :n_x].T, W.T)[:n_x, n_x:]


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (2, 2), (2, 3), (3, 2), (40, 40), (30, 45),
                                   (45, 30), (5, 60), (97, 100)])
@pytest.mark.parametrize("seed", [0, 1])
def test_auction_equals_the_exact_solver(shape, seed):
    rng = np.random.default_rng(seed)
    S = _correlations(rng, *shape)
    rows, cols, gap, stats = _solve(S)
    ri, ci = _exact(S)
    # continuous random similarities: the optimum is unique by far more than ASSIGN_TOL
    np.testing.assert_array_equal(rows, ri)
    np.testing.assert_array_equal(cols, ci)
    assert 0.0 <= gap <= ASSIGN_TOL
    assert abs(S[rows, cols].sum() - S[ri, ci].sum()) <= ASSIGN_TOL


def test_rectangular_problems_need_the_reverse_rounds(monkeypatch):
    rng = np.random.default_rng(3)
    problems = [_correlations(rng, *shape) for shape in ((60, 200), (200, 60), (95, 100))]
    for S in problems:
        rows, cols, gap, stats = _solve(S)
        assert stats["reverse_rounds"] > 0
        assert gap <= ASSIGN_TOL
        np.testing.assert_array_equal(cols, _exact(S)[1])
    # without them, prices left on unassigned columns keep the dual bound loose: the certificate
    # sees it (so bipartite_match would fall back to SciPy rather than return it unchecked)
    monkeypatch.setattr(backend._Auction, "reverse_rounds", lambda self, eps, stats: None)
    assert max(_solve(S)[2] for S in problems) > 100 * ASSIGN_TOL


@pytest.mark.parametrize("delta_over_tol, must_be_exact", [(2.0, True), (0.1, False)])
def test_tolerance_edge(delta_over_tol, must_be_exact):
    """The best assignment beats the next by delta: above ASSIGN_TOL the auction must find it; below,
    either is acceptable, and the certified gap still bounds the shortfall."""
    rng = np.random.default_rng(7)
    n = 12
    S = 0.1 * rng.uniform(-1, 1, (n, n))
    np.fill_diagonal(S, 0.8)  # identity is optimal by a wide margin ...
    delta = delta_over_tol * ASSIGN_TOL
    S[0, 1] = S[1, 0] = (S[0, 0] + S[1, 1] - delta) / 2  # ... except swapping 0 and 1: worse by delta
    ri, ci = _exact(S)
    np.testing.assert_array_equal(ci, np.arange(n))
    rows, cols, gap, _ = _solve(S)
    assert gap <= ASSIGN_TOL
    assert S[ri, ci].sum() - S[rows, cols].sum() <= gap + 1e-15
    if must_be_exact:
        np.testing.assert_array_equal(cols, np.arange(n))
    else:
        assert sorted(cols[:2]) == [0, 1] and (cols[2:] == np.arange(2, n)).all()


def test_ties_give_an_optimal_one_to_one_assignment():
    rng = np.random.default_rng(5)
    S = _correlations(rng, 20, 20)
    S[:, 7] = S[:, 3]  # duplicate unit in Y: two optimal assignments at least
    S[11] = S[2]  # and in X
    rows, cols, gap, _ = _solve(S)
    ri, ci = _exact(S)
    assert len(set(cols.tolist())) == 20
    assert abs(S[rows, cols].sum() - S[ri, ci].sum()) <= ASSIGN_TOL
    constant = np.full((6, 9), 0.25)  # every assignment is optimal
    rows, cols, gap, _ = _solve(constant)
    assert len(set(cols.tolist())) == 6 and gap <= ASSIGN_TOL


def test_device_reduction_matching_equals_host_with_dead_units():
    X, Y = relu_layers(n_samples=3000, n_x=70, n_y=64, shared_dim=30, private_dim=30, rng=2)
    X[:, [3, 40]] = 0.0  # dead units: excluded, so the live problem is 68 x 64
    Y[:, 5] = 2.5
    host = Reduction.from_arrays(X, Y)
    dev = Reduction.from_arrays(X, Y, device=DEVICE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)
        bh = repmatch.bipartite_match(host)
        bd = repmatch.bipartite_match(dev, solver="auction")
        sd = repmatch.semi_match(dev)
    assert bd.solver == "auction" and bh.solver == "scipy"
    assert 0.0 <= bd.optimality_gap <= ASSIGN_TOL
    np.testing.assert_array_equal(bd.x, bh.x)
    np.testing.assert_array_equal(bd.y, bh.y)
    np.testing.assert_allclose(bd.values, bh.values, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(bd.unmatched_x, bh.unmatched_x)
    np.testing.assert_array_equal(bd.unmatched_y, bh.unmatched_y)
    assert set(bd.unmatched_x.tolist()) >= {3, 40} and 5 in bd.unmatched_y
    assert abs(bd.chance - bh.chance) <= 1e-12 and bd.agree == bh.agree
    np.testing.assert_array_equal(sd.y, bh.semi.y)
    np.testing.assert_allclose(sd.values, bh.semi.values, rtol=0, atol=1e-12)
    d = bd.to_dict()
    assert d["solver"] == "auction" and d["optimality_gap"] == bd.optimality_gap


def test_device_correlation_stays_on_the_device():
    X, Y = relu_layers(n_samples=500, n_x=10, n_y=12, rng=1)
    dev = Reduction.from_arrays(X, Y, device=DEVICE)
    sim = repmatch.alignment.similarity_matrix(dev)
    assert isinstance(sim.S, torch.Tensor) and sim.S.device.type == torch.device(DEVICE).type
    assert sim.S.dtype == torch.float64 and tuple(sim.S.shape) == (10, 12)
    ref = repmatch.correlation_from_reduction(Reduction.from_arrays(X, Y)).between
    np.testing.assert_allclose(sim.S.cpu().numpy(), ref, rtol=0, atol=1e-12)


def test_auto_solver_picks_by_where_the_matrix_lives():
    X, Y = relu_layers(n_samples=500, n_x=10, n_y=10, rng=1)
    assert repmatch.bipartite_match(X, Y).solver == "scipy"
    if DEVICE == "cpu":  # the CPU holds the matrix: the exact host solver is used there
        assert repmatch.bipartite_match(Reduction.from_arrays(X, Y, device="cpu")).solver == "scipy"
    else:
        assert repmatch.bipartite_match(Reduction.from_arrays(X, Y, device=DEVICE)).solver == "auction"
    # host inputs can ask for the auction (solved on CPU torch): same pairs
    a = repmatch.bipartite_match(X, Y, solver="auction")
    np.testing.assert_array_equal(a.y, repmatch.bipartite_match(X, Y).y)
    mi = repmatch.bipartite_match(X, Y, measure="mi", solver="auction")
    np.testing.assert_array_equal(mi.y, repmatch.bipartite_match(X, Y, measure="mi").y)


def test_unknown_solver_is_named():
    X, Y = relu_layers(n_samples=100, n_x=4, n_y=4, rng=1)
    with pytest.raises(ValueError, match="solver must be one of"):
        repmatch.bipartite_match(X, Y, solver="hungarian")


def test_gap_above_tolerance_falls_back_to_scipy(monkeypatch):
    X, Y = relu_layers(n_samples=500, n_x=12, n_y=12, rng=3)
    real = backend.auction_assignment

    def loose(S, tol):
        rows, cols, gap, stats = real(S, tol)
        return rows, cols, 10 * tol, stats

    monkeypatch.setattr(backend, "auction_assignment", loose)
    with pytest.warns(RepmatchWarning, match="certified gap .* exceeds assign_tol"):
        b = repmatch.bipartite_match(X, Y, solver="auction")
    assert b.solver == "scipy" and b.optimality_gap == 0.0
    np.testing.assert_array_equal(b.y, repmatch.bipartite_match(X, Y).y)


def test_inputs_that_could_stall_the_auction_end():
    # large values with ties: below ~an ulp of the prices a bid would not raise them; epsilon is
    # floored at 64 ulps, so the auction ends (its gap then exceeds ASSIGN_TOL: the caller falls back)
    big = torch.tensor([[1e8, 0.0], [1e8, 0.0]], dtype=torch.float64, device=DEVICE)
    rows, cols, gap, _ = backend.auction_assignment(big, ASSIGN_TOL)
    assert sorted(cols.tolist()) == [0, 1] and np.isfinite(gap)
    ints = torch.as_tensor(1e7 * np.random.default_rng(1).integers(0, 3, (6, 6)), device=DEVICE)
    rows, cols, gap, _ = backend.auction_assignment(ints, ASSIGN_TOL)
    ri, ci = _exact(ints.cpu().numpy())
    S = ints.cpu().numpy()
    assert S[rows, cols].sum() >= S[ri, ci].sum() - gap
    # tol = 0 with ties, and float32 input (solved in float64)
    ties = np.ones((5, 5))
    assert sorted(_solve_with(ties, 0.0)[1].tolist()) == list(range(5))
    f32 = torch.as_tensor(np.random.default_rng(2).integers(0, 3, (8, 8)), dtype=torch.float32, device=DEVICE)
    rows, cols, gap, _ = backend.auction_assignment(f32, ASSIGN_TOL)
    assert gap <= ASSIGN_TOL and f32.cpu().numpy()[rows, cols].sum() == f32.cpu().numpy()[_exact(f32.cpu().numpy())].sum()


def _solve_with(S, tol):
    return backend.auction_assignment(torch.as_tensor(S, device=DEVICE), tol)


def test_bad_similarities_are_named():
    S = np.eye(3)
    S[1, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        _solve(S)
    with pytest.raises(ValueError, match="2-D floating tensor"):
        backend.auction_assignment(torch.ones(3, 3, dtype=torch.long), ASSIGN_TOL)


def test_round_limit_gives_an_infinite_gap_and_the_exact_fallback(monkeypatch):
    rng = np.random.default_rng(4)
    S = _correlations(rng, 40, 40)
    assert _solve(S)[3]["max_rounds"] == backend.AUCTION_ROUNDS_PER_UNIT * 80 + 1000
    monkeypatch.setattr(backend, "AUCTION_ROUNDS_PER_UNIT", -10**6)  # a limit the first round exceeds
    rows, cols, gap, stats = _solve(S)
    assert gap == float("inf") and rows.size == 0 and stats["bidding_rounds"] == 1
    X, Y = relu_layers(n_samples=500, n_x=12, n_y=12, rng=3)
    with pytest.warns(RepmatchWarning, match="round limit"):
        b = repmatch.bipartite_match(X, Y, solver="auction")
    assert b.solver == "scipy"
    np.testing.assert_array_equal(b.y, repmatch.bipartite_match(X, Y).y)


def test_device_correlation_is_bitwise_the_host_one_and_warns_once():
    X, Y = relu_layers(n_samples=800, n_x=30, n_y=25, rng=6)
    X[:, 4] = 0.0
    dev = Reduction.from_arrays(X, Y, device="cpu")
    with pytest.warns(RepmatchWarning, match="constant"):
        R, cx, cy = device_between_correlation(dev)
    with pytest.warns(RepmatchWarning, match="constant"):
        host = repmatch.correlation_from_reduction(dev.to(None))
    np.testing.assert_array_equal(R.cpu().numpy(), host.between)  # same accumulators: bit for bit
    np.testing.assert_array_equal(cx, host.constant_x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # cached: no second warning
        repmatch.bipartite_match(dev, solver="auction")


def test_no_live_units_means_no_solver():
    X = np.zeros((50, 3))
    Y = np.random.default_rng(0).standard_normal((50, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)
        b = repmatch.bipartite_match(X, Y, solver="auction")
    assert b.solver == "none" and b.x.size == 0 and b.optimality_gap == 0.0
