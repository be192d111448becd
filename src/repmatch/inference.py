"""Null baselines for every scalar measure: permutation tests and bootstrap confidence intervals.

spec/convergent-learning.md section 5: show every number next to a null. (This module was
``repmatch.nulls``, still importable, deprecated.)

* :func:`permutation_test` shuffles the row correspondence of one side (the rows of Y), which keeps
  each layer's own statistics (means, variances, within-net correlations) and breaks only the
  pairing of inputs between the networks: the "other network on shuffled inputs" baseline.
  ``p = (1 + #{null at least as extreme}) / (1 + n_permutations)`` (never 0).
* :func:`bootstrap_ci` resamples rows with replacement (the same rows on both sides) and gives the
  percentile interval of the statistic. With ``groups=`` (e.g. the image each row of a conv layer
  comes from) it resamples whole groups: the rows of one image are not independent samples, and
  resampling (image, position) rows as if they were gives intervals that are too narrow.

Both need the rows (in memory); a :class:`~repmatch.Reduction` raises ValueError. Both are
deterministic given ``rng`` (None: fixed seed 0). The statistic is given as a callable
``stat(X, Y) -> float`` (anything with ``float()``, e.g. a :class:`~repmatch.Score`) or as the
name of a registered scalar in :data:`SCALARS`, whose direction then sets the default alternative.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ._resolve import as_rows
from ._validate import RepmatchWarning, as_rng, check_choice, check_positive_int

__all__ = [
    "SCALARS",
    "PermutationResult",
    "BootstrapResult",
    "CurveNull",
    "permutation_test",
    "bootstrap_ci",
    "similarity_curve_null",
]


def _semi(X, Y):
    from .alignment import semi_match

    return semi_match(X, Y).mean


def _bipartite(X, Y):
    from .alignment import bipartite_match

    return bipartite_match(X, Y).mean


def _mi_semi(X, Y):
    from .alignment import semi_match

    return semi_match(X, Y, measure="mi").mean


def _mi_bipartite(X, Y):
    from .alignment import bipartite_match

    return bipartite_match(X, Y, measure="mi").mean


def _clusters_between(X, Y):
    from .clusters import spectral_clusters
    from .correlation import correlation

    st = correlation(X, Y)
    n_live = int((~st.constant_x).sum() + (~st.constant_y).sum())
    return spectral_clusters(X, Y, n_clusters=max(1, min(8, n_live // 2)), n_random=0).between_score


def _ref(name):
    def f(X, Y):
        from . import reference

        fn = {"procrustes": reference.procrustes_distance}.get(name) or getattr(reference, name)
        return fn(X, Y).value

    f.__name__ = name
    return f


def _soft_distance(X, Y):
    from .softmatch import soft_match

    return soft_match(X, Y).distance


def _sparse_fvu(X, Y):
    from .sparse import sparse_prediction

    return float(sparse_prediction(X, Y, alphas=[1e-3], direction="x_to_y", test_fraction=0.0).x_to_y.mean_fvu[0])


#: Registered scalars: name -> (function (X, Y) -> float, larger_is_more_similar).
SCALARS = {
    "semi_match": (_semi, True),
    "bipartite_match": (_bipartite, True),
    "mi_semi_match": (_mi_semi, True),
    "mi_bipartite_match": (_mi_bipartite, True),
    "clusters_between": (_clusters_between, True),
    "sparse_fvu": (_sparse_fvu, False),
    "soft_match_distance": (_soft_distance, False),
    "linear_cka": (_ref("linear_cka"), True),
    "debiased_linear_cka": (_ref("debiased_linear_cka"), True),
    "rbf_cka": (_ref("rbf_cka"), True),
    "mean_squared_cca": (_ref("mean_squared_cca"), True),
    "svcca": (_ref("svcca"), True),
    "pwcca": (_ref("pwcca"), True),
    "procrustes": (_ref("procrustes"), False),
}

ALTERNATIVES = ("greater", "less", "two-sided")


@dataclass(frozen=True)
class PermutationResult:
    """Permutation test of one statistic.

    Attributes
    ----------
    observed : float
    null : ndarray (n_permutations,)
        The statistic on the row-shuffled pairs.
    p_value : float
        ``(1 + #{extreme}) / (1 + n_permutations)``: at least ``1 / (1 + n_permutations)``.
    alternative : str
        ``"greater"``: observed larger than chance; ``"less"``; ``"two-sided"`` (distance from the
        null mean).
    """

    statistic: str
    observed: float
    null: np.ndarray = field(repr=False)
    p_value: float
    alternative: str
    n_permutations: int

    @property
    def null_mean(self) -> float:
        return float(self.null.mean())

    @property
    def null_std(self) -> float:
        return float(self.null.std())

    def to_dict(self) -> dict:
        return {
            "kind": "permutation_test",
            "statistic": self.statistic,
            "observed": self.observed,
            "null_mean": self.null_mean,
            "null_std": self.null_std,
            "p_value": self.p_value,
            "alternative": self.alternative,
            "n_permutations": self.n_permutations,
            "null": self.null.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "PermutationResult":
        """The inverse of :meth:`to_dict` (also after a JSON round trip; ``None`` reads as NaN)."""
        from ._schema import check_kind, floats, num

        d = check_kind(d, "permutation_test", "PermutationResult")
        return cls(str(d["statistic"]), num(d["observed"]), floats(d["null"]), num(d["p_value"]),
                   str(d["alternative"]), int(d["n_permutations"]))


@dataclass(frozen=True)
class BootstrapResult:
    """Percentile bootstrap confidence interval of one statistic over rows."""

    statistic: str
    observed: float
    low: float
    high: float
    level: float
    samples: np.ndarray = field(repr=False)
    n_boot: int
    n_groups: int | None = None  # resampled groups (images) with ``groups=``; None: rows
    #: resamples on which the statistic is undefined (e.g. every drawn row the same: no variance);
    #: they are NaN in ``samples`` and left out of the interval
    n_undefined: int = 0

    @property
    def std_error(self) -> float:
        ok = self.samples[np.isfinite(self.samples)]
        return float(ok.std(ddof=1)) if ok.size > 1 else 0.0

    def to_dict(self) -> dict:
        return {
            "kind": "bootstrap_ci",
            "statistic": self.statistic,
            "observed": self.observed,
            "low": self.low,
            "high": self.high,
            "level": self.level,
            "std_error": self.std_error,
            "n_boot": self.n_boot,
            "resampled": "rows" if self.n_groups is None else f"{self.n_groups} groups",
            "n_undefined": self.n_undefined,
            "n_groups": self.n_groups,
            "samples": self.samples.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "BootstrapResult":
        """The inverse of :meth:`to_dict` (also after a JSON round trip; ``None`` reads as NaN)."""
        from ._schema import check_kind, floats, num

        d = check_kind(d, "bootstrap_ci", "BootstrapResult")
        return cls(str(d["statistic"]), num(d["observed"]), num(d["low"]), num(d["high"]), num(d["level"]),
                   floats(d["samples"]), int(d["n_boot"]), None if d.get("n_groups") is None else int(d["n_groups"]),
                   int(d.get("n_undefined", 0)))


def _resolve(stat, what):
    if isinstance(stat, str):
        if stat not in SCALARS:
            raise ValueError(f"stat must be a callable or one of {tuple(SCALARS)}, got {stat!r}")
        fn, larger = SCALARS[stat]
        return fn, stat, larger
    if not callable(stat):
        raise ValueError(f"stat must be a callable stat(X, Y) -> float or a registered name, got {stat!r}")
    return stat, getattr(stat, "__name__", "statistic"), True


def _rows(X, Y, what):
    return as_rows(X, Y, measure=what, min_samples=2, needs="the rows themselves to resample them")


def _value(fn, X, Y) -> float:
    v = float(fn(X, Y))
    if not np.isfinite(v):
        raise ValueError(f"the statistic returned a non-finite value ({v})")
    return v


def permutation_test(stat, X, Y=None, *, n_permutations: int = 999, alternative: str | None = None, rng=None) -> PermutationResult:
    """Permutation null of ``stat(X, Y)``: shuffle the rows of Y (spec/convergent-learning.md 5).

    Parameters
    ----------
    stat : callable or str
        ``stat(X, Y) -> float``, or a name from :data:`SCALARS`.
    X, Y : arrays (n_samples, n_x), (n_samples, n_y)
    n_permutations : int
    alternative : {"greater", "less", "two-sided"}, optional
        Default: "greater" for similarities, "less" for registered distances / errors.
    rng : None, int or Generator

    Returns
    -------
    PermutationResult

    Examples
    --------
    >>> import numpy as np, repmatch
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 5)); Y = X + rng.standard_normal((200, 5))
    >>> res = repmatch.permutation_test("linear_cka", X, Y, n_permutations=99, rng=1)
    >>> res.p_value
    0.01
    """
    fn, name, larger = _resolve(stat, "permutation_test")
    Xa, Ya = _rows(X, Y, "permutation_test")
    n_perm = check_positive_int(n_permutations, "n_permutations")
    if alternative is None:
        alternative = "greater" if larger else "less"
    check_choice(alternative, "alternative", ALTERNATIVES)
    g = as_rng(rng)
    observed = _value(fn, Xa, Ya)
    null = np.empty(n_perm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)
        for k in range(n_perm):
            null[k] = _value(fn, Xa, Ya[g.permutation(Ya.shape[0])])
    return PermutationResult(name, observed, null, _p_value(observed, null, alternative), alternative, n_perm)


def _p_value(observed: float, null: np.ndarray, alternative: str) -> float:
    """``(1 + #{null at least as extreme}) / (1 + len(null))``; ties within rounding count (conservative)."""
    slack = 1e-12 * max(1.0, abs(observed))
    if alternative == "greater":
        extreme = np.sum(null >= observed - slack)
    elif alternative == "less":
        extreme = np.sum(null <= observed + slack)
    else:
        m = null.mean()
        extreme = np.sum(np.abs(null - m) >= abs(observed - m) - slack)
    return float((1.0 + extreme) / (1.0 + len(null)))


@dataclass(frozen=True)
class CurveNull:
    """Permutation null of the maximum match similarity at every ε of a grid."""

    eps: np.ndarray
    observed: np.ndarray
    null: np.ndarray = field(repr=False)  # (n_permutations, len(eps))
    p_value: np.ndarray
    n_permutations: int

    @property
    def null_mean(self) -> np.ndarray:
        return self.null.mean(axis=0)

    @property
    def null_std(self) -> np.ndarray:
        return self.null.std(axis=0)

    def to_dict(self) -> dict:
        return {
            "kind": "permutation_test",
            "statistic": "maximum_match_similarity",
            "eps": self.eps.tolist(),
            "observed": self.observed.tolist(),
            "null_mean": self.null_mean.tolist(),
            "null_std": self.null_std.tolist(),
            "p_value": self.p_value.tolist(),
            "alternative": "greater",
            "n_permutations": self.n_permutations,
            "null": self.null.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "CurveNull":
        """The inverse of :meth:`to_dict` (also after a JSON round trip; ``None`` reads as NaN)."""
        from ._schema import check_kind, floats

        d = check_kind(d, "permutation_test", "CurveNull")
        eps = floats(d["eps"])
        return cls(eps, floats(d["observed"]), floats(d["null"], shape=(int(d["n_permutations"]), eps.size)),
                   floats(d["p_value"]), int(d["n_permutations"]))


def similarity_curve_null(X, Y=None, *, eps, n_permutations: int = 99, method: str = "gram", rng=None) -> CurveNull:
    """Permutation null of the maximum match similarity curve (shuffled rows of Y).

    One reduction per permutation serves every ε of the grid (:func:`repmatch.similarity_curve`).
    The p-value at each ε is one-sided ("greater": more similar than chance).

    Parameters
    ----------
    X, Y : arrays (n_samples, n_x), (n_samples, n_y)
        In memory (a Reduction raises ValueError).
    eps : sequence of float
        The ε grid.
    n_permutations : int
        Number of shuffles of Y's rows.
    method : {"gram", "qr"}
        Reduction method of every permuted pair.
    rng : None, int or Generator
        Seeds the shuffles.

    Returns
    -------
    CurveNull
        The observed curve, the null curves and a p-value per ε.
    """
    from .subspace import similarity_curve

    Xa, Ya = _rows(X, Y, "similarity_curve_null")
    n_perm = check_positive_int(n_permutations, "n_permutations")
    g = as_rng(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)
        obs = similarity_curve(Xa, Ya, eps=eps, method=method)
        null = np.empty((n_perm, len(obs.eps)))
        for k in range(n_perm):
            null[k] = similarity_curve(Xa, Ya[g.permutation(Ya.shape[0])], eps=obs.eps, method=method).similarity
    p = np.array([_p_value(o, null[:, i], "greater") for i, o in enumerate(obs.similarity)])
    return CurveNull(obs.eps, obs.similarity, null, p, n_perm)


def _group_index(groups, n_rows: int) -> list:
    """Row indices of every group (in order of first appearance), checked against ``n_rows``."""
    g = np.asarray(groups)
    if g.ndim != 1 or g.shape[0] != n_rows:
        raise ValueError(f"groups must be a 1-D array with one label per row ({n_rows}), got shape {g.shape}")
    if g.dtype == object or (g.dtype.kind == "f" and not np.all(np.isfinite(g))):
        raise ValueError("groups must hold hashable, finite labels (e.g. integer image indices)")
    _, first, inverse = np.unique(g, return_index=True, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse)
    parts = np.split(order, np.cumsum(counts)[:-1])
    if len(parts) < 2:
        raise ValueError(f"groups has {len(parts)} distinct label(s); a grouped bootstrap needs at least 2")
    return [parts[i] for i in np.argsort(first, kind="stable")]


def bootstrap_ci(stat, X, Y=None, *, n_boot: int = 1000, level: float = 0.95, rng=None,
                 groups=None) -> BootstrapResult:
    """Percentile bootstrap confidence interval of ``stat(X, Y)`` over rows, or over groups of rows.

    Rows are drawn with replacement, the same rows for X and Y. With ``groups`` (one label per row,
    e.g. the image index of every (image, position) row of a conv layer), whole groups are drawn
    with replacement instead, as many as there are groups, and each drawn group brings all its
    rows: the resampling unit is the image. ``level`` in (0, 1). Note that duplicated rows inflate
    some statistics (e.g. plain CKA's small-sample bias); the interval is about the variability of
    the estimate, not a bias correction.

    Parameters
    ----------
    stat : callable or str
        ``stat(X, Y) -> float``, or a name from :data:`SCALARS`.
    X, Y : arrays (n_samples, n_x), (n_samples, n_y)
        In memory (a Reduction raises ValueError).
    n_boot : int
        Number of resamples.
    level : float in (0, 1)
        Coverage of the percentile interval.
    rng : None, int or Generator
        Seeds the resamples.
    groups : array of shape (n_samples,), optional
        One label per row; whole groups are resampled.

    Returns
    -------
    BootstrapResult
        The estimate, the interval, the resampled values and how many draws were undefined.
    """
    fn, name, _ = _resolve(stat, "bootstrap_ci")
    Xa, Ya = _rows(X, Y, "bootstrap_ci")
    n_boot = check_positive_int(n_boot, "n_boot", minimum=2)
    lv = float(level)
    if not (0.0 < lv < 1.0):
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    n = Xa.shape[0]
    parts = None if groups is None else _group_index(groups, n)
    g = as_rng(rng)
    observed = _value(fn, Xa, Ya)
    samples = np.empty(n_boot)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)
        for k in range(n_boot):
            if parts is None:
                idx = g.integers(0, n, n)
            else:
                idx = np.concatenate([parts[i] for i in g.integers(0, len(parts), len(parts))])
            try:
                samples[k] = _value(fn, Xa[idx], Ya[idx])
            except ValueError:  # undefined on this resample (a degenerate draw): counted, not guessed
                samples[k] = np.nan
    ok = samples[np.isfinite(samples)]
    n_undefined = n_boot - ok.size
    if ok.size < max(2, n_boot // 2):
        raise ValueError(f"bootstrap_ci: {name} is undefined on {n_undefined} of {n_boot} resamples (too few "
                         f"rows or groups, {len(parts) if parts is not None else n}, for this statistic)")
    lo, hi = np.quantile(ok, [(1 - lv) / 2, (1 + lv) / 2])
    return BootstrapResult(name, observed, float(lo), float(hi), lv, samples, n_boot,
                           n_groups=None if parts is None else len(parts), n_undefined=int(n_undefined))
