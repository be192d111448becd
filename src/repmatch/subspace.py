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

* Gram reduction -> :class:`GramSpace`, the normalised Gram matrix (unit diagonal). The distance of
  a candidate a to span(B) is ``sqrt(1 - ||U^-T g_Ba||^2)`` with ``U`` a pivoted Cholesky factor of
  the Gram block of B (LAPACK ``dpstrf``), whose pivots are squared distances of each pivot column
  to the span of the earlier ones.
* QR reduction -> :class:`FactorSpace`, unit columns of the triangular factor. The distance is the
  norm of the residual of the orthogonal projection onto a basis of span(B) from QR with column
  pivoting of ``F[:, B]``: no squared quantities, hence the smaller tolerance.

A Gram reduction on a PyTorch device (``Reduction(..., device=...)``) keeps its normalised Gram
matrix on that device and GramSpace computes distances there (``repmatch._torch.gram_distances``,
the same pivoted Cholesky written in torch); only distance vectors come back to the host. A QR
reduction on a device is solved on the host from its n x n factor (torch has no pivoted QR).

The pruning logic (:func:`prune`) is the same for both.

Tolerance
---------
``tol`` (default :data:`~repmatch.reduce.GRAM_TOL` = 1e-6 on a Gram reduction,
:data:`~repmatch.reduce.QR_TOL` = 1e-10 on a QR reduction) is the one numerical tolerance:

* a direction of span(B) counts only if a pivot column lies more than ``tol`` (relative) from the
  span of the previously chosen ones; near-duplicate neurons closer than that are one direction;
* the test ``dist(z, span) <= eps * ||z||`` is evaluated with ``max(eps, tol)`` in place of ``eps``:
  ``eps = 0`` means "exact up to tol". A naive implementation finds nothing at ``eps = 0``.
* distances within :data:`EDGE_SLACK` (1e-12) above the threshold compare as equal, so the spec's
  non-strict inequality survives rounding of numbers that are equal on paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

from ._validate import (
    as_rng,
    check_eps,
    check_eps_grid,
    check_pair,
    check_positive_int,
    warn,
)
from .reduce import GRAM_TOL, QR_TOL, Reduction

__all__ = [
    "Match",
    "SimilarityCurve",
    "maximum_match",
    "max_epsilon",
    "minimal_epsilon",
    "similarity_curve",
    "EDGE_SLACK",
    "MIN_SAMPLES_PER_NEURON",
]

#: Distances up to this much above the threshold count as equal to it (absolute, in units of
#: relative distance, which lies in [0, 1]); a float64 relative distance carries ~1e-15 of rounding.
EDGE_SLACK = 1e-12
#: Below this many samples per neuron (n_samples / (n_x + n_y)) a warning says the span test is close
#: to trivial: with d samples a random vector keeps only about sqrt(1 - n/d) of its length outside an
#: n-dimensional span, so with few samples everything "matches" (spec section 2).
MIN_SAMPLES_PER_NEURON = 5.0


