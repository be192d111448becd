"""The PyTorch device backend (issue 6), tested on CPU torch against the NumPy path.

The same code runs on ``device="cuda"``; CI has no GPU, so every test here uses ``device="cpu"``
(set REPMATCH_TEST_DEVICE=cuda to run them on a GPU).
"""

import os
import pickle
import subprocess
import sys

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import repmatch  # noqa: E402
from repmatch import Reduction  # noqa: E402
from repmatch.subspace import GramSpace  # noqa: E402
from repmatch.testing import planted_subspace, relu_layers  # noqa: E402

pytestmark = pytest.mark.torch

DEVICE = os.environ.get("REPMATCH_TEST_DEVICE", "cpu")
STAT_RTOL = 1e-10  # device moments vs NumPy moments (both float64 accumulation)
DIST_ATOL = 1e-9  # device vs host distances above 1e-3 (see repmatch._torch docstring)


def _close(a, b, rtol=STAT_RTOL):
    scale = max(1.0, float(np.abs(b).max()))
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [1, 37, 1000])
def test_device_moments_equal_numpy(rng, dtype, batch):
    X = (rng.standard_normal((1000, 6)) * 3 + 100).astype(dtype)
    Y = np.maximum(rng.standard_normal((1000, 5)), 0).astype(dtype)
    host = Reduction.from_arrays(X, Y, batch_size=batch)
    dev = Reduction.from_arrays(torch.from_numpy(X), torch.from_numpy(Y), batch_size=batch, device=DEVICE)
    assert dev.n_samples == host.n_samples == 1000
    _close(dev.mean, host.mean)
    _close(dev.comoment, host.comoment)
    _close(dev.gram(), host.gram())
    _close(dev.covariance(ddof=1), host.covariance(ddof=1))


def test_conv_outputs_on_the_device_equal_the_host_path(rng):
    # (B, C, H, W) activations: every (image, position) a sample, as on the host
    A = torch.from_numpy(np.maximum(rng.standard_normal((12, 4, 5, 3)), 0).astype(np.float32)).to(DEVICE)
    B = torch.from_numpy(rng.standard_normal((12, 2, 5, 3)).astype(np.float32)).to(DEVICE)
    dev = Reduction(4, 2, device=DEVICE)
    host = Reduction(4, 2)
    for s in range(0, 12, 5):
        dev.update(A[s : s + 5], B[s : s + 5])
        host.update(A[s : s + 5].cpu().numpy(), B[s : s + 5].cpu().numpy())
    assert dev.n_samples == host.n_samples == 12 * 15
    _close(dev.comoment, host.comoment)
    _close(dev.mean, host.mean)
    with pytest.raises(ValueError, match=r"x must have n_x=4 channels \(axis 1\)"):
        dev.update(B, B)


def test_accumulators_are_float64_tensors_on_the_device(rng):
    r = Reduction(3, 2, device=DEVICE)
    r.update(torch.randn(10, 3, dtype=torch.float32), torch.randn(10, 2, dtype=torch.float32))
    acc = r.device_tensors()
    for name in ("mean", "comoment"):
        assert isinstance(acc[name], torch.Tensor)
        assert acc[name].dtype == torch.float64
        assert acc[name].device.type == torch.device(DEVICE).type
    assert acc["r"] is None
    # the host copy is made once and cached until the next update
    assert r.comoment is not None and ("host", "comoment") in r._cache
    r.update(np.ones((2, 3)), np.zeros((2, 2)))  # arrays are accepted too
    assert ("host", "comoment") not in r._cache
    assert isinstance(r.device_tensors()["comoment"], torch.Tensor)


def test_numpy_reduction_has_no_torch_accumulators(rng):
    r = Reduction.from_arrays(rng.standard_normal((20, 3)), rng.standard_normal((20, 2)))
    assert r.device is None
    assert all(a is None or isinstance(a, np.ndarray) for a in r.device_tensors().values())


@pytest.mark.parametrize("method", ["gram", "qr"])
def test_merges_across_backends(rng, method):
    X = rng.standard_normal((300, 4)) + 2
    Y = rng.standard_normal((300, 3))
    full = Reduction.from_arrays(X, Y, method=method)
    a_dev = Reduction.from_arrays(X[:120], Y[:120], method=method, device=DEVICE)
    b_dev = Reduction.from_arrays(X[120:], Y[120:], method=method, device=DEVICE)
    b_host = Reduction.from_arrays(X[120:], Y[120:], method=method)
    for merged in (a_dev.merge(b_dev), a_dev.merge(b_host), b_host.merge(a_dev), Reduction.merge_all([a_dev, b_dev])):
        assert merged.n_samples == 300
        _close(merged.mean, full.mean)
        _close(merged.comoment, full.comoment)
        _close(merged.gram(), full.gram())
    assert a_dev.merge(b_host).device == a_dev.device
    assert b_host.merge(a_dev).device is None
    if method == "qr":
        R = a_dev.merge(b_dev).r_factor
        _close(R.T @ R, full.r_factor.T @ full.r_factor)


