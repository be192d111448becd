"""Deletion searches for simple matches, shared between neurons and screened by downdates.

Two exact accelerations of the v-minimal deletion search of :mod:`repmatch.simple`
(docs/subspace.md, "Simple matches at scale"):

**One tree for every neuron.** The searches of all neurons v of the maximum match S try the same
deletions in the same order (S ascending). At every step a search keeps its set C or moves to
P = maxmatch(C - u), and P does not depend on v: only whether v is in it does. So the searches form
a tree. All searches sitting at the same set share one test per deletion, and split only where
their answers differ. The result of every search is exactly that of running it alone.

**Distances by downdating, not refactorising.** A state keeps, for each side A, the inverse
``H = G_AA^-1`` of its unit Gram block and the coefficients ``C = H G_AB`` of the other side's neurons.
Removing a set R from A moves the squared distance of each neuron b of the other side by exactly
``c_R^T (H_RR)^-1 c_R`` (the increase in residual of a least-squares fit when variables are
dropped). A deletion test then costs O(|R|^2 |B|) instead of a pivoted Cholesky of the whole
span. The new state's ``H`` and ``C`` are the Schur-complement downdates of the old ones, held as
a low-rank correction of a shared base (:class:`_Span`, folded past :data:`LAZY_RANK`), so a new
state costs O(r (|A| + |B|)) rather than a copy of both blocks.

**Necessary neurons.** A test at C can stop as soon as the search loses v, and it often knows
before v itself falls. Write cl(u) for the neurons that fall when u is deleted from C (so
maxmatch(C - u) = C - cl(u); cl(u) is the least set containing u that no further neuron falls
from). If u was kept because v is in cl(u) (u is *necessary* for v), then for any u' whose
cascade reaches u, cl(u) is inside cl(u') (cl(u') is closed and contains u), so v falls too.
Necessity carries over to every smaller set P of the search that holds u and v: cl_C(u) ∩ P is
inside cl_P(u), because cl_P(u) together with C - P is closed in C. So each search keeps the
neurons shown necessary for it (every kept deletion), and a test ends when, for every search at
the state, one of them or v has fallen. Only screened decisions record necessity.

**Deferred near decisions.** The fixed point of a cascade does not depend on the order in which
falls are applied, so the cascade first applies only certain falls; neurons within their bound of
the threshold wait until neither side has anything left to recompute (by then the searches may have
lost their neurons, or the neurons may have become certain falls) and are then decided by the
certified tiers in one call per side.

**Certified.** The screen is only used on spans it can bound.
* The screen applies only when the smallest eigenvalue of the span's Gram block is certifiably at
  least :data:`SCREEN_MIN_EIG` (``1 / ||H||_F``). Such a span has no direction anywhere near
  ``rank_tol``, so the rank convention keeps all of it, under any pivot order.
* Every screened squared distance carries a bound ``beta``:
  - the first-order effect of the Gram's noise through the neuron's coefficients,
    ``(eta_b + eta_max sqrt(|A| ||H||))^2``, since ``||c||_2^2 <= ||G_AA^-1||``; and
  - a rounding term ``SCREEN_ROUND * gamma(|A| + 2) * kappa * (1 + depth)``, which grows with the
    number of downdates since the last fresh factorisation (refreshed after
    :data:`SCREEN_MAX_DEPTH`; the growth is checked up to that depth against fresh factorisations).
  Both terms are bounded by the state's fresh factorisation and hold for every subset of the span,
  because removing columns cannot shrink the smallest eigenvalue.
* A neuron whose screened distance is within ``beta`` of the threshold is decided by the certified
  tiers of :mod:`repmatch.subspace` against the current span. If they cannot decide it, the whole
  test is redone by the certified pruning, and undecided neurons are reported as there.
* Every final match is checked again by the certified tiers before it is returned.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from . import _certify as cert
from .subspace import FactorSpace, GramSpace, bounded_prune

#: Smallest (certified lower bound of the) eigenvalue of a span's unit Gram block for which the
#: downdate screen is used; below it every test of that state goes to the certified kernels.
SCREEN_MIN_EIG = 1e-6
#: Constant of the screen's rounding term (module docstring). With it the term is
#: ``8 sqrt(m) u kappa (1 + depth)``; the largest error measured against 45-digit arithmetic, on spans
#: with kappa up to 1e7 after 14 downdates, was 0.001 u kappa sqrt(m) (1 + depth): a margin of 8,000
#: (tests/test_searchtree.py checks the bound on generated ill-conditioned spans).
SCREEN_ROUND = 1.0
#: Downdates of a state's inverse before it is factorised afresh. Deeper chains widen the rounding
#: term (more neurons near the threshold go to the tiers); shallower ones refactorise more often
#: (measured at 512 + 512 before near decisions were deferred: 32 gave 990 refreshes and 1,657 calls
#: to the tiers, 128 gave 135 and 6,291, 256 gave 1 and 19,098; 128 was the fastest).
SCREEN_MAX_DEPTH = 128
#: Rank of a span's low-rank correction (:class:`_Span`) past which it is folded into a new base.
LAZY_RANK = 32

#: ``SearchTree.run(spans=...)`` default: factorise the root set afresh.
_FRESH = object()

_potrf = scipy.linalg.lapack.dpotrf
_potri = scipy.linalg.lapack.dpotri
_trtrs = scipy.linalg.lapack.dtrtrs


class _Span:
    """Span of side A, measuring the neurons B of the other side (positions into the state's arrays).

    ``H`` and ``C`` are held as a materialised base and a low-rank correction:
    ``H = Hb[mA, mA] - W^T W`` and ``C = Cb[mA, mB] - W^T WC``, where ``mA``, ``mB`` are this span's
    positions in the base and the rows of ``W``, ``WC`` are the Schur-complement downdates since the
    base (:func:`_downdate`). A child state then costs O(r (|A| + |B|)) instead of copying both
    blocks; the base is rebuilt once the correction's rank passes :data:`LAZY_RANK`."""

    __slots__ = ("Hb", "Cb", "mA", "mB", "W", "WC", "d2", "hF", "kappa", "emax", "rho", "depth", "n", "beta")

    def bound(self, eta_b: np.ndarray, depth: int) -> np.ndarray:
        """``beta`` of every candidate (module docstring), ``depth`` downdates from a fresh factor."""
        data = self.emax * np.sqrt(self.n * self.hF)
        e = eta_b + data
        e *= e
        e *= self.rho
        e += SCREEN_ROUND * cert.gamma(self.n + 2) * self.kappa * (1 + depth)
        return e

    @property
    def H(self) -> np.ndarray:
        """The inverse of the span's unit Gram block (assembled; for tests and inspection)."""
        return self.hsub(np.arange(self.mA.size), np.arange(self.mA.size))

    @property
    def C(self) -> np.ndarray:
        """The coefficients of the measured neurons in the span (assembled)."""
        return self.crows(np.arange(self.mA.size))

    def hsub(self, rows, cols) -> np.ndarray:
        """``H[rows][:, cols]``."""
        out = self.Hb.take(self.mA[rows], axis=0).take(self.mA[cols], axis=1)
        if self.W.shape[0]:
            out -= self.W[:, rows].T @ self.W[:, cols]
        return out

    def crows(self, rows, cols=None) -> np.ndarray:
        """``C[rows]`` (restricted to the measured positions ``cols``)."""
        mB = self.mB if cols is None else self.mB[cols]
        out = self.Cb.take(self.mA[rows], axis=0).take(mB, axis=1)
        if self.W.shape[0]:
            out -= self.W[:, rows].T @ (self.WC if cols is None else self.WC[:, cols])
        return out

    def materialise(self) -> None:
        """Fold the low-rank correction into a new base."""
        if self.W.shape[0]:
            n = self.mA.size
            self.Hb, self.Cb = self.H, self.C
            self.mA, self.mB = np.arange(n), np.arange(self.mB.size)
            self.W, self.WC = np.empty((0, n)), np.empty((0, self.mB.size))


def _fresh(G, eta, A, B):
    """A freshly factorised span of the neurons A (global local-S indices) measuring B, or None
    when the screen cannot bound it (ill-conditioned or singular block)."""
    if A.size == 0:
        return None
    GA = G[np.ix_(A, A)]
    L, info = _potrf(GA, lower=1, clean=1)
    if info != 0:
        return None
    H, info = _potri(L, lower=1)
    if info != 0:
        return None
    H += np.tril(H, -1).T  # potri leaves the strict upper triangle as it was: zero after clean
    H = H.T  # symmetric now: the C-ordered view, whose row gathers (take) are contiguous
    hF = float(np.linalg.norm(H))
    kappa = float(np.linalg.norm(GA)) * hF
    if not np.isfinite(hF) or 1.0 / hF < SCREEN_MIN_EIG or cert.gamma(A.size + 2) * kappa > 1e-3:
        return None
    hF *= 1.0 + 10 * cert.gamma(A.size + 2) * kappa  # the computed inverse's own error
    eA = eta[A]
    s = float(eA @ eA) * hF
    if not s < 0.5:
        return None
    sp = _Span()
    GAB = G[np.ix_(A, B)]
    sp.Hb = H
    sp.Cb = H @ GAB
    sp.mA, sp.mB = np.arange(A.size), np.arange(B.size)
    sp.W, sp.WC = np.empty((0, A.size)), np.empty((0, B.size))
    sp.d2 = 1.0 - np.einsum("ij,ij->j", GAB, sp.Cb)
    sp.hF, sp.kappa, sp.emax, sp.rho, sp.depth, sp.n = hF, kappa, float(eA.max()), 1.0 / (1.0 - s), 0, A.size
    sp.beta = None
    return sp


def _chol(M):
    L, info = _potrf(M, lower=1, clean=1)
    return L if info == 0 else None


def _extend(sp: _Span, fac: list, side: int, new):
    """Squared distances of every candidate after the rows ``new`` join the removed set of ``side``.

    ``fac[side]`` holds that set's Cholesky factor ``L`` of ``H_RR`` and ``Z = L^-1 C_R`` as lists
    of blocks (assembled only when a later round extends them), the distances and ``R``."""
    old = fac[side]
    if new.size == 0:
        return sp.d2 if old is None else old[2]
    if old is None:
        if new.size == 1:  # the first removal of a test: one column, c_u^2 / H_uu
            r = int(new[0])
            a, w = int(sp.mA[r]), sp.W[:, r]
            h = sp.Hb[a, a] - w @ w
            if not h > 0:
                return None
            l = np.sqrt(h)
            z = sp.Cb[a].take(sp.mB)
            if w.size:
                z -= w @ sp.WC
            z /= l
            d2 = sp.d2 + z * z
            fac[side] = ([np.array([[l]])], [z[None, :]], d2, new)
            return d2
        L = _chol(sp.hsub(new, new))
        if L is None:
            return None
        Z, info = _trtrs(L, sp.crows(new), lower=1)
        if info != 0:
            return None
        d2 = sp.d2 + np.einsum("ij,ij->j", Z, Z)
        fac[side] = ([L], [Z], d2, new)
        return d2
    Lb, Zb, d2, R = old
    if len(Lb) > 1:  # assemble the blocks of earlier rounds: [[L, 0], [L21, L22]] and [Z; Zn]
        L = _assemble(Lb, R.size)
        Z = np.vstack(Zb)
    else:
        L, Z = Lb[0], Zb[0]
    X, info = _trtrs(L, sp.hsub(R, new), lower=1)  # L21^T
    if info != 0:
        return None
    L22 = _chol(sp.hsub(new, new) - X.T @ X)
    if L22 is None:
        return None
    Zn, info = _trtrs(L22, sp.crows(new) - X.T @ Z, lower=1)
    if info != 0:
        return None
    d2 = d2 + np.einsum("ij,ij->j", Zn, Zn)
    fac[side] = ([L, np.hstack([X.T, L22])], [Z, Zn], d2, np.concatenate([R, new]))
    return d2


def _assemble(blocks, k: int) -> np.ndarray:
    """The lower-triangular factor from its row blocks ``[L11]``, ``[L21 L22]``, ..."""
    L = np.zeros((k, k))
    at = 0
    for blk in blocks:
        rows, cols = blk.shape
        L[at:at + rows, :cols] = blk
        at += rows
    return L


def _downdate(sp: _Span, R, keepA, keepB):
    """The span without R (positions), measuring the kept candidates: Schur-complement downdate,
    kept as rows of the low-rank correction (:class:`_Span`)."""
    out = _Span()
    out.hF, out.kappa, out.emax, out.rho, out.n = sp.hF, sp.kappa, sp.emax, sp.rho, sp.n
    out.beta = None
    out.Hb, out.Cb = sp.Hb, sp.Cb
    out.mA, out.mB = sp.mA[keepA], sp.mB[keepB]
    if R.size == 0:
        out.W, out.WC = sp.W[:, keepA], sp.WC[:, keepB]
        out.d2 = sp.d2[keepB]
        out.depth = sp.depth
        return out
    L = _chol(sp.hsub(R, R))
    if L is None:
        return None
    W, info = _trtrs(L, np.hstack([sp.hsub(R, keepA), sp.crows(R, keepB)]), lower=1)
    if info != 0:
        return None
    WH, WC = W[:, : keepA.size], W[:, keepA.size :]
    out.W = np.vstack([sp.W[:, keepA], WH])
    out.WC = np.vstack([sp.WC[:, keepB], WC])
    out.d2 = sp.d2[keepB] + np.einsum("ij,ij->j", WC, WC)
    out.depth = sp.depth + 1
    if out.W.shape[0] > LAZY_RANK:
        out.materialise()
    return out


class _State:
    """A set (I, J) of the tree, its two spans (None: not screenable) and the searches sitting at
    it (``members``, local indices), each with its watch: flags over I and J of its neuron and of
    the neurons known necessary for it."""

    __slots__ = ("I", "J", "spans", "members", "pos", "watch")

    def __init__(self, I, J, spans, members, N: int):
        self.I, self.J, self.spans, self.members = I, J, spans, members
        self.pos = np.full(N, -1, dtype=np.intp)  # position of each local index in I or J; -1: absent
        self.pos[I] = np.arange(I.size)
        self.pos[J] = np.arange(J.size)
        self.watch = {}

    def watch_from(self, v: int, need, n_i: int):
        """The watch of search v from its necessary neurons ``need`` (local indices)."""
        m = [np.zeros(self.I.size, dtype=bool), np.zeros(self.J.size, dtype=bool)]
        for w in need + [v]:
            p = self.pos[w]
            if p >= 0:
                m[0 if w < n_i else 1][p] = True
        self.watch[v] = m


class SearchTree:
    """Deletion searches of many neurons in one order, on the geometry restricted to the maximum
    match (local indices 0..|S|-1, X's first). ``run`` returns ``{v: (I, J, certain)}`` in local
    indices. Runs keep no state between them: one tree serves many runs from the same match, and
    ``stats`` counts screened, certified (fallback) and total tests over all of them."""

    def __init__(self, tiers, n_i: int, threshold: float):
        self.tiers = tiers
        self.thr = threshold
        t2 = threshold * threshold
        self.lo_t2, self.hi_t2 = t2 * (1 - 4 * cert.U), t2 * (1 + 4 * cert.U)
        fast = tiers.fast
        self.n_i = n_i
        if isinstance(fast, GramSpace):
            G = fast.G
            if not isinstance(G, np.ndarray):  # a device tensor: the screen runs on a host copy
                G = G.detach().cpu().numpy()
            self.G = np.asarray(G, dtype=np.float64)
            self.eta = np.asarray(fast.eta, dtype=np.float64)
        elif isinstance(fast, FactorSpace):
            F = fast.F
            self.G = F.T @ F
            e = np.sqrt(2.01 * fast.nu + cert.gamma(F.shape[0]))
            self.eta = np.full(F.shape[1], e)
        else:  # pragma: no cover - every geometry has one of the two spaces
            self.G = None
        self.stats = {"tests": 0, "screened": 0, "certified": 0, "refreshed": 0, "near": 0, "unscreenable": 0}

    # -- states
    def _spans(self, I, J):
        if self.G is None:
            return None
        s0 = _fresh(self.G, self.eta, I, J)
        s1 = _fresh(self.G, self.eta, J, I) if s0 is not None else None
        self.stats["refreshed"] += 1
        return None if s1 is None else (s0, s1)

    def _child_spans(self, st: _State, rem):
        if st.spans is None:
            return None
        keep = [np.flatnonzero(~rem[0]), np.flatnonzero(~rem[1])]
        I, J = st.I[keep[0]], st.J[keep[1]]
        out = []
        for side in (0, 1):
            sp = st.spans[side]
            R = np.flatnonzero(rem[side])
            kA, kB = keep[side], keep[1 - side]
            if kA.size == 0 or kB.size == 0:
                return None
            if sp.depth >= SCREEN_MAX_DEPTH or 2 * R.size > kA.size:
                return self._spans(I, J)
            child = _downdate(sp, R, kA, kB)
            if child is None:
                return self._spans(I, J)
            out.append(child)
        return tuple(out)

    # -- one deletion test
    def _screen(self, st: _State, side: int, p: int, watches):
        """Removed flags (rem_I, rem_J) of maxmatch(state - u) by the screen; "all" when every
        search is known to lose its neuron; None when some decision needs the certified kernels.

        ``watches`` holds, per active search, its flags (over I, over J) of its neuron v and of the
        neurons already known necessary for it: the search loses v as soon as any of them falls
        (module docstring, "Necessary neurons"). The pruning rounds alternate between the sides;
        each side's removed set only grows, so its Cholesky factor of ``H_RR`` and the rows
        ``Z = L^-1 C_R`` are extended, not recomputed. Certain falls are applied before the
        neurons near the threshold are decided, which are then decided only if still needed."""
        rem = [np.zeros(st.I.size, dtype=bool), np.zeros(st.J.size, dtype=bool)]
        rem[side][p] = True
        fresh = [[], []]  # per side: positions removed since that side's span was last extended
        fresh[side].append(np.array([p]))
        fac = [None, None]  # per span side: the removed set's factor blocks, Z blocks, distances, R

        def lost():
            r0, r1 = rem
            for m0, m1 in watches:  # bool @ bool: whether any flagged neuron was removed
                if not (r0 @ m0 or r1 @ m1):
                    return False
            return True

        # A side is stale when the other side lost neurons since it was last checked. The fixed
        # point does not depend on the order in which falls are applied, so neurons within their
        # bound of the threshold wait (``pending``) until no side is stale: by then the search may
        # already have lost its neuron, or a later round may have made them certain falls.
        stale = [side == 1, side == 0]
        pending = [None, None]
        check = 1 - side
        while True:
            if not stale[check]:
                check = 1 - check
            if stale[check]:
                span = 1 - check
                sp = st.spans[span]
                new = fresh[span]
                new = new[0] if len(new) == 1 else (np.concatenate(new) if new else np.zeros(0, dtype=np.intp))
                fresh[span] = []
                d2 = _extend(sp, fac, span, new)
                if d2 is None:
                    return None
                if sp.beta is None:
                    sp.beta = sp.bound(self.eta[st.I if check == 0 else st.J], sp.depth + 1)
                beta = sp.beta
                live = ~rem[check]
                fall = (d2 - beta > self.hi_t2) & live
                near = live & ~fall & ~(d2 + beta <= self.lo_t2)
                stale[check] = False
                pending[check] = np.flatnonzero(near) if near.any() else None
                if fall.any():
                    rem[check] |= fall
                    fresh[check].append(np.flatnonzero(fall))
                    stale[span] = True
                    if lost():
                        return "all"
                check = span
                continue
            # no side stale: the certified tiers decide the neurons near the threshold
            if pending[0] is None and pending[1] is None:
                return rem
            moved = False
            for c in (0, 1):
                idx = pending[c]
                if idx is None:
                    continue
                pending[c] = None
                self.stats["near"] += 1
                span_cols = (st.I if c == 1 else st.J)[~rem[1 - c]]
                dec = self.tiers.decide((st.I if c == 0 else st.J)[idx], span_cols, self.thr)
                if (dec < 0).any():
                    return None
                idx = idx[dec == 0]
                if idx.size:
                    moved = True
                    rem[c][idx] = True
                    fresh[c].append(idx)
                    stale[1 - c] = True
            if not moved:
                return rem
            if lost():
                return "all"

    def _certified(self, st: _State, side: int, p: int):
        """(lo_sets, hi_sets) of maxmatch(state - u) by the certified kernels."""
        if side == 0:
            return bounded_prune(self.tiers, np.delete(st.I, p), st.J, self.thr, check_I=False, check_J=True)
        return bounded_prune(self.tiers, st.I, np.delete(st.J, p), self.thr, check_I=True, check_J=False)

    def run(self, I, J, members, order, wrap=None, spans=_FRESH) -> dict:
        """Run the searches of ``members`` (local indices) from the match (I, J) in ``order``;
        ``wrap`` wraps the order's iteration (a progress bar); ``spans``: the factorisation of
        (I, J) when the caller already has it (what :meth:`_spans` returns for them; shared by
        every tree from the same match)."""
        I = np.asarray(I, dtype=np.intp)
        J = np.asarray(J, dtype=np.intp)
        N = int(max(I.max(initial=-1), J.max(initial=-1))) + 1
        members = np.unique(np.asarray(list(members), dtype=np.intp))
        root = self._spans(I, J) if spans is _FRESH else spans
        states = {(I.tobytes(), J.tobytes()): _State(I, J, root, members, N)}
        uncertain = np.zeros(N, dtype=bool)
        # per search, the neurons shown necessary for it by a screened test (module docstring)
        need = {int(v): [] for v in members}
        n_i = self.n_i
        for v in members.tolist():
            states[(I.tobytes(), J.tobytes())].watch_from(v, need[v], n_i)
        for u in (order if wrap is None else wrap(order)):
            u = int(u)
            side = 0 if u < n_i else 1
            for key, st in list(states.items()):
                p = int(st.pos[u])
                if p < 0:
                    continue
                active = st.members[st.members != u]
                if not active.size:
                    continue
                self.stats["tests"] += 1
                I, J = st.I, st.J
                if st.spans is None:
                    self.stats["unscreenable"] += 1
                    res = None
                else:
                    res = self._screen(st, side, p, [st.watch[v] for v in active.tolist()])
                if isinstance(res, str):  # every active search keeps u: u is necessary for each
                    self.stats["screened"] += 1
                    for v in active.tolist():
                        need[v].append(u)
                        st.watch[v][side][p] = True
                    continue
                if res is not None:
                    self.stats["screened"] += 1
                    r0, r1 = res
                    fell = np.array([bool(r0 @ m0 or r1 @ m1) for m0, m1 in (st.watch[v] for v in active.tolist())])
                    for v in active[fell].tolist():
                        need[v].append(u)
                        st.watch[v][side][p] = True
                    go = active[~fell]
                    if not go.size:
                        continue
                    new_I, new_J = I[~r0], J[~r1]
                    make = lambda st=st, res=res: self._child_spans(st, res)  # noqa: E731
                    moved = {v: [st.watch[v][0][~r0], st.watch[v][1][~r1]] for v in go.tolist()}
                else:
                    self.stats["certified"] += 1
                    (lo_I, lo_J), (hi_I, hi_J) = self._certified(st, side, p)
                    in_lo = np.isin(active, lo_I) | np.isin(active, lo_J)
                    in_hi = np.isin(active, hi_I) | np.isin(active, hi_J)
                    uncertain[active[in_hi & ~in_lo]] = True  # undecided: u is kept, maybe not minimal
                    go = active[in_lo]
                    if not go.size:
                        continue
                    new_I, new_J = lo_I, lo_J
                    make = lambda new_I=new_I, new_J=new_J: self._spans(new_I, new_J)  # noqa: E731
                    moved = None
                st.members = np.setdiff1d(st.members, go, assume_unique=True)
                for v in go.tolist():
                    del st.watch[v]
                nkey = (new_I.tobytes(), new_J.tobytes())
                child = states.get(nkey)
                if child is None:
                    child = states[nkey] = _State(new_I, new_J, make(), go, N)
                else:
                    child.members = np.union1d(child.members, go)
                for v in go.tolist():
                    if moved is None:
                        child.watch_from(v, need[v], n_i)
                    else:
                        child.watch[v] = moved[v]
                if not st.members.size:
                    del states[key]
        out = {}
        for st in states.values():
            for v in st.members.tolist():
                out[v] = (st.I, st.J, not uncertain[v])
        return out
