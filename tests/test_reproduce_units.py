"""The reproduce units' shortcuts equal the slow path: permutations and bootstrap draws from moments."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import repmatch
from repmatch.testing import sample_rows
from repmatch.pipeline.units import RowMoments, grouped_bootstrap

pytestmark = pytest.mark.filterwarnings("ignore::repmatch.RepmatchWarning")


def _rows(seed, n=120, nx=5, ny=4, dead=False):
    g = np.random.default_rng(seed)
    z = g.standard_normal((n, 2))
    X = np.maximum(z @ g.standard_normal((2, nx)) + 0.5 * g.standard_normal((n, nx)), 0) + 3.0
    Y = np.maximum(z @ g.standard_normal((2, ny)) + 0.5 * g.standard_normal((n, ny)), 0)
    if dead:
        Y[:, 0] = 0.0
    return X, Y


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), dead=st.booleans())
def test_permuted_and_weighted_moments_equal_the_rows(seed, dead):
    X, Y = _rows(seed, dead=dead)
    rows = RowMoments(X, Y)
    g = np.random.default_rng(seed)
    perm = g.permutation(len(Y))
    a, b = rows.permuted(perm), repmatch.Reduction.from_arrays(X, Y[perm])
    np.testing.assert_allclose(a.comoment, b.comoment, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-12, atol=1e-12)
    counts = g.integers(0, 3, len(X)).astype(float)
    counts[0] += 1
    idx = np.repeat(np.arange(len(X)), counts.astype(int))  # the same draw as duplicated rows
    ref = repmatch.Reduction.from_arrays(X[idx], Y[idx])
    w = rows.weighted(counts)
    np.testing.assert_allclose(w.comoment, ref.comoment, rtol=1e-10, atol=1e-9)
    R, cx, cy, n = rows.weighted_correlation(counts)
    st_ = repmatch.correlation(X[idx], Y[idx])
    np.testing.assert_allclose(R, st_.between, atol=1e-10)
    assert n == len(idx) and cx.tolist() == st_.constant_x.tolist() and cy.tolist() == st_.constant_y.tolist()


def test_grouped_bootstrap_equals_the_library_bootstrap():
    """Same draws as bootstrap_ci(groups=) with the same seed: the same intervals."""
    X, Y = _rows(3, n=90)
    groups = np.repeat(np.arange(30), 3)
    ours = grouped_bootstrap(X, Y, groups, n_boot=30, seed=5)
    for name in ("semi_match", "bipartite_match", "soft_match_distance"):
        ref = repmatch.bootstrap_ci(name, X, Y, n_boot=30, rng=5, groups=groups)
        assert ours[name].observed == pytest.approx(ref.observed, abs=1e-10)
        assert ours[name].low == pytest.approx(ref.low, abs=1e-9)
        assert ours[name].high == pytest.approx(ref.high, abs=1e-9)
        np.testing.assert_allclose(ours[name].samples, ref.samples, atol=1e-9)
        assert ours[name].n_groups == ref.n_groups == 30 and ours[name].std_error == pytest.approx(ref.std_error)


def test_sample_rows_keeps_images_together_and_positions_aligned():
    torch = pytest.importorskip("torch")
    from repmatch.nets import build_model

    ma = build_model("smallcnn", in_channels=1, image_size=8, width=0.25, seed=0).eval()
    mb = build_model("smallcnn", in_channels=1, image_size=8, width=0.25, seed=1).eval()
    x = torch.randn(10, 1, 8, 8)
    batches = [(x[:6],), (x[6:],)]
    layers = ["features.1", "classifier.1"]
    out = sample_rows(ma, mb, batches, layers, rows_per_image=5, seed=0)
    Xc, Yc, gc = out["features.1"]
    assert Xc.shape == (50, 8) and Yc.shape[0] == 50 and np.array_equal(gc, np.repeat(np.arange(10), 5))
    Xf, Yf, gf = out["classifier.1"]  # fully connected: one row per image
    assert Xf.shape[0] == 10 and np.array_equal(gf, np.arange(10))
    from repmatch import activations

    full = activations.extract(ma, [x], layers, conv_mode="positions")["features.1"]  # (10 * 64, 8)
    per_image = full.reshape(10, 64, -1)
    for i in range(10):  # every sampled row is a position of its own image, none repeated
        rows_i = Xc[gc == i]
        hits = [int(np.argmin(np.abs(per_image[i] - r).sum(axis=1))) for r in rows_i]
        assert len(set(hits)) == 5
        np.testing.assert_allclose(per_image[i][hits], rows_i, atol=1e-6)
    again = sample_rows(ma, mb, batches, layers, rows_per_image=5, seed=0)
    np.testing.assert_array_equal(again["features.1"][0], Xc)  # deterministic
