"""Sequence-aware extraction: tokens as samples, seq modes, attention masks, layouts, and inputs as
people have them (dict batches, tuple/dict/dataclass outputs, NumPy, per-model preprocessing)."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
nn = torch.nn

import repmatch  # noqa: E402
from repmatch.activations import describe_layers, extract, reduce_pair, stream_pair  # noqa: E402
from repmatch.nets import build_model  # noqa: E402

#: float64 forward passes of the same tokens padded differently agree to this (only rounding differs).
PAD_TOL = 1e-10
#: Moments of reductions of the same rows fed in different batches/paddings agree to this.
MOMENT_TOL = 1e-9


class Tokens(nn.Module):
    """(batch, tokens) ids -> embedding -> Linear -> GELU -> Linear; mask accepted (and ignored:
    each token's activations depend on that token alone, so padding never changes them)."""

    def __init__(self, vocab=11, dim=6, hidden=9, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.emb = nn.Embedding(vocab, dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, input_ids, attention_mask=None):
        return self.fc2(self.act(self.fc1(self.emb(input_ids))))


def char64(seed=0):
    return build_model("char-tiny", num_classes=13, seed=seed, depth=2, dim=16, heads=2).double().eval()


def pad_batch(seqs, length, side="right", pad_id=0):
    ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), length, dtype=torch.long)
    for i, s in enumerate(seqs):
        s = torch.as_tensor(s)
        if side == "right":
            ids[i, :len(s)], mask[i, :len(s)] = s, 1
        else:
            ids[i, length - len(s):], mask[i, length - len(s):] = s, 1
    return {"input_ids": ids, "attention_mask": mask}


def random_seqs(rng, n, vocab, lo=1, hi=12):
    return [rng.integers(1, vocab, size=int(rng.integers(lo, hi + 1))) for _ in range(n)]


