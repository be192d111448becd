"""reduce_networks: K networks, one forward pass each per batch, every pairwise reduction equal to
reduce_pair's, and the shuffled null's row sample from the same pass."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
nn = torch.nn

from repmatch.activations import extract, reduce_networks, reduce_pair, resolve_layers  # noqa: E402
from repmatch.nets import build_model  # noqa: E402
from repmatch.testing import sample_rows  # noqa: E402


def images(n=40, size=8, seed=0, batch=16):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size, size, generator=g)
    return [(x[i : i + batch], torch.zeros(len(x[i : i + batch]))) for i in range(0, n, batch)]


def cnns(k, width=0.25):
    return {s: build_model("smallcnn", in_channels=1, image_size=8, width=width, seed=s) for s in range(k)}


class Counter:
    """Counts forward calls of each model (a pre-hook on the root module)."""

    def __init__(self, models):
        self.calls = {name: 0 for name in models}
        self.handles = [m.register_forward_pre_hook(self._hook(name)) for name, m in models.items()]

    def _hook(self, name):
        def hook(module, args):
            self.calls[name] += 1
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def same_reduction(r, s):
    """Every stored field (moments, scales, error bookkeeping) identical: the file digests agree."""
    return r._npz_fields()["digest"] == s._npz_fields()["digest"] and r.n_samples == s.n_samples


@pytest.mark.parametrize("conv_mode", ["positions", "avgpool", "sample:5"])
def test_every_pair_equals_reduce_pair_and_each_network_runs_once_per_batch(conv_mode):
    models = cnns(4)
    data = images()
    count = Counter(models)
    got = reduce_networks(models, data, conv_mode=conv_mode, sample_seed=3, threads=1)
    assert count.calls == {s: len(data) for s in models}  # once per batch, not K - 1 times
    assert sorted(got) == list(itertools.combinations(range(4), 2))
    for a, b in got:
        ref = reduce_pair(models[a], models[b], data, conv_mode=conv_mode, sample_seed=3, threads=1)
        assert list(got[(a, b)]) == list(ref)
        for key in ref:
            assert same_reduction(got[(a, b)][key], ref[key]), (a, b, key)
        assert got[(a, b)].layouts == ref.layouts
    count.remove()
    assert got.layouts[0] == got[(0, 1)].layouts["a"]


@settings(max_examples=12, deadline=None)
@given(st.integers(2, 4), st.lists(st.integers(1, 6), min_size=1, max_size=3), st.integers(0, 10**6),
       st.sampled_from(["same", "all"]), st.booleans(), st.sampled_from(["gram", "qr"]))
def test_random_models_pairs_and_layers_equal_reduce_pair(k, widths, seed, layer_pairs, overlap, method):
    """Small random MLPs: any subset of network pairs, any layer choice, overlap on or off, both
    methods: each pair's reductions are reduce_pair's, and networks in no pair never run."""
    rng = np.random.default_rng(seed)

    def mlp(s):
        torch.manual_seed(s)
        mods, d = [], 3
        for w in widths:
            mods += [nn.Linear(d, w), nn.ReLU()]
            d = w
        return nn.Sequential(*mods).double()

    models = {f"n{i}": mlp(seed + i) for i in range(k)}
    all_pairs = list(itertools.combinations(models, 2)) + [(b, a) for a, b in itertools.combinations(models, 2)]
    pick = rng.permutation(len(all_pairs))[: int(rng.integers(1, len(all_pairs) + 1))]
    pairs = [all_pairs[i] for i in pick]
    names = list(resolve_layers(models["n0"], nn.ReLU))
    layers = [names[i] for i in sorted(rng.choice(len(names), size=int(rng.integers(1, len(names) + 1)),
                                                  replace=False))]
    x = torch.as_tensor(rng.normal(size=(int(rng.integers(3, 30)), 3)))
    data = list(torch.split(x, int(rng.integers(1, 8))))
    count = Counter(models)
    got = reduce_networks(models, data, pairs, layers, layer_pairs=layer_pairs, overlap=overlap, threads=1,
                          method=method)
    count.remove()
    used = {n for p in pairs for n in p}
    assert count.calls == {n: (len(data) if n in used else 0) for n in models}
    assert list(got) == pairs
    for a, b in pairs:
        ref = reduce_pair(models[a], models[b], data, layers, pairs=layer_pairs, overlap=overlap, threads=1,
                          method=method)
        assert list(got[(a, b)]) == list(ref)
        for key in ref:
            assert same_reduction(got[(a, b)][key], ref[key])


def test_row_sample_equals_sample_rows_also_in_parts():
    models = cnns(3)
    n, bs = 37, 8
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 1, 8, 8, generator=g)

    def loader(lo, hi):
        return [(x[i : min(i + bs, hi)], None) for i in range(lo, hi, bs)]

    layer_names = list(resolve_layers(models[0]))
    k = 5
    whole = reduce_networks(models, loader(0, n), [(0, 1)], layer_names, conv_mode="avgpool", rows_per_image=k,
                            rows_seed=4)
    # the pipeline's two halves: one pass over the inputs in all, the sample of the whole (the split on a
    # batch boundary, so that the float32 forward passes see the same batches and round alike)
    half = 16
    parts = [reduce_networks(models, loader(lo, hi), [], layer_names, rows_per_image=k, rows_seed=4,
                             rows_networks=[0, 1, 2], first_image=lo) for lo, hi in ((0, half), (half, n))]
    for a, b in ((0, 1), (0, 2), (1, 2)):
        ref = sample_rows(models[a], models[b], loader(0, n), layer_names, rows_per_image=k, seed=4)
        for layer in layer_names:
            X, Y, groups = ref[layer]
            if a == 0 and b == 1:
                gx, gy, gg = whole.sample(a, b, layer)
                assert np.array_equal(gx, X) and np.array_equal(gy, Y) and np.array_equal(gg, groups)
                assert gx.dtype == np.float64
            px = np.concatenate([p.rows[a][layer] for p in parts])
            py = np.concatenate([p.rows[b][layer] for p in parts])
            pg = np.concatenate([p.groups[layer] for p in parts])
            assert np.array_equal(px, X) and np.array_equal(py, Y) and np.array_equal(pg, groups)
    # conv layers: k of the positions of each image; the FC layer: one row per image
    assert len(whole.groups["features.1"]) == n * k and len(whole.groups["classifier.1"]) == n
    assert whole[(0, 1)]["features.1"].n_samples == n  # avgpool reductions beside the positions sample
    assert sorted(whole.rows) == [0, 1, 2]


def test_pipeline_shape_call_trained_untrained_and_rows_in_one_pass():
    """What the reproduce pipeline needs from one pass: trained pairs, (seed a, untrained b) pairs, rows."""
    seeds = [0, 1, 2]
    trained = cnns(3)
    untrained = {("untrained", b): build_model("smallcnn", in_channels=1, image_size=8, width=0.25, seed=1000 + b)
                 for b in seeds[1:]}
    models = {**trained, **untrained}
    pairs = list(itertools.combinations(seeds, 2))
    null_pairs = [(a, ("untrained", b)) for a, b in pairs]
    data = images(24)
    count = Counter(models)
    got = reduce_networks(models, data, pairs + null_pairs, rows_per_image=3, rows_networks=seeds, threads=1)
    count.remove()
    assert count.calls == {name: len(data) for name in models}  # 5 networks, 5 passes per batch
    for a, b in null_pairs:
        ref = reduce_pair(models[a], models[b], data, threads=1)
        assert all(same_reduction(got[(a, b)][key], ref[key]) for key in ref)
    assert sorted(got.rows) == seeds


def test_sequence_rows_are_valid_tokens_only():
    class Tokens(nn.Module):
        def __init__(self, seed):
            super().__init__()
            torch.manual_seed(seed)
            self.emb = nn.Embedding(9, 4)
            self.fc = nn.Linear(4, 5)

        def forward(self, input_ids, attention_mask=None):
            return self.fc(self.emb(input_ids))

    rng = np.random.default_rng(0)
    lens = [3, 7, 1, 5]
    ids = torch.zeros(4, 8, dtype=torch.long)
    mask = torch.zeros(4, 8, dtype=torch.long)
    for i, n in enumerate(lens):
        ids[i, :n] = torch.as_tensor(rng.integers(1, 9, size=n))
        mask[i, :n] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    models = {"a": Tokens(0).double(), "b": Tokens(1).double()}
    got = reduce_networks(models, [batch], layers="fc", seq_mode="mean", rows_per_image=4)
    tokens = {n: extract(m, [batch], "fc")["fc"] for n, m in models.items()}  # the valid tokens, in order
    groups = got.groups["fc"]
    assert np.array_equal(np.bincount(groups), np.minimum(lens, 4))
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    for name in models:
        rows = got.rows[name]["fc"]
        for m in range(4):
            mine = rows[groups == m]
            valid = tokens[name][starts[m]:starts[m] + lens[m]]
            assert all(any(np.array_equal(r, v) for v in valid) for r in mine)  # valid tokens, never padding
    assert got[("a", "b")]["fc"].n_samples == 4  # seq_mode mean: one row per sequence in the reduction


def test_bad_arguments_name_what_is_wrong():
    models = cnns(2)
    data = images(8)
    with pytest.raises(ValueError, match="models must be a dict"):
        reduce_networks(models[0], data)
    with pytest.raises(ValueError, match="at least one network"):
        reduce_networks({}, data)
    with pytest.raises(ValueError, match=r"models\['x'\] must be a torch.nn.Module"):
        reduce_networks({"x": 3}, data)
    with pytest.raises(ValueError, match="network 7 is not in models"):
        reduce_networks(models, data, [(0, 7)])
    with pytest.raises(ValueError, match="listed twice"):
        reduce_networks(models, data, [(0, 1), (0, 1)])
    with pytest.raises(ValueError, match="each pair must be"):
        reduce_networks(models, data, [(0, 1, 1)])
    with pytest.raises(ValueError, match="nothing to do"):
        reduce_networks(models, data, [])
    with pytest.raises(ValueError, match="rows_networks applies to a row sample only"):
        reduce_networks(models, data, rows_networks=[0])
    with pytest.raises(ValueError, match="rows_per_image must be an integer >= 1"):
        reduce_networks(models, data, rows_per_image=0)
    with pytest.raises(ValueError, match="first_image must be"):
        reduce_networks(models, data, rows_per_image=2, first_image=-1)
    with pytest.raises(ValueError, match="the sampled networks must have the same layers"):
        reduce_networks(models, data, [], {0: "features.1", 1: "features.3"}, rows_per_image=2)
    with pytest.raises(ValueError, match="layer_pairs='same' needs the same layer names.*network 0"):
        reduce_networks(models, data, None, {0: "features.1", 1: "features.3"})
    with pytest.raises(ValueError, match="layer 'features.1' of network 0 gives .* layer 'classifier.1' of network 1"):
        reduce_networks(models, data, None, {0: "features.1", 1: "classifier.1"}, layer_pairs="all")
    with pytest.raises(ValueError, match="input_fn: \\['z'\\] are not networks"):
        reduce_networks(models, data, input_fn={"z": lambda b: b[0]})
    with pytest.raises(ValueError, match=r"layers: \['q'\] are not networks"):
        reduce_networks(models, data, layers={"q": "ReLU"})
    with pytest.raises(ValueError, match="loader yielded no batches"):
        reduce_networks(models, [])
    assert sum(len(m._forward_hooks) for mm in models.values() for m in mm.modules()) == 0


def test_per_network_layers_and_input_fn():
    models = cnns(3)
    data = images(16)
    flip = {2: lambda b: -b[0]}  # network 2 sees negated images
    got = reduce_networks(models, data, [(0, 2)], {0: "features.3", 2: "features.3"}, input_fn=flip, threads=1)
    ref = reduce_pair(models[0], models[2], data, "features.3", input_fn=lambda b: b[0], input_fn_b=flip[2],
                      threads=1)
    assert same_reduction(got[(0, 2)]["features.3"], ref["features.3"])
    plain = reduce_pair(models[0], models[2], data, "features.3", threads=1)
    assert not np.allclose(plain["features.3"].mean, ref["features.3"].mean)  # the input_fn was used
