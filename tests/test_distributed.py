"""Dask engine (issue 6): tree reduction == single machine, sweeps and simple matches == serial,
scheduler addresses, zarr and `extract --save` inputs, the dask-reduce command. LocalClusters on
127.0.0.1 only."""

import os

import importlib.util

import numpy as np
import pytest

pytest.importorskip("dask.array")
pytest.importorskip("distributed")
pytest.importorskip("zarr")

import dask.array as da  # noqa: E402

import repmatch  # noqa: E402
from repmatch import Reduction  # noqa: E402
from repmatch import distributed as dd  # noqa: E402
from repmatch.testing import planted_subspace, relu_layers  # noqa: E402

STAT_RTOL = 1e-10  # tree-merged vs single-pass moments (the engine's bound for merges)


@pytest.fixture(scope="module")
def client():
    # threads: fast to start; one test below runs on worker processes
    with dd.get_client(n_workers=2, processes=False) as c:
        yield c


@pytest.fixture(scope="module")
def layers():
    return relu_layers(n_samples=6000, n_x=24, n_y=20, shared_dim=12, private_dim=12, rng=5)


def _close(a, b, rtol=STAT_RTOL):
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * max(1.0, float(np.abs(b).max())))


def _chunked(X, rows):
    return da.from_array(X, chunks=(rows, -1))


@pytest.mark.parametrize("method", ["gram", "qr"])
def test_tree_reduction_equals_single_machine(client, layers, method):
    X, Y = layers
    r = dd.reduce_dask(_chunked(X, 700), _chunked(Y, 700), method=method, client=client)
    chunks = [Reduction.from_arrays(X[s : s + 700], Y[s : s + 700], method=method) for s in range(0, 6000, 700)]
    tree = Reduction.merge_all(chunks)
    single = Reduction.from_arrays(X, Y, method=method)
    assert r.n_samples == 6000 and r.method == method
    # the same pairwise tree as merge_all: bit for bit
    np.testing.assert_array_equal(r.mean, tree.mean)
    np.testing.assert_array_equal(r.comoment, tree.comoment)
    # and the single pass to rounding, with identical matches
    _close(r.mean, single.mean)
    _close(r.comoment, single.comoment)
    _close(r.gram(), single.gram())
    for eps in (0.2, 0.35):
        assert repmatch.maximum_match(r, eps=eps).key() == repmatch.maximum_match(single, eps=eps).key()


def test_merge_order_is_irrelevant(layers):
    X, Y = layers
    rng = np.random.default_rng(0)
    bounds = np.sort(rng.choice(np.arange(1, 6000), size=11, replace=False))
    parts = [Reduction.from_arrays(x, y) for x, y in zip(np.split(X, bounds), np.split(Y, bounds))]
    ref = Reduction.merge_all(parts)
    for _ in range(3):
        order = rng.permutation(len(parts))
        left = parts[order[0]]
        for i in order[1:]:
            left = left.merge(parts[i])
        shuffled = Reduction.merge_all([parts[i] for i in order])
        for r in (left, shuffled):
            assert r.n_samples == 6000
            _close(r.mean, ref.mean)
            _close(r.comoment, ref.comoment)


def test_uneven_chunks_and_chunk_rows(client, layers):
    X, Y = layers
    single = Reduction.from_arrays(X, Y)
    # Y is chunked differently from X: it is rechunked to X's rows
    r = dd.reduce_dask(da.from_array(X, chunks=(1000, 5)), da.from_array(Y, chunks=(777, -1)), client=client)
    _close(r.comoment, single.comoment)
    r2 = dd.reduce_dask(X, Y, chunk_rows=1234, client=client)
    _close(r2.comoment, single.comoment)
    assert r2.n_samples == 6000


def test_sweep_equals_serial(client):
    reds = {}
    for seed in range(3):
        X, Y = relu_layers(n_samples=2000, n_x=16, n_y=16, shared_dim=8, private_dim=8, rng=seed)
        reds[("seed0", f"seed{seed + 1}", "fc1")] = Reduction.from_arrays(X, Y)
    grid = [0.1, 0.2, 0.3, 0.5]
    out = dd.sweep(reds, grid, client=client)
    assert list(out) == list(reds)
    for key, r in reds.items():
        assert out[key].to_dict() == repmatch.similarity_curve(r, eps=grid).to_dict()
    if importlib.util.find_spec("torch") is not None:  # device reductions go to the workers as host copies
        key = next(iter(reds))
        on_device = {key: reds[key].to("cpu")}
        assert dd.sweep(on_device, grid, client=client)[key].to_dict() == out[key].to_dict()


@pytest.mark.parametrize("restarts", [0, 2])
def test_simple_matches_parallel_equal_serial(client, restarts):
    X, Y = relu_layers(n_samples=1500, n_x=12, n_y=12, shared_dim=6, private_dim=6, rng=11)
    r = Reduction.from_arrays(X, Y)
    serial = repmatch.simple_matches(r, eps=0.3, restarts=restarts, rng=5)
    par = dd.simple_matches_parallel(r, eps=0.3, restarts=restarts, rng=5, client=client, tasks=3)
    assert len(serial) > 1
    assert par.to_dict() == serial.to_dict()
    assert [m.key() for m in par] == [m.key() for m in serial]