# ------------------------------------------------------------------------------------------ seq modes
@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 6), st.integers(0, 6))
def test_seq_modes_match_manual_computation(seed, n, extra):
    rng = np.random.default_rng(seed)
    m = Tokens().double()
    seqs = random_seqs(rng, n, 11)
    batch = pad_batch(seqs, max(map(len, seqs)) + extra)
    with torch.no_grad():
        full = m.act(m.fc1(m.emb(batch["input_ids"]))).numpy()
    valid = batch["attention_mask"].numpy().astype(bool)
    lens = valid.sum(1)
    got = {mode: extract(m, [batch], "act", seq_mode=mode)["act"] for mode in ("tokens", "cls", "mean", "last")}
    assert np.array_equal(got["tokens"], full[valid])
    assert np.array_equal(got["cls"], full[:, 0])
    assert np.array_equal(got["last"], full[np.arange(n), lens - 1])
    means = np.stack([full[i, :lens[i]].mean(0) for i in range(n)])
    assert np.allclose(got["mean"], means, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["tokens", "cls", "mean", "last", "sample:7"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_extraction_is_unchanged_by_padding(mode, side):
    """The same sequences padded to different lengths (and sides) give the same samples."""
    rng = np.random.default_rng(4)
    m = char64()
    seqs = random_seqs(rng, 9, 13, 2, 10)
    layers = ["blocks.0.mlp.act", "blocks.1"]
    runs = []
    for length in (10, 16, 23):
        batches = [pad_batch(seqs[:5], length, side), pad_batch(seqs[5:], length, side)]
        runs.append(extract(m, batches, layers, seq_mode=mode, sample_seed=3))
    for r in runs[1:]:
        for L in layers:
            assert r[L].shape == runs[0][L].shape
            assert np.max(np.abs(r[L] - runs[0][L])) < PAD_TOL
    n_tokens = sum(map(len, seqs))
    expected = {"tokens": n_tokens, "cls": 9, "mean": 9, "last": 9, "sample:7": 14}[mode]
    assert runs[0]["blocks.1"].shape == (expected, 16)
    # ... and the streamed reductions of two networks too
    b = char64(seed=1)
    reds = [reduce_pair(m, b, [pad_batch(seqs, L, side)], layers, seq_mode=mode) for L in (10, 23)]
    for L in layers:
        assert reds[0][L].n_samples == reds[1][L].n_samples == (7 if mode == "sample:7" else expected)  # one batch
        assert np.allclose(reds[0][L].mean, reds[1][L].mean, rtol=0, atol=MOMENT_TOL)
        assert np.allclose(reds[0][L].comoment, reds[1][L].comoment, rtol=0, atol=MOMENT_TOL)


def test_without_a_mask_padding_counts_and_mask_false_disables_it():
    m = Tokens()
    batch = pad_batch([[1, 2, 3], [4]], 5)
    assert extract(m, [batch], "act")["act"].shape == (4, 9)
    assert extract(m, [batch], "act", mask=False)["act"].shape == (10, 9)
    assert extract(m, [{"input_ids": batch["input_ids"], "keep": batch["attention_mask"]}], "act", mask="keep",
                   input_fn=lambda b: {"input_ids": b["input_ids"]})["act"].shape == (4, 9)
    fn = extract(m, [batch], "act", mask=lambda b: b["attention_mask"][:, :5] * 0 + 1)["act"]
    assert fn.shape == (10, 9)


def test_sampled_tokens_are_valid_and_shared_by_both_networks():
    m = Tokens().double()
    seqs = [[1, 2], [3, 4, 5, 6, 7], [8]]
    batch = pad_batch(seqs, 9, "left", pad_id=10)  # id 10 never occurs in a sequence
    pairs = list(stream_pair(m, Tokens(seed=2).double(), [batch], "emb", seq_mode="sample:50", sample_seed=5))
    xa, xb = pairs[0][1]["emb"], pairs[0][2]["emb"]
    assert xa.shape == xb.shape == (50, 6)
    pad_row = m.emb.weight[10].detach().numpy()
    assert not np.any(np.all(np.isclose(xa, pad_row), axis=1))  # no padded token was sampled
    valid_rows = m.emb.weight[torch.arange(1, 9)].detach().numpy()
    assert all(np.any(np.all(np.isclose(valid_rows, r), axis=1)) for r in xa)
    # the same draw for both networks: B's rows are B's embeddings of the same token ids
    ids_a = [int(np.argmin(np.abs(m.emb.weight.detach().numpy() - r).sum(1))) for r in xa]
    mb = Tokens(seed=2).double()
    assert np.allclose(xb, mb.emb.weight.detach().numpy()[ids_a])


def test_mask_errors_name_the_problem():
    m = Tokens()
    with pytest.raises(ValueError, match="no valid token"):
        extract(m, [{"input_ids": torch.ones(2, 3, dtype=torch.long), "attention_mask": torch.tensor([[1, 1, 0], [0, 0, 0]])}],
                "act")
    with pytest.raises(ValueError, match="mask=False"):
        extract(m, [{"input_ids": torch.ones(2, 3, dtype=torch.long), "attention_mask": torch.ones(2, 4)}], "act")
    with pytest.raises(ValueError, match="no key 'nope'"):
        extract(m, [pad_batch([[1]], 2)], "act", mask="nope")
    with pytest.raises(ValueError, match="seq_mode must be one of"):
        extract(m, [pad_batch([[1]], 2)], "act", seq_mode="pool")


# ------------------------------------------------------------------------------------------ layouts
class Conv1dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 5, 3, padding=1)
        self.relu = nn.ReLU()
        self.odd = Odd()

    def forward(self, x):
        return self.odd(self.relu(self.conv(x)))


class Odd(nn.Module):
    """A custom module whose 3-D output has a shape no known module produced."""

    def forward(self, x):
        return x[:, :, :4] * 2


def test_layouts_are_resolved_by_module_type_and_reported():
    x = torch.randn(2, 3, 7)
    conv = Conv1dNet()
    got = extract(conv, [x], ["conv", "relu"])
    assert got["conv"].shape == (14, 5) and got["relu"].shape == (14, 5)  # channels: (batch * positions, C)
    assert got.layouts["conv"]["layout"] == "channels" and got.layouts["conv"]["reason"] == "module type Conv1d"
    assert got.layouts["relu"]["layout"] == "channels" and "follows conv (Conv1d)" in got.layouts["relu"]["reason"]
    tok = extract(Tokens(), [torch.ones(2, 4, dtype=torch.long)], ["fc1", "act", "emb"])
    assert tok.layouts["act"]["layout"] == "sequence" and "follows fc1 (Linear)" in tok.layouts["act"]["reason"]
    assert tok.layouts["emb"]["reason"] == "module type Embedding" and tok["act"].shape == (8, 9)
    assert tok.layouts["fc1"]["shape"] == [4, 9]


def test_ambiguous_3d_output_is_refused_until_layout_is_given():
    x = torch.randn(2, 3, 7)
    with pytest.raises(ValueError, match="layout='sequence' or layout='channels'"):
        extract(Conv1dNet(), [x], "odd")
    ch = extract(Conv1dNet(), [x], "odd", layout="channels")
    seq = extract(Conv1dNet(), [x], "odd", layout={"odd": "sequence"})
    assert ch["odd"].shape == (8, 5) and seq["odd"].shape == (10, 4)
    assert ch.layouts["odd"]["reason"] == "layout= given" and seq.layouts["odd"]["reason"].startswith("layout= given")
    # an explicit layout overrides the module type, too
    assert extract(Conv1dNet(), [x], "conv", layout="sequence")["conv"].shape == (10, 7)
    with pytest.raises(ValueError, match="not among the chosen layers"):
        extract(Conv1dNet(), [x], "odd", layout={"relu": "channels"})
    with pytest.raises(ValueError, match="layout must be one of"):
        extract(Conv1dNet(), [x], "odd", layout="tokens")


def test_reduce_pair_reports_layouts_and_saves_them(tmp_path):
    vit_a = build_model("vit-tiny", in_channels=1, image_size=28, seed=0, depth=1)
    vit_b = build_model("vit-tiny", in_channels=1, image_size=28, seed=1, depth=1)
    x = torch.randn(4, 1, 28, 28)
    reds = reduce_pair(vit_a, vit_b, [x, x[:2]], ["blocks.0.mlp.act", "blocks.0"], save=tmp_path / "chunks")
    assert reds["blocks.0"].n_samples == 6 * 17 and reds["blocks.0.mlp.act"].n_x == 128
    assert reds.layouts["b"]["blocks.0"]["layout"] == "sequence"
    import json

    manifest = json.loads((tmp_path / "chunks" / "manifest.json").read_text())
    assert manifest["layouts"]["a"]["blocks.0.mlp.act"]["reason"].startswith("follows blocks.0.mlp.fc1")
    d = describe_layers(vit_a, x, ["blocks.0", "blocks.0.mlp.act"], seq_mode="cls")
    assert [(r["name"], r["rows"], r["neurons"]) for r in d] == [("blocks.0", 4, 64), ("blocks.0.mlp.act", 4, 128)]


def test_tokens_reduction_equals_in_memory_rows():
    a, b = Tokens(seed=0), Tokens(seed=1)
    batches = [pad_batch(random_seqs(np.random.default_rng(i), 4, 11), 12) for i in range(3)]
    reds = reduce_pair(a, b, batches, ["act", "fc2"])
    xa, xb = extract(a, batches, ["act", "fc2"]), extract(b, batches, ["act", "fc2"])
    for L in ("act", "fc2"):
        ref = repmatch.Reduction.from_arrays(xa[L], xb[L])
        assert np.allclose(reds[L].comoment, ref.comoment, rtol=0, atol=MOMENT_TOL)
        assert repmatch.maximum_match(reds[L], eps=0.3).x.tolist() == repmatch.maximum_match(ref, eps=0.3).x.tolist()


# ------------------------------------------------------------------------------------------ inputs
class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, pixel_values, scale):
        return self.lin(pixel_values * scale)


