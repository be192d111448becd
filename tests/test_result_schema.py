"""The measures' result objects are the only schema: ``Cls.from_dict(r.to_dict())`` gives ``r`` back.

Results are computed for real on generated activations (hypothesis), then checked field by field,
directly and after a JSON round trip (also the one results.json uses: NaN and infinities written as
``null``).
"""

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import repmatch
from repmatch.layerid import LayerIdResult, layer_identification

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def layer_pairs(draw, max_units=6):
    """Activations of two layers sharing part of a latent space, some units dead or constant."""
    seed = draw(st.integers(0, 2**31 - 1))
    n = draw(st.integers(12, 40))
    nx, ny = draw(st.integers(1, max_units)), draw(st.integers(1, max_units))
    g = np.random.default_rng(seed)
    Z = g.standard_normal((n, 3))
    X = Z @ g.standard_normal((3, nx)) + draw(st.sampled_from([0.0, 0.1, 1.0])) * g.standard_normal((n, nx))
    Y = Z @ g.standard_normal((3, ny)) + draw(st.sampled_from([0.0, 0.1, 1.0])) * g.standard_normal((n, ny))
    X = np.maximum(X, 0.0) if draw(st.booleans()) else X
    if draw(st.booleans()):
        X[:, 0] = 0.0  # a dead unit
    if ny > 1 and draw(st.booleans()):
        Y[:, -1] = 2.5  # a constant unit
    return X, Y, seed


def _same(a, b, path="result"):
    """Field-by-field equality of two result objects (arrays: shape, dtype kind and values, NaN = NaN)."""
    if dataclasses.is_dataclass(a):
        assert type(a) is type(b), path
        for f in dataclasses.fields(a):
            _same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, (path, a.shape, b.shape)
        assert a.dtype.kind == b.dtype.kind or {a.dtype.kind, b.dtype.kind} <= {"i", "u"}, (path, a.dtype, b.dtype)
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), path
    elif isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), (path, sorted(a), sorted(b))
        for k in a:
            _same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and np.isnan(a):
        assert isinstance(b, float) and np.isnan(b), path
    else:
        assert a == b, (path, a, b)


def _jsonable(obj):
    """What results.json does to a dict: numbers stay, NaN and infinities become null."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _round_trips(r, **kw):
    cls = type(r)
    d = r.to_dict(**kw)
    _same(cls.from_dict(d).to_dict(**kw), d)
    back = cls.from_dict(json.loads(json.dumps(d)))
    if not kw:
        _same(back, r)  # everything the object holds is in its dict
    _same(back.to_dict(**kw), d)
    strict = cls.from_dict(json.loads(json.dumps(_jsonable(d), allow_nan=False)))
    _same(strict.to_dict(**kw), d)
    return back


@SETTINGS
@given(layer_pairs())
def test_subspace_results_round_trip(data):
    X, Y, _ = data
    curve = repmatch.similarity_curve(X, Y, eps=[0.0, 0.2, 0.5, 0.9])
    _round_trips(curve)
    _round_trips(repmatch.maximum_match(X, Y, eps=0.3))
    _round_trips(repmatch.simple_matches(X, Y, eps=0.3))


@SETTINGS
@given(layer_pairs())
def test_matching_results_round_trip(data):
    X, Y, seed = data
    b = _round_trips(repmatch.bipartite_match(X, Y))
    assert b.semi.mean == repmatch.semi_match(X, Y).mean
    _round_trips(repmatch.semi_match(X, Y))
    _round_trips(repmatch.correlation(X, Y))
    s = repmatch.soft_match(X, Y)
    back = _round_trips(s)
    assert np.array_equal(back.plan, s.plan) and back.partners() == s.partners()
    light = repmatch.SoftMatch.from_dict(s.to_dict(arrays=False))
    assert light.plan is None and light.distance == s.distance
    _round_trips(s, arrays=False)
    _round_trips(repmatch.rotation_baseline(X, Y, n_rotations=3, rng=seed))
    h = X.shape[0] // 2
    _round_trips(repmatch.heldout_match((X[:h], Y[:h]), (X[h:], Y[h:])))


@SETTINGS
@given(layer_pairs())
def test_reference_sparse_cluster_results_round_trip(data):
    X, Y, seed = data
    for name in ("linear_cka", "svcca", "procrustes"):
        try:
            score = getattr(repmatch, {"procrustes": "procrustes_distance"}.get(name, name))(X, Y)
        except ValueError:
            continue  # e.g. too few live units for CCA
        _round_trips(score)
    try:
        sp = repmatch.sparse_prediction(X, Y, alphas=[0.01, 0.1], rng=seed)
    except ValueError:  # a unit constant on the held-out rows
        sp = repmatch.sparse_prediction(X, Y, alphas=[0.01, 0.1], test_fraction=0.0)
    _round_trips(sp)
    _round_trips(sp, arrays=False)
    assert repmatch.SparsePrediction.from_dict(sp.to_dict(arrays=False)).x_to_y.weights is None
    if X.shape[1] + Y.shape[1] >= 4:
        c = repmatch.spectral_clusters(X, Y, n_clusters=2, n_random=5, rng=seed)
        _round_trips(c)
        _round_trips(repmatch.cluster_sweep(X, Y, n_clusters=[2, 3], n_random=3, rng=seed)) \
            if X.shape[1] + Y.shape[1] >= 6 else None


@SETTINGS
@given(layer_pairs(max_units=4), st.integers(2, 9))
def test_null_results_round_trip(data, n):
    X, Y, seed = data
    _round_trips(repmatch.permutation_test("semi_match", X, Y, n_permutations=n, rng=seed))
    _round_trips(repmatch.bootstrap_ci("bipartite_match", X, Y, n_boot=n, rng=seed))
    groups = np.arange(X.shape[0]) // 3
    _round_trips(repmatch.bootstrap_ci("semi_match", X, Y, n_boot=n, rng=seed, groups=groups))
    _round_trips(repmatch.similarity_curve_null(X, Y, eps=[0.1, 0.5], n_permutations=n, rng=seed))


def test_layer_identification_round_trips():
    g = np.random.default_rng(3)
    nets = []
    for _ in range(3):
        x = g.standard_normal((60, 4))
        nets.append({f"l{i}": np.maximum(x @ g.standard_normal((4, 5)) + 0.1 * g.standard_normal((60, 5)), 0)
                     for i in range(3)})
        nets[-1] = {k: v for k, v in nets[-1].items()}
    res = layer_identification(nets, ["linear_cka", "semi_match"])
    back = _round_trips(res)
    assert back.table() == res.table()
    assert isinstance(back, LayerIdResult)


@pytest.mark.parametrize("cls", [repmatch.BipartiteMatch, repmatch.SoftMatch, repmatch.PermutationResult,
                                 repmatch.RotationBaseline, repmatch.ClusterResult])
def test_from_dict_refuses_another_kind(cls):
    with pytest.raises(ValueError, match="kind"):
        cls.from_dict({"kind": "something_else"})
    with pytest.raises(ValueError, match="dict"):
        cls.from_dict([1, 2])