def test_scheduler_address_on_worker_processes(layers):
    X, Y = layers
    # a separate cluster of worker processes, reached by its address as another machine's would be
    with dd.get_client(n_workers=1, processes=True) as owner:
        address = owner.scheduler.address
        assert address.startswith("tcp://127.0.0.1:")
        r = dd.reduce_dask(_chunked(X, 2000), _chunked(Y, 2000), scheduler=address)
        assert owner.status == "running"  # connecting and leaving did not close the cluster
        out = dd.sweep({"a": r}, [0.3], scheduler=address)
    _close(r.comoment, Reduction.from_arrays(X, Y).comoment)
    assert out["a"].to_dict() == repmatch.similarity_curve(r, eps=[0.3]).to_dict()


def test_zarr_round_trip(client, tmp_path, layers):
    X, Y = layers
    px = dd.save_zarr(X.astype(np.float32), tmp_path / "x.zarr", chunk_rows=1500)
    py = dd.save_zarr(Y.astype(np.float32), tmp_path / "y.zarr", chunk_rows=1000)
    ax = dd.as_dask_array(px)
    np.testing.assert_array_equal(ax.compute(), X.astype(np.float32))
    assert ax.chunks[0][0] == 1500
    r = dd.reduce_dask(px, py, client=client)
    _close(r.comoment, Reduction.from_arrays(X.astype(np.float32), Y.astype(np.float32)).comoment)
    with pytest.raises(ValueError, match="exists"):
        dd.save_zarr(X, px)
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]  # no temporary store left behind


def test_bad_inputs_name_the_argument(client, layers, tmp_path):
    X, Y = layers
    with pytest.raises(ValueError, match="same number of rows"):
        dd.reduce_dask(X, Y[:-1], client=client)
    with pytest.raises(ValueError, match="X must be 2-D"):
        dd.reduce_dask(X[:, 0], Y, client=client)
    with pytest.raises(ValueError, match="Y must be 2-D"):
        dd.reduce_dask(X, da.zeros((6000, 2, 2)), client=client)
    with pytest.raises(ValueError, match="method"):
        dd.reduce_dask(X, Y, method="svd", client=client)
    with pytest.raises(ValueError, match="chunk_rows"):
        dd.reduce_dask(X, Y, chunk_rows=0, client=client)
    with pytest.raises(FileNotFoundError, match="X"):
        dd.reduce_dask(tmp_path / "missing.zarr", Y, client=client)
    with pytest.raises(ValueError, match="client or scheduler"):
        with dd.get_client("tcp://127.0.0.1:1", client=client):
            pass
    with pytest.raises(ValueError, match="reductions"):
        dd.sweep({}, [0.3], client=client)


def test_extract_save_directory_and_cli(client, tmp_path, layers, capsys):
    X, Y = layers
    # a directory in the layout `repmatch extract --save` writes (activations._ChunkWriter)
    torch = pytest.importorskip("torch")  # noqa: F841 - activations needs it
    from repmatch.activations import _ChunkWriter

    w = _ChunkWriter(tmp_path / "saved", ("a", "b"), {})
    for i, s in enumerate(range(0, 6000, 1600)):
        w.add("a", i, {"fc1": X[s : s + 1600].astype(np.float32), "fc2": X[s : s + 1600, :5].astype(np.float32)})
        w.add("b", i, {"fc1": Y[s : s + 1600].astype(np.float32), "fc2": Y[s : s + 1600, :7].astype(np.float32)})
    w.finish()
    arr = dd.saved_layer(tmp_path / "saved", "a", "fc1")
    assert arr.shape == X.shape and arr.chunks[0][0] == 1600
    np.testing.assert_array_equal(arr.compute(), X.astype(np.float32))

    from repmatch.cli import main
    from repmatch.io import load_reductions

    address = client.scheduler.address
    out = tmp_path / "reds.npz"
    assert main(["dask-reduce", "--saved", str(tmp_path / "saved"), "--out", str(out), "--scheduler", address]) == 0
    reds, meta = load_reductions(out)
    assert sorted(reds) == ["fc1", "fc2"] and meta["engine"] == "dask"
    _close(reds["fc1"].comoment, Reduction.from_arrays(X.astype(np.float32), Y.astype(np.float32)).comoment)
    assert (reds["fc2"].n_x, reds["fc2"].n_y) == (5, 7)
    assert main(["compare", str(out), "--measures", "subspace", "--eps", "0.3"]) == 0
    assert "fc1" in capsys.readouterr().out

    px = dd.save_zarr(X, tmp_path / "x.zarr", chunk_rows=2500)
    py = dd.save_zarr(Y, tmp_path / "y.zarr", chunk_rows=2500)
    out2 = tmp_path / "one.npz"
    assert main(["dask-reduce", px, py, "--out", str(out2), "--scheduler", address, "--layers", "conv3"]) == 0
    reds2, _ = load_reductions(out2)
    _close(reds2["conv3"].comoment, Reduction.from_arrays(X, Y).comoment)
    capsys.readouterr()
    assert main(["dask-reduce", px, "--out", str(out2), "--scheduler", address]) == 2
    assert "two zarr stores" in capsys.readouterr().err
    assert main(["dask-reduce", px, py, "--out", str(out2), "--scheduler", address, "--workers", "2"]) == 2


def test_planted_subspace_through_dask(client):
    X, Y, planted = planted_subspace(n_shared=10, dim=5, n_random=20, n_samples=3000)
    r = dd.reduce_dask(_chunked(X, 500), _chunked(Y, 500), method="qr", client=client)
    m = repmatch.maximum_match(r, eps=0.0)
    np.testing.assert_array_equal(m.x, planted)
    np.testing.assert_array_equal(m.y, planted)
