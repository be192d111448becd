"""Stage: the units of work of ``repmatch reproduce``, one per measure family, pair and layer.

Each unit takes reductions or in-memory rows and returns the measures' result objects as
``to_dict()`` (cached by :class:`repmatch.pipeline.cache.Cache`; the report reads them back with the
classes' ``from_dict``): nothing here re-picks the fields of a result. A unit that holds several
results is a dict of them by role (``{"bipartite": BipartiteMatch.to_dict(), ...}``); a unit that
cannot be computed is ``{"skipped": reason}``. Every statistic that the report shows for a trained
pair is computed for both nulls as well, with the same code:

* :func:`subspace_unit` — the MMS curve on [0, 1) and its summaries (:mod:`repmatch.mms`);
* :func:`untrained_unit` — the same numbers, plus matchings, soft matching, held-out matching,
  simple matches, CKA and (first pair) the sorted and permuted correlations, for trained seed a
  against an untrained network;
* :func:`shuffled_unit` — the permutation null of every scalar above on an in-memory sample (one
  reduction per permutation serves all of them), with extras of the first permutation for figures;
* :func:`calibration_unit` — the random-rotation baseline, held-out matching, and bootstrap
  intervals that resample images (``groups=``);
* the single-measure units (:func:`simple_unit`, :func:`alignment_unit`, ...) and
  :func:`pair_units`, the table of every unit of one pair and layer with its cache dependencies.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from .._threads import single_threaded_blas
from .._validate import RepmatchWarning


def _one_blas_thread(fn):
    """Run a unit on one BLAS thread: its products are small and many, and on a busy machine idle
    BLAS threads spin (a 10,000 x 128 Gram product measured 5 ms on one thread, 3-190 ms on two)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with single_threaded_blas():
            return fn(*args, **kwargs)

    return wrapper

__all__ = ["subspace_unit", "untrained_unit", "shuffled_unit", "calibration_unit", "soft_unit", "simple_unit",
           "alignment_unit", "reference_unit", "sparse_unit", "sparse_nulls_unit", "clusters_unit", "mi_unit",
           "simple_nulls_unit", "grouped_bootstrap", "pair_units", "RowMoments", "SCALAR_DIRECTIONS",
           "SPARSE_TOL", "SPARSE_MAX_ITER", "CLUSTER_RANDOM_PARTITIONS", "MAX_MATRIX"]

#: The permutation-tested scalars and whether larger values mean "more similar".
SCALAR_DIRECTIONS = {"semi_match": True, "bipartite_match": True, "linear_cka": True, "soft_distance": False,
                     "eps_50": False, "max_epsilon": False, "area": True}