def test_to_copy_save_and_pickle(tmp_path, rng):
    X, Y = rng.standard_normal((50, 3)), rng.standard_normal((50, 2))
    dev = Reduction.from_arrays(X, Y, device=DEVICE)
    host = dev.to(None)
    assert host.device is None and isinstance(host.device_tensors()["comoment"], np.ndarray)
    back = host.to(DEVICE)
    assert isinstance(back.device_tensors()["comoment"], torch.Tensor)
    _close(back.comoment, dev.comoment, rtol=0)
    c = dev.copy()
    c.update(X, Y)  # the copy is independent
    assert dev.n_samples == 50 and c.n_samples == 100
    dev.save(tmp_path / "r.npz")
    loaded = Reduction.load(tmp_path / "r.npz")
    assert loaded.device is None
    np.testing.assert_array_equal(loaded.comoment, dev.comoment)
    from repmatch.io import load_reductions, save_reductions

    save_reductions(tmp_path / "reds.npz", {"fc": dev})
    np.testing.assert_array_equal(load_reductions(tmp_path / "reds.npz")[0]["fc"].comoment, dev.comoment)
    again = pickle.loads(pickle.dumps(dev))
    np.testing.assert_array_equal(again.comoment, dev.comoment)


def test_rejected_batch_accumulates_nothing(rng):
    r = Reduction(3, 2, device=DEVICE)
    r.update(rng.standard_normal((5, 3)), rng.standard_normal((5, 2)))
    before = r.comoment.copy()
    bad = rng.standard_normal((4, 3))
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"\bx\b.*non-finite"):
        r.update(bad, rng.standard_normal((4, 2)))
    with pytest.raises(ValueError, match=r"\by\b.*non-finite"):
        r.update(rng.standard_normal((4, 3)), torch.full((4, 2), float("inf")))
    with pytest.raises(ValueError, match="n_x=3"):
        r.update(rng.standard_normal((4, 2)), rng.standard_normal((4, 2)))
    with pytest.raises(ValueError, match="same number of rows"):
        r.update(rng.standard_normal((4, 3)), rng.standard_normal((3, 2)))
    with pytest.raises(ValueError, match="2-D"):
        r.update(rng.standard_normal(3), rng.standard_normal((1, 2)))
    with pytest.raises(ValueError, match="x has no samples"):
        r.update(np.zeros((0, 3)), np.zeros((0, 2)))
    with pytest.raises(ValueError, match="x has no samples"):
        r.update(np.zeros((0, 3, 4, 4)), np.zeros((0, 2, 4, 4)))
    assert r.n_samples == 5
    np.testing.assert_array_equal(r.comoment, before)
    # finite values whose squares overflow: accepted, in other units (Reduction.scale)
    r.update(rng.standard_normal((4, 3)), 1e200 * rng.standard_normal((4, 2)))
    assert r.n_samples == 9 and (r.scale[3:] > 1).all() and np.isfinite(r._comoment).all()


