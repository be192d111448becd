"""Many-to-many alignment: clustering the units of both networks together (Li et al. 2016).

Follows spec/convergent-learning.md section 4. The affinity is ``|correlation|`` over the joint
``(n_x + n_y) x (n_x + n_y)`` matrix of the live units (within-net blocks on the diagonal,
between-net blocks off it), computed from moments, so arrays or a :class:`~repmatch.Reduction` work.

* :func:`spectral_clusters` — spectral clustering (scikit-learn ``SpectralClustering`` with a
  precomputed affinity; needs ``pip install 'repmatch[full]'``);
* :func:`cluster_sweep` — the same over several cluster counts from one correlation matrix;
* :func:`hierarchical_groups` — agglomerative (average-linkage) grouping with distance
  ``1 - |correlation|`` (SciPy), cut into a number of groups or at a distance: the small groups of
  units that predict each other.

How to read the result: per cluster the number of units from each network and the mean
within-net and between-net |correlation| of its unit pairs. Clusters holding units of both
networks with strong between-net correlations are subspaces both networks learned, with
different bases. Every summary is shown next to a random-partition baseline with the same cluster
sizes (the labels of the live units shuffled, ``n_random`` times, seeded): ``p_between`` is the
share of random partitions whose between-net score is at least the observed one (with the usual +1
correction).

Constant units have no correlation: they are left out and labelled -1. A cluster with no pair of a
kind reports 0.0 for that mean, with ``n_pairs_*`` = 0 beside it (never NaN).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import as_rng, check_choice, check_fraction, check_positive_int
from ._resolve import as_reduction
from .correlation import correlation_from_reduction

__all__ = ["ClusterResult", "ClusterSweep", "spectral_clusters", "cluster_sweep", "hierarchical_groups"]


def _sklearn():
    try:
        import sklearn.cluster  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "spectral clustering needs scikit-learn: pip install 'repmatch[full]'"
        ) from exc
    return sklearn.cluster


@dataclass(frozen=True)
class ClusterResult:
    """A joint clustering of the units of two networks.

    Attributes
    ----------
    labels_x, labels_y : ndarray of int
        Cluster of every unit (0 .. n_clusters-1), -1 for constant units.
    n_clusters : int
    method : str
        ``"spectral"`` or ``"agglomerative"``.
    count_x, count_y : ndarray of int (n_clusters,)
        Units from each network per cluster.
    within, between : ndarray (n_clusters,)
        Mean |correlation| over pairs of distinct units from the same network / from different
        networks within the cluster (0.0 where there is no such pair).
    n_pairs_within, n_pairs_between : ndarray of int (n_clusters,)
    within_score, between_score : float
        The same means pooled over all clusters (pair-weighted).
    mixed_share : float
        Share of live units that sit in a cluster holding units of both networks.
    baseline : dict
        Random partitions of the same sizes: mean and std of each score, and ``p_between``,
        ``p_within``, ``p_mixed`` (one-sided, larger = more structure than chance).
    """

    labels_x: np.ndarray
    labels_y: np.ndarray
    n_clusters: int
    method: str
    count_x: np.ndarray
    count_y: np.ndarray
    within: np.ndarray
    between: np.ndarray
    n_pairs_within: np.ndarray
    n_pairs_between: np.ndarray
    within_score: float
    between_score: float
    mixed_share: float
    baseline: dict

    def to_dict(self) -> dict:
        return {
            "kind": "clusters",
            "method": self.method,
            "n_clusters": self.n_clusters,
            "labels_x": self.labels_x.tolist(),
            "labels_y": self.labels_y.tolist(),
            "count_x": self.count_x.tolist(),
            "count_y": self.count_y.tolist(),
            "within": self.within.tolist(),
            "between": self.between.tolist(),
            "n_pairs_within": self.n_pairs_within.tolist(),
            "n_pairs_between": self.n_pairs_between.tolist(),
            "within_score": self.within_score,
            "between_score": self.between_score,
            "mixed_share": self.mixed_share,
            "baseline": dict(self.baseline),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ClusterResult":
        """The inverse of :meth:`to_dict` (also after a JSON round trip)."""
        from ._schema import check_kind, floats, ints, num

        d = check_kind(d, "clusters", "ClusterResult")
        return cls(labels_x=ints(d["labels_x"]), labels_y=ints(d["labels_y"]), n_clusters=int(d["n_clusters"]),
                   method=str(d["method"]), count_x=ints(d["count_x"]), count_y=ints(d["count_y"]),
                   within=floats(d["within"]), between=floats(d["between"]),
                   n_pairs_within=ints(d["n_pairs_within"]), n_pairs_between=ints(d["n_pairs_between"]),
                   within_score=num(d["within_score"]), between_score=num(d["between_score"]),
                   mixed_share=num(d["mixed_share"]), baseline=dict(d["baseline"]))


@dataclass(frozen=True)
class ClusterSweep:
    """Spectral clustering at several cluster counts (one :class:`ClusterResult` each)."""

    n_clusters: np.ndarray
    results: tuple

    @property
    def between_score(self) -> np.ndarray:
        return np.array([r.between_score for r in self.results])

    @property
    def baseline_between(self) -> np.ndarray:
        return np.array([r.baseline["between_score_mean"] for r in self.results])

    @property
    def mixed_share(self) -> np.ndarray:
        return np.array([r.mixed_share for r in self.results])

    def to_dict(self) -> dict:
        return {
            "kind": "cluster_sweep",
            "n_clusters": self.n_clusters.tolist(),
            "between_score": self.between_score.tolist(),
            "baseline_between": self.baseline_between.tolist(),
            "mixed_share": self.mixed_share.tolist(),
            "results": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ClusterSweep":
        """The inverse of :meth:`to_dict` (also after a JSON round trip)."""
        from ._schema import check_kind, ints

        d = check_kind(d, "cluster_sweep", "ClusterSweep")
        return cls(ints(d["n_clusters"]), tuple(ClusterResult.from_dict(r) for r in d["results"]))


def _affinity(X, Y, measure):
    st = correlation_from_reduction(as_reduction(X, Y, measure=measure))
    A = np.abs(st.joint)
    const = np.concatenate([st.constant_x, st.constant_y])
    live = np.flatnonzero(~const)
    return A, live, st.n_x


def _scores(A, labels, is_x, k):
    """Per-cluster and pooled mean |corr| within / between networks for labels of the live units."""
    same = labels[:, None] == labels[None, :]
    np.fill_diagonal(same, False)
    cross = is_x[:, None] != is_x[None, :]
    w_mask = same & ~cross
    b_mask = same & cross
    # each unordered pair counted twice on both sides: the means are unaffected
    Wl = np.where(w_mask, A, 0.0)
    Bl = np.where(b_mask, A, 0.0)
    onehot = np.zeros((labels.size, k))
    onehot[np.arange(labels.size), labels] = 1.0
    w_sum = onehot.T @ Wl.sum(axis=1)
    b_sum = onehot.T @ Bl.sum(axis=1)
    w_n = onehot.T @ w_mask.sum(axis=1)
    b_n = onehot.T @ b_mask.sum(axis=1)
    within = np.divide(w_sum, w_n, out=np.zeros(k), where=w_n > 0)
    between = np.divide(b_sum, b_n, out=np.zeros(k), where=b_n > 0)
    w_score = float(w_sum.sum() / w_n.sum()) if w_n.sum() else 0.0
    b_score = float(b_sum.sum() / b_n.sum()) if b_n.sum() else 0.0
    cx = onehot[is_x].sum(axis=0)
    cy = onehot[~is_x].sum(axis=0)
    mixed = (cx > 0) & (cy > 0)
    mixed_share = float((cx[mixed] + cy[mixed]).sum() / labels.size)
    return within, between, (w_n // 2).astype(int), (b_n // 2).astype(int), w_score, b_score, mixed_share, cx, cy


def _score_triplet(A, labels, is_x, k):
    s = _scores(A, labels, is_x, k)
    return s[4], s[5], s[6]


def _result(A, live, n_x, labels_live, method, n_random, rng) -> ClusterResult:
    n = A.shape[0]
    As = A[np.ix_(live, live)]
    is_x = live < n_x
    _, labels_live = np.unique(labels_live, return_inverse=True)
    k = int(labels_live.max()) + 1
    within, between, npw, npb, ws, bs, ms, cx, cy = _scores(As, labels_live, is_x, k)
    g = as_rng(rng)
    null = np.array([_score_triplet(As, g.permutation(labels_live), is_x, k) for _ in range(n_random)])
    base = {"n_random": int(n_random)}
    for col, (name, obs) in enumerate((("within_score", ws), ("between_score", bs), ("mixed_share", ms))):
        vals = null[:, col] if n_random else np.zeros(0)
        base[f"{name}_mean"] = float(vals.mean()) if n_random else 0.0
        base[f"{name}_std"] = float(vals.std()) if n_random else 0.0
        base["p_" + name.split("_")[0]] = float((1 + np.sum(vals >= obs - 1e-12)) / (1 + n_random))
    labels = np.full(n, -1, dtype=int)
    labels[live] = labels_live
    return ClusterResult(
        labels_x=labels[:n_x], labels_y=labels[n_x:], n_clusters=k, method=method,
        count_x=cx.astype(int), count_y=cy.astype(int), within=within, between=between,
        n_pairs_within=npw, n_pairs_between=npb, within_score=ws, between_score=bs, mixed_share=ms,
        baseline=base,
    )


def _spectral_labels(A, live, k, seed):
    sc = _sklearn().SpectralClustering(n_clusters=k, affinity="precomputed", random_state=seed, assign_labels="kmeans")
    return sc.fit_predict(A[np.ix_(live, live)])


def _check_k(n_clusters, n_live, name="n_clusters"):
    k = check_positive_int(n_clusters, name, minimum=1)
    if k > n_live:
        raise ValueError(f"{name}={k} exceeds the number of live (non-constant) units, {n_live}")
    return k


def spectral_clusters(X, Y=None, *, n_clusters: int = 8, n_random: int = 200, rng=None) -> ClusterResult:
    """Spectral clustering of the units of both networks on the joint |correlation| affinity.

    Parameters
    ----------
    X : array (n_samples, n_x) or Reduction
    Y : array (n_samples, n_y), optional (omit with a Reduction)
    n_clusters : int
        Number of clusters, at most the number of live units.
    n_random : int
        Random partitions of the same cluster sizes for the baseline (0 to skip).
    rng : None, int or Generator
        Seeds the spectral embedding's k-means and the random partitions.

    Returns
    -------
    ClusterResult

    Notes
    -----
    spec/convergent-learning.md section 4 (details of the authors' clustering are open; this is the
    faithful choice the spec describes). Needs scikit-learn (``repmatch[full]``).
    """
    A, live, n_x = _affinity(X, Y, "spectral_clusters")
    k = _check_k(n_clusters, live.size)
    n_random = check_positive_int(n_random, "n_random", minimum=0)
    g = as_rng(rng)
    seed = int(g.integers(2**31 - 1))
    labels = _spectral_labels(A, live, k, seed) if k > 1 else np.zeros(live.size, dtype=int)
    return _result(A, live, n_x, labels, "spectral", n_random, g)


def cluster_sweep(X, Y=None, *, n_clusters=(2, 4, 8, 16, 32), n_random: int = 100, rng=None) -> ClusterSweep:
    """:func:`spectral_clusters` at every cluster count in ``n_clusters`` (counts above the number
    of live units are rejected), from one correlation matrix.

    Parameters
    ----------
    X : array (n_samples, n_x) or Reduction
    Y : array (n_samples, n_y), optional (omit with a Reduction)
    n_clusters : sequence of int
        Cluster counts, each at most the number of live units.
    n_random : int
        Random partitions per count for the baseline (0 to skip).
    rng : None, int or Generator
        Seeds the clusterings and the random partitions.

    Returns
    -------
    ClusterSweep
        One :class:`ClusterResult` per count.
    """
    ks = np.atleast_1d(np.asarray(n_clusters))
    if ks.ndim != 1 or ks.size == 0:
        raise ValueError(f"n_clusters must be a non-empty sequence of integers, got {n_clusters!r}")
    A, live, n_x = _affinity(X, Y, "cluster_sweep")
    ks = np.array([_check_k(k, live.size, f"n_clusters[{i}]") for i, k in enumerate(ks.tolist())])
    n_random = check_positive_int(n_random, "n_random", minimum=0)
    g = as_rng(rng)
    results = []
    for k in ks:
        seed = int(g.integers(2**31 - 1))
        labels = _spectral_labels(A, live, int(k), seed) if k > 1 else np.zeros(live.size, dtype=int)
        results.append(_result(A, live, n_x, labels, "spectral", n_random, g))
    return ClusterSweep(n_clusters=ks, results=tuple(results))


def hierarchical_groups(
    X, Y=None, *, n_groups: int | None = None, max_distance: float | None = None, linkage: str = "average",
    n_random: int = 200, rng=None,
) -> ClusterResult:
    """Agglomerative grouping of the units of both networks (distance ``1 - |correlation|``).

    Give exactly one of ``n_groups`` (cut the tree into that many groups) or ``max_distance`` in
    [0, 1] (merge while the linkage distance is at most this: ``max_distance=0.5`` makes groups
    whose units correlate at |r| >= 0.5 on average). ``linkage`` is SciPy's method
    (``"average"``, ``"complete"``, ``"single"``). NumPy/SciPy only.

    Parameters
    ----------
    X : array (n_samples, n_x) or Reduction
    Y : array (n_samples, n_y), optional (omit with a Reduction)
    n_groups : int, optional
        Number of groups to cut the tree into.
    max_distance : float in [0, 1], optional
        Merge while the linkage distance is at most this.
    linkage : {"average", "complete", "single"}
        SciPy's linkage method.
    n_random : int
        Random partitions of the same sizes for the baseline (0 to skip).
    rng : None, int or Generator
        Seeds the random partitions.

    Returns
    -------
    ClusterResult
        ``method="agglomerative"``; constant units labelled -1.
    """
    import scipy.cluster.hierarchy as sch
    from scipy.spatial.distance import squareform

    if (n_groups is None) == (max_distance is None):
        raise ValueError("give exactly one of n_groups or max_distance")
    check_choice(linkage, "linkage", ("average", "complete", "single"))
    A, live, n_x = _affinity(X, Y, "hierarchical_groups")
    n_random = check_positive_int(n_random, "n_random", minimum=0)
    if live.size == 1:
        labels = np.zeros(1, dtype=int)
    else:
        D = 1.0 - A[np.ix_(live, live)]
        np.fill_diagonal(D, 0.0)
        D = np.maximum((D + D.T) / 2, 0.0)
        Z = sch.linkage(squareform(D, checks=False), method=linkage)
        if n_groups is not None:
            k = _check_k(n_groups, live.size, "n_groups")
            labels = sch.fcluster(Z, t=k, criterion="maxclust") - 1
        else:
            t = check_fraction(max_distance, "max_distance", high_open=False)
            labels = sch.fcluster(Z, t=t, criterion="distance") - 1
    return _result(A, live, n_x, labels, "agglomerative", n_random, rng)