class RowMoments:
    """Reductions of (X, Y[perm]) and of bootstrap draws without a pass over the rows per draw.

    Shuffling the rows of Y changes only the between-layer block of the centred co-moment, so a
    permutation costs one product ``Xc^T Yc[perm]``; a bootstrap draw (a count per row) costs one
    weighted product of the centred rows. The moments are exactly those of
    :meth:`repmatch.Reduction.from_arrays` on the same rows, up to rounding (float64, rows centred
    at the full-data mean first), and are handed over with :meth:`repmatch.Reduction.add_moments`.
    """

    def __init__(self, X, Y):
        self.X = np.asarray(X, dtype=np.float64)
        self.Y = np.asarray(Y, dtype=np.float64)
        self.n, self.nx = self.X.shape
        self.mean = np.concatenate([self.X.mean(axis=0), self.Y.mean(axis=0)])
        self.Z = np.hstack([self.X, self.Y]) - self.mean
        self.C = self.Z.T @ self.Z

    def _red(self, n, mean, com):
        from ..reduce import Reduction

        r = Reduction(self.nx, self.Z.shape[1] - self.nx)
        r.add_moments(n, mean, com)
        return r

    def full(self):
        return self._red(self.n, self.mean, self.C)

    def permuted(self, perm):
        nx = self.nx
        com = self.C.copy()
        cross = self.Z[:, :nx].T @ self.Z[perm, nx:]
        com[:nx, nx:] = cross
        com[nx:, :nx] = cross.T
        return self._red(self.n, self.mean, com)

    def weighted_correlation(self, counts) -> tuple:
        """``(R, constant_x, constant_y, n)`` of a bootstrap draw (a count per row): only the
        between-layer block and the variances, a quarter of the full co-moment's products."""
        from .._validate import constant_units

        w = np.asarray(counts, dtype=np.float64)
        N = float(w.sum())
        nx = self.nx
        Xc, Yc = self.Z[:, :nx], self.Z[:, nx:]
        d = (w @ self.Z) / N
        cross = (Xc * w[:, None]).T @ Yc - N * np.outer(d[:nx], d[nx:])
        if not hasattr(self, "_Z2"):
            self._Z2 = self.Z * self.Z
        var = np.maximum(w @ self._Z2 - N * d * d, 0.0)  # co-moment diagonal
        std = np.sqrt(var / N)
        const = constant_units(self.mean + d, std)
        scale = np.zeros_like(std)
        scale[~const] = 1.0 / np.sqrt(var[~const])
        R = cross * scale[:nx, None] * scale[None, nx:]
        np.clip(R, -1.0, 1.0, out=R)
        return R, const[:nx], const[nx:], int(round(N))

    def weighted(self, counts):
        w = np.asarray(counts, dtype=np.float64)
        N = float(w.sum())
        d = (w @ self.Z) / N  # the draw's mean, relative to the full mean
        com = (self.Z * w[:, None]).T @ self.Z - N * np.outer(d, d)
        com = 0.5 * (com + com.T)
        return self._red(int(round(N)), self.mean + d, com)




#: Convergence tolerance and iteration cap of the pipeline's LASSO paths (:func:`repmatch.sparse_prediction`).
SPARSE_TOL = 1e-6
SPARSE_MAX_ITER = 500
#: Random partitions of the clustering baseline (:func:`repmatch.spectral_clusters` ``n_random``).
CLUSTER_RANDOM_PARTITIONS = 100
#: The permuted correlation matrices of the figures keep at most this many best-matched units.
MAX_MATRIX = 128
#: A unit of a sample is live when its standard deviation exceeds this (the sparse fallback drops the others).
LIVE_STD = 1e-12


def skipped(reason, **extra) -> dict:
    """The value of a unit (or a part of one) that could not be computed, and why."""
    return {"skipped": str(reason), **extra}


@_one_blas_thread
def subspace_unit(r, eps_grid) -> dict:
    """The MMS curve on ``eps_grid`` with eps_50, max_epsilon and the area (:func:`repmatch.mms.summarize_curve`).

    Parameters
    ----------
    r : Reduction
        Both networks' reduction of the layer (all inputs).
    eps_grid : sequence of float in [0, 1)

    Returns
    -------
    dict
        :func:`repmatch.mms.summarize_curve`'s dict (the similarity per ε and its summaries).
    """
    from ..mms import summarize_curve

    return summarize_curve(r, eps=list(eps_grid))


@_one_blas_thread
def soft_unit(r) -> dict:
    """:class:`repmatch.SoftMatch` (without its plan and costs).

    Parameters
    ----------
    r : Reduction
        Both networks' reduction of the layer (all inputs).

    Returns
    -------
    dict
        ``SoftMatch.to_dict(arrays=False)``.
    """
    from ..softmatch import soft_match

    return soft_match(r).to_dict(arrays=False)


def _matrix(r, b, max_matrix=MAX_MATRIX):
    """Correlations of the best bipartite-matched units of A (rows) with their partners (columns)."""
    from ..correlation import correlation_from_reduction

    S = np.nan_to_num(np.asarray(correlation_from_reduction(r).between, dtype=float))
    k = min(max_matrix, b.x.size)
    order = np.argsort(-b.values, kind="stable")[:k]  # the best-matched units first
    return np.round(S[np.ix_(b.x[order], b.y[order])], 3).tolist()


