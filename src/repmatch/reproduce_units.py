"""Units of work of ``repmatch reproduce`` that compute the headline, the nulls and the calibration.

Each function takes reductions or in-memory rows and returns a JSON-ready dict (cached by
:mod:`repmatch.reproduce`). Every statistic that the report shows for a trained pair is computed
here for both nulls as well, with the same code:

* :func:`subspace_unit` — the MMS curve on [0, 1) and its summaries (:mod:`repmatch.mms`);
* :func:`untrained_unit` — the same numbers, plus matchings, soft matching, held-out matching,
  simple matches, CKA and (first pair) the sorted and permuted correlations, for trained seed a
  against an untrained network;
* :func:`shuffled_unit` — the permutation null of every scalar above on an in-memory sample (one
  reduction per permutation serves all of them), with extras of the first permutation for figures;
* :func:`calibration_unit` — the random-rotation baseline, held-out matching, and bootstrap
  intervals that resample images (``groups=``);
* :func:`sample_rows` — the in-memory sample: up to ``k`` positions of every image, drawn without
  replacement and the same for both networks, with the image of every row (for ``groups=``).
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np

from ._threads import single_threaded_blas
from ._validate import RepmatchWarning


def _one_blas_thread(fn):
    """Run a unit on one BLAS thread: its products are small and many, and on a busy machine idle
    BLAS threads spin (a 10,000 x 128 Gram product measured 5 ms on one thread, 3-190 ms on two)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with single_threaded_blas():
            return fn(*args, **kwargs)

    return wrapper

__all__ = ["subspace_unit", "untrained_unit", "shuffled_unit", "calibration_unit", "soft_unit", "sample_rows",
           "SCALAR_DIRECTIONS", "null_summary"]

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
        from .reduce import Reduction

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
        from .stats import CONSTANT_TOL

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
        const = (std == 0) | (std <= CONSTANT_TOL * np.abs(self.mean + d))
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


@_one_blas_thread
def subspace_unit(r, eps_grid) -> dict:
    """The MMS curve on ``eps_grid`` with eps_50, max_epsilon and the area (:func:`repmatch.mms.summarize_curve`)."""
    from .mms import summarize_curve

    return summarize_curve(r, eps=list(eps_grid))


@_one_blas_thread
def soft_unit(r) -> dict:
    from .softmatch import soft_match

    s = soft_match(r)
    return {"distance": s.distance, "mean_correlation": s.mean_correlation, "solver": s.solver}


def _matrix(r, b, max_matrix):
    from .stats import correlation_from_reduction

    S = np.nan_to_num(np.asarray(correlation_from_reduction(r).between, dtype=float))
    k = min(max_matrix, b.x.size)
    order = np.argsort(-b.values, kind="stable")[:k]
    return np.round(S[np.ix_(b.x[order], b.y[order])], 3).tolist()


def _simple_sizes(r, eps, max_units):
    from .simple import simple_matches

    if eps is None:
        return None
    if r.n_x + r.n_y > max_units:
        return {"skipped": f"layer has {r.n_x + r.n_y} units > simple_max_units={max_units}"}
    s = simple_matches(r, eps=eps)
    return {"eps": eps, "sizes": s.sizes.tolist(), "n_matches": len(s.matches)}


@_one_blas_thread
def untrained_unit(full, half0, half1, eps_grid, *, keep_matrix=False, max_matrix=128) -> dict:
    """Trained seed a against an untrained network: every number the report shows for a trained pair."""
    from .alignment import bipartite_match
    from .calibration import heldout_match
    from .reference import linear_cka

    out = subspace_unit(full, eps_grid)
    b = bipartite_match(full)
    out.update({"semi_mean": b.semi.mean, "bipartite_mean": b.mean, "linear_cka": linear_cka(full).value,
                "soft": soft_unit(full), "sorted_semi": b.sorted_curve().get("semi")})
    try:
        out["heldout"] = heldout_match(half0, half1).to_dict()
    except ValueError as exc:  # e.g. a half with too few rows
        out["heldout"] = {"skipped": str(exc)}
    if keep_matrix:
        out["permuted_matrix"] = _matrix(full, b, max_matrix)
    return out