def test_dict_batches_are_passed_as_keywords():
    m = TwoInputs()
    x = torch.randn(5, 4)
    got = extract(m, [{"pixel_values": x, "scale": torch.full((5, 1), 2.0)}], "lin")["lin"]
    assert np.allclose(got, m.lin(2 * x).detach().numpy())
    with pytest.raises(ValueError, match="input_fn="):
        extract(m, [{"pixel_values": x, "scale": 1.0, "labels": torch.zeros(5)}], "lin")
    got = extract(m, [{"pixel_values": x, "labels": torch.zeros(5)}], "lin",
                  input_fn=lambda b: {"pixel_values": b["pixel_values"], "scale": 3.0})["lin"]
    assert np.allclose(got, m.lin(3 * x).detach().numpy())
    got = extract(m, [(x, 4.0)], "lin", input_fn=lambda b: tuple(b))["lin"]  # a tuple: positional inputs
    assert np.allclose(got, m.lin(4 * x).detach().numpy())


def test_numpy_batches_equal_tensor_batches():
    m = Tokens()
    ids = np.random.default_rng(0).integers(0, 11, size=(3, 5))
    a = extract(m, [ids], "act")["act"]
    b = extract(m, [torch.from_numpy(ids)], "act")["act"]
    assert np.array_equal(a, b)
    lin = nn.Sequential(nn.Linear(4, 2))
    xf = np.random.default_rng(1).normal(size=(6, 4))  # float64 array, float32 model: given in float32
    got = extract(lin, [(xf, np.zeros(6))], "0")["0"]
    assert got.dtype == np.float32
    assert np.array_equal(got, lin(torch.from_numpy(xf).float()).detach().numpy())
    d = extract(Tokens(), [{"input_ids": ids, "attention_mask": np.ones((3, 5))}], "act")["act"]
    assert np.array_equal(d, a)


