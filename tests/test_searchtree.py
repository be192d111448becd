"""The shared, downdate-screened deletion search (repmatch._searchtree) against the certified
per-neuron search it replaces: same results on every data class, bounds that hold, and a screen
that is actually used on ordinary data."""

import warnings
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import repmatch
from repmatch import RepmatchWarning, _searchtree
from repmatch import _certify as cert
from repmatch.simple import _deletion, _order, _plan, _Searches
from repmatch.testing import relu_layers


def _per_neuron(geo, I, J, S, thr):
    return {int(v): _deletion(geo, I, J, int(v), _order(S, int(v), None), thr) for v in S}


def _compare(X, Y, eps, method=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)
        geo, eps, thr, I, J, S, _, _, _ = _plan(X, Y, eps, rng=None, restarts=0, method=method, tol=None)
        tree = _Searches(geo, I, J, thr)([int(v) for v in S], S)
        alone = _per_neuron(geo, I, J, S, thr)
    assert set(tree) == set(alone) == {int(v) for v in S}
    for v in alone:
        (a_i, a_j, a_ok), (t_i, t_j, t_ok) = alone[v], tree[v]
        if a_ok and t_ok:  # both certain: the deletion algorithm's unique answer in this order
            assert a_i.tolist() == t_i.tolist() and a_j.tolist() == t_j.tolist(), v
    return tree


def _near_duplicates(seed, n=8, d=90, delta=1e-7):
    g = np.random.default_rng(seed)
    z = g.standard_normal((d, 4))
    X = np.abs(z @ g.standard_normal((4, n))) + 0.3 * g.random((d, n))
    Y = X[:, g.permutation(n)] + delta * g.standard_normal((d, n))
    X[:, 1] = X[:, 0] * (1 + delta)  # a near-duplicate pair inside one side: an ill-conditioned span
    return X, Y


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(6, 18), eps=st.sampled_from([0.15, 0.25, 0.4]),
       method=st.sampled_from(["gram", "qr"]))
def test_tree_equals_per_neuron_search_on_relu_layers(seed, n, eps, method):
    X, Y = relu_layers(n_samples=30 * n, n_x=n, n_y=n + seed % 5, shared_dim=max(2, n // 2),
                       private_dim=max(2, n // 2), rng=seed)
    _compare(X, Y, eps, method)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), delta=st.sampled_from([1e-4, 1e-7, 1e-10, 1e-13]),
       eps=st.sampled_from([0.0, 1e-6, 0.2]))
def test_tree_equals_per_neuron_search_on_ill_conditioned_spans(seed, delta, eps):
    """Near-duplicates make spans the screen must refuse (or bound widely): same answers."""
    X, Y = _near_duplicates(seed, delta=delta)
    _compare(X, Y, eps)


def test_screen_off_gives_the_same_matches(monkeypatch):
    X, Y = relu_layers(n_samples=2000, n_x=24, n_y=24, shared_dim=12, private_dim=12, rng=5)
    on = repmatch.simple_matches(X, Y, 0.25)
    monkeypatch.setattr(_searchtree, "SCREEN_MIN_EIG", np.inf)  # every test by the certified kernels
    off = repmatch.simple_matches(X, Y, 0.25)
    assert [(m.x.tolist(), m.y.tolist()) for m in on] == [(m.x.tolist(), m.y.tolist()) for m in off]
    assert on.found_for == off.found_for


def test_screen_is_used_on_ordinary_data_and_shares_tests():
    X, Y = relu_layers(n_samples=3000, n_x=48, n_y=48, shared_dim=24, private_dim=24, rng=2)
    r = repmatch.Reduction.from_arrays(X, Y)
    geo, eps, thr, I, J, S, _, _, _ = _plan(r, None, 0.25, rng=None, restarts=0, method=None, tol=None)
    space = geo.tiers.restrict(S)
    loc = {int(g): i for i, g in enumerate(S)}
    tree = _searchtree.SearchTree(space, I.size, thr)
    tree.run([loc[int(i)] for i in I], [loc[int(j)] for j in J], range(S.size), range(S.size))
    s = tree.stats
    assert s["screened"] >= 0.95 * s["tests"]
    assert s["tests"] < 0.5 * S.size * (S.size - 1)  # one test per deletion and set, not per neuron


def _exact_d2(Mspan, Mcand):
    return cert.exact_squared_distances(Mspan.T, Mcand.T, 1e-10)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(0, 4))
