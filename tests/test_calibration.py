"""Calibrated baselines of best-match statistics: rotation baseline, held-out matching, grouped bootstrap."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import repmatch
from repmatch import Reduction, bootstrap_ci, heldout_match, rotation_baseline
from repmatch.calibration import rotate_y

pytestmark = pytest.mark.filterwarnings("ignore::repmatch.RepmatchWarning")


def _planted(n=400, k=8, noise=0.5, seed=0):
    """Y's units are X's units, permuted, with noise: a privileged shared basis."""
    g = np.random.default_rng(seed)
    X = g.standard_normal((n, k)) * g.uniform(0.5, 2, k)
    return X, X[:, g.permutation(k)] + noise * g.standard_normal((n, k))


def test_rotation_baseline_sees_a_shared_basis():
    X, Y = _planted()
    rb = rotation_baseline(X, Y, n_rotations=19, rng=0)
    assert rb.semi > 0.8 and rb.excess_semi > 0.3 and rb.excess_bipartite > 0.3
    assert rb.p_semi == pytest.approx(1 / 20) and rb.p_bipartite == pytest.approx(1 / 20)
    assert rb.unit_excess.shape == (8,) and np.all(rb.unit_excess > 0)


def test_rotation_baseline_finds_nothing_in_a_rotated_layer():
    """Y is a rotation of X: same subspace, no shared axes; the observed value is a rotated one."""
    g = np.random.default_rng(1)
    X = g.standard_normal((2000, 8))
    Q, _ = np.linalg.qr(g.standard_normal((8, 8)))
    Y = X @ Q
    ps = [rotation_baseline(X, X @ np.linalg.qr(g.standard_normal((8, 8)))[0], n_rotations=19, rng=s).p_semi
          for s in range(20)]
    assert 0.2 < np.mean(ps) < 0.8  # p roughly uniform: the observed basis is one more random basis
    rb = rotation_baseline(X, Y, n_rotations=50, rng=0)
    assert abs(rb.excess_semi) < 4 * rb.rotated_semi.std() + 1e-9


def test_rotation_keeps_the_subspace_and_streams():
    X, Y = _planted(seed=2)
    r = Reduction.from_arrays(X, Y)
    Q, _ = np.linalg.qr(np.random.default_rng(3).standard_normal((8, 8)))
    rot = rotate_y(r, Q, np.arange(8))
    direct = Reduction.from_arrays(X, Y @ Q)
    np.testing.assert_allclose(rot.mean, direct.mean, atol=1e-12)
    np.testing.assert_allclose(rot.comoment, direct.comoment, rtol=1e-10, atol=1e-8)
    assert repmatch.linear_cka(rot).value == pytest.approx(repmatch.linear_cka(r).value, abs=1e-10)
    a = rotation_baseline(X, Y, n_rotations=5, rng=4)
    b = rotation_baseline(r, n_rotations=5, rng=4)
    np.testing.assert_allclose(a.rotated_semi, b.rotated_semi, atol=1e-10)
    assert a.to_dict()["n_rotations"] == 5


def test_rotation_leaves_constant_units_alone():
    X, Y = _planted(seed=5)
    Y = np.column_stack([Y, np.zeros(len(Y))])
    rb = rotation_baseline(X, Y, n_rotations=3, rng=0)
    assert np.isfinite(rb.rotated_bipartite).all()
    with pytest.raises(ValueError, match="n_rotations"):
        rotation_baseline(X, Y, n_rotations=0)


def test_heldout_removes_the_selection_bias():
    """Independent noise layers: the best of 64 correlations is large in sample, ~0 held out."""
    g = np.random.default_rng(6)
    X, Y = g.standard_normal((200, 64)), g.standard_normal((200, 64))
    h = heldout_match((X[:100], Y[:100]), (X[100:], Y[100:]))
    assert h.semi_in_sample > 0.2
    assert abs(h.semi) < 0.05 and abs(h.bipartite) < 0.05
    assert len(h.directions) == 2 and 0 <= h.pair_stability < 0.2


def test_heldout_keeps_real_matches():
    X, Y = _planted(n=600, seed=7)
    r1, r2 = Reduction.from_arrays(X[:300], Y[:300]), Reduction.from_arrays(X[300:], Y[300:])
    h = heldout_match(r1, r2)
    assert h.bipartite == pytest.approx(h.bipartite_in_sample, abs=0.02)
    assert h.pair_stability == 1.0
    one = heldout_match(r1, r2, cross=False)
    assert len(one.directions) == 1 and np.isnan(one.pair_stability)
    b2 = repmatch.bipartite_match(r2)
    assert one.bipartite_in_sample == pytest.approx(b2.mean)


def test_heldout_bad_input():
    X, Y = _planted()
    with pytest.raises(ValueError, match="same layers"):
        heldout_match((X, Y), (X[:, :4], Y))
    with pytest.raises(ValueError, match="fit must be a Reduction or a pair"):
        heldout_match(X, (X, Y))


@settings(max_examples=20, deadline=None)
@given(n=st.integers(5, 40), seed=st.integers(0, 1000))
def test_one_row_per_group_is_the_row_bootstrap(n, seed):
    """With every row its own group the grouped bootstrap draws exactly the rows the row bootstrap draws."""
    g = np.random.default_rng(seed)
    X = g.standard_normal((n, 3))
    Y = X + g.standard_normal((n, 3))
    a = bootstrap_ci("linear_cka", X, Y, n_boot=20, rng=seed)
    b = bootstrap_ci("linear_cka", X, Y, n_boot=20, rng=seed, groups=np.arange(n)[::-1] * 7)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert b.n_groups == n and b.to_dict()["resampled"] == f"{n} groups"


def test_grouped_bootstrap_is_wider_when_rows_of_an_image_are_alike():
    """30 images x 40 near-identical positions: rows are not independent; the row bootstrap is too narrow."""
    g = np.random.default_rng(8)
    n_img, pos = 30, 40
    zi = g.standard_normal((n_img, 4))
    X = np.repeat(zi, pos, axis=0) + 0.05 * g.standard_normal((n_img * pos, 4))
    Y = np.repeat(zi @ g.standard_normal((4, 4)) + g.standard_normal((n_img, 4)), pos, axis=0) \
        + 0.05 * g.standard_normal((n_img * pos, 4))
    groups = np.repeat(np.arange(n_img), pos)
    rows = bootstrap_ci("bipartite_match", X, Y, n_boot=100, rng=0)
    imgs = bootstrap_ci("bipartite_match", X, Y, n_boot=100, rng=0, groups=groups)
    one = bootstrap_ci("bipartite_match", X[::pos], Y[::pos], n_boot=100, rng=0)  # one row per image
    assert (imgs.high - imgs.low) > 3 * (rows.high - rows.low)
    assert (imgs.high - imgs.low) == pytest.approx(one.high - one.low, rel=0.5)


@pytest.mark.parametrize("groups, message", [
    (np.zeros(10), "at least 2"),
    (np.arange(9), "one label per row"),
    (np.full(10, np.nan), "finite labels"),
])
def test_grouped_bootstrap_bad_groups(groups, message):
    X = np.random.default_rng(0).standard_normal((10, 2))
    with pytest.raises(ValueError, match=message):
        bootstrap_ci("linear_cka", X, X, n_boot=5, groups=groups)


def test_soft_match_is_a_registered_scalar():
    X, Y = _planted(seed=9)
    res = repmatch.permutation_test("soft_match_distance", X, Y, n_permutations=19, rng=0)
    assert res.alternative == "less" and res.p_value == pytest.approx(1 / 20)
