"""Streaming reductions: streaming == in memory, merge == single pass, persistence, bad input."""

import os
import warnings

import numpy as np
import pytest

import repmatch
import repmatch.testing
from repmatch import Reduction
from repmatch.io import load_reductions, save_reductions

STAT_RTOL = 1e-10  # the bound for streamed vs in-memory statistics


def _streamed(X, Y, batch):
    r = Reduction(X.shape[1], Y.shape[1])
    for s in range(0, X.shape[0], batch):
        r.update(X[s : s + batch], Y[s : s + batch])
    return r


def _two_pass(X, Y):
    M = np.hstack([X, Y]).astype(np.float64)
    mu = M.mean(axis=0)
    C = (M - mu).T @ (M - mu)
    return mu, C, M.T @ M


@pytest.mark.parametrize("batch", [1, 7, 100, 1000])
def test_streaming_equals_in_memory(rng, batch):
    X = rng.standard_normal((1000, 6)) * 3 + 1
    Y = np.maximum(rng.standard_normal((1000, 4)), 0)
    r = _streamed(X, Y, batch)
    mu, C, G = _two_pass(X, Y)
    assert r.n_samples == 1000
    np.testing.assert_allclose(r.mean, mu, rtol=STAT_RTOL, atol=1e-13)
    np.testing.assert_allclose(r.comoment, C, rtol=STAT_RTOL, atol=1e-9)
    np.testing.assert_allclose(r.gram(), G, rtol=STAT_RTOL, atol=1e-9)
    np.testing.assert_allclose(r.covariance(ddof=1), np.cov(np.hstack([X, Y]).T), rtol=STAT_RTOL, atol=1e-12)


def test_large_offset_keeps_precision(rng):
    # Means 1e4 times the standard deviation: naive E[x^2] - E[x]^2 would lose ~8 digits.
    X = 1e4 + rng.standard_normal((5000, 3))
    Y = -1e4 + rng.standard_normal((5000, 2))
    r = _streamed(X, Y, 333)
    mu, C, _ = _two_pass(X, Y)
    np.testing.assert_allclose(r.comoment, C, rtol=STAT_RTOL, atol=1e-7)


def test_merge_equals_single_pass(rng):
    X = rng.standard_normal((900, 5))
    Y = rng.standard_normal((900, 3)) + X[:, :3]
    parts = [Reduction.from_arrays(X[s : s + 150], Y[s : s + 150]) for s in range(0, 900, 150)]
    merged = Reduction.merge_all(parts)
    single = Reduction.from_arrays(X, Y)
    assert merged.n_samples == single.n_samples == 900
    np.testing.assert_allclose(merged.mean, single.mean, rtol=STAT_RTOL, atol=1e-14)
    np.testing.assert_allclose(merged.comoment, single.comoment, rtol=STAT_RTOL, atol=1e-10)
    pairwise = parts[0] + parts[1]
    np.testing.assert_allclose(pairwise.comoment, Reduction.from_arrays(X[:300], Y[:300]).comoment, rtol=STAT_RTOL)
    # merge does not modify its operands
    assert parts[0].n_samples == 150
    # merging an empty reduction changes nothing
    same = single.merge(Reduction(5, 3))
    np.testing.assert_array_equal(same.comoment, single.comoment)


