"""Error bounds and exact decisions behind the certified subspace match (docs/subspace.md, "Guarantees").

Three pieces, shared by the reductions, the host and device distance kernels and the solvers:

* the rounding model: :func:`gamma` bounds the relative error of a computation whose longest chain
  of dependent roundings has length ``m``;
* :func:`tail_growth`, the growth factor of pivoted Cholesky that turns a lower bound on the pivots
  of an unresolved part of a span into a bound on how far that part can move a distance;
* :func:`exact_squared_distances`, distances decided in exact rational arithmetic from the raw
  float64 data (every float is a rational number), for the few decisions no floating-point bound
  can settle (a distance exactly equal to ε on exact data, a span with pivots near ``rank_tol``).

Rounding model
--------------
Deterministic worst-case bounds grow like ``m u`` (``u`` = 2^-53): for a streamed QR factor of
65,536-row batches they exceed 1e-9, wider than the exact-match tolerance itself, although the
errors actually committed are ~1e-15. repmatch uses the probabilistic bounds of Higham & Mary
(SIAM J. Sci. Comput. 41, 2019): if rounding errors are independent and mean-zero, a chain of
``m`` roundings has relative error at most ``lambda sqrt(m) u`` with probability at least
``1 - 2 exp(-lambda^2 / 2)``. With :data:`ROUNDING_LAMBDA` = 8 each bound fails with probability
below 3e-14. Every constant of this model is here, so that it can be audited in one place.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

#: Unit roundoff of float64 (2^-53).
U = float(np.finfo(np.float64).eps) / 2
#: The ``lambda`` of the probabilistic rounding model (module docstring): each bound holds with
#: probability >= 1 - 2 exp(-lambda^2 / 2) = 1 - 2.5e-14.
ROUNDING_LAMBDA = 8.0
#: Safety factor on LAPACK's estimate of ``||U^-1||_1`` (``dtrcon``). The estimate is a lower bound
#: of the true norm, almost always within a factor 3; decisions within the resulting bound of the
#: threshold are re-bounded with the neuron's own coefficients, which needs no estimate.
CONDITION_SAFETY = 10.0
#: Most tail columns (unresolved directions of a span) whose effect is bounded; beyond this the
#: growth factor makes the bound useless and the affected decisions are uncertain.
MAX_TAIL = 24
#: Largest ``n_samples * (|B| + 1)^2`` for which a decision is settled in exact rational arithmetic.
EXACT_WORK = 3_000_000
#: Most span columns for the exact tier (its elimination is O(|B|^3) rational operations).
EXACT_MAX_SPAN = 40


#: A span's pivot within ``band(k) = RANK_BAND * sqrt(k)`` of ``rank_tol`` (either way) could fall on
#: the other side of it under another pivot order (ties, a rescaled or permuted column): the greedy
#: rank convention is then order-dependent, and every decision that depends on that direction is
#: left uncertain rather than decided by an arbitrary order (found by an adversarial audit: a pivot
#: of 1.2e-10 in one order is 6.9e-11 in another).
RANK_BAND = 4.0


def band(k: int) -> float:
    """Factor around ``rank_tol`` within which a pivot of a k-column span is order-dependent."""
    return RANK_BAND * math.sqrt(max(int(k), 1))


def gamma(m) -> float:
    """Bound on the relative error of ``m`` chained roundings: ``ROUNDING_LAMBDA * sqrt(m) * u``."""
    return ROUNDING_LAMBDA * math.sqrt(max(float(m), 1.0)) * U


def tail_growth(m: int) -> float:
    """``||L^-1||_2^2 * p_min^2`` bound for a pivoted Cholesky factor of ``m`` columns.

    Complete pivoting makes ``|l_ij| <= l_jj``; then ``||L^-1||_2 <= sqrt(4^m + 6m - 1) / (3 p_min)``
    (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., section 10.3), so the squared
    length of the projection of a vector onto the span of the tail is at most this factor times
    ``sum_j s_j^2 / p_min^2``, with ``s_j`` its cross products with the tail residuals.
    """
    return (4.0**m + 6.0 * m - 1.0) / 9.0


# ---------------------------------------------------------------------------- exact tier
def _column_integers(col: np.ndarray) -> tuple[list, int]:
    """A float64 column as Python integers times 2^exp (exact): ``col = ints * 2^exp``."""
    mant, exps = np.frexp(col)  # col = mant * 2^exps, 0.5 <= |mant| < 1 (mant 53 significant bits)
    nz = col != 0
    if not nz.any():
        return [0] * len(col), 0
    lo = int(exps[nz].min()) - 53
    ints = []
    for m, e, z in zip(mant.tolist(), exps.tolist(), nz.tolist()):
        if not z:
            ints.append(0)
            continue
        mi = int(m * 2.0**53)  # exact: 53-bit significand
        ints.append(mi << (int(e) - 53 - lo))
    return ints, lo


def exact_gram(cols) -> list:
    """Exact Gram matrix (list of lists of Fractions) of float64 columns, via integer arithmetic."""
    data = [_column_integers(np.asarray(c, dtype=np.float64)) for c in cols]
    k = len(data)
    G = [[Fraction(0)] * k for _ in range(k)]
    for i in range(k):
        ii, ei = data[i]
        for j in range(i, k):
            jj, ej = data[j]
            s = sum(a * b for a, b in zip(ii, jj))
            v = Fraction(s) * (Fraction(2) ** (ei + ej))
            G[i][j] = G[j][i] = v
    return G


def exact_squared_distances(B_cols, A_cols, rank_tol: float) -> list:
    """Exact squared relative distances of every column of ``A_cols`` to the numerical span of ``B_cols``.

    The span is that of the columns chosen by greedy pivoting in exact arithmetic (largest relative
    residual first, ties to the lowest index), stopping when the largest relative residual is below
    ``rank_tol``: the same convention as the floating-point kernels, without rounding. Returns
    Fractions ``dist^2 / ||a||^2``; every column must be non-zero. Returns None when a pivot lies
    within :func:`band` of ``rank_tol`` (the convention is order-dependent there: undecidable).
    """
    B_cols = list(B_cols)
    A_cols = list(A_cols)
    G = exact_gram(B_cols + A_cols)
    nb = len(B_cols)
    k = len(G)
    norms = [G[i][i] for i in range(k)]
    S = [row[:] for row in G]  # Schur complement, updated in place
    free = list(range(nb))
    tol2 = Fraction(rank_tol) ** 2
    f2 = Fraction(band(nb)) ** 2
    while free:
        best = max(free, key=lambda j: (S[j][j] / norms[j], -j))
        rel = S[best][best] / norms[best]
        if tol2 / f2 <= rel <= tol2 * f2:
            return None
        if rel < tol2 or S[best][best] == 0:
            break
        free.remove(best)
        p = S[best][best]
        col = [S[i][best] for i in range(k)]
        for i in range(k):
            if col[i] == 0:
                continue
            f = col[i] / p
            Si = S[i]
            for j in range(k):
                if col[j] != 0:
                    Si[j] -= f * col[j]
    return [S[nb + a][nb + a] / norms[nb + a] for a in range(len(A_cols))]


def exact_affordable(n_samples: int, n_span: int) -> bool:
    """Whether the exact tier may settle a decision against a span of ``n_span`` columns."""
    return n_span <= EXACT_MAX_SPAN and n_samples * (n_span + 1) ** 2 <= EXACT_WORK