@_one_blas_thread
def simple_unit(r, eps, max_units) -> dict:
    """:class:`repmatch.SimpleMatches` at ``eps``; skipped above ``max_units`` units.

    Parameters
    ----------
    r : Reduction
        Both networks' reduction of the layer (all inputs).
    eps : float in [0, 1)
    max_units : int
        Largest ``n_x + n_y`` searched.

    Returns
    -------
    dict
        ``SimpleMatches.to_dict()``, or ``{"skipped": reason, "eps": eps}``.
    """
    from ..simple import simple_matches

    if r.n_x + r.n_y > max_units:
        return skipped(f"layer has {r.n_x + r.n_y} units > simple_max_units={max_units}", eps=eps)
    return simple_matches(r, eps=eps).to_dict()


@_one_blas_thread
def alignment_unit(r, *, keep_matrix: bool, max_matrix: int = MAX_MATRIX) -> dict:
    """:class:`repmatch.BipartiteMatch` (with its semi-matching); the permuted matrix for the figures.

    Parameters
    ----------
    r : Reduction
        Both networks' reduction of the layer (all inputs).
    keep_matrix : bool
        Also keep the correlations of the best-matched units with their partners.
    max_matrix : int, default :data:`MAX_MATRIX`
        At most this many units in that matrix.

    Returns
    -------
    dict
        ``{"bipartite": BipartiteMatch.to_dict()}``, with ``"permuted_matrix"`` (a list of rows,
        rounded to 3 digits) and ``"permuted_matrix_note"`` when ``keep_matrix``.
    """
    from ..alignment import bipartite_match

    b = bipartite_match(r)
    out = {"bipartite": b.to_dict()}
    if keep_matrix:
        k = min(max_matrix, b.x.size)
        out["permuted_matrix"] = _matrix(r, b, max_matrix)
        out["permuted_matrix_note"] = (f"correlations between the {k} best bipartite-matched units of A (rows, "
                                       "sorted by matched correlation) and their partners in B (columns)")
    return out


REFERENCE = ("linear_cka", "svcca", "pwcca", "procrustes")


@_one_blas_thread
def reference_unit(r) -> dict:
    """:class:`repmatch.Score` of every reference measure (skipped where undefined, e.g. too few samples for CCA).

    Parameters
    ----------
    r : Reduction
        Both networks' reduction of the layer (all inputs).

    Returns
    -------
    dict
        ``linear_cka``, ``svcca``, ``pwcca``, ``procrustes`` -> ``Score.to_dict()`` or
        ``{"skipped": reason}``.
    """
    from .. import reference

    out = {}
    for name in REFERENCE:
        f = getattr(reference, "procrustes_distance" if name == "procrustes" else name)
        try:
            out[name] = f(r).to_dict()
        except (ValueError, np.linalg.LinAlgError) as exc:
            out[name] = skipped(exc)
    return out


def _heldout(half0, half1) -> dict:
    from ..calibration import heldout_match

    try:
        return heldout_match(half0, half1).to_dict()
    except ValueError as exc:  # e.g. a half with too few rows
        return skipped(exc)