# ---------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Match:
    """An ε-approximate match (X-side columns ``x``, Y-side columns ``y``) between two layers.

    Attributes
    ----------
    x, y : ndarray of int
        Sorted column indices of X and of Y in the match.
    eps : float
        The ε it was computed at.
    n_x, n_y : int
        Number of neurons of each layer (dead ones included).
    dead_x, dead_y : ndarray of int
        Columns whose activation vector is zero on the data. They match nothing and count in the
        denominator of :attr:`similarity`.
    tol : float
        The numerical tolerance used (see module docstring).
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

    @property
    def similarity(self) -> float:
        """Maximum match similarity (|x| + |y|) / (n_x + n_y) — for a non-maximum match, its share."""
        return (len(self.x) + len(self.y)) / (self.n_x + self.n_y)

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
            "n_samples": self.n_samples,
        }

    def __repr__(self) -> str:
        return (
            f"Match(eps={self.eps:g}, |x|={len(self.x)}/{self.n_x}, |y|={len(self.y)}/{self.n_y}, "
            f"similarity={self.similarity:.4f}, dead={len(self.dead_x)}+{len(self.dead_y)})"
        )


@dataclass(frozen=True)
class SimilarityCurve:
    """Maximum match similarity at every ε of a grid (in the order given), from one reduction."""

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

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.similarity, dtype=dtype)

    def __len__(self) -> int:
        return len(self.eps)

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
            "tol": self.tol,
            "n_samples": self.n_samples,
        }


# ---------------------------------------------------------------------------- geometry
_dpstrf = scipy.linalg.lapack.dpstrf
_dtrtrs = scipy.linalg.lapack.dtrtrs


class GramSpace:
    """Unit-diagonal Gram matrix of the neurons; distances by pivoted Cholesky (see module docstring)."""

    def __init__(self, G: np.ndarray, tol: float):
        self.G = G
        self.tol = tol

    def distances(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Relative distance of every neuron in A to span(B)."""
        if len(A) == 0:
            return np.zeros(0)
        if len(B) == 0:
            return np.ones(len(A))
        if not isinstance(self.G, np.ndarray):  # a torch tensor: the reduction lives on a device
            from ._torch import gram_distances

            return gram_distances(self.G, A, B, self.tol)
        # Called tens of thousands of times on small blocks by the simple-match search: LAPACK is
        # called directly (no SciPy argument checking) and blocks are gathered with take().
        B = np.asarray(B)
        U, piv, rank, info = _dpstrf(self.G.take(B, axis=0).take(B, axis=1), tol=self.tol**2, lower=0)
        if info < 0:  # pragma: no cover - LAPACK argument error
            raise RuntimeError(f"dpstrf failed with info={info}")
        rank = int(rank)
        if rank == 0:
            return np.ones(len(A))
        basis = B[piv[:rank] - 1]
        # U^T W = G[basis, A]: W's column j holds the coordinates of neuron A[j] on the orthonormal
        # basis of span(B), so 1 - |W_j|^2 is its squared distance to span(B)
        W, info = _dtrtrs(U[:rank, :rank], self.G.take(basis, axis=0).take(A, axis=1), lower=0, trans=1)
        if info != 0:  # pragma: no cover - rank-revealed pivots are positive
            raise RuntimeError(f"dtrtrs failed with info={info}")
        return np.sqrt(np.clip(1.0 - np.einsum("ij,ij->j", W, W), 0.0, 1.0))

    def restrict(self, cols: np.ndarray) -> "GramSpace":
        """The same geometry on a subset of neurons (columns renumbered 0..len(cols)-1)."""
        if not isinstance(self.G, np.ndarray):
            from ._torch import submatrix

            return GramSpace(submatrix(self.G, cols), self.tol)
        return GramSpace(self.G[np.ix_(cols, cols)], self.tol)