def _stats(r, eps_grid):
    """Every permutation-tested scalar of one reduction (and the objects the extras need)."""
    from .alignment import bipartite_match
    from .mms import summarize_curve
    from .reference import linear_cka
    from .softmatch import soft_match

    s = summarize_curve(r, eps=list(eps_grid))
    b = bipartite_match(r)
    vals = {"semi_match": b.semi.mean, "bipartite_match": b.mean, "linear_cka": linear_cka(r).value,
            "soft_distance": soft_match(r).distance,
            "eps_50": np.nan if s["eps_50"] is None else s["eps_50"], "max_epsilon": s["max_epsilon"],
            "area": s["area"]}
    return np.asarray(s["similarity"]), vals, b


@_one_blas_thread
def simple_nulls_unit(untrained_full, X, Y, seed, eps, max_units) -> dict:
    """Simple-match sizes of both nulls: the untrained pair, and the first permutation of :func:`shuffled_unit`."""
    perm = np.random.default_rng(seed).permutation(Y.shape[0])  # the first draw of shuffled_unit(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)
        return {"untrained": _simple_sizes(untrained_full, eps, max_units),
                "shuffled": _simple_sizes(RowMoments(X, Y).permuted(perm), eps, max_units)}


def null_summary(observed: float, null: np.ndarray, larger_is_more_similar: bool) -> dict:
    """Mean, spread, 95% range and the one-sided permutation p-value (toward "more similar")."""
    from .nulls import _p_value

    null = np.asarray(null, dtype=float)
    ok = null[np.isfinite(null)]
    out = {"observed": observed, "n": int(ok.size),
           "alternative": "greater" if larger_is_more_similar else "less"}
    if ok.size == 0 or not np.isfinite(observed):
        return {**out, "null_mean": None, "null_std": None, "null_q025": None, "null_q975": None, "p_value": None}
    return {**out, "null_mean": float(ok.mean()), "null_std": float(ok.std()),
            "null_q025": float(np.quantile(ok, 0.025)), "null_q975": float(np.quantile(ok, 0.975)),
            "p_value": _p_value(float(observed), ok, out["alternative"])}


@_one_blas_thread
def shuffled_unit(X, Y, eps_grid, n_perm, seed, *, keep_matrix=False, max_matrix=128) -> dict:
    """Shuffled-row null of every scalar the report shows (spec/convergent-learning §5).

    The same permutations as :func:`repmatch.permutation_test` and
    :func:`repmatch.similarity_curve_null` with ``rng=seed`` (one ``rng.permutation`` of Y's rows
    per draw); one reduction per permutation serves every statistic. p-values as in
    :mod:`repmatch.nulls`: ``(1 + #{null at least as similar}) / (1 + n)``, so the smallest
    possible p is ``1 / (1 + n_perm)``. Extras of the first permutation (sorted semi-matching
    values, permuted correlation matrix) give the figures a null to draw.
    """
    from .nulls import _p_value

    rows = RowMoments(X, Y)
    obs_curve, obs, _ = _stats(rows.full(), eps_grid)
    g = np.random.default_rng(seed)
    null_curve = np.empty((n_perm, len(eps_grid)))
    null = {k: np.empty(n_perm) for k in SCALAR_DIRECTIONS}
    extras = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)
        for k in range(n_perm):
            r = rows.permuted(g.permutation(Y.shape[0]))
            c, v, b = _stats(r, eps_grid)
            null_curve[k] = c
            for name in SCALAR_DIRECTIONS:
                null[name][k] = v[name]
            if k == 0:
                extras["sorted_semi"] = b.sorted_curve().get("semi")
                if keep_matrix:
                    extras["permuted_matrix"] = _matrix(r, b, max_matrix)
    out = {"eps": list(eps_grid), "n_permutations": n_perm, "n_rows": int(X.shape[0]),
           "min_p": 1.0 / (1 + n_perm),
           "observed_similarity": obs_curve.tolist(),
           "similarity_null_mean": null_curve.mean(axis=0).tolist(),
           "similarity_null_std": null_curve.std(axis=0).tolist(),
           "similarity_null_q025": np.quantile(null_curve, 0.025, axis=0).tolist(),
           "similarity_null_q975": np.quantile(null_curve, 0.975, axis=0).tolist(),
           "similarity_p": [_p_value(o, null_curve[:, i], "greater") for i, o in enumerate(obs_curve)]}
    for name, larger in SCALAR_DIRECTIONS.items():
        out[name] = null_summary(obs[name], null[name], larger)
    out["first_permutation"] = extras
    return out