def test_bad_device_names_the_argument():
    with pytest.raises(ValueError, match="device"):
        Reduction(2, 2, device="not-a-device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_gpu_says_so():
    with pytest.raises(ValueError, match="CUDA is not available"):
        Reduction(2, 2, device="cuda")


def test_import_repmatch_does_not_import_torch():
    code = "import repmatch, repmatch.distributed, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------ solvers
def _pair_spaces(X, Y, tol=repmatch.GRAM_TOL):
    host = repmatch.subspace.geometry(Reduction.from_arrays(X, Y), tol=tol)
    dev = repmatch.subspace.geometry(Reduction.from_arrays(X, Y, device=DEVICE), tol=tol)
    return host, dev


def test_device_geometry_lives_on_the_device():
    X, Y, _ = planted_subspace(n_shared=5, dim=3, n_random=5, n_samples=300)
    host, dev = _pair_spaces(X, Y)
    assert isinstance(dev.space, GramSpace) and isinstance(dev.space.G, torch.Tensor)
    assert isinstance(dev.space.restrict(np.array([0, 2, 4])).G, torch.Tensor)
    np.testing.assert_array_equal(host.live, dev.live)
    _close(dev.space.G.cpu().numpy(), host.space.G, rtol=1e-12)


def test_device_distances_equal_host_distances(rng):
    X, Y = relu_layers(n_samples=2000, n_x=40, n_y=40, shared_dim=20, private_dim=20, rng=1)
    X = np.hstack([X, X[:, :3] @ rng.standard_normal((3, 2))])  # in-span columns: rank deficiency
    host, dev = _pair_spaces(X, Y)
    n = X.shape[1] + Y.shape[1]
    for trial in range(20):
        B = rng.choice(n, size=int(rng.integers(1, n)), replace=False)
        A = np.setdiff1d(np.arange(n), B)
        if trial % 3 == 0:
            B = np.concatenate([B, np.arange(40, X.shape[1])])  # the dependent columns with their span
            A = np.setdiff1d(np.arange(n), B)
        dh = host.space.distances(A, B)
        dd = dev.space.distances(A, B)
        assert dd.shape == dh.shape
        far = dh > 1e-3
        np.testing.assert_allclose(dd[far], dh[far], rtol=0, atol=DIST_ATOL)
        np.testing.assert_array_equal(dd[~far] <= repmatch.GRAM_TOL, dh[~far] <= repmatch.GRAM_TOL)
    # the in-span columns are at distance ~0 from the span of their generators on both
    gen = np.arange(3)
    assert (dev.space.distances(np.arange(40, X.shape[1]), gen) <= repmatch.GRAM_TOL).all()


@pytest.mark.parametrize("rel", [0.3, 3.0])
def test_device_tolerance_edge_matches_host(rng, rel):
    # Y = X plus one column at relative distance rel * tol from span(X): inside the exact match at
    # eps = 0 iff rel <= 1, on both backends.
    tol = 1e-5
    X = rng.standard_normal((4000, 3))
    q = rng.standard_normal(4000)
    q -= X @ np.linalg.lstsq(X, q, rcond=None)[0]
    q /= np.linalg.norm(q)
    base = X @ rng.standard_normal(3)
    y = base + rel * tol * np.linalg.norm(base) * q / np.sqrt(1 - (rel * tol) ** 2)
    Y = np.column_stack([X @ rng.standard_normal((3, 3)), y])
    mh = repmatch.maximum_match(Reduction.from_arrays(X, Y), eps=0, tol=tol)
    md = repmatch.maximum_match(Reduction.from_arrays(X, Y, device=DEVICE), eps=0, tol=tol)
    assert md.key() == mh.key()
    assert len(md.x) == 3
    assert (3 in md.y) == (rel <= 1)


def test_planted_subspace_is_certified_consistently():
    # The planted neurons are exact mixtures: a Gram matrix (host or device) cannot tell their
    # rounding-level dependencies from real tiny directions, so some decisions stay uncertain; what
    # each backend certifies must agree with the arrays' answer (which the raw data settle).
    X, Y, planted = planted_subspace(n_shared=12, dim=6, n_random=30, n_samples=1500)
    host = Reduction.from_arrays(X, Y)
    dev = Reduction.from_arrays(X, Y, device=DEVICE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", repmatch.RepmatchWarning)
        for eps in (0.0, 0.1, 0.3, 0.6):
            truth = repmatch.maximum_match(X, Y, eps=eps)
            assert truth.certified
            for r in (host, dev):
                m = repmatch.maximum_match(r, eps=eps)
                assert set(m.x) <= set(truth.x) <= set(m.x) | set(m.uncertain_x)
                assert set(m.y) <= set(truth.y) <= set(m.y) | set(m.uncertain_y)
            if eps >= 0.1:  # away from 0 the planted neurons themselves are certified on both
                assert set(planted) <= set(repmatch.maximum_match(dev, eps=eps).x)


def test_relu_layers_curves_identical():
    X, Y = relu_layers(n_samples=3000, n_x=48, n_y=48, shared_dim=24, private_dim=24, rng=2)
    grid = np.linspace(0.05, 0.7, 14)
    ch = repmatch.similarity_curve(Reduction.from_arrays(X, Y), eps=grid)
    cd = repmatch.similarity_curve(Reduction.from_arrays(X, Y, device=DEVICE), eps=grid)
    np.testing.assert_array_equal(cd.size_x, ch.size_x)
    np.testing.assert_array_equal(cd.size_y, ch.size_y)
    assert len(np.unique(ch.similarity)) >= 4  # the curve has several levels: not a trivial test
    eh, mh = repmatch.minimal_epsilon(Reduction.from_arrays(X, Y), min_size=10)
    ed, md = repmatch.minimal_epsilon(Reduction.from_arrays(X, Y, device=DEVICE), min_size=10)
    assert md.key() == mh.key() and ed == pytest.approx(eh, abs=DIST_ATOL)


def test_simple_matches_identical():
    X, Y = relu_layers(n_samples=1500, n_x=14, n_y=14, shared_dim=8, private_dim=8, rng=3)
    host = Reduction.from_arrays(X, Y)
    dev = Reduction.from_arrays(X, Y, device=DEVICE)
    sh = repmatch.simple_matches(host, eps=0.3, restarts=1, rng=7)
    sd = repmatch.simple_matches(dev, eps=0.3, restarts=1, rng=7)
    assert len(sh) > 1
    assert sd.to_dict() == sh.to_dict()


def test_qr_reduction_on_device_is_solved_exactly():
    X, Y, planted = planted_subspace(n_shared=8, dim=4, n_random=10, n_samples=800)
    host = Reduction.from_arrays(X, Y, method="qr")
    dev = Reduction.from_arrays(X, Y, method="qr", device=DEVICE)
    assert isinstance(dev.device_tensors()["r"], torch.Tensor)
    for eps in (0.0, 0.2):
        assert repmatch.maximum_match(dev, eps=eps).key() == repmatch.maximum_match(host, eps=eps).key()
    assert repmatch.maximum_match(dev, eps=0.0).tol == repmatch.QR_TOL


def test_assignment_from_device_reduction_equals_host():
    X, Y = relu_layers(n_samples=2000, n_x=20, n_y=20, shared_dim=10, private_dim=10, rng=4)
    host = Reduction.from_arrays(X, Y)
    dev = Reduction.from_arrays(X, Y, device=DEVICE)
    ch = repmatch.correlation_from_reduction(host)
    cd = repmatch.correlation_from_reduction(dev)
    _close(cd.between, ch.between, rtol=1e-9)
    bh, bd = repmatch.bipartite_match(host), repmatch.bipartite_match(dev)
    np.testing.assert_array_equal(bd.x, bh.x)
    np.testing.assert_array_equal(bd.y, bh.y)
    np.testing.assert_allclose(bd.values, bh.values, rtol=0, atol=1e-9)


def test_add_moments_checks_its_input_on_both_backends(rng):
    X, Y = rng.standard_normal((300, 3)), rng.standard_normal((300, 2))
    Z = np.hstack([X, Y])
    mu = Z.mean(axis=0)
    com = (Z - mu).T @ (Z - mu)
    ref = Reduction.from_arrays(X, Y)
    for device in (None, DEVICE):
        # arrays, or tensors on the device (as a forward hook computes them), with autograd history
        mt = torch.tensor(mu, device=DEVICE, requires_grad=True) * 1.0
        r = Reduction(3, 2, device=device).add_moments(300, mt, torch.as_tensor(com, device=DEVICE))
        _close(r.comoment, ref.comoment)
        _close(r.mean, ref.mean)
        with pytest.raises(ValueError, match=r"mean must have shape \(5,\)"):
            r.add_moments(10, np.zeros(1), np.eye(5))
        with pytest.raises(ValueError, match=r"comoment must have shape \(5, 5\)"):
            r.add_moments(10, np.zeros(5), np.eye(4))
        with pytest.raises(ValueError, match="comoment contains"):
            r.add_moments(10, np.zeros(5), np.full((5, 5), np.nan))
        with pytest.raises(ValueError, match="mean contains"):
            r.add_moments(10, np.full(5, np.inf), np.eye(5))
        assert r.n_samples == 300  # the rejected batches added nothing


def test_big_endian_and_bfloat16_inputs(rng):
    X, Y = rng.standard_normal((200, 3)), rng.standard_normal((200, 2))
    ref = Reduction.from_arrays(X, Y)
    dev = Reduction(3, 2, device=DEVICE).update(X.astype(">f8"), Y.astype(">f8"))
    _close(dev.comoment, ref.comoment)
    xb, yb = torch.tensor(X, dtype=torch.bfloat16), torch.tensor(Y, dtype=torch.bfloat16)
    host = Reduction(3, 2).update(xb, yb)  # NumPy has no bfloat16: read as float32 (exact)
    exact = Reduction.from_arrays(xb.float().numpy(), yb.float().numpy())
    np.testing.assert_array_equal(host.comoment, exact.comoment)
