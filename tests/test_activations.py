"""Activation extraction: layer choice, hooks, in-place ReLU, DataParallel, conv modes, streaming == in memory."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
# Tiny models: extra threads only add synchronisation overhead (and contention on shared CI runners).
torch.set_num_threads(1)
nn = torch.nn

import repmatch  # noqa: E402
from repmatch import io as rio  # noqa: E402
from repmatch.activations import (  # noqa: E402
    apply_conv_mode,
    extract,
    list_layers,
    load_saved_activations,
    pair_key,
    reduce_pair,
    resolve_layers,
    stream_pair,
)
from repmatch.nets import build_model  # noqa: E402


def images(n=40, c=1, size=8, seed=0, batch=16):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, size, size, generator=g)
    return [(x[i : i + batch], torch.zeros(len(x[i : i + batch]))) for i in range(0, n, batch)]


def nets(arch="smallcnn", **kw):
    kw = {"in_channels": 1, "image_size": 8, "width": 0.25, **kw}
    return build_model(arch, seed=0, **kw), build_model(arch, seed=1, **kw)


def hook_count(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def test_import_repmatch_does_not_import_torch():
    code = "import repmatch, repmatch.io, repmatch.cli, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_layers_by_name_index_type():
    m, _ = nets()
    leaves = list_layers(m)
    assert leaves[0][1:] == ("features.0", "Conv2d") and leaves[-1][1:] == ("classifier.2", "Linear")
    relus = [n for _, n, t in leaves if t == "ReLU"]
    assert list(resolve_layers(m)) == relus  # default: every ReLU
    assert list(resolve_layers(m, "ReLU")) == relus == list(resolve_layers(m, nn.ReLU)) == list(resolve_layers(m, "type:ReLU"))
    assert list(resolve_layers(m, ["classifier.1", 0, "-1"])) == ["features.0", "classifier.1", "classifier.2"]
    assert list(resolve_layers(m, "features")) == ["features"]  # containers by name too
    with pytest.raises(ValueError, match="unknown layer 'features.99'.*features.3"):
        resolve_layers(m, ["features.99"])
    with pytest.raises(ValueError, match="out of range"):
        resolve_layers(m, 100)
    with pytest.raises(ValueError, match="no module of type"):
        resolve_layers(m, nn.GELU)


def test_hooks_removed_after_extraction_and_after_errors():
    a, b = nets()
    data = images()
    extract(a, data)
    reduce_pair(a, b, data)
    assert hook_count(a) == hook_count(b) == 0

    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    bad = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), Boom())
    with pytest.raises(RuntimeError, match="boom"):
        extract(bad, data)
    assert hook_count(bad) == 0
    with pytest.raises(RuntimeError, match="boom"):
        reduce_pair(a, bad, data, layers="ReLU", pairs="all", conv_mode="avgpool")
    assert hook_count(a) == hook_count(bad) == 0
    # a consumer that stops early: closing the stream removes the hooks
    stream = stream_pair(a, b, data)
    next(stream)
    assert hook_count(a) > 0
    stream.close()
    assert hook_count(a) == hook_count(b) == 0


def test_training_mode_restored():
    a, b = nets()
    a.train()
    extract(a, images())
    assert a.training


class NegateInPlace(nn.Module):
    def forward(self, x):
        return x.mul_(-1)


def test_inplace_relu_captured_after_relu_and_protected():
    torch.manual_seed(0)
    lin = nn.Linear(5, 7)
    model = nn.Sequential(lin, nn.ReLU(inplace=True), NegateInPlace())
    x = torch.randn(30, 5)
    acts = extract(model, [x], layers="1")
    expected = torch.relu(lin(x)).detach().numpy()
    np.testing.assert_array_equal(acts["1"], expected)  # post-ReLU, and not overwritten by the negation
    assert (acts["1"] >= 0).all() and (acts["1"] == 0).any()
    conv = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(inplace=True), NegateInPlace())
    xi = torch.randn(4, 1, 6, 6)
    got = extract(conv, [xi], layers=nn.ReLU)["1"]
    ref = torch.relu(conv[0](xi)).detach().permute(0, 2, 3, 1).reshape(-1, 3).numpy()
    np.testing.assert_array_equal(got, ref)


def test_dataparallel_unwrapped():
    a, _ = nets()
    wrapped = nn.DataParallel(a)
    direct = extract(a, images(), layers="features.3")
    via = extract(wrapped, images(), layers="module.features.3")
    assert list(via) == ["features.3"]
    np.testing.assert_array_equal(direct["features.3"], via["features.3"])
    assert [n for _, n, _ in list_layers(wrapped)] == [n for _, n, _ in list_layers(a)]


def test_conv_modes_shapes_and_values():
    t = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    pos = apply_conv_mode(t, "positions")
    assert pos.shape == (40, 3)
    assert torch.equal(pos[1 * 20 + 2 * 5 + 3], t[1, :, 2, 3])  # row = (image, y, x), image-major
    assert apply_conv_mode(t, "flatten").shape == (2, 60)
    assert torch.equal(apply_conv_mode(t, "avgpool"), t.mean(dim=(2, 3)))
    fc = torch.randn(2, 9)
    assert all(apply_conv_mode(fc, m) is fc for m in ("positions", "flatten", "avgpool"))
    a, _ = nets()
    data = images(n=20, batch=10)
    shapes = {m: {k: v.shape for k, v in extract(a, data, conv_mode=m).items()}
              for m in ("positions", "flatten", "avgpool", "sample:7")}
    assert shapes["positions"]["features.1"] == (20 * 64, 8) and shapes["positions"]["features.6"] == (20 * 16, 16)
    assert shapes["flatten"]["features.1"] == (20, 8 * 64)
    assert shapes["avgpool"]["features.8"] == (20, 16)
    assert shapes["sample:7"]["features.1"] == (14, 8)  # K per batch, two batches
    assert shapes["sample:7"]["classifier.1"] == (20, 32)  # FC layers are kept whole
    with pytest.raises(ValueError, match="conv_mode"):
        extract(a, data, conv_mode="sample:0")


def test_sample_positions_same_for_both_networks_and_seeded():
    a, _ = nets()
    data = images()
    twin = build_model("smallcnn", in_channels=1, image_size=8, width=0.25, seed=0)
    r1 = extract(a, data, conv_mode="sample:25", sample_seed=4)
    r2 = extract(twin, data, conv_mode="sample:25", sample_seed=4)
    r3 = extract(a, data, conv_mode="sample:25", sample_seed=5)
    np.testing.assert_array_equal(r1["features.3"], r2["features.3"])
    assert not np.array_equal(r1["features.3"], r3["features.3"])
    # sampled rows are rows of the full positions matrix
    full = extract(a, data, layers="features.3")["features.3"]
    rows = {r.tobytes() for r in full}
    assert all(r.tobytes() in rows for r in r1["features.3"])
    # in a pair, the two networks see the same positions: identical twins give identical blocks
    red = reduce_pair(a, twin, data, layers="features.3", conv_mode="sample:25", sample_seed=4)["features.3"]
    g = red.gram()
    np.testing.assert_allclose(g[:8, :8], g[8:, 8:], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(g[:8, :8], g[:8, 8:], rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("method", ["gram", "qr"])
@pytest.mark.parametrize("conv_mode", ["positions", "sample:30", "avgpool"])
def test_streamed_equals_in_memory(method, conv_mode):
    a, b = nets()
    data = images(n=150, batch=32)
    streamed = reduce_pair(a, b, data, method=method, conv_mode=conv_mode)
    ea, eb = extract(a, data, conv_mode=conv_mode), extract(b, data, conv_mode=conv_mode)
    assert list(streamed) == list(ea)
    partial = 0
    for layer, r in streamed.items():
        mem = repmatch.Reduction.from_arrays(ea[layer], eb[layer], method=method)
        assert r.n_samples == mem.n_samples == ea[layer].shape[0]
        np.testing.assert_allclose(r.mean, mem.mean, rtol=1e-10, atol=1e-10)
        scale = np.abs(mem.comoment).max()
        np.testing.assert_allclose(r.comoment, mem.comoment, rtol=1e-10, atol=1e-10 * scale)
        for eps in (0.1, 0.3, 0.5, 0.7):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", repmatch.RepmatchWarning)  # few samples per FC neuron
                m1 = repmatch.maximum_match(r, eps=eps)
                # the in-memory path, from the raw arrays (once: it redoes the reduction every call)
                m2 = repmatch.maximum_match(ea[layer], eb[layer], eps=eps, method=method) if eps == 0.5 \
                    else repmatch.maximum_match(mem, eps=eps)
            assert (list(m1.x), list(m1.y)) == (list(m2.x), list(m2.y))
            partial += 0 < len(m1.x) < r.n_x
    assert partial > 0  # the comparison is not between empty (or full) matches only


def test_overlap_gives_identical_numbers_and_errors_propagate():
    a, b = nets()
    data = images(n=80, batch=16)
    for mode in ("positions", "avgpool"):
        seq = reduce_pair(a, b, data, conv_mode=mode, overlap=False, threads=2)
        par = reduce_pair(a, b, data, conv_mode=mode, overlap=True, threads=2)
        for k in seq:
            assert np.array_equal(seq[k].comoment, par[k].comoment) and np.array_equal(seq[k].mean, par[k].mean)

    class NaNAfter(nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return x * float("nan") if self.calls == 3 else x

    import repmatch.activations as act

    calls = []
    real = act.Reduction._update

    def failing(*args):
        calls.append(1)
        if len(calls) == 4:
            raise FloatingPointError("worker failed")
        return real(*args)

    mp = pytest.MonkeyPatch()
    mp.setattr(act.Reduction, "_update", failing)
    try:
        with pytest.raises(FloatingPointError, match="worker failed"):  # raised on the worker thread
            reduce_pair(a, b, data, layers="features.1", overlap=True)
    finally:
        mp.undo()
    assert hook_count(a) == hook_count(b) == 0

    bad = nn.Sequential(nn.Conv2d(1, 2, 3), NaNAfter(), nn.ReLU())
    with pytest.raises(ValueError, match="non-finite"):
        reduce_pair(bad, bad, data, layers="2")
    assert hook_count(bad) == 0


def test_identical_networks_match_fully():
    a, _ = nets()
    twin = build_model("smallcnn", in_channels=1, image_size=8, width=0.25, seed=0)
    reds = reduce_pair(a, twin, images(n=64), layers=["features.1", "features.6"], method="qr")
    for r in reds.values():
        m = repmatch.maximum_match(r, eps=0.0)
        assert len(m.x) == r.n_x - len(m.dead_x) and len(m.y) == r.n_y - len(m.dead_y)


def test_all_pairs_and_explicit_pairs():
    a, b = nets()
    data = images()
    layers = ["features.1", "features.6", "classifier.1"]
    reds = reduce_pair(a, b, data, layers, pairs="all", conv_mode="avgpool")
    assert list(reds) == [pair_key(x, y) for x in layers for y in layers]
    r = reds[pair_key("features.1", "classifier.1")]
    assert (r.n_x, r.n_y, r.n_samples) == (8, 32, 40)
    ea, eb = extract(a, data, layers, conv_mode="avgpool"), extract(b, data, layers, conv_mode="avgpool")
    for x in layers:
        for y in layers:
            mem = repmatch.Reduction.from_arrays(ea[x], eb[y])
            np.testing.assert_allclose(reds[pair_key(x, y)].gram(), mem.gram(), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="avgpool"):
        reduce_pair(a, b, data, layers, pairs="all", conv_mode="positions")
    sampled = reduce_pair(a, b, data, ["features.1", "features.6"], pairs="all", conv_mode="sample:11")
    assert sampled[pair_key("features.1", "features.6")].n_samples == 33  # 11 per batch, 3 batches
    explicit = reduce_pair(a, b, data, layers, pairs=[("features.1", "features.1"), ("features.6", "classifier.1")],
                           conv_mode="avgpool")
    assert list(explicit) == ["features.1", pair_key("features.6", "classifier.1")]
    with pytest.raises(ValueError, match="pairs"):
        reduce_pair(a, b, data, layers, pairs="some")
    # different architectures: layers_b picks B's layers
    c = build_model("resnet20", in_channels=1, width=0.25, seed=0)
    mixed = reduce_pair(a, c, data, "features.8", layers_b="layer3.2.relu2", pairs="all", conv_mode="avgpool")
    assert list(mixed) == [pair_key("features.8", "layer3.2.relu2")]


def test_save_chunks_and_npz(tmp_path):
    a, b = nets()
    data = images(n=40, batch=16)
    reds = reduce_pair(a, b, data, save=tmp_path / "acts", save_npz=(tmp_path / "a.npz", tmp_path / "b.npz"))
    ea, eb = extract(a, data), extract(b, data)
    saved_a = load_saved_activations(tmp_path / "acts", "a")
    for layer in ea:
        np.testing.assert_array_equal(saved_a[layer], ea[layer])
    from_npz = rio.load_activations(tmp_path / "b.npz")
    assert list(from_npz) == list(eb)
    for layer in eb:
        np.testing.assert_array_equal(from_npz[layer], eb[layer])
    plain = reduce_pair(a, b, data)  # without saving the reductions take another code path: same numbers
    for layer, r in plain.items():
        np.testing.assert_allclose(reds[layer].comoment, r.comoment, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(reds[layer].mean, r.mean, rtol=1e-12, atol=1e-12)
    rio.save_reductions(tmp_path / "red.npz", reds, metadata={"conv_mode": "positions"})
    loaded, meta = rio.load_reductions(tmp_path / "red.npz")
    assert meta == {"conv_mode": "positions"} and list(loaded) == list(reds)
    np.testing.assert_array_equal(loaded["features.3"].gram(), reds["features.3"].gram())
    # save_npz alone: chunks go to a temporary directory that is removed
    reduce_pair(a, b, data, layers="features.1", save_npz=(tmp_path / "x.npz", tmp_path / "y.npz"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".repmatch-chunks")]
    assert rio.load_activations(tmp_path / "x.npz")["features.1"].shape == (40 * 64, 8)


def test_loader_forms_and_device():
    a, _ = nets()
    x = torch.randn(12, 1, 8, 8)
    from_tensors = extract(a, [x[:6], x[6:]], layers="features.1", device="cpu")
    from_dataloader = extract(a, torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=5),
                              layers="features.1")
    np.testing.assert_allclose(from_tensors["features.1"], from_dataloader["features.1"], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="loader"):
        extract(a, ["not a tensor"])
    with pytest.raises(ValueError, match="no batches"):
        extract(a, [])


class AddOneInPlace(nn.Module):
    def forward(self, x):
        return x.add_(1.0)


def test_outputs_overwritten_in_place_later_are_detected_and_copied():
    # Without overlap the reductions read the modules' outputs in place; a later in-place op on a
    # recorded output (here +1 after the ReLU) moves its version counter, the layer is switched to
    # copying and the batch is run again: the numbers are those of the ReLU output itself.
    def net(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(inplace=True), AddOneInPlace(), nn.Conv2d(4, 3, 3), nn.ReLU())

    a, b = net(0), net(1)
    data = images(n=48, batch=16)
    reds = reduce_pair(a, b, data, layers=["1", "4"], overlap=False)
    for layer in ("1", "4"):
        ref = repmatch.Reduction.from_arrays(extract(a, data, layer)[layer], extract(b, data, layer)[layer])
        np.testing.assert_allclose(reds[layer].comoment, ref.comoment, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(reds[layer].mean, ref.mean, rtol=1e-12)
    plain = [t for t, _ in data]
    with torch.no_grad():
        relu_mean = torch.cat([torch.relu(a[0](x)) for x in plain]).mean(dim=(0, 2, 3)).double().numpy()
    np.testing.assert_allclose(reds["1"].mean[:4], relu_mean, rtol=1e-6)  # not shifted by the +1
    assert hook_count(a) == hook_count(b) == 0
    with torch.inference_mode():  # inference tensors have no version counter: copied instead
        inf = reduce_pair(a, b, data, layers=["1", "4"], overlap=False)
    np.testing.assert_array_equal(inf["1"].comoment, reds["1"].comoment)


class ScaleInputInPlace(nn.Module):
    def forward(self, x):
        return x.mul_(2.0).sub_(0.5)


@pytest.mark.parametrize("overlap", [False, True])
def test_outputs_aliasing_the_input_and_models_writing_their_input(overlap):
    # Layer "0" returns its input itself (eval-mode Dropout) and the in-place ReLU after it then
    # overwrites it; model b scales its input in place. Each model gets its own copy of the batch,
    # so both see the same images and the recorded values are the layers' true outputs.
    torch.manual_seed(0)
    a = nn.Sequential(nn.Dropout(0.2), nn.ReLU(inplace=True), nn.Linear(16, 4))
    b = nn.Sequential(ScaleInputInPlace(), nn.Linear(16, 3), nn.ReLU())
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(50, 16, generator=g) for _ in range(4)]
    reds = reduce_pair(a, b, xs, layers=["0"], layers_b=["2"], pairs=[("0", "2")], overlap=overlap)
    X = torch.cat(xs).numpy()
    with torch.no_grad():
        Y = torch.relu(b[1](torch.cat(xs) * 2.0 - 0.5)).numpy()
    ref = repmatch.Reduction.from_arrays(X, Y)
    r = reds[pair_key("0", "2")]
    np.testing.assert_allclose(r.comoment, ref.comoment, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(r.mean, ref.mean, rtol=1e-6, atol=1e-7)


def test_threads_and_reduction_device_give_the_same_moments(monkeypatch):
    import repmatch.reduce as red

    monkeypatch.setattr(red, "_CHUNK_DOUBLES", 64)  # many row chunks per batch, so threads split them
    monkeypatch.setattr(red, "_MIN_CHUNK_ROWS", 16)
    a, b = nets()
    data = images(n=64, batch=32)
    one = reduce_pair(a, b, data, threads=1, overlap=False)
    two = reduce_pair(a, b, data, threads=2, overlap=False)
    dev = reduce_pair(a, b, data, reduction_device="cpu")  # float64 torch accumulators
    assert all(r.device is None for r in one.values()) and all(str(r.device) == "cpu" for r in dev.values())
    for k in one:
        np.testing.assert_allclose(two[k].comoment, one[k].comoment, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dev[k].comoment, one[k].comoment, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dev[k].mean, one[k].mean, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        reduce_pair(a, b, data, threads=0)
    with pytest.raises(ValueError, match="overlap=True needs host reductions"):
        reduce_pair(a, b, data, reduction_device="cpu", overlap=True)


def test_all_pairs_on_device_reductions_equal_host():
    # each layer is converted once per batch and shared by every pair it is in
    a, b = nets()
    data = images()
    layers = ["features.1", "features.6", "classifier.1"]
    host = reduce_pair(a, b, data, layers, pairs="all", conv_mode="avgpool")
    dev = reduce_pair(a, b, data, layers, pairs="all", conv_mode="avgpool", reduction_device="cpu")
    assert list(dev) == list(host) and all(str(r.device) == "cpu" for r in dev.values())
    for k in host:
        np.testing.assert_allclose(dev[k].comoment, host[k].comoment, rtol=1e-10, atol=1e-12)
