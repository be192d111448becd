"""`repmatch compare`: the table, JSON, example data, reductions files and clear errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

import repmatch
from repmatch.cli import main
from repmatch.io import save_reductions


def test_example_runs_and_json_matches_the_api(tmp_path, capsys):
    out = tmp_path / "res.json"
    assert main(["compare", "--example", "--eps", "0.2", "0.5", "--simple", "--json", str(out), "--measures", "subspace"]) == 0
    text = capsys.readouterr().out
    assert "layer hidden1" in text and "max_epsilon" in text and "samples/neuron" in text
    data = json.loads(out.read_text())
    from repmatch.cli.compare import example_paths

    a, b = (np.load(p) for p in example_paths())
    m = repmatch.maximum_match(a["hidden2"], b["hidden2"], eps=0.5)
    curve = data["layers"]["hidden2"]["subspace"]["similarity_curve"]
    assert curve["similarity"][1] == pytest.approx(m.similarity)
    assert curve["dead_x"] == m.dead_x.tolist()
    assert len(data["layers"]["hidden1"]["subspace"]["simple_matches"]) == 2


def test_npz_layers_and_npy_files(tmp_path, capsys):
    g = np.random.default_rng(0)
    X, Y = g.standard_normal((300, 5)), g.standard_normal((300, 4))
    np.savez(tmp_path / "a.npz", conv=X, fc=X[:, :2], only_a=X)
    np.savez(tmp_path / "b.npz", conv=Y, fc=Y[:, :3])
    assert main(["compare", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--eps", "0.3", "--measures", "subspace"]) == 0
    text = capsys.readouterr().out
    assert "layer conv" in text and "layer fc" in text and "only_a" not in text
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y)
    assert main(["compare", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--measures", "subspace"]) == 0


def test_reductions_file_is_a_complete_input(tmp_path, capsys):
    g = np.random.default_rng(1)
    X, Y = g.standard_normal((400, 5)), g.standard_normal((400, 4))
    save_reductions(tmp_path / "r.npz", {"conv1": repmatch.Reduction.from_arrays(X, Y)})
    assert main(["compare", str(tmp_path / "r.npz"), "--eps", "0.9", "--measures", "subspace"]) == 0
    text = capsys.readouterr().out
    assert "layer conv1" in text
    m = repmatch.maximum_match(X, Y, eps=0.9)
    assert f"{m.similarity:<12.4f}" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing_a.npy", "missing_b.npy"], "no such file: missing_a.npy"),
        (["--eps", "1.2", "--example"], r"--eps\[0\] must lie in \[0, 1\), got 1.2"),
        (["--example", "--layers", "conv9"], r"--layers: unknown layer\(s\) \['conv9'\]"),
        (["--example", "--measures", "nonsense"], r"unknown measure\(s\) \['nonsense'\]"),
    ],
)
def test_errors_are_clear(args, message, capsys):
    import re

    assert main(["compare", *args]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_shape_errors(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.ones((10, 3, 2)))
    np.save(tmp_path / "b.npy", np.ones((10, 3)))
    assert main(["compare", str(tmp_path / "a.npy"), str(tmp_path / "b.npy")]) == 2
    assert "has shape (10, 3, 2); activations must be 2-D" in capsys.readouterr().err
    np.save(tmp_path / "a.npy", np.ones((12, 3)))
    assert main(["compare", str(tmp_path / "a.npy"), str(tmp_path / "b.npy")]) == 2
    assert "A has 12 rows and B has 10" in capsys.readouterr().err
    np.savez(tmp_path / "c.npz", other=np.ones((10, 3)))
    np.savez(tmp_path / "d.npz", conv=np.ones((10, 3)))
    assert main(["compare", str(tmp_path / "c.npz"), str(tmp_path / "d.npz")]) == 2
    assert "share no layer name" in capsys.readouterr().err


def test_console_script_entry_point():
    res = subprocess.run([sys.executable, "-m", "repmatch", "compare", "--example", "--eps", "0.25", "--measures", "subspace"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "layer hidden2" in res.stdout


def test_permutation_null_beside_the_similarity(tmp_path, capsys):
    out = tmp_path / "n.json"
    assert main(["compare", "--example", "--layers", "hidden2", "--eps", "0.25", "--permutations", "9",
                 "--measures", "subspace", "bipartite", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "null mean" in text and text.count("warning:") == 1
    data = json.loads(out.read_text())["layers"]["hidden2"]
    null = data["subspace"]["permutation_null"]
    assert null["n_permutations"] == 9 and null["p_value"] == [0.1]  # 1 / (1 + 9): never reached by chance
    assert null["null_mean"][0] < data["subspace"]["similarity_curve"]["similarity"][0]
    assert data["bipartite"]["permutation_test"]["n_permutations"] == 9
    assert main(["compare", "--example", "--permutations", "-1"]) == 2


def test_a_missing_extra_is_a_one_line_error():
    code = "import sys; sys.modules['torch'] = None; from repmatch.cli import main; sys.exit(main(['reproduce']))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.startswith("repmatch reproduce: error:") and "needs PyTorch" in res.stderr
    assert "Traceback" not in res.stderr