class FactorSpace:
    """Unit columns of a factor F with F^T F = normalised Gram; distances by pivoted QR."""

    def __init__(self, F: np.ndarray, tol: float):
        self.F = F
        self.tol = tol

    def distances(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Relative distance of every neuron in A to span(B)."""
        if len(A) == 0:
            return np.zeros(0)
        FA = self.F[:, A]
        if len(B) == 0 or self.F.shape[0] == 0:
            return np.linalg.norm(FA, axis=0)
        Q, R, _ = scipy.linalg.qr(self.F[:, B], mode="economic", pivoting=True, check_finite=False)
        # With column pivoting |R_ii| is the distance of the i-th pivot to the span of the earlier ones.
        rank = int(np.count_nonzero(np.abs(np.diag(R)) > self.tol))
        if rank == 0:
            return np.linalg.norm(FA, axis=0)
        Qr = Q[:, :rank]
        return np.linalg.norm(FA - Qr @ (Qr.T @ FA), axis=0)

    def restrict(self, cols: np.ndarray) -> "FactorSpace":
        """The same geometry on a subset of neurons, rotated to at most len(cols) rows."""
        sub = self.F[:, cols]
        if sub.shape[0] > sub.shape[1]:
            sub = scipy.linalg.qr(sub, mode="r", check_finite=False)[0][: sub.shape[1]]
        return FactorSpace(sub, self.tol)


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


def _geometry_from_reduction(r: Reduction, tol: float) -> Geometry:
    if r.n_samples == 0:
        raise ValueError("the reduction has seen no samples; call update() before computing a match")
    n = r.n_neurons
    if r.method == "qr":
        R = r.r_factor
        norms = np.linalg.norm(R, axis=0)
        live = norms > 0
        F = np.zeros((R.shape[0], n))
        F[:, live] = R[:, live] / norms[live]
        space = FactorSpace(F, tol)
    elif r.device is not None:  # stays on the device; GramSpace then uses the torch kernel
        from ._torch import normalised_gram

        Gn, live = normalised_gram(r)
        space = GramSpace(Gn, tol)
    else:
        G = r.gram()
        diag = np.diag(G).copy()
        live = diag > 0
        s = np.sqrt(np.where(live, diag, 1.0))
        Gn = np.where(np.outer(live, live), G / np.outer(s, s), 0.0)
        np.fill_diagonal(Gn, np.where(live, 1.0, 0.0))
        space = GramSpace(Gn, tol)
    return Geometry(space=space, n_x=r.n_x, n_y=r.n_y, live=live, tol=tol, n_samples=r.n_samples)


def geometry(X, Y=None, *, method: str | None = None, tol: float | None = None, warn_samples: bool = True) -> Geometry:
    """Build (or fetch from the reduction's cache) the geometry every solver works on."""
    if isinstance(X, Geometry):
        return X
    if isinstance(X, Reduction):
        if Y is not None:
            raise ValueError("Y must be omitted when X is a Reduction (it already holds both layers)")
        if method is not None and method != X.method:
            raise ValueError(f"method={method!r} does not apply to a {X.method!r} Reduction that is already built")
        r = X
    else:
        if Y is None:
            raise ValueError("Y is required when X is an activation array (or pass a Reduction as X)")
        Xa, Ya = check_pair(X, Y)
        r = Reduction.from_arrays(Xa, Ya, method=method or "gram")
    tol = _check_tol(tol, r.method)
    key = ("geometry", tol)
    if key not in r._cache:
        r._cache[key] = _geometry_from_reduction(r, tol)
    geo = r._cache[key]
    if warn_samples and geo.n_samples < MIN_SAMPLES_PER_NEURON * (geo.n_x + geo.n_y):
        warn(
            f"only {geo.n_samples} samples for {geo.n_x} + {geo.n_y} neurons "
            f"({geo.n_samples / (geo.n_x + geo.n_y):.2f} per neuron, fewer than {MIN_SAMPLES_PER_NEURON:g}): "
            "spans of this many vectors cover most of the sample space, so matches are close to trivial",
            stacklevel=4,
        )
    return geo


def _check_tol(tol, method: str) -> float:
    if tol is None:
        return QR_TOL if method == "qr" else GRAM_TOL
    t = float(tol)
    if not np.isfinite(t) or t <= 0 or t >= 1:
        raise ValueError(f"tol must lie in (0, 1), got {tol!r}")
    return t


def _resolve(X, Y, eps, *, method=None, tol=None):
    """Accept (X, Y, eps), (reduction, eps) or (reduction, eps=...) and return (geometry, eps)."""
    if isinstance(X, (Reduction, Geometry)) and Y is not None and np.ndim(Y) == 0 and eps is None:
        Y, eps = None, Y
    if isinstance(X, Geometry):
        if Y is not None:
            raise ValueError("Y must be omitted when X is a Geometry")
        return X, eps
    return geometry(X, Y, method=method, tol=tol), eps


# ---------------------------------------------------------------------------- kernels
def prune(
    space,
    I: np.ndarray,
    J: np.ndarray,
    threshold: float,
    *,
    check_I: bool = True,
    check_J: bool = True,
    watch: int | None = None,
):
    """Iterative pruning (spec section 3) from candidate sets I (X side) and J (Y side).

    Returns the maximum match contained in (I, J) as two sorted index arrays, or ``None`` when
    ``watch`` is given and that neuron is pruned (the caller only wanted to know whether it stays).
    ``check_I=False`` says I is already known to be within ``threshold`` of span(J).
    Correct from any superset of the maximum match: a neuron removed once is too far from a superset
    of the other side of the maximum match, so it belongs to no match.
    """
    limit = threshold + EDGE_SLACK
    I = np.asarray(I, dtype=np.intp)
    J = np.asarray(J, dtype=np.intp)
    while check_I or check_J:
        if check_I:
            check_I = False
            keep = space.distances(I, J) <= limit
            if not keep.all():
                if watch is not None and watch in I[~keep]:
                    return None
                I = I[keep]
                check_J = True
            if I.size == 0:
                return None if watch is not None else (I, J[:0])
        if check_J:
            check_J = False
            keep = space.distances(J, I) <= limit
            if not keep.all():
                if watch is not None and watch in J[~keep]:
                    return None
                J = J[keep]
                check_I = True
            if J.size == 0:
                return None if watch is not None else (I[:0], J)
    return I, J


def _threshold(eps: float, tol: float) -> float:
    return max(eps, tol)


def _make_match(geo: Geometry, I, J, eps: float) -> Match:
    return Match(
        x=np.sort(np.asarray(I, dtype=np.intp)),
        y=np.sort(np.asarray(J, dtype=np.intp) - geo.n_x),
        eps=float(eps),
        n_x=geo.n_x,
        n_y=geo.n_y,
        dead_x=geo.dead_x,
        dead_y=geo.dead_y,
        tol=geo.tol,
        n_samples=geo.n_samples,
    )


# ---------------------------------------------------------------------------- public API
def maximum_match(X, Y=None, *, eps, method: str | None = None, tol: float | None = None) -> Match:
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
        Reduction used for in-memory arrays (default "gram"; "qr" resolves exact matches to 1e-10).
    tol : float, optional
        Numerical tolerance; default 1e-6 ("gram") or 1e-10 ("qr"). See Notes.

    Returns
    -------
    Match
        ``.x``, ``.y`` sorted column indices, ``.similarity``, ``.dead_x``, ``.dead_y``.

    Notes
    -----
    The match condition is ``dist(z, span(other side)) <= max(eps, tol) * ||z||`` for every neuron
    z of the match. Dead neurons (zero activation vector) match nothing but count in the
    similarity's denominator. Column order does not matter and scaling a neuron by a non-zero
    factor changes nothing.

    References
    ----------
    Wang et al., "Towards Understanding Learning Representations: To What Extent Do Different
    Neural Networks Learn the Same Representation", NeurIPS 2018; shared/spec/subspace-match.md.
    """
    geo, eps = _resolve(X, Y, eps, method=method, tol=tol)
    eps = check_eps(eps)
    I, J = prune(geo.space, geo.live_x, geo.live_y, _threshold(eps, geo.tol))
    return _make_match(geo, I, J, eps)


def max_epsilon(X, Y=None, *, method: str | None = None, tol: float | None = None) -> float:
    """The smallest ε at which every live neuron of both layers is in the maximum match.

    It is the largest relative distance of a live neuron to the span of all live neurons of the
    other layer. Returns 1.0 when one layer has no live neuron (then no ε < 1 matches anything).
    """
    geo, _ = _resolve(X, Y, None, method=method, tol=tol)
    return _max_epsilon(geo)


def _internal_max(geo: Geometry, I, J) -> float:
    if len(I) == 0 or len(J) == 0:
        return 1.0
    dx = geo.space.distances(I, J)
    dy = geo.space.distances(J, I)
    return float(min(1.0, max(dx.max(), dy.max())))


def _max_epsilon(geo: Geometry) -> float:
    return _internal_max(geo, geo.live_x, geo.live_y)


def similarity_curve(X, Y=None, *, eps, method: str | None = None, tol: float | None = None) -> SimilarityCurve:
    """Maximum match similarity for every ε of ``eps``, from a single reduction of the data.

    The grid is solved from the largest ε down, each pruning starting from the previous maximum
    match: the maximum match is monotone in ε, and pruning from any superset reaches it.
    """
    geo, eps = _resolve(X, Y, eps, method=method, tol=tol)
    grid = check_eps_grid(eps)
    order = np.argsort(-grid, kind="stable")
    size_x = np.zeros(grid.size, dtype=np.intp)
    size_y = np.zeros(grid.size, dtype=np.intp)
    I, J = geo.live_x, geo.live_y
    for k in order:
        I, J = prune(geo.space, I, J, _threshold(grid[k], geo.tol))
        size_x[k], size_y[k] = I.size, J.size
    sim = (size_x + size_y) / (geo.n_x + geo.n_y)
    return SimilarityCurve(
        eps=grid,
        similarity=sim,
        size_x=size_x,
        size_y=size_y,
        n_x=geo.n_x,
        n_y=geo.n_y,
        dead_x=geo.dead_x,
        dead_y=geo.dead_y,
        max_epsilon=_max_epsilon(geo),
        tol=geo.tol,
        n_samples=geo.n_samples,
    )


def minimal_epsilon(
    X, Y=None, *, min_size: int, method: str | None = None, tol: float | None = None, bisect_steps: int = 30
) -> tuple[float, Match]:
    """Smallest ε whose maximum match has at least ``min_size`` neurons on each side.

    Returns ``(eps, match)``. Bisection on ε (valid because the maximum match is monotone in ε,
    spec section 3) narrows the interval; the answer is then made exact: for the match M found at
    the upper end, the smallest ε at which M is a match is the largest relative distance inside M,
    and stepping down through these critical values until the size drops below ``min_size`` gives
    the smallest ε up to :data:`EDGE_SLACK`. Returns ε = 0 when the exact match (up to ``tol``)
    is already large enough.
    """
    geo, _ = _resolve(X, Y, None, method=method, tol=tol)
    k = check_positive_int(min_size, "min_size")
    nx_live, ny_live = geo.live_x.size, geo.live_y.size
    if k > min(nx_live, ny_live):
        raise ValueError(
            f"min_size={k} is larger than the number of live neurons on the smaller side "
            f"({nx_live} of X, {ny_live} of Y): no ε < 1 reaches it"
        )

    def size_ok(IJ):
        return IJ[0].size >= k and IJ[1].size >= k

    hi_eps = _max_epsilon(geo)
    hi = (geo.live_x, geo.live_y)
    lo_eps = 0.0
    at_zero = prune(geo.space, *hi, _threshold(0.0, geo.tol))
    if size_ok(at_zero):
        return 0.0, _make_match(geo, *at_zero, 0.0)
    for _ in range(check_positive_int(bisect_steps, "bisect_steps", minimum=0)):
        mid = 0.5 * (lo_eps + hi_eps)
        cand = prune(geo.space, *hi, _threshold(mid, geo.tol))
        if size_ok(cand):
            hi_eps, hi = mid, cand
        else:
            lo_eps = mid
    # exact descent through critical values
    while True:
        crit = _internal_max(geo, *hi)
        below = crit - 2 * EDGE_SLACK
        if below <= geo.tol:
            return crit, _make_match(geo, *hi, crit)
        cand = prune(geo.space, *hi, below)
        if not size_ok(cand):
            return crit, _make_match(geo, *hi, crit)
        hi = cand
