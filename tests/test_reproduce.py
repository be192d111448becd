"""The reproduce pipeline: results.json complete and consistent with direct API calls; caching and resume."""

import json
import os
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import repmatch  # noqa: E402
from repmatch import reproduce as rp  # noqa: E402
from conftest import TINY_REPRODUCE  # noqa: E402

UNITS = ("subspace", "simple", "alignment", "reference", "untrained", "shuffled", "sparse", "clusters", "mi", "soft",
         "calibration", "simple_nulls")


def test_results_json_has_every_number(tiny_run):
    out, res = tiny_run
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == res
    assert res["format"] == rp.RESULTS_FORMAT
    assert res["config"]["arch"] == "smallcnn" and res["config"]["seeds"] == [0, 1]
    assert res["pairs"] == [[0, 1]] and set(res["networks"]) == {"0", "1"}
    assert {"repmatch", "numpy", "scipy", "torch"} <= set(res["versions"])
    assert set(rp.AUTHORS_EPS) <= set(res["eps_grid"]) and len(res["eps_grid"]) >= 40
    assert res["eps_grid"][0] == 0 and max(res["eps_grid"]) < 1  # the whole curve on [0, 1)
    assert res["data"]["images"] == "all"  # digits: every image, not only the 359 test images
    assert res["significance"] == {"alpha": 0.05, "n_permutations": 3, "min_p": 0.25, "testable": False}
    layers = [L["name"] for L in res["layers"]]
    assert len(layers) == 5  # smallcnn: 4 conv ReLUs + 1 FC ReLU
    for layer in layers:
        unit = res["results"][0]["layers"][layer]
        assert set(UNITS) <= set(unit)
        s = unit["subspace"]
        assert len(s["similarity"]) == len(res["eps_grid"]) and 0 <= s["max_epsilon"] <= 1
        assert np.all(np.diff(s["similarity"]) >= 0)  # monotone in ε
        assert len(unit["untrained"]["curve"]["similarity"]) == len(res["eps_grid"])
        curve = repmatch.CurveNull.from_dict(unit["shuffled"]["curve"])
        assert curve.null.shape == (3, len(res["eps_grid"])) and unit["shuffled"]["n_permutations"] == 3
        tests = {k: repmatch.PermutationResult.from_dict(d) for k, d in unit["shuffled"]["statistics"].items()}
        assert 0 <= tests["bipartite_match"].p_value <= 1
        for stat in ("eps_50", "max_epsilon", "area", "soft_distance"):  # every summary has its shuffled null
            t = tests[stat]
            assert t.n_permutations == 3 and t.null.shape == (3,) and (np.isnan(t.p_value) or t.p_value >= 0.25)
        for stat in ("eps_50", "max_epsilon", "area"):  # ... and its untrained null
            assert stat in unit["untrained"]["curve"] and stat in s
        assert s["area_low"] <= s["area"] <= s["area_high"]
        cal = unit["calibration"]
        assert repmatch.RotationBaseline.from_dict(cal["rotation"]).n_rotations == 3
        boot = {k: repmatch.BootstrapResult.from_dict(d) for k, d in cal["bootstrap"].items()}
        assert all(b.n_boot == 20 and b.n_groups == 260 and b.samples.shape == (20,) for b in boot.values())
        b = boot["bipartite_match"]
        assert b.low <= b.high and b.observed == pytest.approx(tests["bipartite_match"].observed)
        # every unit reads back as the measures' result objects
        assert repmatch.BipartiteMatch.from_dict(unit["alignment"]["bipartite"]).n_x == s["n_x"]
        assert repmatch.SoftMatch.from_dict(unit["soft"]).n_y == s["n_y"]
        assert repmatch.ClusterResult.from_dict(unit["clusters"]).labels_x.shape == (s["n_x"],)
    heat = res["heatmap"]
    assert heat["layers"] == layers and np.array(heat["matrix"]).shape == (5, 5)
    assert np.array(heat["untrained_matrix"]).shape == (5, 5) and np.array(heat["shuffled_matrix"]).shape == (5, 5)
    first = res["results"][0]["layers"][layers[0]]
    assert "sparse_nulls" in first and {"untrained", "shuffled"} <= set(first["sparse_nulls"])


