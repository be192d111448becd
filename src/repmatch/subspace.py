"""Maximum match, its similarity and the epsilon tools of the neuron activation subspace match.

Follows spec/subspace-match.md (Wang et al., NeurIPS 2018): sections 1-3 for the definitions and
algorithms, section 4 for computing them from one streaming reduction.

How it is computed
------------------
A :class:`~repmatch.reduce.Reduction` of the joint activation matrix ``M = [X Y]`` is turned once
into a *geometry* of the live activation vectors scaled to unit length (scaling a neuron changes
nothing, so every neuron is represented by its direction). Distances from columns to spans of other
columns depend only on this geometry, so every pruning round costs O(n^3) whatever the number of
samples. The geometry is held in the form its reduction gives:

* Gram reduction -> :class:`GramSpace`, the normalised Gram matrix (unit diagonal). The squared
  distance of a candidate a to span(B) is ``1 - ||U^-T g_Ba||^2`` with ``U`` a pivoted Cholesky
  factor of the Gram block of B (LAPACK ``dpstrf``), whose pivots are squared distances of each
  pivot column to the span of the earlier ones.
* QR reduction -> :class:`FactorSpace`, unit columns of the triangular factor. The distance is the
  norm of the residual of the orthogonal projection onto a basis of span(B) from QR with column
  pivoting of ``F[:, B]``: no squared quantities, hence the smaller tolerance.

A Gram reduction on a PyTorch device keeps its normalised Gram matrix on that device and computes
distances there (``repmatch._torch.gram_evaluate``).

Certified decisions
-------------------
Every distance comes with a bound on its error (docs/subspace.md, "Guarantees"): the reduction
knows how much rounding its statistics carry (``Reduction._noise``), and the kernels carry it
through the pivots and the coefficients they use. A decision ``dist <= eps ||z||`` whose margin is
inside its bound is re-decided by a more precise tier: the QR factor of the raw arrays when they are
at hand (``maximum_match(X, Y)``), then exact rational arithmetic on the raw data for small spans.
What no tier can settle is reported on the result (``uncertain_x``, ``uncertain_y``) with a
warning: the true maximum match lies between ``x`` and ``x`` plus the uncertain neurons.

Tolerances
----------
* ``tol`` (default :data:`~repmatch.reduce.GRAM_TOL` = 1e-6 on a Gram reduction,
  :data:`~repmatch.reduce.QR_TOL` = 1e-9 on a QR reduction): the exact-match tolerance; the test
  is ``dist(z, span) <= max(eps, tol) * ||z||``, so ``eps = 0`` means "exact up to tol".
* ``rank_tol`` (default :data:`~repmatch.reduce.RANK_TOL` = 1e-10 on every method): the numerical
  rank of a span; a neuron within ``rank_tol`` (relative) of the span of the neurons pivoted before
  it adds no direction. Smaller directions are real: ``Y = [e1, e1 + 1e-7 e2]`` spans e2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import scipy.linalg

from . import _certify as cert
from ._validate import (
    check_eps,
    check_eps_grid,
    check_pair,
    check_positive_int,
    warn,
)
from ._resolve import as_reduction
from .reduce import GRAM_TOL, QR_TOL, RANK_TOL, Reduction

__all__ = [
    "Match",
    "SimilarityCurve",
    "NoMatchError",
    "maximum_match",
    "max_epsilon",
    "minimal_epsilon",
    "similarity_curve",
    "MIN_SAMPLES_PER_NEURON",
]

#: Below this many samples per neuron (n_samples / (n_x + n_y)) a warning says the span test is close
#: to trivial: with d samples a random vector keeps only about sqrt(1 - n/d) of its length outside an
#: n-dimensional span, so with few samples everything "matches" (spec section 2).
MIN_SAMPLES_PER_NEURON = 5.0
#: A pivot of a Gram span is resolved (kept in the factor) when its squared value exceeds this many
#: times the squared noise of the Gram entries; smaller ones form the span's unresolved tail.
_GRAM_FLOOR = 100.0
#: Below this many candidates times span columns, the exact per-neuron coefficients are solved for
#: every candidate (cheaper than deciding which ones need them).
_SMALL = 4096


class NoMatchError(ValueError):
    """No ε in [0, 1) gives a match of the requested size (orthogonal or dead layers)."""


# ---------------------------------------------------------------------------- results
def _empty() -> np.ndarray:
    return np.zeros(0, dtype=np.intp)


@dataclass(frozen=True)
class Match:
    """An ε-approximate match (X-side columns ``x``, Y-side columns ``y``) between two layers.

    Attributes
    ----------
    x, y : ndarray of int
        Sorted column indices of X and of Y in the match. Certified: every neuron listed is within
        ε of the other side's span on the data, whatever the rounding (docs/subspace.md).
    eps : float
        The ε it was computed at.
    n_x, n_y : int
        Number of neurons of each layer (dead ones included).
    dead_x, dead_y : ndarray of int
        Columns whose activation vector is zero on the data. They match nothing and count in the
        denominator of :attr:`similarity`.
    tol : float
        The exact-match tolerance used (see module docstring).
    uncertain_x, uncertain_y : ndarray of int
        Neurons no tier of the computation could decide (almost always empty): for a maximum
        match, the true maximum match contains ``x`` and lies within ``x`` plus these.
    """

    x: np.ndarray
    y: np.ndarray
    eps: float
    n_x: int
    n_y: int
    dead_x: np.ndarray
    dead_y: np.ndarray
    tol: float
    n_samples: int = 0
    uncertain_x: np.ndarray = field(default_factory=_empty)
    uncertain_y: np.ndarray = field(default_factory=_empty)
    rank_tol: float = RANK_TOL

    @property
    def similarity(self) -> float:
        """Maximum match similarity (|x| + |y|) / (n_x + n_y) — for a non-maximum match, its share.

        A certified lower bound when neurons are uncertain (see :attr:`similarity_bounds`)."""
        return (len(self.x) + len(self.y)) / (self.n_x + self.n_y)

    @property
    def similarity_bounds(self) -> tuple:
        """``(lower, upper)``: the similarity without and with the uncertain neurons (equal when certified)."""
        extra = len(self.uncertain_x) + len(self.uncertain_y)
        return self.similarity, self.similarity + extra / (self.n_x + self.n_y)

    @property
    def certified(self) -> bool:
        """True when every neuron was decided (no uncertain neurons)."""
        return len(self.uncertain_x) + len(self.uncertain_y) == 0

    @property
    def size(self) -> int:
        return len(self.x) + len(self.y)

    def __len__(self) -> int:
        return self.size

    def key(self) -> tuple:
        return (tuple(int(i) for i in self.x), tuple(int(j) for j in self.y))

    def to_dict(self) -> dict:
        return {
            "eps": self.eps,
            "x": [int(i) for i in self.x],
            "y": [int(j) for j in self.y],
            "similarity": self.similarity,
            "n_x": self.n_x,
            "n_y": self.n_y,
            "dead_x": [int(i) for i in self.dead_x],
            "dead_y": [int(j) for j in self.dead_y],
            "tol": self.tol,
            "rank_tol": self.rank_tol,
            "n_samples": self.n_samples,
            "uncertain_x": [int(i) for i in self.uncertain_x],
            "uncertain_y": [int(j) for j in self.uncertain_y],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Match":
        """The inverse of :meth:`to_dict` (also after a JSON round trip)."""
        from ._schema import check_kind, ints, num

        d = check_kind(d, "match", "Match")
        return cls(x=ints(d["x"]), y=ints(d["y"]), eps=num(d["eps"]), n_x=int(d["n_x"]), n_y=int(d["n_y"]),
                   dead_x=ints(d["dead_x"]), dead_y=ints(d["dead_y"]), tol=num(d["tol"]),
                   n_samples=int(d.get("n_samples", 0)), uncertain_x=ints(d.get("uncertain_x", [])),
                   uncertain_y=ints(d.get("uncertain_y", [])), rank_tol=num(d.get("rank_tol", RANK_TOL)))

    def __repr__(self) -> str:
        unc = "" if self.certified else f", uncertain={len(self.uncertain_x)}+{len(self.uncertain_y)}"
        return (
            f"Match(eps={self.eps:g}, |x|={len(self.x)}/{self.n_x}, |y|={len(self.y)}/{self.n_y}, "
            f"similarity={self.similarity:.4f}, dead={len(self.dead_x)}+{len(self.dead_y)}{unc})"
        )


@dataclass(frozen=True)
class SimilarityCurve:
    """Maximum match similarity at every ε of a grid (in the order given), from one reduction.

    ``size_x``, ``size_y`` and ``similarity`` are certified (lower bounds when neurons are
    uncertain); ``uncertain_x`` / ``uncertain_y`` count the undecided neurons at each ε (almost
    always 0). ``max_epsilon_bound`` bounds the error of ``max_epsilon``.
    """

    eps: np.ndarray
    similarity: np.ndarray
    size_x: np.ndarray
    size_y: np.ndarray
    n_x: int
    n_y: int
    dead_x: np.ndarray
    dead_y: np.ndarray
    max_epsilon: float
    tol: float
    n_samples: int = 0
    uncertain_x: np.ndarray | None = None
    uncertain_y: np.ndarray | None = None
    max_epsilon_bound: float = 0.0
    rank_tol: float = RANK_TOL

    def __post_init__(self):
        for name in ("uncertain_x", "uncertain_y"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, np.zeros(len(self.eps), dtype=np.intp))

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.similarity, dtype=dtype)

    def __len__(self) -> int:
        return len(self.eps)

    @property
    def similarity_upper(self) -> np.ndarray:
        """The similarity counting every uncertain neuron as matched (equals ``similarity`` when certified)."""
        return self.similarity + (self.uncertain_x + self.uncertain_y) / (self.n_x + self.n_y)

    @property
    def certified(self) -> bool:
        return not (np.any(self.uncertain_x) or np.any(self.uncertain_y))

    def to_dict(self) -> dict:
        return {
            "eps": self.eps.tolist(),
            "similarity": self.similarity.tolist(),
            "size_x": self.size_x.tolist(),
            "size_y": self.size_y.tolist(),
            "n_x": self.n_x,
            "n_y": self.n_y,
            "dead_x": self.dead_x.tolist(),
            "dead_y": self.dead_y.tolist(),
            "max_epsilon": self.max_epsilon,
            "max_epsilon_bound": self.max_epsilon_bound,
            "tol": self.tol,
            "rank_tol": self.rank_tol,
            "n_samples": self.n_samples,
            "uncertain_x": self.uncertain_x.tolist(),
            "uncertain_y": self.uncertain_y.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "SimilarityCurve":
        """The inverse of :meth:`to_dict` (also after a JSON round trip; ``None`` reads as NaN)."""
        from ._schema import check_kind, floats, ints, num

        d = check_kind(d, "similarity_curve", "SimilarityCurve")
        return cls(eps=floats(d["eps"]), similarity=floats(d["similarity"]), size_x=ints(d["size_x"]),
                   size_y=ints(d["size_y"]), n_x=int(d["n_x"]), n_y=int(d["n_y"]), dead_x=ints(d["dead_x"]),
                   dead_y=ints(d["dead_y"]), max_epsilon=num(d["max_epsilon"]), tol=num(d["tol"]),
                   n_samples=int(d.get("n_samples", 0)), uncertain_x=ints(d["uncertain_x"]) if "uncertain_x" in d
                   else None, uncertain_y=ints(d["uncertain_y"]) if "uncertain_y" in d else None,
                   max_epsilon_bound=num(d.get("max_epsilon_bound", 0.0)), rank_tol=num(d.get("rank_tol", RANK_TOL)))


# ---------------------------------------------------------------------------- geometry
_dpstrf = scipy.linalg.lapack.dpstrf
_dtrtrs = scipy.linalg.lapack.dtrtrs
_dtrcon = scipy.linalg.lapack.dtrcon

#: When False, kernels skip the error bounds and every decision is the plain comparison (the
#: behaviour before certification). Only for benchmarks/bench_subspace.py, which measures what the
#: certificates cost; never set it elsewhere.
_CERTIFY = True


def _inv_norm1(U: np.ndarray) -> float:
    """LAPACK's estimate of ``||U^-1||_1`` for an upper triangular U (inf when singular)."""
    if U.shape[0] == 0:
        return 0.0
    rcond, info = _dtrcon(U, norm="1", uplo="U", diag="N")
    norm1 = float(np.abs(U).sum(axis=0).max())
    if info != 0 or not rcond > 0 or not np.isfinite(rcond):
        return np.inf
    return 1.0 / (rcond * norm1)