@_one_blas_thread
def untrained_unit(full, half0, half1, eps_grid, *, keep_matrix=False, max_matrix=MAX_MATRIX) -> dict:
    """Trained seed a against an untrained network: every number the report shows for a trained pair.

    Parameters
    ----------
    full, half0, half1 : Reduction
        Trained seed a against the untrained network: all inputs, and the two halves of the inputs.
    eps_grid : sequence of float in [0, 1)
    keep_matrix : bool, default False
        Also keep the permuted correlation matrix (as :func:`alignment_unit`).
    max_matrix : int, default :data:`MAX_MATRIX`

    Returns
    -------
    dict
        ``curve`` (:func:`subspace_unit`), ``bipartite``, ``linear_cka``, ``soft`` and ``heldout``
        (a HeldoutMatch dict or ``{"skipped": reason}``) as ``to_dict()``, and
        ``permuted_matrix`` when ``keep_matrix``.
    """
    from ..alignment import bipartite_match
    from ..reference import linear_cka
    from ..softmatch import soft_match

    b = bipartite_match(full)
    out = {"curve": subspace_unit(full, eps_grid), "bipartite": b.to_dict(), "linear_cka": linear_cka(full).to_dict(),
           "soft": soft_match(full).to_dict(arrays=False), "heldout": _heldout(half0, half1)}
    if keep_matrix:
        out["permuted_matrix"] = _matrix(full, b, max_matrix)
    return out


def _stats(r, eps_grid):
    """Every permutation-tested scalar of one reduction (and the objects the extras need)."""
    from ..alignment import bipartite_match
    from ..mms import summarize_curve
    from ..reference import linear_cka
    from ..softmatch import soft_match

    s = summarize_curve(r, eps=list(eps_grid))
    b = bipartite_match(r)
    vals = {"semi_match": b.semi.mean, "bipartite_match": b.mean, "linear_cka": linear_cka(r).value,
            "soft_distance": soft_match(r).distance,
            "eps_50": np.nan if s["eps_50"] is None else s["eps_50"], "max_epsilon": s["max_epsilon"],
            "area": s["area"]}
    return np.asarray(s["similarity"]), vals, b


@_one_blas_thread
def simple_nulls_unit(untrained_full, X, Y, seed, eps, max_units) -> dict:
    """Simple matches of both nulls: the untrained pair, and the first permutation of :func:`shuffled_unit`.

    Parameters
    ----------
    untrained_full : Reduction
        Trained seed a against the untrained network.
    X, Y : ndarray of shape (n_rows, n_x) and (n_rows, n_y)
        The pair's in-memory sample.
    seed : int
        The seed of :func:`shuffled_unit` (its first permutation of Y's rows is used).
    eps : float in [0, 1)
    max_units : int

    Returns
    -------
    dict
        ``"untrained"`` and ``"shuffled"``: :func:`simple_unit`'s value for each.
    """
    perm = np.random.default_rng(seed).permutation(Y.shape[0])  # the first draw of shuffled_unit(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)
        return {"untrained": simple_unit(untrained_full, eps, max_units),
                "shuffled": simple_unit(RowMoments(X, Y).permuted(perm), eps, max_units)}