@dataclasses.dataclass
class Output:
    last_hidden_state: torch.Tensor
    pooled: torch.Tensor


class Wrapped(nn.Module):
    """Submodules returning a tuple, a dict and a dataclass (Hugging Face style)."""

    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(6, 2, batch_first=True)
        self.as_dict = DictOut()
        self.as_dc = DataOut()

    def forward(self, x):
        h, _ = self.attn(x, x, x)
        h = self.as_dict(h)["hidden"]
        return self.as_dc(h).pooled


class DictOut(nn.Module):
    def forward(self, x):
        return {"scores": x.sum(-1), "hidden": x * 2}


class DataOut(nn.Module):
    def forward(self, x):
        return Output(last_hidden_state=x + 1, pooled=x.mean(1))


def test_tuple_dict_and_dataclass_outputs_are_unwrapped():
    m = Wrapped().eval()
    x = torch.randn(2, 5, 6)
    with torch.no_grad():
        h, w = m.attn(x, x, x)
    got = extract(m, [x], ["attn", "as_dc", "as_dict"], output_key={"as_dict": "hidden"})
    assert np.allclose(got["attn"], h.reshape(10, 6).numpy(), atol=1e-6)  # the first tensor of the tuple
    assert np.allclose(got["as_dc"], (2 * h + 1).reshape(10, 6).numpy(), atol=1e-6)  # last_hidden_state
    assert np.allclose(got["as_dict"], (2 * h).reshape(10, 6).numpy(), atol=1e-6)
    assert got.layouts["attn"]["reason"] == "module type MultiheadAttention"
    assert got.layouts["as_dc"]["layout"] == "sequence"  # follows the attention (same shape)
    pooled = extract(m, [x], "as_dc", output_key="pooled")["as_dc"]
    assert pooled.shape == (2, 6)
    weights = extract(m, [x], "attn", output_key=1, layout="sequence")["attn"]
    assert np.allclose(weights, w.reshape(10, 5).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="output_key 'nope'"):
        extract(m, [x], "as_dict", output_key="nope")


class Scaled(nn.Module):
    """Expects inputs already multiplied by 2: with weights halved it equals Tokens-like Linear A."""

    def __init__(self, lin):
        super().__init__()
        self.lin = nn.Linear(4, 3)
        with torch.no_grad():
            self.lin.weight.copy_(lin.weight / 2)
            self.lin.bias.copy_(lin.bias)

    def forward(self, x):
        return self.lin(x)


def test_each_network_can_have_its_own_preprocessing():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(4, 3))
    b = Scaled(a[0])
    x = [torch.randn(8, 4) for _ in range(3)]
    # input_fn_b: B gets 2x the inputs; both layers then agree exactly (correlation 1 unit by unit)
    reds = reduce_pair(a, b, x, layers="0", layers_b="lin", pairs=[("0", "lin")], input_fn_b=lambda t: 2 * t)
    r = reds["0|lin"]
    assert repmatch.bipartite_match(r).mean == pytest.approx(1.0, abs=1e-6)
    # loader_b: the same samples, B's own loader
    reds2 = reduce_pair(a, b, x, layers="0", layers_b="lin", pairs=[("0", "lin")], loader_b=[2 * t for t in x])
    assert np.allclose(reds2["0|lin"].comoment, r.comoment, atol=1e-9)
    with pytest.raises(ValueError, match="fewer batches"):
        reduce_pair(a, b, x, "0", layers_b="lin", pairs=[("0", "lin")], loader_b=[2 * t for t in x[:2]])
    with pytest.raises(ValueError, match="more batches"):
        reduce_pair(a, b, x[:2], "0", layers_b="lin", pairs=[("0", "lin")], loader_b=[2 * t for t in x])
    with pytest.raises(ValueError, match="same samples"):
        reduce_pair(a, b, x, "0", layers_b="lin", pairs=[("0", "lin")], loader_b=[2 * t[:5] for t in x])
    # different tokenisations: tokens differ in number, a per-sequence mode still compares them
    ta, tb = Tokens(seed=0), Tokens(seed=1)
    seqs = random_seqs(np.random.default_rng(2), 4, 11, 2, 6)
    doubled = [np.repeat(s, 2) for s in seqs]  # B's "tokeniser" splits every token in two
    red = reduce_pair(ta, tb, [pad_batch(seqs, 8)], "act", loader_b=[pad_batch(doubled, 14)], seq_mode="last")
    assert red["act"].n_samples == 4
    with pytest.raises(ValueError, match="seq_mode='mean'"):
        reduce_pair(ta, tb, [pad_batch(seqs, 8)], "act", loader_b=[pad_batch(doubled, 14)])
