"""Damaged activation and reduction files are ValueErrors naming the file; saved files keep the umask."""

import os
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repmatch import Reduction
from repmatch import io as rio


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("io")
    g = np.random.default_rng(0)
    X, Y = g.standard_normal((80, 5)), g.standard_normal((80, 4))
    np.savez(d / "acts.npz", l1=X, l2=Y)
    np.save(d / "one.npy", X)
    reds = {"l1": Reduction.from_arrays(X, Y), "l2": Reduction.from_arrays(Y, X, method="qr")}
    rio.save_reductions(d / "red.npz", reds, metadata={"dataset": "digits"})
    return d


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(["acts.npz", "one.npy", "red.npz"]), fraction=st.floats(0.0, 0.999))
def test_any_truncation_is_a_value_error_naming_the_file(files, tmp_path_factory, name, fraction):
    data = (files / name).read_bytes()
    path = tmp_path_factory.mktemp("t") / name
    path.write_bytes(data[: int(len(data) * fraction)])
    load = rio.load_reductions if name == "red.npz" else rio.load_activations
    with pytest.raises(ValueError) as info:
        load(path, "A")
    assert str(info.value).startswith("A: ") and str(path) in str(info.value)


@settings(max_examples=40, deadline=None)
@given(offset=st.integers(0, 10_000), flip=st.integers(1, 255))
def test_any_flipped_byte_is_an_error_or_the_same_data(files, tmp_path_factory, offset, flip):
    """A flipped byte is caught (CRC, zip structure, header) or lands where it changes nothing read."""
    data = bytearray((files / "acts.npz").read_bytes())
    offset %= len(data)
    data[offset] ^= flip
    path = tmp_path_factory.mktemp("f") / "acts.npz"
    path.write_bytes(bytes(data))
    try:
        got = rio.load_activations(path, "A")
    except ValueError as exc:
        assert str(exc).startswith("A: ") and str(path) in str(exc)
    else:
        want = rio.load_activations(files / "acts.npz")
        assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in got)


def test_reductions_file_fields_and_metadata_named(files, tmp_path):
    with np.load(files / "red.npz") as f:
        entries = {k: f[k] for k in f.files}
    np.savez(tmp_path / "no_r.npz", **{k: v for k, v in entries.items() if k != "l2/r"})
    with pytest.raises(ValueError, match=r"FILE: layer 'l2' of .*no_r.npz is damaged: missing field\(s\) r"):
        rio.load_reductions(tmp_path / "no_r.npz", "FILE")
    np.savez(tmp_path / "meta.npz", **{**entries, "metadata": np.array("{not json")})
    with pytest.raises(ValueError, match="its metadata is not valid JSON"):
        rio.load_reductions(tmp_path / "meta.npz", "FILE")
    np.savez(tmp_path / "nolayers.npz", **{k: v for k, v in entries.items() if k != "layers"})
    with pytest.raises(ValueError, match="no 'layers' entry"):
        rio.load_reductions(tmp_path / "nolayers.npz", "FILE")
    reds, meta = rio.load_reductions(files / "red.npz")
    assert meta == {"dataset": "digits"} and reds["l2"].method == "qr"


def test_non_numeric_and_object_arrays(tmp_path):
    np.save(tmp_path / "s.npy", np.array([["a", "b"]]))
    with pytest.raises(ValueError, match=r"A: layer 's' in .*s.npy has dtype <U1; activations must be real numbers"):
        rio.load_activations(tmp_path / "s.npy", "A")
    np.save(tmp_path / "o.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="object array .* never unpickles"):
        rio.load_activations(tmp_path / "o.npy", "A")
    with zipfile.ZipFile(tmp_path / "m.npz", "w") as z:
        z.writestr("l1.npy", b"no npy header")
    with pytest.raises(ValueError, match="member 'l1' is not an .npy array"):
        rio.load_activations(tmp_path / "m.npz", "A")


# ------------------------------------------------------------------------------------------------ extraction
torch = pytest.importorskip("torch")


def _net(bad: bool):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2), torch.nn.ReLU())
    if bad:
        with torch.no_grad():
            net[2].weight[1, 0] = float("nan")
    return net


def test_extract_refuses_nonfinite_activations_naming_the_layer():
    from repmatch.activations import extract, reduce_pair

    loader = [torch.randn(8, 3) for _ in range(3)]
    assert extract(_net(False), loader)["3"].shape == (24, 2)
    with pytest.raises(ValueError, match=r"layer '3' of model \(batch 0\) contains 8 non-finite value\(s\) \(NaN"):
        extract(_net(True), loader)
    with pytest.raises(ValueError, match=r"layer '3' of model_b contains 8 non-finite"):
        reduce_pair(_net(False), _net(True), loader)


def test_saved_npz_respects_the_umask_and_creates_its_directory(tmp_path):
    from repmatch.activations import reduce_pair

    loader = [torch.randn(8, 3) for _ in range(2)]
    old = os.umask(0o027)
    try:
        target = tmp_path / "new" / "dir"
        reduce_pair(_net(False), _net(False), loader, save_npz=(target / "a.npz", target / "b.npz"))
    finally:
        os.umask(old)
    assert {os.stat(target / n).st_mode & 0o777 for n in ("a.npz", "b.npz")} == {0o640}
    assert sorted(os.listdir(target)) == ["a.npz", "b.npz"]  # no temporary directory left