_dtrtri = scipy.linalg.lapack.dtrtri
#: Up to this many span columns ``||U^-1||_2`` is bounded by the Frobenius norm of the inverse
#: itself (cheap at this size); above, by the condition estimate with its safety factor.
_EXACT_INVERSE = 96


def _second_order(U: np.ndarray, inv1: float, noise2: float) -> float:
    """``rho = 1 / (1 - noise2 * ||U^-1||_2^2)``: how much the errors of the factorised block itself
    can amplify a first-order bound (inf when they could make it singular).

    ``||U^-1||_2`` is bounded by the condition estimate with its safety factor; only when that is
    not small enough, and the block is small, by the Frobenius norm of the inverse itself."""
    m = U.shape[0]
    if m == 0:
        return 1.0
    s = noise2 * (m * (cert.CONDITION_SAFETY * inv1) ** 2)
    if not s < 0.05 and m <= _EXACT_INVERSE:
        inv, info = _dtrtri(U, lower=0)
        s = noise2 * float(np.sum(inv * inv)) if info == 0 else np.inf
    return 1.0 / (1.0 - s) if s < 0.5 else np.inf


class GramSpace:
    """Unit-diagonal Gram matrix of the neurons; distances by pivoted Cholesky (module docstring).

    ``eta`` holds every neuron's noise: entry (i, j) of ``G`` is within ``eta_i eta_j`` of the
    exact unit-diagonal Gram matrix of the data (``Reduction._noise``).
    """

    def __init__(self, G, tol: float, eta=None, rank_tol: float = RANK_TOL):
        self.G = G
        self.tol = tol
        n = G.shape[0]
        self.eta = np.full(n, np.sqrt(8 * cert.U)) if eta is None else np.asarray(eta, dtype=np.float64)
        self.rank_tol = rank_tol

    def distances(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Relative distance of every neuron in A to span(B) (point estimates)."""
        return np.sqrt(self.evaluate(A, B)[0])

    def evaluate(self, A, B, t2=None):
        """``(d2, lo, hi)``: squared relative distances of A to span(B) and bounds on the exact ones.

        ``t2``: the squared threshold the caller compares with; candidates within their cheap bound
        of it get the exact first-order bound from their own coefficients.
        """
        A = np.asarray(A, dtype=np.intp)
        B = np.asarray(B, dtype=np.intp)
        nA = A.size
        if nA == 0:
            z = np.zeros(0)
            return z, z, z
        if B.size == 0:
            one = np.ones(nA)
            return one, one, one
        if not isinstance(self.G, np.ndarray):  # a torch tensor: the reduction lives on a device
            from ._torch import gram_evaluate

            return gram_evaluate(self, A, B, t2)
        G = self.G
        eta_B = self.eta[B]
        floor = _GRAM_FLOOR * float(eta_B.max()) ** 2 if _CERTIFY else self.rank_tol**2
        # Called tens of thousands of times on small blocks by the simple-match search: LAPACK is
        # called directly (no SciPy argument checking) and blocks are gathered with take().
        U, piv, rank, info = _dpstrf(G.take(B, axis=0).take(B, axis=1), tol=floor, lower=0)
        if info < 0:  # pragma: no cover - LAPACK argument error
            raise RuntimeError(f"dpstrf failed with info={info}")
        r = int(rank)
        order = piv - 1
        K, T = B[order[:r]], B[order[r:]]
        Ur = U[:r, :r]
        # U^T W = G[K, A]: W's column j holds the coordinates of neuron A[j] on the orthonormal
        # basis of span(K), so 1 - |W_j|^2 is its squared distance to span(K)
        W, info = _dtrtrs(Ur, G.take(K, axis=0).take(A, axis=1), lower=0, trans=1)
        if info != 0:  # pragma: no cover - rank-revealed pivots are positive
            raise RuntimeError(f"dtrtrs failed with info={info}")
        raw = 1.0 - np.einsum("ij,ij->j", W, W)
        d2 = np.clip(raw, 0.0, 1.0)
        if not _CERTIFY:
            return d2, d2, d2
        # the bound (module docstring, docs/subspace.md "Guarantees"); written with few NumPy calls:
        # the simple-match search evaluates tens of thousands of small blocks
        eta = self.eta
        eta_K = eta[K]
        kern = 3.0 * cert.gamma(r + 2)  # Cholesky, solve and the sum of squares, as Gram noise
        eA2 = eta[A] ** 2 + kern
        inv1 = _inv_norm1(Ur)
        rho = _second_order(Ur, inv1, float(np.dot(eta_K, eta_K)) + r * kern)
        c0 = np.sqrt(float(eta_K.max()) ** 2 + kern) * cert.CONDITION_SAFETY * inv1
        with np.errstate(all="ignore"):
            cw = np.abs(W).sum(axis=0)
            cw *= c0  # >= sum_b |c_b| eta_b
            if nA * r <= _SMALL:
                exact = slice(None)
            elif t2 is not None:
                exact = ~(np.abs(raw - t2) > (np.sqrt(eA2) + cw) ** 2 * rho)  # near it, NaN included
                exact = exact if exact.any() else None
            else:
                exact = None
        if exact is not None and r:
            C, _ = _dtrtrs(Ur, W[:, exact], lower=0, trans=0)  # coefficients on K's unit vectors
            cw[exact] = np.sqrt(eta_K**2 + kern) @ np.abs(C)
        S = eT = None
        if T.size:
            if T.size > cert.MAX_TAIL:
                S, eT = np.full((T.size, nA), np.inf), np.zeros(T.size)
            else:
                GTA = G.take(T, axis=0).take(A, axis=1)  # (|T|, |A|)
                if r:
                    WT, _ = _dtrtrs(Ur, G.take(K, axis=0).take(T, axis=1), lower=0, trans=1)
                    S = GTA - WT.T @ W
                    with np.errstate(over="ignore", invalid="ignore"):
                        cwT = c0 * np.abs(WT).sum(axis=0)
                else:
                    S, cwT = GTA, np.zeros(T.size)
                eT = np.sqrt(self.eta[T] ** 2 + kern) + cwT
        # every unresolved Schur diagonal is <= floor where dpstrf stopped (plus its noise)
        swap = float(np.sqrt(T.size * 1.02 * floor)) if T.size else 0.0
        eK_min = float(np.sqrt(eta_K.min() ** 2 + kern)) if r else 1.0
        return _gram_finish(raw, eA2, cw, rho, r, self.rank_tol, S, eT, swap, eK_min)

    def restrict(self, cols: np.ndarray) -> "GramSpace":
        """The same geometry on a subset of neurons (columns renumbered 0..len(cols)-1)."""
        cols = np.asarray(cols, dtype=np.intp)
        if not isinstance(self.G, np.ndarray):
            from ._torch import submatrix

            return GramSpace(submatrix(self.G, cols), self.tol, self.eta[cols], self.rank_tol)
        return GramSpace(self.G[np.ix_(cols, cols)], self.tol, self.eta[cols], self.rank_tol)


def _gram_finish(raw, eA2, cw, rho, r, rank_tol, S=None, eT=None, swap=0.0, eK_min=1.0) -> tuple:
    """``(d2, lo, hi)`` of a Gram kernel from its pieces (shared by the host and device kernels).

    ``raw`` = 1 - ||w||^2 per candidate (squared distance to the resolved span K); ``eA2`` the
    candidates' squared noise; ``cw`` >= sum_b |c_b| eta_b over K (c: the candidate's coefficients);
    ``rho`` the second-order factor 1 / (1 - ||E_KK|| ||G_KK^-1||). First order, the squared
    distance moves by at most (eta_a + sum_b |c_b| eta_b)^2 under the Gram's errors
    (|dG_ij| <= eta_i eta_j), times rho for the effect of the errors on the factor itself.
    ``S`` (|T| x |A|): the cross products of the unresolved tail T with the candidates, ``eT`` the
    tail columns' noise: by convention the true span has K's directions and possibly some of T's
    (those at least ``rank_tol`` long), which can lower a squared distance by at most
    tail_growth(|T|) * sum_j (|S_ja| + err)^2 / rank_tol^2.
    ``swap``: a bound on the length of the tail's residuals together. Another pivot order may keep a
    tail column in place of a kept near-duplicate, which turns span(K) by about that much; a
    distance then moves by at most ``swap * (1 + ||c||_1)`` either way, with ``||c||_1 <= cw / eK_min``
    (found by an adversarial audit: y1 = y0 + 1e-12 e1 kept instead of y0).
    """
    with np.errstate(all="ignore"):
        ea = np.sqrt(eA2)
        ea += cw
        beta = ea * ea
        beta *= rho
        beta += 2 * cert.gamma(r + 1)
        beta[np.isnan(beta)] = np.inf  # 0 * inf: an unusable estimate bounds nothing
        lo = raw - beta
        if S is not None and S.shape[0]:
            nu = np.outer(eT, ea) * rho  # error of every cross product S_ja
            short = rank_tol / cert.band(S.shape[0] + r)  # shortest present direction, in any pivot order
            tau = cert.tail_growth(S.shape[0]) * np.sum((np.abs(S) + nu) ** 2, axis=0) / short**2
            tau[np.isnan(tau)] = np.inf
            lo -= tau
        np.maximum(lo, 0.0, out=lo)
        hi = raw + beta
        np.minimum(hi, 1.0, out=hi)
        if swap > 0:
            slack = swap * (1.0 + cw / eK_min)
            slack[np.isnan(slack)] = np.inf
            hi = np.minimum((np.sqrt(hi) + slack) ** 2, 1.0)
            lo = np.maximum(np.sqrt(lo) - slack, 0.0) ** 2
    return np.minimum(np.maximum(raw, 0.0), 1.0), lo, hi


class FactorSpace:
    """Unit columns of a factor F with F^T F = normalised Gram; distances by pivoted QR.

    ``nu`` is the factor's relative column-wise backward error: F is the exact (normalised) factor
    of data whose columns each differ from the real ones by at most ``nu`` times their norm.
    """

    def __init__(self, F: np.ndarray, tol: float, nu: float | None = None, rank_tol: float = RANK_TOL):
        self.F = F
        self.tol = tol
        self.nu = 4 * cert.U if nu is None else float(nu)
        self.rank_tol = rank_tol

    def distances(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Relative distance of every neuron in A to span(B) (point estimates)."""
        return np.sqrt(self.evaluate(A, B)[0])

    def evaluate(self, A, B, t2=None):
        """``(d2, lo, hi)`` as :meth:`GramSpace.evaluate`; the errors here are first order in the
        distance itself (no squared condition number)."""
        A = np.asarray(A, dtype=np.intp)
        B = np.asarray(B, dtype=np.intp)
        nA = A.size
        if nA == 0:
            z = np.zeros(0)
            return z, z, z
        FA = self.F[:, A]
        if B.size == 0 or self.F.shape[0] == 0:
            d = np.minimum(np.linalg.norm(FA, axis=0), 1.0)
            return d * d, d * d, d * d
        m = self.F.shape[0]
        Q, R, _ = scipy.linalg.qr(self.F[:, B], mode="economic", pivoting=True, check_finite=False)
        # With column pivoting |R_ii| is the distance of the i-th pivot to the span of the earlier ones.
        piv = np.abs(np.diag(R))
        nu = self.nu + cert.gamma(m * B.size)  # the factor's own error and this QR's
        r = int(np.count_nonzero(piv > self.rank_tol))
        # Is every pivot certainly clear of rank_tol, by the order band (another pivot order could
        # move it by that factor) and its own error, nu (1 + ||c||_1) with c its coefficients on the
        # kept pivots before it? A kept pivot that may be absent makes keeps uncertain
        # (``doubt_keep``); a dropped one that may be present makes drops uncertain (``ambiguous``).
        doubt = np.zeros(piv.size, dtype=bool)  # pivots another order could put on the other side
        f = cert.band(B.size)
        if _CERTIFY and (r < piv.size or piv[r - 1] < 2 * f * self.rank_tol):
            Rk = R[:r, :r]
            inv1 = _inv_norm1(Rk) if r else 0.0
            err_kept = nu * (1 + cert.CONDITION_SAFETY * inv1 * np.abs(R[:r, :r]).sum(axis=0))
            doubt[:r] = piv[:r] - err_kept <= f * self.rank_tol
            if r < piv.size:
                C = scipy.linalg.solve_triangular(Rk, R[:r, r:], check_finite=False) if r else np.zeros((0, 1))
                err_tail = nu * (1 + np.abs(C).sum(axis=0))
                doubt[r:] = piv[r:] + err_tail >= self.rank_tol / f
        if r == 0:
            d = np.minimum(np.linalg.norm(FA, axis=0), 1.0)
        else:
            Qr = Q[:, :r]
            proj = Qr.T @ FA
            d = np.minimum(np.linalg.norm(FA - Qr @ proj, axis=0), 1.0)
        if not _CERTIFY:
            return d * d, d * d, d * d
        if r:
            Rr = R[:r, :r]
            inv1 = _inv_norm1(Rr)
            # first order in the distance itself: 1 / (1 - sqrt(r) nu ||R^-1||), from s = r nu^2 ||R^-1||^2
            rg = _second_order(Rr, inv1, r * nu * nu)
            x = np.sqrt(max(0.0, 1.0 - 1.0 / rg)) if np.isfinite(rg) else 1.0
            rho = 1.0 / (1.0 - x) if x < 0.5 else np.inf
            with np.errstate(over="ignore", invalid="ignore"):
                c1 = cert.CONDITION_SAFETY * inv1 * np.abs(proj).sum(axis=0)  # >= ||c||_1
                beta = (nu + nu * c1) * rho + cert.gamma(m * (r + 1))
            beta[np.isnan(beta)] = np.inf
            if t2 is not None or nA * r <= _SMALL:
                exact = np.ones(nA, dtype=bool) if nA * r <= _SMALL else ~(np.abs(d * d - t2) > 2 * beta + beta**2)
                if exact.any():
                    C = scipy.linalg.solve_triangular(Rr, proj[:, exact], check_finite=False)
                    c1[exact] = np.abs(C).sum(axis=0)
                    beta[exact] = (nu + nu * c1[exact]) * rho + cert.gamma(m * (r + 1))
        else:
            beta = np.full(nA, nu + cert.gamma(m))
            c1 = np.zeros(nA)
        lo_d = np.maximum(d - beta, 0.0)
        hi_d = np.minimum(d + beta, 1.0)
        if _CERTIFY and r < piv.size:
            # Another pivot order may keep a dropped column in place of a kept near-duplicate, turning
            # span(K) by about the dropped residuals' length: a distance moves by at most that times
            # (1 + ||c||_1) (found by an adversarial audit: y1 = y0 + 1e-12 e1 kept instead of y0).
            if r:  # the dropped columns' own coefficients: exact (a few triangular solves)
                Ct = scipy.linalg.solve_triangular(R[:r, :r], R[:r, r:], check_finite=False)
                err_t = nu * (1 + np.abs(Ct).sum(axis=0))
            else:
                err_t = np.full(piv.size - r, nu)
            swap = float(np.sqrt(np.sum((piv[r:] + err_t) ** 2)))
            with np.errstate(over="ignore", invalid="ignore"):
                slack = swap * (1.0 + c1)
            slack[np.isnan(slack)] = np.inf
            lo_d = np.maximum(lo_d - slack, 0.0)
            hi_d = np.minimum(hi_d + slack, 1.0)
        if doubt.any():
            # A doubtful direction may or may not belong to the span: the candidate's component along
            # it (its Q column; within ~err / pivot of the true direction, counted twice over) is how
            # far the distance could move. Dropped ones could lower it, kept ones raise it.
            k = min(Q.shape[1], piv.size)
            comp = np.abs(Q[:, :k].T @ FA) * 2.0 + beta  # (k, |A|)
            tail = doubt[:k].copy()
            tail[:r] = False
            kept = doubt[:k].copy()
            kept[r:] = False
            if tail.any():
                lo_d = np.maximum(lo_d - np.sqrt(np.sum(comp[tail] ** 2, axis=0)), 0.0)
            if kept.any():
                hi_d = np.minimum(np.sqrt(hi_d**2 + np.sum(comp[kept] ** 2, axis=0)), 1.0)
        return d * d, lo_d * lo_d, hi_d * hi_d

    def restrict(self, cols: np.ndarray) -> "FactorSpace":
        """The same geometry on a subset of neurons, rotated to at most len(cols) rows."""
        sub = self.F[:, cols]
        nu = self.nu
        if sub.shape[0] > sub.shape[1]:
            nu = nu + cert.gamma(sub.shape[0] * sub.shape[1])
            sub = scipy.linalg.qr(sub, mode="r", check_finite=False)[0][: sub.shape[1]]
        return FactorSpace(sub, self.tol, nu, self.rank_tol)


