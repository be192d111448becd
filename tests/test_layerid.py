"""Layer identification (Kornblith et al. 2019): scoring, ties, the fast CKA matrix, and the CLI end to end."""

import json

import numpy as np
import pytest

import repmatch
from repmatch.layerid import (DEFAULT_MEASURES, MEASURES, _credit, layer_identification, layer_matrix,
                              linear_cka_matrix)

pytestmark = pytest.mark.filterwarnings("ignore::repmatch.RepmatchWarning")


def _nets(k, n_layers=4, n=300, width=6, seed=0, shared=True):
    """k "networks": layer l of every network is a noisy ReLU read-out of one latent Z_l (shared=True)."""
    g = np.random.default_rng(seed)
    Z = [g.standard_normal((n, 3)) for _ in range(n_layers)]
    nets = []
    for _ in range(k):
        acts = {}
        for li in range(n_layers):
            z = Z[li] if shared else g.standard_normal((n, 3))
            acts[f"l{li}"] = np.maximum(z @ g.standard_normal((3, width + li)) + 0.3 * g.standard_normal((n, width + li)), 0)
        nets.append(acts)
    return nets


def test_shared_layers_are_identified_by_every_measure_family():
    res = layer_identification(_nets(3), ["linear_cka", "bipartite_match", "soft_match", "mms_area", "procrustes"])
    assert res.n_networks == 3 and len(res.pairs) == 6 and res.chance == 0.25
    for m in ("linear_cka", "bipartite_match", "soft_match", "procrustes"):
        assert res.accuracy[m] == 1.0, (m, res.accuracy[m])
    d = res.to_dict()
    json.dumps(d)
    assert len(d["matrices"]["linear_cka"]) == 6 and np.array(d["matrices"]["linear_cka"][0]).shape == (4, 4)
    assert "linear_cka" in res.table() and "99.3%" in res.table()


def test_unrelated_networks_score_near_chance():
    res = layer_identification(_nets(6, shared=False, seed=1), ["linear_cka", "semi_match"])
    for m in ("linear_cka", "semi_match"):
        assert res.accuracy[m] < 0.6  # chance is 0.25; identification of unrelated layers is luck


def test_asymmetric_measures_use_both_directions():
    nets = _nets(2, n_layers=3)
    res = layer_identification(nets, ["semi_match", "linear_cka"])
    ab, ba = res.matrices["semi_match"]
    direct = layer_matrix(nets[1], nets[0], ["semi_match"])["semi_match"]
    np.testing.assert_allclose(ba, direct)
    assert not np.allclose(ab.T, ba)  # semi-matching A->B is not B->A
    np.testing.assert_allclose(res.matrices["linear_cka"][1], res.matrices["linear_cka"][0].T)


def test_ties_get_fractional_credit():
    assert _credit(np.array([0.1, 0.1, 0.0]), 0, larger=True) == 0.5
    assert _credit(np.array([0.1, 0.1, 0.0]), 2, larger=True) == 0.0
    assert _credit(np.array([0.3, 0.1, 0.1]), 1, larger=False) == 0.5
    assert _credit(np.array([np.nan, 0.1]), 0, larger=True) == 0.0


def test_fast_cka_matrix_equals_the_reference_measure():
    nets = _nets(2, n_layers=3, n=120)
    M = linear_cka_matrix(nets[0], nets[1])
    perm = np.random.default_rng(0).permutation(120)
    P = linear_cka_matrix(nets[0], nets[1], perm=perm)
    for i, la in enumerate(nets[0]):
        for j, lb in enumerate(nets[1]):
            assert M[i, j] == pytest.approx(repmatch.linear_cka(nets[0][la], nets[1][lb]).value, abs=1e-12)
            assert P[i, j] == pytest.approx(repmatch.linear_cka(nets[0][la], nets[1][lb][perm]).value, abs=1e-12)


def test_every_measure_runs_and_has_a_direction():
    nets = _nets(2, n_layers=2, n=80, width=3)
    res = layer_identification(nets, list(MEASURES))
    assert set(res.accuracy) == set(MEASURES)
    assert all(0 <= a <= 1 for a in res.accuracy.values())
    assert "sparse_fvu" not in DEFAULT_MEASURES


@pytest.mark.parametrize("kwargs, message", [
    (dict(measures=["nope"]), "measures must be"),
    (dict(activations=[{"a": np.ones((5, 2))}]), "at least 2 networks"),
    (dict(activations=[{"a": np.ones((5, 2))}, {"a": np.ones((5, 2))}]), "at least 2 layers"),
    (dict(activations=[{"a": np.ones((5, 2)), "b": np.ones((4, 2))}, {"a": np.ones((5, 2)), "b": np.ones((5, 2))}]),
     "same rows"),
])
def test_bad_input(kwargs, message):
    kwargs.setdefault("activations", _nets(2, n_layers=2, n=20))
    with pytest.raises(ValueError, match=message):
        layer_identification(**kwargs)


def test_cli_layer_id_end_to_end(tmp_path, capsys):
    pytest.importorskip("torch")
    from repmatch.cli import main

    out = tmp_path / "lid"
    argv = ["benchmark", "layer-id", "--dataset", "digits", "--seeds", "2", "--epochs", "1", "--width", "0.25",
            "--n-train", "200", "--n-images", "60", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    for m in DEFAULT_MEASURES:
        assert m in text
    assert "chance: 20.0% (5 layers); 2 networks, 2 ordered pairs, 60 images" in text
    doc = json.loads((out / "layer-id.json").read_text())
    assert set(doc["result"]["accuracy"]) == set(DEFAULT_MEASURES) and doc["config"]["n_images"] == 60
    # networks are reused on a second run; a bad option is a one-line error naming it
    assert main(argv + ["--measures", "linear_cka"]) == 0
    assert main(["benchmark", "layer-id", "--seeds", "1", "--out", str(out)]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert main(["benchmark", "layer-id", "--dataset", "cifar10", "--out", str(out)]) == 2
    assert "--dataset: dataset must be one of digits, mnist, fashion-mnist" in capsys.readouterr().err
    assert main(["benchmark", "layer-id", "--measures", "nope", "--out", str(out)]) == 2
    assert "--measures" in capsys.readouterr().err
    assert main(argv + ["--min-accuracy", "0.99"]) == 2  # 1-epoch networks: none is that good
    assert "--min-accuracy: min_accuracy 0.99 leaves 0 network(s) of 2" in capsys.readouterr().err


def test_train_help_shows_single_percent(capsys):
    from repmatch.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "50% and 75%" in " ".join(text.split()) and "%%" not in text