@_one_blas_thread
def calibration_unit(full, half0, half1, X, Y, groups, *, n_rotations=20, n_boot=200, seed=0, level=0.95) -> dict:
    """Random-rotation baseline (full data), held-out matching (halves), bootstrap over images (sample)."""
    from .calibration import heldout_match, rotation_baseline

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)
        out["rotation"] = rotation_baseline(full, n_rotations=n_rotations, rng=seed).to_dict()
        try:
            out["heldout"] = heldout_match(half0, half1).to_dict()
        except ValueError as exc:
            out["heldout"] = {"skipped": str(exc)}
        out["bootstrap"] = grouped_bootstrap(X, Y, groups, n_boot=n_boot, level=level, seed=seed)
    return out


@_one_blas_thread
def grouped_bootstrap(X, Y, groups, *, n_boot=200, level=0.95, seed=0) -> dict:
    """Percentile intervals of semi-, bipartite and soft matching over images, in one pass per draw.

    The draws are those of :func:`repmatch.bootstrap_ci` with ``groups=groups`` and ``rng=seed``
    (whole images with replacement), but one reduction per draw serves all three statistics.
    """
    from .alignment import Similarity, bipartite_match
    from .nulls import _group_index
    from .softmatch import soft_match_from_correlation

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
    out = {"n_boot": n_boot, "level": level, "n_groups": len(parts), "n_rows": int(X.shape[0]), "resampled": "images"}
    for i, name in enumerate(names):
        out[name] = {"observed": float(obs[i]), "low": float(lo[i]), "high": float(hi[i]),
                     "std_error": float(draws[:, i].std(ddof=1))}
    return out


def sample_rows(model_a, model_b, batches, layer_names, *, rows_per_image: int, seed: int = 0, device=None):
    """In-memory rows of both networks: up to ``rows_per_image`` positions of every image.

    ``batches`` yields ``(inputs, ...)`` batches in a fixed order. For every conv layer,
    ``min(rows_per_image, positions)`` positions of each image are drawn without replacement
    (seeded by ``seed``, the layer and the image, the same positions for both networks); fully
    connected layers give one row per image. Returns ``{layer: (X, Y, groups)}`` with float64 rows
    and the image index of every row.
    """
    from . import activations

    k = max(1, int(rows_per_image))
    parts = {name: ([], [], []) for name in layer_names}
    first = 0
    for bi, batch in enumerate(batches):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        xa = activations.extract(model_a, [x], layer_names, conv_mode="positions", device=device)
        xb = activations.extract(model_b, [x], layer_names, conv_mode="positions", device=device)
        n_img = int(x.shape[0])
        for li, name in enumerate(layer_names):
            A, B = xa[name], xb[name]
            per = A.shape[0] // n_img  # positions per image (1 for fully connected layers)
            take = min(k, per)
            rows = []
            for i in range(n_img):
                g = np.random.default_rng([seed, li, first + i])
                pos = np.sort(g.choice(per, size=take, replace=False)) if take < per else np.arange(per)
                rows.append(i * per + pos)
            idx = np.concatenate(rows)
            parts[name][0].append(A[idx].astype(np.float64))
            parts[name][1].append(B[idx].astype(np.float64))
            parts[name][2].append(np.repeat(np.arange(first, first + n_img), take))
        first += n_img
    return {name: tuple(np.concatenate(p) for p in parts[name]) for name in layer_names}


def rows_per_image(sample_rows_target: int, n_images: int) -> int:
    """Positions per image that give about ``sample_rows_target`` rows in all."""
    return max(1, math.ceil(sample_rows_target / max(1, n_images)))