def _unit_factor(M: np.ndarray, live: np.ndarray) -> tuple:
    """Unit-column triangular factor of the live columns of ``M`` (dead ones left zero), scaled safely."""
    n = M.shape[1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        big = np.abs(M).max(axis=0) if M.shape[0] else np.zeros(n)
        Ms = np.ldexp(M, -np.frexp(np.where(big > 0, big, 1.0))[1])  # exact: largest |value| in [0.5, 1)
        norms = np.linalg.norm(Ms, axis=0)
    live = live & (norms > 0) & np.isfinite(norms)
    F = np.zeros((M.shape[0], n))
    F[:, live] = Ms[:, live] / norms[live]
    return F, live


class Tiers:
    """A geometry's distance kernels from fastest to most precise, and the decisions they certify.

    ``fast``: the space of the reduction (GramSpace or FactorSpace). ``raw``: ``(X, Y, cols)`` when
    the raw arrays are at hand (``cols`` maps this geometry's neuron index to the joint column of
    ``[X Y]``); they give the precise tier (Householder QR of the raw data) and the exact tier
    (rational arithmetic, for small spans).
    """

    def __init__(self, fast, raw=None, precise=None, rank_tol: float = RANK_TOL):
        self.fast = fast
        self.raw = raw
        self._precise = precise
        self.rank_tol = rank_tol
        self.stats = {"fast": 0, "precise": 0, "exact": 0, "uncertain": 0}

    def _columns(self, idx) -> np.ndarray:
        X, Y, cols = self.raw
        g = cols[np.asarray(idx, dtype=np.intp)]
        nx = X.shape[1]
        out = np.empty((X.shape[0], g.size))
        inx = g < nx
        out[:, inx] = X[:, g[inx]]
        out[:, ~inx] = Y[:, g[~inx] - nx]
        return out

    def precise(self):
        """The precise tier (built on first use), or None without raw data or when fast is already QR."""
        if self._precise is None and self.raw is not None and isinstance(self.fast, GramSpace):
            X = self.raw[0]
            n = self.raw[2].size
            M = self._columns(np.arange(n))
            F, _ = _unit_factor(M, np.ones(n, dtype=bool))
            R = scipy.linalg.qr(F, mode="r", check_finite=False)[0][: min(n, X.shape[0])]
            self._precise = FactorSpace(R, self.fast.tol, 4 * cert.U + cert.gamma(F.shape[0] * n), self.rank_tol)
        return self._precise

    def restrict(self, cols) -> "Tiers":
        cols = np.asarray(cols, dtype=np.intp)
        raw = None if self.raw is None else (self.raw[0], self.raw[1], self.raw[2][cols])
        precise = None if self._precise is None else self._precise.restrict(cols)
        out = Tiers(self.fast.restrict(cols), raw, precise, self.rank_tol)
        out.stats = self.stats
        return out

    def _exact_ok(self, nB: int) -> bool:
        return self.raw is not None and cert.exact_affordable(self.raw[0].shape[0], nB)

    def decide(self, A, B, t: float) -> np.ndarray:
        """Per candidate of A: 1 if certainly within ``t`` of span(B), 0 if certainly not, -1 undecided."""
        A = np.asarray(A, dtype=np.intp)
        t2 = t * t
        lo_t2, hi_t2 = t2 * (1 - 4 * cert.U), t2 * (1 + 4 * cert.U)  # t * t itself is rounded
        d2, lo, hi = self.fast.evaluate(A, B, t2)
        if not _CERTIFY:
            return (d2 <= t2).astype(np.int8)
        keep = hi <= lo_t2
        dec = keep.astype(np.int8)
        unc = ~(keep | (lo > hi_t2))
        self.stats["fast"] += A.size
        if not unc.any():
            return dec
        dec[unc] = -1
        if self.precise() is not None:
            self.stats["precise"] += int(unc.sum())
            _, lo, hi = self.precise().evaluate(A[unc], B, t2)
            dec[unc] = np.where(hi <= lo_t2, 1, np.where(lo > hi_t2, 0, -1))
            unc = dec < 0
        if unc.any() and self._exact_ok(len(B)):
            self.stats["exact"] += int(unc.sum())
            exact = self._exact(A[unc], B)
            if exact is not None:  # None: a pivot in the order band, undecidable by the convention
                tt = Fraction(t) ** 2
                dec[unc] = [1 if e <= tt else 0 for e in exact]
                unc = dec < 0
        self.stats["uncertain"] += int(unc.sum())
        return dec

    def _exact(self, A, B) -> list:
        return cert.exact_squared_distances(self._columns(B).T, self._columns(A).T, self.rank_tol)

    def values(self, A, B, width: float) -> tuple:
        """``(d, lo, hi)``: relative distances of A to span(B) with bounds (distance units), refined by
        the precise and exact tiers wherever the bound is wider than ``width``."""
        A = np.asarray(A, dtype=np.intp)
        d2, lo, hi = self.fast.evaluate(A, B)
        d, dl, dh = np.sqrt(d2), np.sqrt(lo), np.sqrt(hi)
        wide = (dh - dl) > width
        if wide.any() and self.precise() is not None:
            p2, plo, phi = self.precise().evaluate(A[wide], B)
            d[wide], dl[wide], dh[wide] = np.sqrt(p2), np.sqrt(plo), np.sqrt(phi)
            wide = (dh - dl) > width
        exact = self._exact(A[wide], B) if wide.any() and self._exact_ok(len(B)) else None
        if exact is not None:
            ex = np.array([float(e) for e in exact])
            v = np.sqrt(np.clip(ex, 0.0, 1.0))
            d[wide] = v
            dl[wide] = np.maximum(v * (1 - 2 * cert.U), 0.0)
            dh[wide] = np.minimum(v * (1 + 2 * cert.U), 1.0)
        return d, dl, dh


@dataclass
class Geometry:
    """The unit-length geometry of the live activation vectors of both layers (internal, cached).

    Neurons 0..n_x-1 are X's, n_x..n_x+n_y-1 are Y's; dead neurons never enter a candidate set.
    """

    space: object
    n_x: int
    n_y: int
    live: np.ndarray
    tol: float
    n_samples: int
    rank_tol: float = RANK_TOL
    raw: tuple | None = None
    tiers: Tiers | None = None

    def __post_init__(self):
        if self.tiers is None:
            self.tiers = Tiers(self.space, self.raw, rank_tol=self.rank_tol)

    @property
    def live_x(self) -> np.ndarray:
        return np.flatnonzero(self.live[: self.n_x])

    @property
    def live_y(self) -> np.ndarray:
        return self.n_x + np.flatnonzero(self.live[self.n_x :])

    @property
    def dead_x(self) -> np.ndarray:
        return np.flatnonzero(~self.live[: self.n_x])

    @property
    def dead_y(self) -> np.ndarray:
        return np.flatnonzero(~self.live[self.n_x :])


def _geometry_from_reduction(r: Reduction, tol: float, rank_tol: float) -> Geometry:
    if r.n_samples == 0:
        raise ValueError("the reduction has seen no samples; call update() before computing a match")
    n = r.n_neurons
    raw = None
    if r.rows is not None:
        raw = (r.rows[0], r.rows[1], np.arange(n))
    if r.method == "qr":
        F, live = _unit_factor(r.stored_r, np.ones(n, dtype=bool))
        space = FactorSpace(F, tol, r.factor_noise(), rank_tol)
    elif r.device is not None:  # stays on the device; GramSpace then uses the torch kernel
        from ._torch import normalised_gram

        Gn, live = normalised_gram(r)
        space = GramSpace(Gn, tol, r.noise(), rank_tol)
    else:
        G = r.scaled_gram()
        diag = np.diag(G).copy()
        live = diag > 0
        s = np.sqrt(np.where(live, diag, 1.0))
        Gn = np.where(np.outer(live, live), G / np.outer(s, s), 0.0)
        np.fill_diagonal(Gn, np.where(live, 1.0, 0.0))
        space = GramSpace(Gn, tol, r.noise(), rank_tol)
    return Geometry(space=space, n_x=r.n_x, n_y=r.n_y, live=live, tol=tol, n_samples=r.n_samples,
                    rank_tol=rank_tol, raw=raw)


def geometry(X, Y=None, *, method: str | None = None, tol: float | None = None, rank_tol: float | None = None,
             warn_samples: bool = True) -> Geometry:
    """Build (or fetch from the reduction's cache) the geometry every solver works on.

    Given arrays, the reduction keeps them so that undecided comparisons can be settled on the raw
    data (module docstring)."""
    if isinstance(X, Geometry):
        return X
    r = as_reduction(X, Y, measure="the subspace match", method=method, keep_rows=True)
    tol = _check_tol(tol, r.method)
    rank_tol = _check_tol(rank_tol, "rank", "rank_tol")
    key = ("geometry", tol, rank_tol)
    geo = r.cached(key, lambda: _geometry_from_reduction(r, tol, rank_tol))
    if warn_samples and geo.n_samples < MIN_SAMPLES_PER_NEURON * (geo.n_x + geo.n_y):
        warn(
            f"only {geo.n_samples} samples for {geo.n_x} + {geo.n_y} neurons "
            f"({geo.n_samples / (geo.n_x + geo.n_y):.2f} per neuron, fewer than {MIN_SAMPLES_PER_NEURON:g}): "
            "spans of this many vectors cover most of the sample space, so matches are close to trivial",
            stacklevel=4,
        )
    return geo


def _check_tol(tol, method: str, name: str = "tol") -> float:
    if tol is None:
        return RANK_TOL if method == "rank" else QR_TOL if method == "qr" else GRAM_TOL
    if isinstance(tol, (bool, np.bool_)):
        raise ValueError(f"{name} must lie in (0, 1), got {tol!r}")
    try:
        t = float(tol)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must lie in (0, 1), got {tol!r}") from None
    if not np.isfinite(t) or t <= 0 or t >= 1:
        raise ValueError(f"{name} must lie in (0, 1), got {tol!r}")
    return t


def _resolve(X, Y, eps, *, method=None, tol=None, rank_tol=None):
    """Accept (X, Y, eps), (reduction, eps) or (reduction, eps=...) and return (geometry, eps)."""
    if isinstance(X, (Reduction, Geometry)) and Y is not None and np.ndim(Y) == 0 and eps is None:
        Y, eps = None, Y
    if isinstance(X, Geometry):
        if Y is not None:
            raise ValueError("Y must be omitted when X is a Geometry")
        return X, eps
    return geometry(X, Y, method=method, tol=tol, rank_tol=rank_tol), eps


# ---------------------------------------------------------------------------- kernels
def _as_tiers(space) -> Tiers:
    return space if isinstance(space, Tiers) else Tiers(space)


def prune(
    space,
    I: np.ndarray,
    J: np.ndarray,
    threshold: float,
    *,
    check_I: bool = True,
    check_J: bool = True,
    watch: int | None = None,
    optimistic: bool = False,
):
    """Iterative pruning (spec section 3) from candidate sets I (X side) and J (Y side).

    Returns ``(I, J, uncertain)``: the maximum match contained in (I, J) as two sorted index
    arrays, and whether any decision was left undecided by every tier. Undecided neurons are
    dropped (``optimistic=False``: what is returned is a certified match, contained in the true
    maximum match) or kept (``optimistic=True``: what is returned contains the true maximum
    match). With ``watch`` given, returns ``(None, None, uncertain)`` as soon as that neuron is
    pruned. ``check_I=False`` says I is already known to be within ``threshold`` of span(J).
    Correct from any superset of the maximum match: a neuron removed once is too far from a
    superset of the other side of the maximum match, so it belongs to no match.
    """
    tiers = _as_tiers(space)
    I = np.asarray(I, dtype=np.intp)
    J = np.asarray(J, dtype=np.intp)
    uncertain = False
    while check_I or check_J:
        for side in (0, 1):
            if not (check_I if side == 0 else check_J):
                continue
            A, B = (I, J) if side == 0 else (J, I)
            if side == 0:
                check_I = False
            else:
                check_J = False
            dec = tiers.decide(A, B, threshold)
            if (dec < 0).any():
                uncertain = True
            keep = dec != 0 if optimistic else dec == 1
            if not keep.all():
                if watch is not None and watch in A[~keep]:
                    return None, None, uncertain
                A = A[keep]
                if side == 0:
                    I, check_J = A, True
                else:
                    J, check_I = A, True
            if A.size == 0:
                if watch is not None:
                    return None, None, uncertain
                return I[:0], J[:0], uncertain
    return I, J, uncertain


def bounded_prune(space, I, J, threshold, *, check_I=True, check_J=True):
    """``(lo, hi)``: a certified match ``lo`` and a superset ``hi`` of the true maximum match
    within (I, J) (equal, and exact, when every decision was certified)."""
    lo_I, lo_J, unc = prune(space, I, J, threshold, check_I=check_I, check_J=check_J)
    if not unc:
        return (lo_I, lo_J), (lo_I, lo_J)
    hi_I, hi_J, _ = prune(space, I, J, threshold, check_I=check_I, check_J=check_J, optimistic=True)
    return (lo_I, lo_J), (hi_I, hi_J)


def watch_prune(space, I, J, threshold, *, check_I=True, check_J=True, watch):
    """``(sets, certain)`` for the v-minimal search: ``sets`` is a certified match within (I, J)
    containing ``watch``, or None when ``watch`` is certainly in no match there (``certain``) or when
    that could not be decided (``certain=False``)."""
    I2, J2, unc = prune(space, I, J, threshold, check_I=check_I, check_J=check_J, watch=watch)
    if I2 is not None:
        return (I2, J2), True
    if not unc:
        return None, True
    I3, _, _ = prune(space, I, J, threshold, check_I=check_I, check_J=check_J, watch=watch, optimistic=True)
    return None, I3 is None


def _threshold(eps: float, tol: float) -> float:
    return max(eps, tol)


def _make_match(geo: Geometry, I, J, eps: float, hi=None) -> Match:
    I = np.sort(np.asarray(I, dtype=np.intp))
    J = np.sort(np.asarray(J, dtype=np.intp))
    ux, uy = _empty(), _empty()
    if hi is not None:
        ux = np.setdiff1d(np.asarray(hi[0], dtype=np.intp), I)
        uy = np.setdiff1d(np.asarray(hi[1], dtype=np.intp), J) - geo.n_x
    return Match(
        x=I,
        y=J - geo.n_x,
        eps=float(eps),
        n_x=geo.n_x,
        n_y=geo.n_y,
        dead_x=geo.dead_x,
        dead_y=geo.dead_y,
        tol=geo.tol,
        n_samples=geo.n_samples,
        uncertain_x=ux,
        uncertain_y=uy,
        rank_tol=geo.rank_tol,
    )


def _warn_uncertain(geo: Geometry, what: str, n_unc: int) -> None:
    how = ("the raw data could not settle them either" if geo.raw is not None else
           "pass the arrays instead of a Gram reduction, or reduce with method='qr'")
    warn(f"{n_unc} neuron(s) could not be decided {what}: their distance to the other side's span is "
         f"within its rounding-error bound of the threshold ({how}); the true answer lies between the "
         "certified match and the certified match plus uncertain_x / uncertain_y", stacklevel=4)


# ---------------------------------------------------------------------------- public API
def maximum_match(X, Y=None, *, eps, method: str | None = None, tol: float | None = None,
                  rank_tol: float | None = None) -> Match:
    """The unique maximum ε-approximate match between two layers (spec sections 1-3).

    Parameters
    ----------
    X, Y : array-like of shape (n_samples, n_x) and (n_samples, n_y)
        Activations of the two layers on the same inputs, rows in the same order. Alternatively
        pass a :class:`~repmatch.Reduction` as ``X`` and omit ``Y``.
    eps : float in [0, 1)
        Largest allowed relative distance of a neuron to the other side's span (the sine of the
        angle): 0.25 is about 14.5 degrees, 0.5 is 30 degrees.
    method : {"gram", "qr"}, optional
        Reduction used for in-memory arrays (default "gram"; "qr" resolves exact matches to 1e-9).
    tol : float, optional
        Exact-match tolerance; default 1e-6 ("gram") or 1e-9 ("qr"). See Notes.
    rank_tol : float, optional
        Numerical rank of a span (default :data:`~repmatch.reduce.RANK_TOL` = 1e-10). See Notes.

    Returns
    -------
    Match
        ``.x``, ``.y`` sorted column indices, ``.similarity``, ``.dead_x``, ``.dead_y``,
        ``.uncertain_x``, ``.uncertain_y`` (almost always empty; a RepmatchWarning says when not).

    Notes
    -----
    The match condition is ``dist(z, span(other side)) <= max(eps, tol) * ||z||`` for every neuron
    z of the match, with the inequality not strict. A span's directions are those of the neurons
    that lie more than ``rank_tol`` (relative) from the span of the neurons pivoted before them.
    Every decision is certified against its rounding-error bound, re-decided on the raw data when
    the bound does not settle it, and reported uncertain otherwise (docs/subspace.md, "Guarantees").
    Dead neurons (zero activation vector) match nothing but count in the similarity's
    denominator. Column order does not matter and scaling a neuron by any finite non-zero factor
    changes nothing.

    References
    ----------
    Wang et al., "Towards Understanding Learning Representations: To What Extent Do Different
    Neural Networks Learn the Same Representation", NeurIPS 2018; shared/spec/subspace-match.md.
    """
    geo, eps = _resolve(X, Y, eps, method=method, tol=tol, rank_tol=rank_tol)
    eps = check_eps(eps)
    lo, hi = bounded_prune(geo.tiers, geo.live_x, geo.live_y, _threshold(eps, geo.tol))
    m = _make_match(geo, *lo, eps, hi=hi)
    if not m.certified:
        _warn_uncertain(geo, f"at eps={eps:g}", len(m.uncertain_x) + len(m.uncertain_y))
    return m


def max_epsilon(X, Y=None, *, method: str | None = None, tol: float | None = None,
                rank_tol: float | None = None) -> float:
    """The smallest ε at which every live neuron of both layers is in the maximum match.

    It is the largest relative distance of a live neuron to the span of all live neurons of the
    other layer, accurate to ``tol`` (a RepmatchWarning gives the bound when the computation could
    not certify that). Returns 1.0 when one layer has no live neuron or the layers are orthogonal
    (then no ε < 1 matches everything).

    Parameters
    ----------
    X, Y : array-like of shape (n_samples, n_x) and (n_samples, n_y)
        Activations of the two layers on the same inputs, rows in the same order. Alternatively
        pass a :class:`~repmatch.Reduction` (or a ``Geometry``) as ``X`` and omit ``Y``.
    method : {"gram", "qr"}, optional
        Reduction used for in-memory arrays (default "gram"; "qr" resolves exact matches to 1e-9).
    tol : float, optional
        Exact-match tolerance; default 1e-6 ("gram") or 1e-9 ("qr"), must lie in (0, 1).
    rank_tol : float, optional
        Numerical rank of a span (default :data:`~repmatch.reduce.RANK_TOL` = 1e-10).

    Returns
    -------
    float in [0, 1]
        The certified upper end of the largest distance: the maximum match at this ε is certified
        to hold every live neuron.

    Raises
    ------
    ValueError
        When ``tol`` or ``rank_tol`` is not in (0, 1), or the inputs are not valid activations.
    """
    geo, _ = _resolve(X, Y, None, method=method, tol=tol, rank_tol=rank_tol)
    value, bound = _max_epsilon(geo)
    if bound > geo.tol:
        warn(f"max_epsilon = {value:.6g} is only certified to lie within {bound:.2g} below that (more than "
             f"tol = {geo.tol:g})", stacklevel=3)
    return value


def _internal_max(geo: Geometry, I, J) -> tuple:
    """``(value, lo, hi)``: the largest relative distance of a neuron of I to span(J) or of J to
    span(I), with bounds on the exact value; (1, 1, 1) when a side is empty."""
    if len(I) == 0 or len(J) == 0:
        return 1.0, 1.0, 1.0
    width = geo.tol
    dx, lx, hx = geo.tiers.values(I, J, np.inf)
    dy, ly, hy = geo.tiers.values(J, I, np.inf)
    d, lo, hi = np.concatenate([dx, dy]), np.concatenate([lx, ly]), np.concatenate([hx, hy])
    A = np.concatenate([np.asarray(I), np.asarray(J)])
    floor = lo.max()
    # only neurons that could be the largest need tight values
    cand = (hi >= floor) & ((hi - lo) > width)
    if cand.any():
        nx = cand[: len(I)]
        ny = cand[len(I):]
        if nx.any():
            d[: len(I)][nx], lo[: len(I)][nx], hi[: len(I)][nx] = geo.tiers.values(A[: len(I)][nx], J, width)
        if ny.any():
            d[len(I):][ny], lo[len(I):][ny], hi[len(I):][ny] = geo.tiers.values(A[len(I):][ny], I, width)
    k = int(np.argmax(d))
    return float(min(1.0, d[k])), float(min(1.0, lo.max())), float(min(1.0, hi.max()))


def _max_epsilon(geo: Geometry) -> tuple:
    """(max_epsilon, its error bound). The value is the certified upper end of the largest distance,
    so that the maximum match at ``eps=max_epsilon`` is certified to hold every live neuron; the
    exact value lies within the bound below it."""
    _, lo, hi = _internal_max(geo, geo.live_x, geo.live_y)
    return _above(lo, hi)


def _above(lo: float, hi: float) -> tuple:
    """``(value, bound)`` for a quantity known to lie in [lo, hi]: a value a width above ``hi``, so
    that a later computation of the same distances (other pivot order, other rounding) still
    certifies them at or below it; the exact quantity lies within ``bound`` below the value."""
    if hi >= 1.0:
        return 1.0, 1.0 - lo
    w = max(hi - lo, 4 * cert.U * hi)
    value = min(1.0, hi + w)
    return value, value - lo


def similarity_curve(X, Y=None, *, eps, method: str | None = None, tol: float | None = None,
                     rank_tol: float | None = None) -> SimilarityCurve:
    """Maximum match similarity for every ε of ``eps``, from a single reduction of the data.

    The grid is solved from the largest ε down, each pruning starting from the previous maximum
    match: the maximum match is monotone in ε, and pruning from any superset reaches it. The
    certified match and its certified superset (module docstring) are followed separately when
    they differ.

    Parameters
    ----------
    X, Y : array-like of shape (n_samples, n_x) and (n_samples, n_y)
        Activations of the two layers on the same inputs, rows in the same order. Alternatively
        pass a :class:`~repmatch.Reduction` (or a ``Geometry``) as ``X`` and omit ``Y``.
    eps : float or sequence of float, each in [0, 1)
        The ε grid; a scalar is a grid of one. The results keep the order given.
    method : {"gram", "qr"}, optional
        Reduction used for in-memory arrays (default "gram"; "qr" resolves exact matches to 1e-9).
    tol : float, optional
        Exact-match tolerance; default 1e-6 ("gram") or 1e-9 ("qr"), must lie in (0, 1).
    rank_tol : float, optional
        Numerical rank of a span (default :data:`~repmatch.reduce.RANK_TOL` = 1e-10).

    Returns
    -------
    SimilarityCurve
        ``.eps`` (the grid as a 1-D float array), ``.similarity``, ``.size_x``, ``.size_y`` (the
        certified maximum match at each ε; lower bounds where neurons are uncertain),
        ``.uncertain_x`` / ``.uncertain_y`` (undecided neurons at each ε, almost always 0),
        ``.n_x``, ``.n_y``, ``.dead_x``, ``.dead_y``, ``.max_epsilon`` with its
        ``.max_epsilon_bound``, ``.tol``, ``.rank_tol`` and ``.n_samples``.

    Raises
    ------
    ValueError
        When an ε is not in [0, 1), or ``tol`` / ``rank_tol`` is not in (0, 1).
    """
    geo, eps = _resolve(X, Y, eps, method=method, tol=tol, rank_tol=rank_tol)
    grid = check_eps_grid(eps)
    order = np.argsort(-grid, kind="stable")
    size_x = np.zeros(grid.size, dtype=np.intp)
    size_y = np.zeros(grid.size, dtype=np.intp)
    unc_x = np.zeros(grid.size, dtype=np.intp)
    unc_y = np.zeros(grid.size, dtype=np.intp)
    lo = hi = (geo.live_x, geo.live_y)
    for k in order:
        t = _threshold(grid[k], geo.tol)
        if lo[0] is hi[0] and lo[1] is hi[1]:
            lo, hi = bounded_prune(geo.tiers, *lo, t)
        else:
            lo, _ = bounded_prune(geo.tiers, *lo, t)
            _, hi = bounded_prune(geo.tiers, *hi, t)
        size_x[k], size_y[k] = lo[0].size, lo[1].size
        unc_x[k], unc_y[k] = hi[0].size - lo[0].size, hi[1].size - lo[1].size
    sim = (size_x + size_y) / (geo.n_x + geo.n_y)
    if unc_x.any() or unc_y.any():
        _warn_uncertain(geo, f"at {int(np.count_nonzero(unc_x + unc_y))} of the {grid.size} eps",
                        int((unc_x + unc_y).max()))
    mx, bound = _max_epsilon(geo)
    return SimilarityCurve(
        eps=grid,
        similarity=sim,
        size_x=size_x,
        size_y=size_y,
        n_x=geo.n_x,
        n_y=geo.n_y,
        dead_x=geo.dead_x,
        dead_y=geo.dead_y,
        max_epsilon=mx,
        tol=geo.tol,
        n_samples=geo.n_samples,
        uncertain_x=unc_x,
        uncertain_y=unc_y,
        max_epsilon_bound=bound,
        rank_tol=geo.rank_tol,
    )


def minimal_epsilon(
    X, Y=None, *, min_size: int, method: str | None = None, tol: float | None = None,
    rank_tol: float | None = None, bisect_steps: int = 30
) -> tuple[float, Match]:
    """Smallest ε whose maximum match has at least ``min_size`` neurons on each side.

    Returns ``(eps, match)``. Bisection on ε (valid because the maximum match is monotone in ε,
    spec section 3) narrows the interval; the answer is then made exact: for the match M found at
    the upper end, the smallest ε at which M is a match is the largest relative distance inside M,
    and stepping down through these critical values until the size drops below ``min_size`` gives
    the answer, accurate to ``tol`` (a RepmatchWarning gives the bound when it could not be
    certified that tightly). Returns ε = 0 when the exact match (up to ``tol``) is already large
    enough.

    Parameters
    ----------
    X, Y : array-like of shape (n_samples, n_x) and (n_samples, n_y)
        Activations of the two layers on the same inputs, rows in the same order. Alternatively
        pass a :class:`~repmatch.Reduction` (or a ``Geometry``) as ``X`` and omit ``Y``.
    min_size : int >= 1
        Neurons the match must hold on each side.
    method : {"gram", "qr"}, optional
        Reduction used for in-memory arrays (default "gram"; "qr" resolves exact matches to 1e-9).
    tol : float, optional
        Exact-match tolerance; default 1e-6 ("gram") or 1e-9 ("qr"), must lie in (0, 1).
    rank_tol : float, optional
        Numerical rank of a span (default :data:`~repmatch.reduce.RANK_TOL` = 1e-10).
    bisect_steps : int >= 0, default 30
        Bisection steps before the exact descent through critical values.

    Returns
    -------
    eps : float in [0, 1)
        The smallest such ε (a certified upper bound when a RepmatchWarning says so).
    match : Match
        The maximum match at ``eps``.

    Raises
    ------
    ValueError
        When ``min_size`` is not a positive integer, ``bisect_steps`` is negative, or ``tol`` /
        ``rank_tol`` is not in (0, 1).
    NoMatchError (a ValueError)
        When no ε < 1 reaches ``min_size``: fewer live neurons than that on a side, or layers so
        far apart (orthogonal) that nothing matches below ε = 1.
    """
    geo, _ = _resolve(X, Y, None, method=method, tol=tol, rank_tol=rank_tol)
    k = check_positive_int(min_size, "min_size")
    steps = check_positive_int(bisect_steps, "bisect_steps", minimum=0)
    nx_live, ny_live = geo.live_x.size, geo.live_y.size
    if k > min(nx_live, ny_live):
        raise NoMatchError(
            f"min_size={k} is larger than the number of live neurons on the smaller side "
            f"({nx_live} of X, {ny_live} of Y): no ε < 1 reaches it"
        )

    def size_ok(IJ):
        return IJ[0].size >= k and IJ[1].size >= k

    tiers = geo.tiers
    unsure = False
    hi_eps = _max_epsilon(geo)[0]
    hi = (geo.live_x, geo.live_y)
    lo_eps = 0.0
    at_zero, at_zero_hi = bounded_prune(tiers, *hi, _threshold(0.0, geo.tol))
    if size_ok(at_zero):
        return 0.0, _make_match(geo, *at_zero, 0.0)
    unsure |= size_ok(at_zero_hi)
    for _ in range(steps):
        mid = 0.5 * (lo_eps + hi_eps)
        cand, cand_hi = bounded_prune(tiers, *hi, _threshold(mid, geo.tol))
        if size_ok(cand):
            hi_eps, hi = mid, cand
        else:
            unsure |= size_ok(cand_hi)
            lo_eps = mid
    # exact descent through critical values
    while True:
        crit, c_lo, c_hi = _internal_max(geo, *hi)
        if crit >= 1.0:
            raise NoMatchError(f"no ε < 1 gives a match with at least min_size={k} neurons on each side: "
                               "the layers are orthogonal where it matters (max distance 1)")
        below = c_lo * (1 - 4 * cert.U) - 4 * cert.U
        if below <= geo.tol:
            result = crit
            break
        cand, cand_hi = bounded_prune(tiers, *hi, below)
        if not size_ok(cand):
            unsure |= size_ok(cand_hi)
            result = crit
            break
        hi = cand
    # report the certified upper end of the critical distance: the match is certified to hold there
    if result > 0:
        result, bound = _above(c_lo, c_hi)
    else:
        bound = 0.0
    if bound > geo.tol or unsure:
        warn(f"minimal_epsilon = {result:.6g} is certified only as an upper bound (the exact value may lie "
             f"up to {max(bound, geo.tol):.2g} below, or lower where neurons could not be decided)", stacklevel=3)
    return result, _make_match(geo, *hi, result)
