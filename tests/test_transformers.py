"""The small transformers (vit-tiny, char-tiny) and the offline text corpus: shapes, seeding,
causality, padding, determinism of training, and `repmatch reproduce` end to end on a transformer."""

import hashlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
nn = torch.nn

from repmatch.nets import build_model, load_dataset, read_checkpoint, train  # noqa: E402
from repmatch.nets.text import TRAIN_SHARE, corpus_text, load_text_dataset  # noqa: E402
from repmatch.nets.transformers import comparison_layers, layer_labels  # noqa: E402

#: float64 forward passes of one model on the same tokens, differently padded, agree to this
#: (sums of different lengths: only rounding differs).
PAD_TOL = 1e-10


def vit(seed=0, **kw):
    return build_model("vit-tiny", in_channels=1, image_size=28, num_classes=10, seed=seed, **kw)


def char(seed=0, **kw):
    return build_model("char-tiny", num_classes=20, seed=seed, **kw)


def test_vit_shapes_blocks_and_options():
    m = vit()
    assert m(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert len(m.blocks) == 4 and m.blocks[0].mlp.fc1.out_features == 128 and m.pos_embed.shape == (1, 17, 64)
    assert isinstance(m.blocks[0].norm1, nn.LayerNorm)  # pre-norm
    small = vit(depth=2, dim=48, heads=3, patch_size=4, mlp_ratio=4.0)
    assert len(small.blocks) == 2 and small.pos_embed.shape == (1, 50, 48) and small.blocks[1].mlp.fc1.out_features == 192
    assert small(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert vit(width=0.5).pos_embed.shape[-1] == 32
    assert comparison_layers(small) == ["blocks.0.mlp.act", "blocks.0", "blocks.1.mlp.act", "blocks.1"]
    assert layer_labels(small)["blocks.1.mlp.act"] == "block 2 MLP (GELU)"
    with pytest.raises(ValueError, match="multiple of patch_size"):
        vit(patch_size=5)
    with pytest.raises(ValueError, match="unknown"):
        vit(dropout=0.1)
    with pytest.raises(ValueError, match="takes no options"):
        build_model("smallcnn", depth=3)


def test_transformers_are_seeded():
    for make in (vit, char):
        a, b, c = make(0), make(0), make(1)
        sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].dim() > 1)


def test_char_model_is_causal():
    m = char().eval()
    ids = torch.randint(0, 20, (2, 30), generator=torch.Generator().manual_seed(0))
    changed = ids.clone()
    changed[:, 20:] = (changed[:, 20:] + 1) % 20
    with torch.no_grad():
        a, b = m(ids), m(changed)
    assert torch.equal(a[:, :20], b[:, :20])
    assert not torch.allclose(a[:, 20:], b[:, 20:])


@pytest.mark.parametrize("side", ["left", "right"])
def test_char_model_padding_leaves_valid_positions_unchanged(side):
    m = char().double().eval()
    ids = torch.randint(0, 20, (1, 12), generator=torch.Generator().manual_seed(1))
    pad = torch.zeros(1, 7, dtype=torch.long)
    padded = torch.cat([pad, ids], 1) if side == "left" else torch.cat([ids, pad], 1)
    mask = torch.cat([torch.zeros(1, 7), torch.ones(1, 12)], 1) if side == "left" else \
        torch.cat([torch.ones(1, 12), torch.zeros(1, 7)], 1)
    with torch.no_grad():
        ref = m(ids)
        out = m(padded, attention_mask=mask)
        out = out[:, 7:] if side == "left" else out[:, :12]
    assert torch.isfinite(out).all()
    assert (out - ref).abs().max() < PAD_TOL


def test_context_limit():
    with pytest.raises(ValueError, match="context"):
        char(context=8)(torch.zeros(1, 9, dtype=torch.long))


def test_text_corpus_is_offline_deterministic_and_split():
    text = corpus_text()
    assert len(text) > 100_000 and all(32 <= ord(c) < 127 or c in "\n\t" for c in text)
    d = load_text_dataset(context=32, n_test=10)
    assert d.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert len(d.train_ids) == int(len(text) * TRAIN_SHARE) and d.decode(d.train_ids[:200]) == text[:200]
    assert d.decode(d.test_ids) == text[len(d.train_ids):]
    assert d.num_classes == len(set(text)) and list(d.vocab) == sorted(d.vocab)
    x, y = next(iter(d.loader("test", batch_size=4)))
    assert x.shape == (4, 32) and torch.equal(x[:, 1:], y[:, :-1])  # targets are the next characters
    assert d.decode(x[1]) == text[len(d.train_ids) + 32: len(d.train_ids) + 64]
    a = [xb for xb, _ in d.loader("train", batch_size=64, seed=3, epoch=1)]
    b = [xb for xb, _ in d.loader("train", batch_size=64, seed=3, epoch=1)]
    c = [xb for xb, _ in d.loader("train", batch_size=64, seed=3, epoch=2)]
    assert all(torch.equal(p, q) for p, q in zip(a, b)) and not torch.equal(a[0], c[0])
    assert sum(len(t) for t in a) == d.n_train
    assert np.array_equal(d.encode("def"), [d.vocab.index(ch) for ch in "def"])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        d.encode("\u00e9")
    with pytest.raises(ValueError, match="test windows"):
        load_text_dataset(context=32, n_test=10**7)
    assert load_dataset("python-docs", n_test=3).y_test.shape == (3,)