@_one_blas_thread
def shuffled_unit(X, Y, eps_grid, n_perm, seed, *, keep_matrix=False, max_matrix=MAX_MATRIX) -> dict:
    """Shuffled-row null of every scalar the report shows (spec/convergent-learning §5).

    The permutation test is :func:`repmatch.permutation_test` with ``rng=seed``: it draws the
    permutations of Y's rows, evaluates the observed value and gives the p-value of the semi-matching;
    the statistic it is handed sees the permuted row numbers, so that one reduction per permutation
    (:class:`RowMoments`, one product) serves every statistic: the MMS curve (a
    :class:`repmatch.CurveNull`, as :func:`repmatch.similarity_curve_null`) and each scalar of
    :data:`SCALAR_DIRECTIONS` (a :class:`repmatch.PermutationResult`, p-values by the same rule
    over the permutations on which the statistic is defined). The smallest possible p is
    ``1 / (1 + n_perm)``. Extras of the first permutation (sorted semi-matching values, permuted
    correlation matrix) give the figures a null to draw.

    Parameters
    ----------
    X, Y : ndarray of shape (n_rows, n_x) and (n_rows, n_y)
        The pair's in-memory sample.
    eps_grid : sequence of float in [0, 1)
    n_perm : int
        Permutations of Y's rows.
    seed : int
        Seed of the permutations.
    keep_matrix : bool, default False
        Keep the first permutation's permuted correlation matrix.
    max_matrix : int, default :data:`MAX_MATRIX`

    Returns
    -------
    dict
        ``n_permutations``, ``n_rows``, ``min_p``, ``curve`` (``CurveNull.to_dict()``),
        ``statistics`` (``{name: PermutationResult.to_dict()}`` over :data:`SCALAR_DIRECTIONS`) and
        ``first_permutation`` (the extras).
    """
    from ..inference import CurveNull, PermutationResult, _p_value, permutation_test

    rows = RowMoments(X, Y)
    n = Y.shape[0]
    seen = []

    def every_statistic(_X, index):
        perm = index[:, 0].astype(np.intp)
        identity = len(seen) == 0  # permutation_test evaluates the observed value first
        r = rows.full() if identity else rows.permuted(perm)
        curve, vals, b = _stats(r, eps_grid)
        if len(seen) == 1:
            extras["sorted_semi"] = b.sorted_curve().get("semi")
            if keep_matrix:
                extras["permuted_matrix"] = _matrix(r, b, max_matrix)
        seen.append((curve, vals))
        return vals["semi_match"]

    extras = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)
        semi = permutation_test(every_statistic, X, np.arange(n, dtype=np.float64)[:, None], n_permutations=n_perm,
                                alternative="greater", rng=seed)
    obs_curve, obs = seen[0]
    null_curve = np.array([c for c, _ in seen[1:]])
    curve = CurveNull(np.asarray(eps_grid, dtype=float), obs_curve, null_curve,
                      np.array([_p_value(o, null_curve[:, i], "greater") for i, o in enumerate(obs_curve)]), n_perm)
    tests = {}
    for name, larger in SCALAR_DIRECTIONS.items():
        if name == "semi_match":
            tests[name] = PermutationResult(name, semi.observed, semi.null, semi.p_value, "greater", n_perm)
            continue
        null = np.array([v[name] for _, v in seen[1:]], dtype=float)
        ok = null[np.isfinite(null)]
        alt = "greater" if larger else "less"
        p = _p_value(float(obs[name]), ok, alt) if ok.size and np.isfinite(obs[name]) else float("nan")
        tests[name] = PermutationResult(name, float(obs[name]), null, p, alt, n_perm)
    return {"n_permutations": n_perm, "n_rows": int(X.shape[0]), "min_p": 1.0 / (1 + n_perm),
            "curve": curve.to_dict(), "statistics": {k: t.to_dict() for k, t in tests.items()},
            "first_permutation": extras}


@_one_blas_thread
def calibration_unit(full, half0, half1, X, Y, groups, *, n_rotations=20, n_boot=200, seed=0, level=0.95) -> dict:
    """Random-rotation baseline (full data), held-out matching (halves), bootstrap over images (sample).

    Parameters
    ----------
    full, half0, half1 : Reduction
        The trained pair: all inputs, and the two halves of the inputs.
    X, Y, groups : ndarray
        The in-memory sample and the image of every row.
    n_rotations : int, default 20
    n_boot : int, default 200
    seed : int, default 0
    level : float, default 0.95
        Confidence level of the bootstrap intervals.

    Returns
    -------
    dict
        ``rotation`` (RotationBaseline dict), ``heldout`` (HeldoutMatch dict or skipped) and
        ``bootstrap`` (``{statistic: BootstrapResult.to_dict()}``, :func:`grouped_bootstrap`).
    """
    from ..calibration import rotation_baseline

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)
        out["rotation"] = rotation_baseline(full, n_rotations=n_rotations, rng=seed).to_dict()
        out["heldout"] = _heldout(half0, half1)
        out["bootstrap"] = {k: b.to_dict() for k, b in
                            grouped_bootstrap(X, Y, groups, n_boot=n_boot, level=level, seed=seed).items()}
    return out