@pytest.mark.filterwarnings("ignore::repmatch.RepmatchWarning")
def test_numbers_match_direct_api_calls(tiny_run):
    """Recompute one pair's measures straight from the checkpoints with the public API."""
    from repmatch.activations import reduce_pair
    from repmatch.nets import BatchLoader, build_model, load_checkpoint, load_dataset

    out, res = tiny_run
    ma, info = load_checkpoint(out / res["networks"]["0"]["checkpoint"])
    mb, _ = load_checkpoint(out / res["networks"]["1"]["checkpoint"])
    d = info["data"]
    data = load_dataset("digits", image_size=d["image_size"], n_train=200, n_test=60)
    mean, std = np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32)
    x = np.concatenate([data.x_test, data.x_train])  # images="all": test images first, then training images
    loader = BatchLoader(x, np.zeros(len(x), dtype=np.int64), mean, std, batch_size=256)
    reds = reduce_pair(ma, mb, loader)
    untrained = build_model(seed=1001, **info["model_kwargs"]).eval()
    reds_u = reduce_pair(ma, untrained, loader)
    grid = res["eps_grid"]
    for layer, r in reds.items():
        unit = res["results"][0]["layers"][layer]
        curve = repmatch.similarity_curve(r, eps=grid)
        np.testing.assert_allclose(unit["subspace"]["similarity"], curve.similarity, atol=1e-12)
        assert unit["subspace"]["max_epsilon"] == pytest.approx(repmatch.max_epsilon(r), abs=1e-6)
        if unit["subspace"]["eps_50"] is not None:
            k = unit["subspace"]["eps_50_min_size"]
            assert unit["subspace"]["eps_50"] == pytest.approx(repmatch.minimal_epsilon(r, min_size=k)[0], abs=1e-6)
        assert repmatch.SoftMatch.from_dict(unit["soft"]).distance == pytest.approx(repmatch.soft_match(r).distance,
                                                                                   abs=1e-8)
        b = repmatch.bipartite_match(r)
        ours = repmatch.BipartiteMatch.from_dict(unit["alignment"]["bipartite"])
        assert ours.mean == pytest.approx(b.mean, abs=1e-8)
        assert ours.semi.mean == pytest.approx(b.semi.mean, abs=1e-8)
        assert ours.agree == b.agree and ours.x.tolist() == b.x.tolist() and ours.y.tolist() == b.y.tolist()
        cka = repmatch.Score.from_dict(unit["reference"]["linear_cka"])
        assert cka.value == pytest.approx(repmatch.linear_cka(r).value, abs=1e-8)
        sm = repmatch.simple_matches(r, eps=0.25)
        assert sorted(repmatch.SimpleMatches.from_dict(unit["simple"]).sizes.tolist()) == sorted(sm.sizes.tolist())
        ru = reds_u[layer]
        assert unit["untrained"]["linear_cka"]["value"] == pytest.approx(repmatch.linear_cka(ru).value, abs=1e-8)
        np.testing.assert_allclose(unit["untrained"]["curve"]["similarity"],
                                   repmatch.similarity_curve(ru, eps=grid).similarity, atol=1e-12)