def test_char_model_trains_deterministically_and_resumes(tmp_path):
    data = load_text_dataset(context=16, n_train=256, n_test=16)
    kw = dict(data=data, epochs=2, batch_size=64, progress=False)
    a = train("char-tiny", seed=0, out=tmp_path / "a", **kw)
    stop = {"n": 0}

    def interrupt(record):
        stop["n"] += 1
        if stop["n"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train("char-tiny", seed=0, out=tmp_path / "b", callback=interrupt, **kw)
    b = train("char-tiny", seed=0, out=tmp_path / "b", **kw)
    assert b.resumed_from == 1 and a.history[-1]["train_loss"] == b.history[-1]["train_loss"]
    sa = read_checkpoint(a.best_checkpoint)["model"]
    sb = read_checkpoint(b.best_checkpoint)["model"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    ck = read_checkpoint(a.last_checkpoint)
    assert ck["config"]["optimizer"] == "adamw" and ck["model_kwargs"]["context"] == 16
    assert a.history[-1]["train_loss"] < np.log(data.num_classes)  # it learned something beyond uniform


def test_arch_and_data_must_fit(tmp_path):
    with pytest.raises(ValueError, match="char-tiny is the text model"):
        train("char-tiny", "digits", epochs=1, out=tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="text datasets are for char-tiny"):
        train("vit-tiny", "python-docs", epochs=1, out=tmp_path / "y", progress=False)


def test_cli_train_and_extract_text_checkpoints(tmp_path, capsys):
    from repmatch.cli import main
    from repmatch.io import load_reductions

    out = tmp_path / "nets"
    assert main(["train", "--arch", "char-tiny", "--dataset", "python-docs", "--seeds", "0", "1", "--epochs", "1",
                 "--n-train", "64", "--n-test", "8", "--out", str(out), "--quiet"]) == 0
    ck = [str(out / f"seed{s}" / "best.pt") for s in (0, 1)]
    red = tmp_path / "r.npz"
    assert main(["extract", "--checkpoint", ck[0], "--checkpoint", ck[1], "--layers", "blocks.1", "blocks.1.mlp.act",
                 "--n-images", "5", "--out", str(red), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "sequence: follows blocks.1.mlp.fc2 (Linear)" in printed
    reds, meta = load_reductions(red)
    assert reds["blocks.1"].n_samples == 5 * 64 and reds["blocks.1.mlp.act"].n_x == 128
    assert meta["seq_mode"] == "tokens"
    assert main(["extract", "--checkpoint", ck[0], "--checkpoint", ck[1], "--layers", "blocks.1", "--seq-mode", "last",
                 "--n-images", "5", "--out", str(red), "--quiet"]) == 0
    assert load_reductions(red)[0]["blocks.1"].n_samples == 5


def test_reproduce_on_a_vision_transformer(tmp_path):
    """`repmatch reproduce --arch vit-tiny` end to end at toy size: every measure on every block
    output and MLP activation, nulls beside them, layers labelled by block, report built."""
    pytest.importorskip("matplotlib")
    from repmatch.nets.datasets import DatasetNotFoundError
    from repmatch.reproduce import reproduce

    try:
        load_dataset("fashion-mnist", n_train=2, n_test=2)
    except DatasetNotFoundError:
        import os

        if os.environ.get("CI"):
            raise
        pytest.skip("Fashion-MNIST (Debian dataset-fashion-mnist) not installed")
    # Toy size (48 images): simple matches only on the 64-unit block outputs (on few samples per neuron
    # the approximate search is slow), one LASSO penalty.
    res = reproduce("vit-tiny", "fashion-mnist", seeds=(0, 1), epochs=1, n_train=256, n_test=48, permutations=2,
                    sample_rows=400, alphas=(1e-2,), n_clusters=3, simple_max_units=130, simple_eps=0.1,
                    out=str(tmp_path / "run"), progress=False)
    names = [L["name"] for L in res["layers"]]
    assert names == ["blocks.0.mlp.act", "blocks.0", "blocks.1.mlp.act", "blocks.1", "blocks.2.mlp.act", "blocks.2",
                     "blocks.3.mlp.act", "blocks.3"]
    assert [L["label"] for L in res["layers"]][:2] == ["block 1 MLP (GELU)", "block 1 output"]
    assert all(L["layout"] == "sequence" for L in res["layers"])
    assert res["layers"][1]["n_samples"] == 48 * 17  # every token of every test image
    units = res["results"][0]["layers"]["blocks.1"]
    for name in ("subspace", "simple", "alignment", "reference", "untrained", "shuffled", "sparse", "clusters", "mi"):
        assert name in units
    assert "n_matches" in units["simple"] and "skipped" in res["results"][0]["layers"]["blocks.1.mlp.act"]["simple"]
    # the in-memory sample takes ceil(400 / 48) = 9 tokens of each of the 48 test images
    assert units["shuffled"]["n_rows"] == 48 * 9 and len(units["untrained"]["curve"]["similarity"]) == len(res["eps_grid"])
    assert "AdamW" in res["recipe"]
    assert len(res["heatmap"]["matrix"]) == 8
    page = (tmp_path / "run" / "report.html").read_text()
    assert "block 4 output" in page and "every token of every test input is a sample" in page


def test_reproduce_refuses_a_text_model_on_images(tmp_path):
    from repmatch.reproduce import ReproduceConfig

    with pytest.raises(ValueError, match="does not fit arch"):
        ReproduceConfig(arch="char-tiny", dataset="digits")
    with pytest.raises(ValueError, match="does not fit arch"):
        ReproduceConfig(arch="vit-tiny", dataset="python-docs")
