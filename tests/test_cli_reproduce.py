"""``repmatch reproduce`` and ``repmatch report`` on the command line."""

import json
import os
import shutil

import pytest

pytest.importorskip("torch")

from repmatch.cli import main  # noqa: E402
from conftest import TINY_REPRODUCE  # noqa: E402


def _argv(out):
    t = TINY_REPRODUCE
    return ["reproduce", "--arch", t["arch"], "--dataset", t["dataset"], "--seeds", *map(str, t["seeds"]),
            "--epochs", str(t["epochs"]), "--width", str(t["width"]), "--n-train", str(t["n_train"]),
            "--n-test", str(t["n_test"]), "--permutations", str(t["permutations"]),
            "--sample-rows", str(t["sample_rows"]), "--out", str(out), "--no-progress"]


def test_reproduce_then_report(tiny_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(tiny_run[0] / "nets", out / "nets")  # reuse the trained networks; measures recomputed
    # The CLI uses the default alphas / clusters, so its numbers are its own; check the files and the reuse of nets.
    assert main([a for a in _argv(out) if a != "--no-progress"]) == 0  # progress on, stderr not a terminal
    err = capsys.readouterr().err
    assert "report.html" in err and "results.json" in err
    assert "[reproduce]" in err and "\x1b" not in err and "\r" not in err  # plain lines: no bars in a log
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["permutations"] == TINY_REPRODUCE["permutations"]
    assert not any(k == "train" for k in res["provenance"].get("seconds_by_unit", {}))  # nothing retrained
    page = out / "report.html"
    assert page.stat().st_size > 10000
    assert main(_argv(out)) == 0  # everything cached
    assert "0 units computed" in capsys.readouterr().err
    shutil.rmtree(out / "figures")
    shutil.rmtree(out / "tables")
    os.remove(page)
    assert main(["report", str(out)]) == 0
    assert page.exists() and (out / "figures" / "similarity_vs_depth.svg").exists()
    assert (out / "tables" / "similarity.csv").exists()


@pytest.mark.parametrize("extra, message", [
    (["--arch", "resnet7"], "--arch: arch must be one of"),
    (["--dataset", "imagenet"], "--dataset: dataset must be one of"),
    (["--seeds", "0"], "--seeds: seeds must list at least 2 seeds"),
    (["--epochs", "0"], "--epochs: epochs must be an integer >= 1"),
    (["--permutations", "0"], "--permutations"),
    (["--alpha", "2"], "--alpha: alpha must be a number in (0, 1)"),
])
def test_bad_arguments_name_the_option(extra, message, tmp_path, capsys):
    assert main(["reproduce", "--out", str(tmp_path / "x"), "--no-progress", *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_report_needs_results(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no results.json" in err and "repmatch reproduce --out" in err and "run:" not in err


def test_unknown_layer_names_the_option(tiny_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(tiny_run[0] / "nets", out / "nets")
    assert main(_argv(out) + ["--layers", "features.99"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("repmatch reproduce: error: --layers: unknown layer 'features.99'")
    assert len(err.strip().splitlines()) == 1