def test_screen_bound_holds_against_exact_arithmetic(seed, k):
    """Downdated squared distances (after removing k columns, then once more) are within their
    bound ``beta`` of the exact rational ones, and the bound is tight enough to be useful."""
    g = np.random.default_rng(seed)
    d, nA, nB = 80, 7, 5
    A = np.abs(g.standard_normal((d, 3)) @ g.standard_normal((3, nA))) + 0.5 * g.random((d, nA))
    B = np.abs(g.standard_normal((d, 3)) @ g.standard_normal((3, nB))) + 0.5 * g.random((d, nB))
    M = np.hstack([A, B])
    r = repmatch.Reduction.from_arrays(A, B)
    geo, *_ = _plan(r, None, 0.5, rng=None, restarts=0, method=None, tol=None)
    G, eta = geo.space.G, geo.space.eta
    Ai, Bi = np.arange(nA), nA + np.arange(nB)
    sp = _searchtree._fresh(G, eta, Ai, Bi)
    assert sp is not None
    R = np.sort(g.choice(nA, size=k, replace=False))
    if k:  # a downdated state, then a screened removal on top of it
        keep = np.setdiff1d(np.arange(nA), R)
        sp = _searchtree._downdate(sp, R, keep, np.arange(nB))
        Ai = Ai[keep]
    u = np.array([int(g.integers(Ai.size))])
    d2 = _searchtree._extend(sp, [None], 0, u)
    beta = sp.bound(eta[Bi], sp.depth + 1)
    span = np.delete(Ai, u)
    exact = _exact_d2(M[:, span], M[:, Bi])
    assert exact is not None
    for got, b, ex in zip(d2, beta, exact):
        assert abs(Fraction(float(got)) - ex) <= Fraction(float(b)), (got, float(ex), b)
    assert beta.max() < 1e-6


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), closeness=st.sampled_from([1e-1, 1e-2, 3e-3]))
def test_screen_rounding_term_holds_on_ill_conditioned_spans_after_many_downdates(seed, closeness):
    """The screen's rounding term against 40-digit arithmetic on the same Gram matrix (so only the
    screen's own rounding is measured): spans with near-duplicate columns (kappa up to ~1e6), up to
    10 downdates. The error stays below the bound, and far below it (the margin is documented)."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    g = np.random.default_rng(seed)
    d, nA, nB = 200, 30, 12
    lat = g.standard_normal((d, 10))
    A = np.maximum(lat @ g.standard_normal((10, nA)) + 0.3 * g.standard_normal((d, nA)), 0) + 0.05 * g.random((d, nA))
    A[:, :4] = A[:, 4:8] + closeness * g.standard_normal((d, 4))
    B = np.maximum(lat @ g.standard_normal((10, nB)), 0) + 0.1 * g.random((d, nB))
    M = np.hstack([A, B])
    M /= np.linalg.norm(M, axis=0)
    G = M.T @ M
    Gm = mpmath.matrix(G.tolist())
    Bi = nA + np.arange(nB)
    sp = _searchtree._fresh(G, np.zeros(nA + nB), np.arange(nA), Bi)
    if sp is None:  # too ill-conditioned for the screen: nothing to bound
        return
    cur = np.arange(nA)
    worst = 0.0
    for _ in range(10):
        R = np.sort(g.choice(cur.size, size=int(g.integers(1, 3)), replace=False))
        keep = np.setdiff1d(np.arange(cur.size), R)
        sp = _searchtree._downdate(sp, R, keep, np.arange(nB))
        cur = cur[keep]
        u = np.array([int(g.integers(cur.size))])
        d2 = _searchtree._extend(sp, [None], 0, u)
        span = np.delete(cur, u).tolist()
        Gs = mpmath.matrix([[Gm[i, j] for j in span] for i in span])
        bound = sp.bound(np.zeros(nB), sp.depth + 1)
        for k, b in enumerate(Bi):
            gv = mpmath.matrix([Gm[i, int(b)] for i in span])
            ref = 1 - sum(a * c for a, c in zip(gv, mpmath.lu_solve(Gs, gv)))
            err = abs(mpmath.mpf(float(d2[k])) - ref)
            assert err <= bound[k]
            worst = max(worst, float(err / bound[k]))
    assert worst < 1e-2  # the measured margin (module docstring: about 8,000 at worst seen)


def test_bound_grows_with_downdates():
    X, Y = relu_layers(n_samples=500, n_x=10, n_y=10, shared_dim=5, private_dim=5, rng=1)
    r = repmatch.Reduction.from_arrays(X, Y)
    geo, *_ = _plan(r, None, 0.5, rng=None, restarts=0, method=None, tol=None)
    sp = _searchtree._fresh(geo.space.G, geo.space.eta, np.arange(10), 10 + np.arange(10))
    e = geo.space.eta[10:]
    assert (sp.bound(e, 3) > sp.bound(e, 1)).all() and (sp.bound(e, 1) > 0).all()


def test_unscreenable_span_goes_to_the_certified_kernels():
    X, Y = _near_duplicates(3, delta=1e-13)
    r = repmatch.Reduction.from_arrays(X, Y)
    geo, *_ = _plan(r, None, 0.2, rng=None, restarts=0, method=None, tol=None)
    n = X.shape[1]
    assert _searchtree._fresh(geo.space.G, geo.space.eta, np.arange(n), n + np.arange(n)) is None


@pytest.mark.parametrize("restarts", [0, 2])
def test_simple_matches_public_results_unchanged_by_sharing(restarts):
    """simple_matches (tree) against v_minimal_match per neuron (one-member tree) and the
    certified per-neuron search: the same match for every neuron, in every order."""
    X, Y = relu_layers(n_samples=1500, n_x=20, n_y=20, shared_dim=10, private_dim=10, rng=9)
    sm = repmatch.simple_matches(X, Y, 0.3, restarts=restarts, rng=4)
    by_v = {}
    for m, found in zip(sm.matches, sm.found_for):
        for v in found:
            by_v.setdefault(v, []).append((m.x.tolist(), m.y.tolist()))
    for side, idx in list(by_v)[:12]:
        m = repmatch.v_minimal_match(X, Y, 0.3, side=side, index=idx)
        assert (m.x.tolist(), m.y.tolist()) in by_v[(side, idx)]


def test_n_jobs_gives_the_same_result():
    X, Y = relu_layers(n_samples=2000, n_x=30, n_y=30, shared_dim=15, private_dim=15, rng=11)
    one = repmatch.simple_matches(X, Y, 0.25)
    two = repmatch.simple_matches(X, Y, 0.25, n_jobs=2)
    assert [(m.x.tolist(), m.y.tolist()) for m in one] == [(m.x.tolist(), m.y.tolist()) for m in two]
    assert one.found_for == two.found_for and one.not_minimal_for == two.not_minimal_for
    with pytest.raises(ValueError, match="n_jobs"):
        repmatch.simple_matches(X, Y, 0.25, n_jobs=0)


# -- necessary neurons, low-rank spans, deferred near decisions, refresh depth


def _mm(X, Y, eps, xs, ys):
    from repmatch.testing import naive_maximum_match

    if not xs or not ys:  # nothing to span the other side: every neuron falls
        return set(), set()
    a, b = naive_maximum_match(X, Y, eps, x_cols=sorted(xs), y_cols=sorted(ys))
    return set(a), set(b)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), eps=st.sampled_from([0.2, 0.3, 0.45]))
def test_necessary_neurons_carry_over(seed, eps):
    """The lemma the early stop rests on, checked with the naive solver on the raw data: if u is
    necessary for v in C (v not in maxmatch(C - u)) and deleting u' takes u with it, deleting u'
    takes v too; and u stays necessary in every match P inside C that contains u and v."""
    _lemma_checks(seed, eps)


def test_necessary_neuron_lemma_is_exercised():
    assert sum(_lemma_checks(seed, 0.3) for seed in range(4)) > 0


def _lemma_checks(seed, eps):
    """Asserts the lemma on one data set; returns how many (v, u, u') premises it checked."""
    n = 7
    X, Y = relu_layers(n_samples=40 * n, n_x=n, n_y=n, shared_dim=4, private_dim=3, rng=seed)
    Cx, Cy = _mm(X, Y, eps, range(n), range(n))
    C = [("x", i) for i in sorted(Cx)] + [("y", j) for j in sorted(Cy)]
    if len(C) < 3:
        return 0

    def without(S, w):
        xs = {i for s, i in S if s == "x"} - ({w[1]} if w[0] == "x" else set())
        ys = {j for s, j in S if s == "y"} - ({w[1]} if w[0] == "y" else set())
        a, b = _mm(X, Y, eps, xs, ys)
        return {("x", i) for i in a} | {("y", j) for j in b}

    after = {w: without(C, w) for w in C}
    checked = 0
    for v in C:
        for u in C:
            if u == v or v in after[u]:
                continue  # u is not necessary for v in C
            for u2 in C:
                if u2 not in (u, v) and u not in after[u2]:
                    assert v not in after[u2], (v, u, u2)
                    checked += 1
            for x in C:
                P = after[x]
                if u in P and v in P:
                    assert v not in without(P, u), (v, u, x)
    return checked


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), lazy=st.sampled_from([0, 2, 5, 10_000]))
def test_low_rank_span_equals_the_direct_inverse(seed, lazy):
    """A chain of downdates held as a low-rank correction (folded at any rank) gives the inverse,
    coefficients and distances of the span computed directly."""
    g = np.random.default_rng(seed)
    d, nA, nB = 300, 40, 15
    lat = g.standard_normal((d, 12))
    M = np.maximum(lat @ g.standard_normal((12, nA + nB)), 0) + 0.2 * g.random((d, nA + nB))
    M /= np.linalg.norm(M, axis=0)
    G = M.T @ M
    old = _searchtree.LAZY_RANK
    _searchtree.LAZY_RANK = lazy
    try:
        A, B = np.arange(nA), nA + np.arange(nB)
        sp = _searchtree._fresh(G, np.zeros(nA + nB), A, B)
        assert sp is not None
        for _ in range(8):
            R = np.sort(g.choice(A.size, size=int(g.integers(0, 4)), replace=False))
            keepA = np.setdiff1d(np.arange(A.size), R)
            keepB = np.sort(g.choice(B.size, size=B.size - int(g.integers(0, 2)), replace=False))
            sp = _searchtree._downdate(sp, R, keepA, keepB)
            A, B = A[keepA], B[keepB]
            H = np.linalg.inv(G[np.ix_(A, A)])
            C = H @ G[np.ix_(A, B)]
            assert np.allclose(sp.H, H, rtol=0, atol=1e-9 * np.abs(H).max())
            assert np.allclose(sp.C, C, rtol=0, atol=1e-9 * max(1.0, np.abs(C).max()))
            assert np.allclose(sp.d2, 1 - np.einsum("ij,ij->j", G[np.ix_(A, B)], C), rtol=0, atol=1e-10)
            assert sp.W.shape[0] <= max(lazy, 3)  # folded once past LAZY_RANK
    finally:
        _searchtree.LAZY_RANK = old


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(6, 14))
def test_every_decision_by_the_tiers_gives_the_same_matches(seed, n):
    """With a rounding term so wide that every candidate is near the threshold, every fall is
    decided by the certified tiers after the deferral (pending, stale sides): the same matches."""
    X, Y = relu_layers(n_samples=30 * n, n_x=n, n_y=n, shared_dim=max(2, n // 2), private_dim=max(2, n // 2),
                       rng=seed)
    old = _searchtree.SCREEN_ROUND
    _searchtree.SCREEN_ROUND = 1e12
    try:
        _compare(X, Y, 0.3)
    finally:
        _searchtree.SCREEN_ROUND = old


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_rounding_term_holds_up_to_the_refresh_depth(seed):
    """SCREEN_MAX_DEPTH single downdates of a 160-column span, checked against a fresh double
    factorisation of the same subset: |downdated - fresh| stays within the depth part of the bound
    (the fresh value is itself within its depth-0 bound of the exact one: the tests above)."""
    g = np.random.default_rng(seed)
    depth = _searchtree.SCREEN_MAX_DEPTH
    d, nA, nB = 600, depth + 32, 20
    lat = g.standard_normal((d, 60))
    M = np.maximum(lat @ g.standard_normal((60, nA + nB)) + 0.3 * g.standard_normal((d, nA + nB)), 0)
    M += 0.05 * g.random((d, nA + nB))
    M /= np.linalg.norm(M, axis=0)
    G = M.T @ M
    eta = np.zeros(nA + nB)
    A, B = np.arange(nA), nA + np.arange(nB)
    sp = _searchtree._fresh(G, eta, A, B)
    assert sp is not None
    worst = 0.0
    for k in range(depth):
        r = np.array([int(g.integers(A.size))])
        keep = np.setdiff1d(np.arange(A.size), r)
        sp = _searchtree._downdate(sp, r, keep, np.arange(B.size))
        A = A[keep]
        if k % 16 == 15 or k == depth - 1:
            fresh = _searchtree._fresh(G, eta, A, B)
            room = sp.bound(eta[B], sp.depth) - fresh.bound(eta[B], 0)
            err = np.abs(sp.d2 - fresh.d2)
            assert (err <= room).all()
            worst = max(worst, float((err / room).max()))
    assert sp.depth == depth and worst < 1e-2  # the margin: far inside the bound
