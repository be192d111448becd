"""Many-to-many alignment: spectral and agglomerative clustering of the units of both networks."""

import json
import warnings

import numpy as np
import pytest

from repmatch import Reduction, RepmatchWarning, cluster_sweep, hierarchical_groups, spectral_clusters

pytest.importorskip("sklearn.cluster")


def blocks(n=3000, seed=0, noise=0.6):
    """Four latent factors; X has 3 noisy copies of each, Y 2: planted groups of 5 units."""
    g = np.random.default_rng(seed)
    L = g.standard_normal((n, 4))
    X = np.repeat(L, 3, axis=1) + noise * g.standard_normal((n, 12))
    Y = np.repeat(L, 2, axis=1) + noise * g.standard_normal((n, 8))
    gx, gy = np.repeat(np.arange(4), 3), np.repeat(np.arange(4), 2)
    return X, Y, gx, gy


def same_partition(a, b):
    return np.array_equal(a[:, None] == a[None, :], b[:, None] == b[None, :])


def test_spectral_recovers_planted_groups_above_random_partitions():
    X, Y, gx, gy = blocks()
    c = spectral_clusters(X, Y, n_clusters=4, rng=0)
    assert same_partition(np.concatenate([c.labels_x, c.labels_y]), np.concatenate([gx, gy]))
    assert sorted(c.count_x.tolist()) == [3, 3, 3, 3] and sorted(c.count_y.tolist()) == [2, 2, 2, 2]
    assert c.mixed_share == 1.0
    assert c.between_score > 0.6 and c.baseline["between_score_mean"] < 0.4
    assert c.baseline["p_between"] == pytest.approx(1 / 201)
    # per-cluster means agree with a direct computation
    R = np.abs(np.corrcoef(X, Y, rowvar=False))
    k = c.labels_x[0]
    ix = np.flatnonzero(c.labels_x == k)
    iy = 12 + np.flatnonzero(c.labels_y == k)
    assert c.between[k] == pytest.approx(R[np.ix_(ix, iy)].mean(), abs=1e-12)
    w = [R[i, j] for grp in (ix, iy) for i in grp for j in grp if i < j]
    assert c.within[k] == pytest.approx(np.mean(w), abs=1e-12)
    assert c.n_pairs_between[k] == 6 and c.n_pairs_within[k] == 3 + 1
    json.dumps(c.to_dict())


def test_random_data_is_not_above_its_baseline_by_much():
    g = np.random.default_rng(4)
    X, Y = g.standard_normal((2000, 10)), g.standard_normal((2000, 10))
    c = spectral_clusters(X, Y, n_clusters=4, rng=0)
    assert c.between_score < 0.1


def test_reduction_input_and_determinism():
    X, Y, _, _ = blocks()
    r = Reduction.from_arrays(X, Y)
    a = spectral_clusters(r, n_clusters=3, rng=5)
    b = spectral_clusters(X, Y, n_clusters=3, rng=5)
    assert np.array_equal(a.labels_x, b.labels_x) and a.baseline == b.baseline


def test_constant_units_are_labelled_minus_one():
    X, Y, gx, gy = blocks()
    X[:, 0] = 1.0
    with pytest.warns(RepmatchWarning):
        c = spectral_clusters(X, Y, n_clusters=4, rng=0)
    assert c.labels_x[0] == -1 and c.count_x.sum() == 11
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)
        h = hierarchical_groups(X, Y, n_groups=4)
    assert h.labels_x[0] == -1


def test_sweep():
    X, Y, _, _ = blocks()
    s = cluster_sweep(X, Y, n_clusters=[1, 2, 4, 8], n_random=20, rng=0)
    assert s.n_clusters.tolist() == [1, 2, 4, 8] and len(s.results) == 4
    assert s.results[0].n_clusters == 1
    # one cluster: the pooled between score is the mean of the whole between block
    R = np.abs(np.corrcoef(X, Y, rowvar=False))[:12, 12:]
    assert s.between_score[0] == pytest.approx(R.mean(), abs=1e-12)
    assert s.between_score[2] > s.baseline_between[2]
    json.dumps(s.to_dict())


def test_hierarchical_groups_by_distance_and_count():
    X, Y, gx, gy = blocks()
    h = hierarchical_groups(X, Y, max_distance=0.5)
    assert h.method == "agglomerative" and h.n_clusters == 4
    assert same_partition(np.concatenate([h.labels_x, h.labels_y]), np.concatenate([gx, gy]))
    h2 = hierarchical_groups(X, Y, n_groups=2, linkage="complete")
    assert h2.n_clusters == 2
    tiny = hierarchical_groups(X, Y, max_distance=0.0)
    assert tiny.n_clusters == 20  # nothing merges at distance 0


def test_bad_arguments():
    X, Y, _, _ = blocks(n=200)
    with pytest.raises(ValueError, match="n_clusters=21 exceeds"):
        spectral_clusters(X, Y, n_clusters=21)
    with pytest.raises(ValueError, match="n_clusters must be an integer"):
        spectral_clusters(X, Y, n_clusters=0)
    with pytest.raises(ValueError, match="exactly one"):
        hierarchical_groups(X, Y)
    with pytest.raises(ValueError, match="exactly one"):
        hierarchical_groups(X, Y, n_groups=2, max_distance=0.3)
    with pytest.raises(ValueError, match="max_distance"):
        hierarchical_groups(X, Y, max_distance=1.5)
    with pytest.raises(ValueError, match="linkage"):
        hierarchical_groups(X, Y, n_groups=2, linkage="ward")
    with pytest.raises(ValueError, match="same number of rows"):
        spectral_clusters(X, Y[:-1])
    with pytest.raises(ValueError, match=r"n_clusters\[1\]"):
        cluster_sweep(X, Y, n_clusters=[2, 50])