@_one_blas_thread
def grouped_bootstrap(X, Y, groups, *, n_boot=200, level=0.95, seed=0) -> dict:
    """Percentile intervals of semi-, bipartite and soft matching over images, in one pass per draw.

    The draws are those of :func:`repmatch.bootstrap_ci` with ``groups=groups`` and ``rng=seed``
    (whole images with replacement), but one reduction per draw serves all three statistics.
    Returns ``{statistic: BootstrapResult}``.

    Parameters
    ----------
    X, Y : ndarray of shape (n_rows, n_x) and (n_rows, n_y)
    groups : array-like of shape (n_rows,)
        The image of every row.
    n_boot : int, default 200
    level : float, default 0.95
    seed : int, default 0

    Returns
    -------
    dict of str to BootstrapResult
        ``semi_match``, ``bipartite_match`` and ``soft_match_distance``.
    """
    from ..alignment import Similarity, bipartite_match
    from ..inference import BootstrapResult, _group_index
    from ..softmatch import soft_match_from_correlation

    def stats(counts):
        R, cx, cy, n = rows.weighted_correlation(counts)
        b = bipartite_match(Similarity(R, cx, cy, "correlation", n))
        return b.semi.mean, b.mean, soft_match_from_correlation(R, cx, cy, n_samples=n).distance

    names = ("semi_match", "bipartite_match", "soft_match_distance")
    parts = _group_index(groups, X.shape[0])
    rows = RowMoments(X, Y)
    g = np.random.default_rng(seed)
    obs = stats(np.ones(X.shape[0]))
    row_group = np.empty(X.shape[0], dtype=np.intp)
    for i, rows_i in enumerate(parts):
        row_group[rows_i] = i
    draws = np.empty((n_boot, 3))
    for k in range(n_boot):
        # the draw of bootstrap_ci(groups=): len(parts) images with replacement; each brings all its rows
        times = np.bincount(g.integers(0, len(parts), len(parts)), minlength=len(parts))
        draws[k] = stats(times[row_group].astype(np.float64))
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return {name: BootstrapResult(name, float(obs[i]), float(lo[i]), float(hi[i]), float(level), draws[:, i].copy(),
                                  int(n_boot), len(parts)) for i, name in enumerate(names)}


def _live(X):
    return np.flatnonzero(X.std(axis=0) > LIVE_STD)


@_one_blas_thread
def sparse_unit(train, test, alphas, sample=None, tol=SPARSE_TOL, max_iter=SPARSE_MAX_ITER) -> dict:
    """:class:`repmatch.SparsePrediction` fitted on the first half of the inputs, scored on the second.

    When a unit is constant on one half (sparse or nearly dead ReLUs), fall back to the in-memory sample
    (``sample()`` -> arrays) without the units that are constant there, with its rows split in halves
    (two sets of images). ``split`` says which split was used and ``dropped_units`` what was left out.

    Parameters
    ----------
    train, test : Reduction
        The first and the second half of the inputs.
    alphas : sequence of float
        The L1 penalties.
    sample : callable, optional
        ``sample()`` -> ``(X, Y)``, the in-memory sample for the fall-back (none: skip instead).
    tol : float, default :data:`SPARSE_TOL`
    max_iter : int, default :data:`SPARSE_MAX_ITER`
        Coordinate-descent settings, as in :func:`repmatch.sparse_prediction`.

    Returns
    -------
    dict
        ``prediction`` (``SparsePrediction.to_dict(arrays=False)``), ``split`` and
        ``dropped_units`` (``[A, B]`` counts, None without the fall-back); or
        ``{"skipped": reason, "alphas": [...]}``.
    """
    from ..reduce import Reduction
    from ..sparse import sparse_prediction

    split = "halves of the test images (fit on the first, scored on the second)"
    dropped = None
    try:
        res = sparse_prediction(train, test=test, alphas=list(alphas), tol=tol, max_iter=max_iter)
    except ValueError as exc:
        if sample is None:
            return skipped(exc, alphas=list(alphas))
        X, Y = sample()  # rows are grouped by image, so its two halves are two sets of images
        h = X.shape[0] // 2
        lx = np.intersect1d(_live(X[:h]), _live(X[h:]))
        ly = np.intersect1d(_live(Y[:h]), _live(Y[h:]))
        dropped = [int(X.shape[1] - lx.size), int(Y.shape[1] - ly.size)]
        split = (f"halves of the in-memory sample's rows (the first and the second half of the images, a few "
                 f"positions of each for conv layers), because the halves of the test images "
                 f"failed ({exc}); units "
                 f"constant on either half dropped (A: {dropped[0]}, B: {dropped[1]})")
        try:
            if not (lx.size and ly.size):
                raise ValueError("no unit is live on both halves of the sample")
            res = sparse_prediction(Reduction.from_arrays(X[:h, lx], Y[:h, ly]),
                                    test=Reduction.from_arrays(X[h:, lx], Y[h:, ly]), alphas=list(alphas), tol=tol,
                                    max_iter=max_iter)
        except ValueError as exc2:
            return skipped(f"{exc}; on the in-memory sample: {exc2}", alphas=list(alphas))
    return {"prediction": res.to_dict(arrays=False), "split": split, "dropped_units": dropped}


