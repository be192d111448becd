"""Maximum match and ε tools: the spec's section 7 checks, theorems as properties, tolerances at their edges."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import repmatch
from repmatch import GRAM_TOL, QR_TOL, RepmatchWarning
from repmatch.subspace import FactorSpace, Geometry
from repmatch.testing import (
    brute_force_matches,
    independent_blocks,
    naive_maximum_match,
    planted_subspace,
    relu_layers,
)

from conftest import tiny_layers

EPS_PLANTED = [1e-8, 1e-4, 0.01, 0.1, 0.3, 0.45, 0.6]


@pytest.mark.parametrize("method", ["gram", "qr"])
@pytest.mark.parametrize("seed", [0, 1])
def test_planted_subspace_is_found_for_every_eps(method, seed):
    X, Y, planted = planted_subspace(n_samples=2000, rng=seed)
    for eps in EPS_PLANTED:
        m = repmatch.maximum_match(X, Y, eps=eps, method=method)
        np.testing.assert_array_equal(m.x, planted)
        np.testing.assert_array_equal(m.y, planted)
        assert m.similarity == pytest.approx(40 / 240)


def test_planted_subspace_at_d200_matches_spec_numbers():
    # spec section 7: d = 200, MMS = 40/240 for eps in [1e-8, 0.6], max_epsilon about 0.78
    values = []
    for seed in range(4):
        X, Y, planted = planted_subspace(n_samples=200, rng=seed)
        with pytest.warns(RepmatchWarning, match="samples"):
            r = repmatch.Reduction.from_arrays(X, Y, method="qr")
            curve = repmatch.similarity_curve(r, eps=[1e-8, 0.3, 0.6])
        np.testing.assert_allclose(curve.similarity, 40 / 240)
        values.append(curve.max_epsilon)
    assert 0.72 < np.mean(values) < 0.84


@pytest.mark.parametrize("method", ["gram", "qr"])
def test_exact_match_found_at_eps_zero_where_naive_finds_nothing(method):
    X, Y, planted = planted_subspace(n_samples=1000, rng=5)
    m = repmatch.maximum_match(X, Y, eps=0.0, method=method)
    np.testing.assert_array_equal(m.x, planted)
    np.testing.assert_array_equal(m.y, planted)
    nx, ny = naive_maximum_match(X, Y, 0.0)
    assert nx.size == 0 and ny.size == 0  # why the tolerance exists


def test_independent_blocks():
    X, Y, blocks = independent_blocks()
    for method in ("gram", "qr"):
        m = repmatch.maximum_match(X, Y, eps=0.0, method=method)
        np.testing.assert_array_equal(m.x, [0, 1, 2, 3, 4])
        np.testing.assert_array_equal(m.y, [0, 1, 2, 3, 4])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), eps=st.sampled_from([0.2, 0.35, 0.5, 0.7]))
def test_maximum_match_is_union_of_brute_force_matches(seed, eps):
    X, Y = tiny_layers(seed)
    matches = brute_force_matches(X, Y, eps)
    ux = set().union(*[a for a, _ in matches]) if matches else set()
    uy = set().union(*[b for _, b in matches]) if matches else set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)
        m = repmatch.maximum_match(X, Y, eps=eps, method="qr")
    assert set(m.x.tolist()) == ux
    assert set(m.y.tolist()) == uy
    # Union closure: the union of any two matches is a match (it is in the brute-force list).
    mset = set(matches)
    for a in matches[:6]:
        for b in matches[:6]:
            assert (a[0] | b[0], a[1] | b[1]) in mset


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_agrees_with_naive_implementation(seed):
    X, Y = relu_layers(n_samples=600, n_x=30, n_y=25, shared_dim=6, private_dim=6, rng=seed)
    for eps in (0.2, 0.4, 0.6):
        m = repmatch.maximum_match(X, Y, eps=eps)
        nx, ny = naive_maximum_match(X, Y, eps)
        np.testing.assert_array_equal(m.x, nx)
        np.testing.assert_array_equal(m.y, ny)


def test_permuting_columns_permutes_the_answer(rng):
    X, Y = relu_layers(n_samples=800, n_x=40, n_y=30, shared_dim=8, private_dim=8, rng=2)
    px, py = rng.permutation(40), rng.permutation(30)
    for eps in (0.25, 0.5):
        a = repmatch.maximum_match(X, Y, eps=eps)
        b = repmatch.maximum_match(X[:, px], Y[:, py], eps=eps)
        assert a.size > 0
        np.testing.assert_array_equal(np.sort(px[b.x]), a.x)
        np.testing.assert_array_equal(np.sort(py[b.y]), a.y)
    # swapping the layers swaps the sides
    c = repmatch.maximum_match(Y, X, eps=0.5)
    np.testing.assert_array_equal(c.x, repmatch.maximum_match(X, Y, eps=0.5).y)


def test_scaling_a_neuron_changes_nothing(rng):
    X, Y = relu_layers(n_samples=800, n_x=40, n_y=30, shared_dim=8, private_dim=8, rng=4)
    sx = rng.choice([-1e6, -3.0, 1e-6, 0.5, 7.0], size=40)
    sy = rng.choice([-2.0, 1e-5, 4.0, 1e5], size=30)
    for method in ("gram", "qr"):
        for eps in (0.0, 0.3, 0.5):
            a = repmatch.maximum_match(X, Y, eps=eps, method=method)
            b = repmatch.maximum_match(X * sx, Y * sy, eps=eps, method=method)
            np.testing.assert_array_equal(a.x, b.x)
            np.testing.assert_array_equal(a.y, b.y)


def test_duplicated_neuron_matches_with_its_twin(rng):
    X = rng.standard_normal((500, 5))
    Y = np.hstack([rng.standard_normal((500, 4)), X[:, [2]] * -3.0])
    for method in ("gram", "qr"):
        m = repmatch.maximum_match(X, Y, eps=0.0, method=method)
        assert m.x.tolist() == [2] and m.y.tolist() == [4]


def test_dead_neurons_are_reported_and_count_in_the_denominator(rng):
    X, Y, planted = planted_subspace(n_samples=1000, n_random=10, rng=1)
    X[:, 3] = 0.0  # a planted neuron dies
    Y[:, [25, 26]] = 0.0
    m = repmatch.maximum_match(X, Y, eps=0.1)
    assert m.dead_x.tolist() == [3] and m.dead_y.tolist() == [25, 26]
    assert 3 not in m.x
    assert m.similarity == pytest.approx((19 + 20) / (30 + 30))
    # a layer that is entirely dead matches nothing and max_epsilon says "never"
    Z = np.zeros_like(Y)
    m0 = repmatch.maximum_match(X, Z, eps=0.5)
    assert m0.size == 0 and len(m0.dead_y) == 30
    assert repmatch.max_epsilon(X, Z) == 1.0


def test_similarity_curve_equals_pointwise_and_is_monotone():
    X, Y = relu_layers(n_samples=3000, n_x=60, n_y=60, shared_dim=10, private_dim=10, rng=7)
    grid = [0.5, 0.1, 0.3, 0.2, 0.45, 0.0, 0.6]
    curve = repmatch.similarity_curve(X, Y, eps=grid)
    np.testing.assert_array_equal(curve.eps, grid)
    for e, s, sx, sy in zip(grid, curve.similarity, curve.size_x, curve.size_y):
        m = repmatch.maximum_match(X, Y, eps=e)
        assert (len(m.x), len(m.y)) == (sx, sy)
        assert m.similarity == s
    order = np.argsort(grid)
    assert np.all(np.diff(curve.similarity[order]) >= 0)
    assert curve.similarity.max() > curve.similarity.min()  # the data are not trivial
    assert np.asarray(curve).shape == (len(grid),)


def test_max_epsilon_is_the_smallest_eps_matching_everything():
    X, Y = relu_layers(n_samples=2000, n_x=30, n_y=30, shared_dim=8, private_dim=8, rng=3)
    me = repmatch.max_epsilon(X, Y, method="qr")
    full = repmatch.maximum_match(X, Y, eps=me, method="qr")
    assert full.size == 60
    below = repmatch.maximum_match(X, Y, eps=me - 1e-9, method="qr")
    assert below.size < 60


def test_minimal_epsilon_is_exact():
    X, Y = relu_layers(n_samples=2000, n_x=40, n_y=40, shared_dim=8, private_dim=8, rng=11)
    for k in (1, 5, 20, 40):
        eps, m = repmatch.minimal_epsilon(X, Y, min_size=k, method="qr")
        assert min(len(m.x), len(m.y)) >= k
        again = repmatch.maximum_match(X, Y, eps=eps, method="qr")
        np.testing.assert_array_equal(again.x, m.x)
        if eps > 0:
            below = repmatch.maximum_match(X, Y, eps=eps - 1e-9, method="qr")
            assert min(len(below.x), len(below.y)) < k
    with pytest.raises(ValueError, match="min_size=41"):
        repmatch.minimal_epsilon(X, Y, min_size=41)
    with pytest.raises(ValueError, match="min_size"):
        repmatch.minimal_epsilon(X, Y, min_size=0)


def test_minimal_epsilon_zero_for_exact_match():
    X, Y, _ = planted_subspace(n_samples=1000, rng=2)
    eps, m = repmatch.minimal_epsilon(X, Y, min_size=20)
    assert eps == 0.0 and m.size == 40


def _offset_pair(delta, method, n=400, seed=0):
    """x and y = x + delta * u with u a unit vector orthogonal to x: relative distance ~ delta."""
    g = np.random.default_rng(seed)
    x = g.standard_normal(n)
    x /= np.linalg.norm(x)
    u = g.standard_normal(n)
    u -= (u @ x) * x
    u /= np.linalg.norm(u)
    y = x + delta * u
    return x[:, None], y[:, None]


@pytest.mark.parametrize("method, tol", [("gram", GRAM_TOL), ("qr", QR_TOL)])
def test_exact_tolerance_at_its_edge(method, tol):
    X, Y = _offset_pair(0.5 * tol, method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)
        assert repmatch.maximum_match(X, Y, eps=0.0, method=method).size == 2
        X, Y = _offset_pair(2.0 * tol, method)
        assert repmatch.maximum_match(X, Y, eps=0.0, method=method).size == 0
        # an explicit tol overrides the default in both directions
        assert repmatch.maximum_match(X, Y, eps=0.0, method=method, tol=4 * tol).size == 2


def test_the_inequality_is_not_strict_on_exact_data():
    # x = (3, 1, 1, 1), y = e1: dist(x, span y) = sqrt(3) = |x| / 2 exactly, so ({x}, {y}) is a
    # 0.5-match (non-strict) and no 0.4999...-match. No float bound can settle a zero margin: the
    # exact tier does, on the raw data.
    X = np.array([[3.0], [1.0], [1.0], [1.0]] * 3)
    Y = np.array([[1.0], [0.0], [0.0], [0.0]] * 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RepmatchWarning)
        for method in ("gram", "qr"):
            warnings.filterwarnings("ignore", message="only .* samples", category=RepmatchWarning)
            assert repmatch.maximum_match(X, Y, eps=0.5, method=method).size == 2
            assert repmatch.maximum_match(X, Y, eps=np.nextafter(0.5, 0), method=method).size == 0


def test_a_margin_inside_the_bound_without_raw_data_is_uncertain():
    # Geometry by hand (no raw data): a = (c, s), b = (1, 0): the distance of a to span(b) is s.
    def geo(s):
        F = np.array([[np.sqrt(1 - s * s), 1.0], [s, 0.0]])
        return Geometry(space=FactorSpace(F, QR_TOL), n_x=1, n_y=1, live=np.array([True, True]), tol=QR_TOL,
                        n_samples=1000)

    assert repmatch.maximum_match(geo(0.25), eps=0.25 + 1e-9).size == 2
    assert repmatch.maximum_match(geo(0.25 + 1e-9), eps=0.25).size == 0
    with pytest.warns(RepmatchWarning, match="could not be decided"):
        m = repmatch.maximum_match(geo(0.25), eps=0.25)
    assert m.size == 0 and m.uncertain_x.tolist() == [0] and m.uncertain_y.tolist() == [0]
    assert m.similarity_bounds == (0.0, 1.0) and not m.certified


def test_single_pair_condition_is_the_cosine(rng):
    # spec section 1: ({x}, {y}) is an ε-match iff |cos| >= sqrt(1 - ε^2)
    x = rng.standard_normal(300)
    u = rng.standard_normal(300)
    u -= (u @ x) / (x @ x) * x
    for angle_sin in (0.1, 0.3):
        y = np.sqrt(1 - angle_sin**2) * x / np.linalg.norm(x) + angle_sin * u / np.linalg.norm(u)
        assert repmatch.maximum_match(x[:, None], y[:, None], eps=angle_sin + 1e-6).size == 2
        assert repmatch.maximum_match(x[:, None], y[:, None], eps=angle_sin - 1e-6).size == 0


def test_reduction_argument_forms(rng):
    X, Y, _ = planted_subspace(n_samples=800, rng=0)
    r = repmatch.Reduction.from_arrays(X, Y)
    assert repmatch.maximum_match(r, eps=0.2).size == 40
    with pytest.raises(ValueError, match="Y must be omitted"):
        repmatch.maximum_match(r, Y, eps=0.2)
    with pytest.raises(ValueError, match="Y is required"):
        repmatch.maximum_match(X, eps=0.2)
    with pytest.raises(ValueError, match="method='qr' does not apply"):
        repmatch.maximum_match(r, eps=0.2, method="qr")
