"""Mutual information: the authors' binning, the Miller-Madow correction, streaming and merge."""

import numpy as np
import pytest

from repmatch import MIHistogram, Reduction, mi_bin_edges, mutual_information
from repmatch.mi import ZERO_THRESHOLD


def relu_pair(n=5000, seed=0, noise=0.7):
    g = np.random.default_rng(seed)
    Z = g.standard_normal((n, 3))
    X = np.maximum(Z + 0.2, 0)
    Y = np.maximum(Z[:, [2, 0, 1]] + noise * g.standard_normal((n, 3)), 0)
    return X, Y


def oracle_mi(x, y, ex, ey, t=ZERO_THRESHOLD, n_bins=10):
    """Independent plug-in and Miller-Madow MI of one pair from np.digitize and entropies."""

    def code(v, e):
        c = 1 + np.digitize(v, e, right=False)
        c[v < t] = 0
        return c

    cx, cy = code(x, ex), code(y, ey)
    T = np.zeros((n_bins, n_bins))
    np.add.at(T, (cx, cy), 1)
    N = T.sum()

    def H(p):
        p = p[p > 0] / N
        return -(p * np.log(p)).sum()

    plug = H(T.sum(1)) + H(T.sum(0)) - H(T.ravel())
    mm = plug + ((T.sum(1) > 0).sum() + (T.sum(0) > 0).sum() - (T > 0).sum() - 1) / (2 * N)
    return plug, mm


def test_matches_independent_oracle():
    X, Y = relu_pair()
    ex, ey = mi_bin_edges(X), mi_bin_edges(Y)
    h = MIHistogram(ex, ey)
    h.update(X, Y)
    plug = h.mutual_information(bias_correction=False)
    mm = h.mutual_information()
    for i in range(3):
        for j in range(3):
            p, m = oracle_mi(X[:, i], Y[:, j], ex[i], ey[j])
            assert plug[i, j] == pytest.approx(p, abs=1e-12)
            assert mm[i, j] == pytest.approx(m, abs=1e-12)
    assert np.array_equal(np.argmax(mm, axis=1), [1, 2, 0])


def test_zero_bin_and_equal_mass_bins():
    X, Y = relu_pair(n=9000)
    h = MIHistogram.from_arrays(X, Y)
    T = h.joint_counts(0, 0)
    zeros = np.sum(X[:, 0] < ZERO_THRESHOLD)
    assert T.sum(axis=1)[0] == zeros
    pos = T.sum(axis=1)[1:]
    assert pos.size == 9
    # equal mass: every positive bin within one tie of (n_positive / 9)
    assert np.abs(pos - (9000 - zeros) / 9).max() <= 1.0


def test_streaming_and_merge_equal_single_pass():
    X, Y = relu_pair()
    ex, ey = mi_bin_edges(X[:1000]), mi_bin_edges(Y[:1000])  # edges fixed from a sample
    single = MIHistogram(ex, ey).update(X, Y)
    a = MIHistogram(ex, ey).update(X[:2000], Y[:2000])
    b = MIHistogram(ex, ey)
    for s in range(2000, 5000, 333):
        b.update(X[s : s + 333], Y[s : s + 333])
    m = a.merge(b)
    assert m.n_samples == 5000
    assert np.array_equal(m.counts, single.counts)
    assert np.array_equal(m.mutual_information(), single.mutual_information())


def test_bias_correction_centres_independent_pairs():
    g = np.random.default_rng(5)
    X = np.maximum(g.standard_normal((2000, 20)), 0)
    Y = np.maximum(g.standard_normal((2000, 20)), 0)
    plug = mutual_information(X, Y, bias_correction=False)
    mm = mutual_information(X, Y)
    assert plug.min() >= 0
    # plug-in MI of independent units is biased up by about (cells - 1) / 2N; Miller-Madow removes
    # most of it (it under-corrects when many cells are nearly empty)
    assert abs(mm.mean()) < 0.1 * plug.mean()
    # the correction is exactly (m_x + m_y - m_xy - 1) / 2N
    h = MIHistogram.from_arrays(X, Y)
    T = h.joint_counts(3, 4)
    corr = ((T.sum(1) > 0).sum() + (T.sum(0) > 0).sum() - (T > 0).sum() - 1) / 4000
    assert mm[3, 4] - plug[3, 4] == pytest.approx(corr, abs=1e-15)


def test_constant_and_never_active_units_have_zero_mi():
    X, Y = relu_pair()
    X[:, 1] = 0.0  # dead ReLU
    Y[:, 2] = 4.0  # constant positive
    h = MIHistogram.from_arrays(X, Y)
    mi = h.mutual_information()
    assert np.all(mi[1] == 0) and np.all(mi[:, 2] == 0)
    assert h.single_bin_x().tolist() == [False, True, False]
    assert h.single_bin_y().tolist() == [False, False, True]


def test_no_zero_bin_for_signed_data():
    g = np.random.default_rng(2)
    x = g.standard_normal((3000, 1))
    edges = mi_bin_edges(x, n_bins=5, zero_threshold=None)
    assert edges[0].size == 4
    h = MIHistogram(edges, edges, n_bins=5, zero_threshold=None).update(x, x)
    assert np.allclose(h.joint_counts(0, 0).sum(axis=1), 600, atol=1)
    assert h.mutual_information()[0, 0] == pytest.approx(np.log(5) + (5 + 5 - 5 - 1) / 6000, abs=1e-12)


def test_bad_inputs():
    X, Y = relu_pair(n=50)
    with pytest.raises(ValueError, match="n_bins"):
        mi_bin_edges(X, n_bins=1)
    with pytest.raises(ValueError, match="Reduction"):
        mutual_information(Reduction.from_arrays(X, Y))
    with pytest.raises(ValueError, match="same number of rows"):
        mutual_information(X, Y[:-1])
    with pytest.raises(ValueError, match="X contains"):
        mutual_information(np.full((50, 3), np.nan), Y)
    h = MIHistogram.from_arrays(X, Y)
    other = MIHistogram(mi_bin_edges(X + 1.0), mi_bin_edges(Y))
    with pytest.raises(ValueError, match="cannot merge"):
        h.merge(other)
    with pytest.raises(ValueError, match="x must have n_x=3"):
        h.update(X[:, :2], Y)
    with pytest.raises(ValueError, match="at least 2"):
        MIHistogram(mi_bin_edges(X), mi_bin_edges(Y)).mutual_information()
    with pytest.raises(ValueError, match="zero_threshold"):
        mi_bin_edges(X, zero_threshold=float("nan"))


def test_zero_threshold_edge():
    # ZERO_THRESHOLD = 1e-6 (the authors'): values just below go to the zero bin, just above do not
    assert ZERO_THRESHOLD == 1e-6
    x = np.array([0.0, 0.99e-6, 1.01e-6, 0.5, 1.0, 2.0, 3.0])[:, None]
    h = MIHistogram.from_arrays(x, x)
    counts = h.joint_counts(0, 0).sum(axis=1)
    assert counts[0] == 2 and counts[1:].sum() == 5