@_one_blas_thread
def sparse_nulls_unit(u_train, u_test, sample, alphas, seed) -> dict:
    """Sparse prediction against both nulls: the untrained network (halves), shuffled rows (sample).

    Parameters
    ----------
    u_train, u_test : Reduction
        Trained seed a against the untrained network, on the two halves of the inputs.
    sample : tuple of ndarray
        The in-memory sample ``(X, Y, ...)``; its halves of rows are fitted and scored with Y's rows
        permuted.
    alphas : sequence of float
    seed : int
        Seed of the permutation.

    Returns
    -------
    dict
        ``"untrained"`` and ``"shuffled"``: :func:`sparse_unit`'s value for each (skipped where no
        unit is live on both halves).
    """
    from ..reduce import Reduction

    out = {"untrained": sparse_unit(u_train, u_test, alphas)}
    X, Y = sample[0], sample[1]
    Ys = Y[np.random.default_rng(seed).permutation(Y.shape[0])]
    h = X.shape[0] // 2
    lx = np.intersect1d(_live(X[:h]), _live(X[h:]))
    ly = np.intersect1d(_live(Ys[:h]), _live(Ys[h:]))
    if lx.size and ly.size:
        out["shuffled"] = sparse_unit(Reduction.from_arrays(X[:h, lx], Ys[:h, ly]),
                                      Reduction.from_arrays(X[h:, lx], Ys[h:, ly]), alphas)
    else:
        out["shuffled"] = skipped("no unit is live on both halves of the sample", alphas=list(alphas))
    return out


