"""``repmatch compare --measures``: the measures module and its output (table and JSON)."""

import json

import numpy as np
import pytest

import repmatch
from repmatch import Reduction
from repmatch.cli import _measures, main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("acts")
    g = np.random.default_rng(0)
    X = np.maximum(g.standard_normal((1500, 10)), 0)
    Y = np.maximum(X[:, ::-1] + 0.5 * g.standard_normal((1500, 10)), 0)
    np.savez(d / "a.npz", fc=X)
    np.savez(d / "b.npz", fc=Y)
    from repmatch import io

    io.save_reductions(d / "red.npz", {"fc": Reduction.from_arrays(X, Y)})
    return d, X, Y


def test_available_and_default_are_consistent():
    assert set(_measures.DEFAULT) <= set(_measures.AVAILABLE)
    assert "subspace" not in _measures.AVAILABLE
    assert {"semi", "bipartite", "mi", "sparse", "clusters", "cka", "pwcca", "svcca", "procrustes"} <= set(_measures.AVAILABLE)


def test_all_measures_table_and_json_match_the_api(files, tmp_path, capsys):
    d, X, Y = files
    out = tmp_path / "r.json"
    rc = main(["compare", str(d / "a.npz"), str(d / "b.npz"), "--measures", *_measures.AVAILABLE, "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    for label in ("semi-matching", "bipartite matching", "mutual information", "sparse prediction",
                  "spectral clusters", "linear CKA", "SVCCA", "PWCCA", "Procrustes distance"):
        assert label in text
    res = json.loads(out.read_text())["layers"]["fc"]
    assert res["bipartite"]["mean"] == pytest.approx(repmatch.bipartite_match(X, Y).mean, abs=1e-12)
    assert res["bipartite"]["agree"] == 10
    assert res["cka"]["value"] == pytest.approx(repmatch.linear_cka(X, Y).value, abs=1e-12)
    assert res["cka"]["debiased"]["value"] == pytest.approx(repmatch.debiased_linear_cka(X, Y).value, abs=1e-12)
    assert res["procrustes"]["larger_is_more_similar"] is False
    assert res["mi"]["measure"] == "mi" and res["mi"]["agree"] == 10
    assert len(res["sparse"]["mutual_pairs"]) == len(repmatch.sparse.DEFAULT_ALPHAS)
    assert res["sparse"]["x_to_y"]["held_out"] is True
    assert res["clusters"]["n_clusters"] == 8


def test_default_set_works_from_a_reductions_file(files, capsys):
    d, X, Y = files
    assert main(["compare", str(d / "red.npz")]) == 0
    text = capsys.readouterr().out
    assert "subspace match" in text and "linear CKA" in text and "debiased" not in text


def test_row_measures_from_reduction_only_raise_naming_the_measure(files, capsys):
    d, X, Y = files
    r = Reduction.from_arrays(X, Y)
    with pytest.raises(ValueError, match="'mi' needs the activations"):
        _measures.compute("mi", "fc", None, None, r, {"seed": 0})
    assert main(["compare", str(d / "red.npz"), "--measures", "mi"]) == 2
    assert "'mi'" in capsys.readouterr().err
    # moment measures work from the reduction alone, sparse without held-out rows
    data, lines = _measures.compute("sparse", "fc", None, None, r, {"seed": 0, "alphas": [0.0, 0.01]})
    assert data["x_to_y"]["held_out"] is False and any("training FVU" in s for s in lines)


def test_permutation_option_and_unknown_measure(files):
    d, X, Y = files
    data, lines = _measures.compute("cka", "fc", X, Y, Reduction.from_arrays(X, Y), {"seed": 1, "permutations": 19})
    assert data["permutation_test"]["p_value"] == pytest.approx(1 / 20)
    assert any("permutation null" in s for s in lines)
    with pytest.raises(ValueError, match="unknown measure"):
        _measures.compute("cosine", "fc", X, Y, None, {})