def test_qr_reduction_streams_and_merges(rng):
    X = rng.standard_normal((400, 5))
    Y = rng.standard_normal((400, 4))
    a = Reduction.from_arrays(X[:250], Y[:250], method="qr", batch_size=60)
    b = Reduction.from_arrays(X[250:], Y[250:], method="qr", batch_size=60)
    m = a.merge(b)
    M = np.hstack([X, Y])
    R = m.r_factor
    np.testing.assert_allclose(R.T @ R, M.T @ M, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(m.comoment, Reduction.from_arrays(X, Y).comoment, rtol=STAT_RTOL)


def test_match_from_reduction_equals_arrays(rng):
    X, Y, _ = repmatch.testing.planted_subspace(n_samples=1500, rng=3)
    for method in ("qr", "gram"):
        r = Reduction(X.shape[1], Y.shape[1], method=method)
        for s in range(0, 1500, 128):
            r.update(X[s : s + 128], Y[s : s + 128])
        for eps in (0.0, 0.25, 0.5):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", repmatch.RepmatchWarning)
                a = repmatch.maximum_match(r, eps=eps)
                b = repmatch.maximum_match(X, Y, eps=eps, method=method)
            assert b.certified  # the arrays settle every decision
            if method == "qr":  # the streamed factor settles them too
                np.testing.assert_array_equal(a.x, b.x)
                np.testing.assert_array_equal(a.y, b.y)
            else:  # a streamed Gram matrix cannot resolve the planted exact dependencies: what it
                # certifies is right and the truth lies within what it leaves uncertain
                assert set(a.x) <= set(b.x) <= set(a.x) | set(a.uncertain_x)
                assert set(a.y) <= set(b.y) <= set(a.y) | set(a.uncertain_y)
        if method == "qr":
            assert repmatch.max_epsilon(r) == pytest.approx(repmatch.max_epsilon(X, Y), abs=1e-9)


def test_float32_input_is_accumulated_in_float64(rng):
    X = rng.standard_normal((300, 3)).astype(np.float32)
    Y = rng.standard_normal((300, 2)).astype(np.float32)
    r = Reduction.from_arrays(X, Y)
    mu, C, _ = _two_pass(X.astype(np.float64), Y.astype(np.float64))
    assert r.comoment.dtype == np.float64
    np.testing.assert_allclose(r.comoment, C, rtol=STAT_RTOL)


def test_save_load_roundtrip(tmp_path, rng):
    X = rng.standard_normal((100, 3))
    Y = rng.standard_normal((100, 2))
    for method in ("gram", "qr"):
        r = Reduction.from_arrays(X, Y, method=method)
        path = tmp_path / f"r_{method}.npz"
        r.save(path)
        back = Reduction.load(path)
        assert (back.n_x, back.n_y, back.n_samples, back.method) == (3, 2, 100, method)
        np.testing.assert_array_equal(back.comoment, r.comoment)
    save_reductions(tmp_path / "many.npz", {"conv1": r, "fc": r}, metadata={"k": 1})
    reds, meta = load_reductions(tmp_path / "many.npz")
    assert list(reds) == ["conv1", "fc"] and meta == {"k": 1}
    np.testing.assert_array_equal(reds["fc"].r_factor, r.r_factor)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


@pytest.mark.parametrize(
    "x, y, match",
    [
        (np.ones((5, 2)), np.ones((5, 2)), "x must have n_x=3"),
        (np.ones((5, 3)), np.ones((5, 1)), "y must have n_y=2"),
        (np.ones((5, 3)), np.ones((4, 2)), "same number of rows"),
        (np.ones(3), np.ones((1, 2)), "x must be 2-D"),
        (np.array([[1.0, np.nan, 0]]), np.ones((1, 2)), "x contains 1 non-finite value"),
        (np.ones((1, 3)), np.array([[np.inf, 0]]), "y contains 1 non-finite value.*Inf"),
    ],
)
def test_update_rejects_bad_batches(x, y, match):
    r = Reduction(3, 2)
    with pytest.raises(ValueError, match=match):
        r.update(x, y)
    assert r.n_samples == 0


def test_constructor_and_merge_errors():
    with pytest.raises(ValueError, match="n_x"):
        Reduction(0, 3)
    with pytest.raises(ValueError, match="method"):
        Reduction(2, 2, method="svd")
    with pytest.raises(ValueError, match="different layers"):
        Reduction(2, 2).merge(Reduction(2, 3))
    with pytest.raises(ValueError, match="'gram' reduction with a 'qr'"):
        Reduction(2, 2).merge(Reduction(2, 2, method="qr"))
    with pytest.raises(ValueError, match="no samples"):
        repmatch.maximum_match(Reduction(2, 2), eps=0.2)


def test_add_moments_equals_update_and_checks_its_input(rng):
    X, Y = rng.standard_normal((300, 3)), rng.standard_normal((300, 2))
    r = Reduction(3, 2)
    for s in range(0, 300, 100):
        Z = np.hstack([X[s : s + 100], Y[s : s + 100]])
        mu = Z.mean(axis=0)
        r.add_moments(100, mu, (Z - mu).T @ (Z - mu))
    np.testing.assert_allclose(r.comoment, Reduction.from_arrays(X, Y).comoment, rtol=STAT_RTOL)
    with pytest.raises(ValueError, match=r"mean must have shape \(5,\)"):
        r.add_moments(10, np.zeros(4), np.zeros((5, 5)))
    with pytest.raises(ValueError, match="comoment contains"):
        r.add_moments(10, np.zeros(5), np.full((5, 5), np.nan))
    with pytest.raises(ValueError, match="n_samples"):
        r.add_moments(0, np.zeros(5), np.zeros((5, 5)))
    with pytest.raises(ValueError, match="needs a 'gram' reduction"):
        Reduction(3, 2, method="qr").add_moments(10, np.zeros(5), np.zeros((5, 5)))


def test_atomic_writes_leave_usual_permissions(tmp_path):
    from repmatch._atomic import atomic_write_text

    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


# ---------------------------------------------------------------- the chunked batch kernel (shifted_moments)
def _rows_of(conv):
    """(B, C, *spatial) -> (B * positions, C), image-major: the papers' positions convention."""
    return conv.reshape(conv.shape[0], conv.shape[1], -1).transpose(0, 2, 1).reshape(-1, conv.shape[1])


@pytest.mark.parametrize("chunk_doubles, min_rows", [(131072, 256), (40, 3), (200, 7), (10**9, 1)])
def test_conv_outputs_equal_their_rows_for_every_chunking(rng, monkeypatch, chunk_doubles, min_rows):
    # Chunks of several images, of one image, of part of an image (runs along the positions), and
    # the whole batch at once: all give the moments of the (image, position) rows.
    import repmatch.reduce as red

    monkeypatch.setattr(red, "_CHUNK_DOUBLES", chunk_doubles)
    monkeypatch.setattr(red, "_MIN_CHUNK_ROWS", min_rows)
    A = np.maximum(rng.standard_normal((30, 5, 4, 3)), 0).astype(np.float32)  # (B, C, H, W)
    Bc = (rng.standard_normal((30, 3, 4, 3)) + 2).astype(np.float32)
    r = Reduction(5, 3)
    for s in range(0, 30, 11):  # uneven batches: the first sets the shift, the rest use the running mean
        r.update(A[s : s + 11], Bc[s : s + 11])
    X, Y = _rows_of(A), _rows_of(Bc)
    mu, C, G = _two_pass(X, Y)
    assert r.n_samples == 30 * 12
    np.testing.assert_allclose(r.mean, mu, rtol=STAT_RTOL, atol=1e-13)
    np.testing.assert_allclose(r.comoment, C, rtol=STAT_RTOL, atol=1e-10)
    np.testing.assert_allclose(r.gram(), G, rtol=STAT_RTOL)
    # rows against conv outputs of the same samples: aligned as rows
    r2 = Reduction(5, 3).update(X, Bc)
    np.testing.assert_allclose(r2.comoment, C, rtol=STAT_RTOL, atol=1e-10)


def test_threaded_chunks_equal_one_thread(rng):
    import concurrent.futures

    from repmatch.reduce import shifted_moments

    A = rng.standard_normal((64, 7, 300))  # 19,200 rows, split into many chunks
    Bc = rng.standard_normal((64, 4, 300)) * 5 - 1
    shift = np.concatenate([A.mean(axis=(0, 2)), Bc.mean(axis=(0, 2))]) + 0.1
    one = shifted_moments([A, Bc], shift, ("x", "y"))
    with concurrent.futures.ThreadPoolExecutor(3) as ex:
        three = shifted_moments([A, Bc], shift, ("x", "y"), (ex, 3))
        again = shifted_moments([A, Bc], shift, ("x", "y"), (ex, 3))
    assert one[0] == three[0] == 64 * 300
    np.testing.assert_allclose(three[1], one[1], rtol=1e-13)
    np.testing.assert_allclose(three[2], one[2], rtol=1e-12)
    assert np.array_equal(three[2], again[2])  # deterministic for a given number of threads


def test_constant_and_dead_units_give_exact_zeros(rng):
    # A float32 unit constant from the first batch on sits exactly at the shift (a float64 sum of
    # float32 copies is exact): zero variance and covariance, exactly, not ~1e-16.
    x = rng.standard_normal((600, 3)).astype(np.float32)
    x[:, 1] = 0.0
    x[:, 2] = 3.7
    y = rng.standard_normal((600, 2)).astype(np.float32)
    r = Reduction(3, 2)
    for s in range(0, 600, 128):
        r.update(x[s : s + 128], y[s : s + 128])
    C = r.comoment
    assert np.all(C[1] == 0) and np.all(C[:, 1] == 0) and np.all(C[2] == 0) and np.all(C[:, 2] == 0)
    assert r.mean[1] == 0.0 and r.mean[2] == np.float32(3.7)


def test_batch_means_far_from_the_running_mean_keep_precision(rng):
    # Sorted data: every batch's mean is far from the running mean used as the shift (up to 400
    # standard deviations), the worst case of the shifted kernel; the Chan merge carries the rest.
    X = np.sort(rng.standard_normal((4000, 3)) * 0.01, axis=0) + np.repeat(np.arange(8), 500)[:, None] * 1.0
    Y = rng.standard_normal((4000, 2))
    r = _streamed(X, Y, 500)
    mu, C, _ = _two_pass(X, Y)
    np.testing.assert_allclose(r.comoment, C, rtol=STAT_RTOL, atol=1e-9)


def test_conv_output_errors_name_the_side(rng):
    x = rng.standard_normal((4, 3, 5, 5))
    y = rng.standard_normal((4, 2, 5, 5))
    bad = x.copy()
    bad[1, 2, 0, 3] = np.nan
    with pytest.raises(ValueError, match=r"x contains 1 non-finite value\(s\) \(NaN first at index \(1, 2, 0, 3\)\)"):
        Reduction(3, 2).update(bad, y)
    r = Reduction(3, 2)
    with pytest.raises(ValueError, match="y contains 1 non-finite"):
        bad = y.copy()
        bad[0, 1, 2, 2] = np.inf
        r.update(x, bad)
    assert r.n_samples == 0  # nothing accumulated from a rejected batch
    with pytest.raises(ValueError, match=r"x must have n_x=3 channels \(axis 1\)"):
        r.update(np.ones((4, 2, 5, 5)), y)
    with pytest.raises(ValueError, match="same number of rows"):
        r.update(x, y[:, :, :4])
    with pytest.raises(ValueError, match="conv outputs of different shapes"):  # 4*3*6 = 6*2*6 rows
        r.update(np.ones((4, 3, 6, 3)), np.ones((6, 2, 12)))
    with pytest.raises(ValueError, match="x has no samples"):
        r.update(np.zeros((0, 3, 4, 4)), np.zeros((0, 2, 4, 4)))
    assert r.n_samples == 0


def test_huge_values_far_from_the_shift(rng):
    # Values near 3e150 after a first batch near 0: the squares (~1e305) still fit in float64 and
    # the mean correction is formed as (sum z / rows) * sum z, so nothing overflows and the moments
    # match the two-pass ones; beyond that the neuron's unit changes (a power of two), so nothing
    # overflows in storage and the correlations are those of the data scaled down.
    x0, y0 = rng.standard_normal((10, 1)), rng.standard_normal((10, 1))
    big, yb = 3e150 + 1e148 * rng.standard_normal((10000, 1)), rng.standard_normal((10000, 1))
    r = Reduction(1, 1).update(x0, y0).update(big, yb)
    mu, C, _ = _two_pass(np.vstack([x0, big]), np.vstack([y0, yb]))
    np.testing.assert_allclose(r.comoment, C, rtol=1e-8)
    r.update(big * 1e5, yb)
    assert r.n_samples == 20010 and r.scale[0] > 1 and r.scale[1] == 1
    assert np.isfinite(r._comoment).all()
    ref = Reduction(1, 1).update(x0 * 1e-200, y0).update(big * 1e-200, yb).update(big * 1e-195, yb)
    np.testing.assert_allclose(repmatch.correlation(r).between, repmatch.correlation(ref).between, rtol=1e-10)


def test_variances_are_never_negative(rng):
    # float64 constants whose batch mean is inexact leave ~1e-16 relative in the shifted form;
    # the diagonal is clipped at 0 (a variance), off-diagonal entries stay tiny.
    worst = 0.0
    for c in rng.uniform(-10, 10, 200):
        r = Reduction(1, 1)
        x = np.full((3969, 1), c)
        for s in range(0, 3969, 1000):
            r.update(x[s : s + 1000], rng.standard_normal((min(1000, 3969 - s), 1)))
        assert r.comoment[0, 0] >= 0.0
        worst = max(worst, abs(r.comoment[0, 1]))
    assert worst < 1e-9


def test_thread_split_memory_cap_keeps_results(rng, monkeypatch):
    import concurrent.futures

    import repmatch.reduce as red

    A = rng.standard_normal((40, 5, 700))
    Bc = rng.standard_normal((40, 3, 700))
    shift = np.zeros(8)
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        free = red.shifted_moments([A, Bc], shift, ("x", "y"), (ex, 4))
        monkeypatch.setattr(red, "_SPLIT_BYTES", 1)  # room for one group only: no split
        capped = red.shifted_moments([A, Bc], shift, ("x", "y"), (ex, 4))
    one = red.shifted_moments([A, Bc], shift, ("x", "y"))
    assert np.array_equal(capped[2], one[2])
    np.testing.assert_allclose(free[2], one[2], rtol=1e-12)