@_one_blas_thread
def clusters_unit(r, n_clusters, seed) -> dict:
    """:class:`repmatch.ClusterResult` with ``min(n_clusters, units / 2)`` clusters (at least 2).

    Parameters
    ----------
    r : Reduction
        Both networks' reduction of the layer (all inputs).
    n_clusters : int
    seed : int
        Seed of the clustering and its :data:`CLUSTER_RANDOM_PARTITIONS` random partitions.

    Returns
    -------
    dict
        ``ClusterResult.to_dict()``.
    """
    from ..clusters import spectral_clusters

    k = max(2, min(n_clusters, (r.n_x + r.n_y) // 2))
    return spectral_clusters(r, n_clusters=k, n_random=CLUSTER_RANDOM_PARTITIONS, rng=seed).to_dict()


@_one_blas_thread
def mi_unit(X, Y, max_units) -> dict:
    """:class:`repmatch.BipartiteMatch` on mutual information; how many semi pairs it shares with correlation.

    Parameters
    ----------
    X, Y : ndarray of shape (n_rows, n_x) and (n_rows, n_y)
        The pair's in-memory sample.
    max_units : int
        Largest layer (either side) matched.

    Returns
    -------
    dict
        ``bipartite`` (``BipartiteMatch.to_dict()``), ``semi_pairs_shared_with_correlation`` and
        ``n_rows``; or ``{"skipped": reason}``.
    """
    from ..alignment import bipartite_match

    if X.shape[1] > max_units or Y.shape[1] > max_units:
        return skipped(f"layer has more than mi_max_units={max_units} units")
    b = bipartite_match(X, Y, measure="mi")
    c = bipartite_match(X, Y)
    same = len(set(zip(b.semi.x.tolist(), b.semi.y.tolist())) & set(zip(c.semi.x.tolist(), c.semi.y.tolist())))
    return {"bipartite": b.to_dict(), "semi_pairs_shared_with_correlation": same, "n_rows": int(X.shape[0])}


def pair_units(cfg, res, keys, a: int, b: int, pi: int, layer: str) -> list:
    """``[(name, deps, compute)]``: every unit of the pair (a, b) (the ``pi``-th) at ``layer``.

    ``res`` is the :class:`repmatch.pipeline.reductions.Resources` of the run; ``compute()`` reads
    only what it needs from it (so a cached unit costs no forward pass). ``deps`` is
    :meth:`repmatch.pipeline.cache.Keys.unit`.

    Parameters
    ----------
    cfg : ReproduceConfig
    res : Resources
    keys : Keys
    a, b : int
        The seeds of the pair.
    pi : int
        The pair's index in the run (0: the first pair, which keeps the figures' extras and gets
        the sparse nulls; also the seed of the units' random draws).
    layer : str

    Returns
    -------
    list of (str, dict, callable)
        Unit name, its dependencies and ``compute()`` -> the unit's value.
    """
    full = lambda k=0: res.reductions(a, b, False)[k][layer]  # noqa: E731  (0: all inputs, 1 and 2: halves)
    null = lambda k=0: res.reductions(a, b, True)[k][layer]  # noqa: E731
    sample = lambda: res.sample(a, b)[layer]  # noqa: E731  (X, Y, groups)
    first = pi == 0
    table = [
        ("subspace", lambda: subspace_unit(full(), cfg.eps_grid)),
        ("simple", lambda: simple_unit(full(), cfg.simple_eps, cfg.simple_max_units)),
        ("alignment", lambda: alignment_unit(full(), keep_matrix=first)),
        ("reference", lambda: reference_unit(full())),
        ("untrained", lambda: untrained_unit(null(), null(1), null(2), cfg.eps_grid, keep_matrix=first)),
        ("shuffled", lambda: shuffled_unit(*sample()[:2], cfg.eps_grid, cfg.permutations, seed=pi, keep_matrix=first)),
        ("simple_nulls", lambda: simple_nulls_unit(null(), *sample()[:2], pi, cfg.simple_eps, cfg.simple_max_units)),
        ("soft", lambda: soft_unit(full())),
        ("calibration", lambda: calibration_unit(full(), full(1), full(2), *sample(), n_rotations=cfg.n_rotations,
                                                 n_boot=cfg.n_boot, seed=pi)),
        ("sparse", lambda: sparse_unit(full(1), full(2), cfg.alphas, sample=lambda: sample()[:2])),
    ]
    if first:  # the sparse-prediction figures and table (first pair) get both nulls
        table.append(("sparse_nulls", lambda: sparse_nulls_unit(null(1), null(2), sample(), cfg.alphas, seed=pi)))
    table += [("clusters", lambda: clusters_unit(full(), cfg.n_clusters, seed=pi)),
              ("mi", lambda: mi_unit(*sample()[:2], cfg.mi_max_units))]
    return [(name, keys.unit(name, a, b, pi), compute) for name, compute in table]