def _diff(a, b, path="", tol=0.0):
    """Paths at which two JSON-like values differ (floats within ``tol``, relative or absolute)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [p for k in sorted(set(a) | set(b)) for p in _diff(a.get(k), b.get(k), f"{path}/{k}", tol)]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b)) for p in _diff(x, y, f"{path}[{i}]", tol)]
    if tol and isinstance(a, float) and isinstance(b, float):
        return [] if abs(a - b) <= tol * max(1.0, abs(a), abs(b)) else [path]
    return [] if a == b else [path]


def _copy_run(src, dst):
    shutil.copytree(src, dst)
    return str(dst)


def test_second_run_computes_nothing_and_changes_recompute_only_dependents(tiny_run, tmp_path):
    out = _copy_run(tiny_run[0], tmp_path / "run")
    kw = dict(TINY_REPRODUCE, out=out, report=False)
    again = rp.reproduce(**kw)
    assert again["provenance"]["computed"] == []
    assert _diff(again["results"], tiny_run[1]["results"]) == []
    changed = rp.reproduce(**{**kw, "simple_eps": 0.3})
    computed = changed["provenance"]["computed"]
    assert computed and all(k.startswith(("simple/", "simple_nulls/")) for k in computed)
    assert len(computed) == 2 * len(changed["layers"])
    assert all(changed["results"][0]["layers"][L]["simple"]["eps"] == 0.3 for L in again["results"][0]["layers"])
    perm = rp.reproduce(**{**kw, "simple_eps": 0.3, "permutations": 4})
    assert perm["provenance"]["computed"] and all(k.startswith("shuffled/") for k in perm["provenance"]["computed"])


def test_interrupted_run_finishes_only_the_remaining_units(tiny_run, tmp_path, monkeypatch):
    out = str(tmp_path / "run")
    shutil.copytree(tiny_run[0] / "nets", os.path.join(out, "nets"))  # trained networks, empty cache
    kw = dict(TINY_REPRODUCE, out=out, report=False)
    calls = {"n": 0}
    from repmatch.pipeline import units

    real = units.sparse_unit

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(units, "sparse_unit", flaky)
    with pytest.raises(KeyboardInterrupt):
        rp.reproduce(**kw)
    monkeypatch.setattr(units, "sparse_unit", real)
    done_before = {f for f in os.listdir(os.path.join(out, "cache")) if f.endswith(".json")}
    assert done_before and not os.path.exists(os.path.join(out, "results.json"))
    res = rp.reproduce(**kw)
    computed = res["provenance"]["computed"]
    assert computed and not any(k.replace("/", "__") + ".json" in done_before for k in computed)
    assert "sparse/pair0-1/" + res["layers"][2]["name"] in computed
    assert "subspace/pair0-1/" + res["layers"][0]["name"] not in computed
    # Same numbers as the uninterrupted run (up to the last bits: other tests may change torch's thread count,
    # which changes the order of float sums in the forward passes).
    assert _diff(res["results"], tiny_run[1]["results"], tol=1e-6) == []


@pytest.mark.parametrize("kwargs, message", [
    (dict(arch="resnet7"), "arch must be one of"),
    (dict(dataset="imagenet"), "dataset must be one of"),
    (dict(seeds=(3,)), "at least 2 seeds"),
    (dict(seeds=(1, 1)), "distinct"),
    (dict(epochs=0), "epochs must be an integer >= 1"),
    (dict(simple_eps=1.5), "simple_eps"),
    (dict(permutations=0), "permutations"),
    (dict(eps_grid=(0.1, 1.2)), "eps_grid"),
])
def test_bad_configuration_names_the_argument(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        rp.ReproduceConfig(out=str(tmp_path), **kwargs)


def test_small_cnn_alias_and_defaults():
    cfg = rp.ReproduceConfig()
    assert cfg.arch == "smallcnn" and cfg.seeds == (0, 1, 2) and cfg.epochs == 10 and cfg.simple_eps == 0.25
    assert cfg.out == os.path.join("runs", "smallcnn-digits")
    assert set(rp.AUTHORS_EPS) <= set(cfg.eps_grid)


def test_load_results_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.json"):
        rp.load_results(tmp_path)
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(ValueError, match="not a repmatch reproduce results file"):
        rp.load_results(tmp_path)


@pytest.mark.filterwarnings("ignore::repmatch.RepmatchWarning")
def test_shuffled_null_equals_the_library_permutation_tests():
    """The pipeline's one-reduction-per-permutation null gives the library's numbers for the same rng."""
    g = np.random.default_rng(3)
    Z = g.standard_normal((400, 3))
    X = np.maximum(Z @ g.standard_normal((3, 6)) + 0.5 * g.standard_normal((400, 6)), 0)
    Y = np.maximum(Z @ g.standard_normal((3, 5)) + 0.5 * g.standard_normal((400, 5)), 0)
    eps = [0.1, 0.3, 0.5]
    from repmatch.pipeline.units import shuffled_unit

    out = shuffled_unit(X, Y, eps, 7, seed=11)
    ours = repmatch.CurveNull.from_dict(out["curve"])
    curve = repmatch.similarity_curve_null(X, Y, eps=eps, n_permutations=7, rng=11)
    np.testing.assert_allclose(ours.null, curve.null, atol=1e-12)
    np.testing.assert_allclose(ours.p_value, curve.p_value)
    for name in ("semi_match", "bipartite_match", "linear_cka", "soft_match_distance"):
        ref = repmatch.permutation_test(name, X, Y, n_permutations=7, rng=11)
        t = repmatch.PermutationResult.from_dict(out["statistics"][{"soft_match_distance": "soft_distance"}.get(name, name)])
        assert t.observed == pytest.approx(ref.observed, abs=1e-10)
        np.testing.assert_allclose(t.null, ref.null, atol=1e-10)
        assert t.alternative == ref.alternative and t.p_value == pytest.approx(ref.p_value)


def test_authors_eps_always_on_the_grid(tmp_path):
    cfg = rp.ReproduceConfig(out=str(tmp_path), eps_grid=(0.05, 0.4))
    assert cfg.eps_grid == tuple(sorted({0.05, 0.4, *rp.AUTHORS_EPS}))


def test_all_pairs_are_reduced_in_one_call_per_half(tmp_path, monkeypatch):
    """The reductions stage asks for every missing pair at once (so that a network can run once per
    batch for all its pairs), and a resumed run asks for nothing."""
    from repmatch.pipeline import reductions

    calls = []
    real = reductions.reduce_networks

    def spy(models, pairs, loader, lo, hi, *args, **kwargs):
        calls.append((sorted(map(str, models)), list(pairs), lo, hi))
        return real(models, pairs, loader, lo, hi, *args, **kwargs)

    monkeypatch.setattr(reductions, "reduce_networks", spy)
    kw = dict(TINY_REPRODUCE, seeds=(0, 1, 2), n_train=100, n_test=40, heatmap=False, n_boot=4, out=str(tmp_path),
              report=False)
    res = rp.reproduce(**kw)
    assert len(calls) == 4  # trained and untrained, two halves each
    trained = [c for c in calls if not any("untrained" in m for m in c[0])]
    assert len(trained) == 2 and all(c[1] == [(0, 1), (0, 2), (1, 2)] and c[0] == ["0", "1", "2"] for c in trained)
    null = [c for c in calls if c not in trained]
    assert all(c[1] == [(0, ("untrained", 1)), (0, ("untrained", 2)), (1, ("untrained", 2))] for c in null)
    assert {(c[2], c[3]) for c in calls} == {(0, res["data"]["split_for_sparse"][0]),
                                            (res["data"]["split_for_sparse"][0], res["data"]["n_test_used"])}
    calls.clear()
    again = rp.reproduce(**kw)
    assert calls == [] and again["provenance"]["computed"] == []
