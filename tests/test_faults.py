"""Fault injection through the real command line (issue 12).

Every class of hostile or unlucky input runs ``python -m repmatch ...`` in a subprocess and the test
asserts the exit status, that the error is exactly one line naming the file or option (no traceback),
and that nothing written earlier was lost (a previous output file, checkpoints, results.json).

Cost: tiny networks (smallcnn at width 0.5, 1 epoch on 200 digits) shared with the other reproduce
tests through the session's ``tiny_run``; a fully cached `reproduce` run directory is built once per
module and copied for each test that changes it.
"""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import TINY_REPRODUCE  # noqa: E402
from repmatch import Reduction  # noqa: E402
from repmatch.io import save_reductions  # noqa: E402
from repmatch.nets import read_checkpoint  # noqa: E402
from repmatch.nets.checkpoints import CHECKPOINT_FORMAT, save_checkpoint  # noqa: E402

TIMEOUT = 300  # seconds per command: generous for a loaded CI machine; every command here takes seconds


# ------------------------------------------------------------------------------------------- helpers
class Result:
    def __init__(self, proc):
        self.rc, self.out, self.err = proc.returncode, proc.stdout, proc.stderr

    def __repr__(self):
        return f"rc={self.rc}\nstdout:\n{self.out[-2000:]}\nstderr:\n{self.err[-4000:]}"


def cli(*args, cwd, prefix=(), umask=None, timeout=TIMEOUT) -> Result:
    """Run ``python -m repmatch ARGS`` in a subprocess (``prefix``: e.g. a read-only mount wrapper)."""
    cmd = [*prefix, sys.executable, "-m", "repmatch", *map(str, args)]
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    return Result(subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                                 preexec_fn=preexec))


def assert_error(res: Result, command: str, *fragments: str) -> str:
    """Exit status 2 and a single line ``repmatch COMMAND: error: ...`` containing every fragment."""
    assert res.rc == 2, res
    assert "Traceback" not in res.err, res
    lines = [line for line in res.err.splitlines() if line.strip() and ": warning: " not in line]
    assert len(lines) == 1, res
    line = lines[0]
    assert line.startswith(f"repmatch {command}: error: "), res
    for f in fragments:
        assert f in line, f"{f!r} not in {line!r}"
    return line


def snapshot(directory) -> dict:
    """``{relative path: (size, mtime_ns, bytes hash)}`` of every file under ``directory``."""
    import hashlib

    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            p = os.path.join(root, name)
            st = os.stat(p)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, directory)] = (st.st_size, st.st_mtime_ns, hashlib.sha256(fh.read()).hexdigest())
    return out


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind / /mnt 2>/dev/null || mount -t tmpfs x /mnt"],
                           capture_output=True)
    return probe.returncode == 0


@contextlib.contextmanager
def read_only(directory):
    """Make ``directory`` (and everything below it) read-only for the commands run with the yielded prefix.

    As a normal user: permission bits (EACCES). As root, whom permission bits do not stop: a read-only
    bind mount in a private mount namespace of the command (EROFS), invisible to this process.
    """
    directory = os.fspath(directory)
    if os.geteuid() != 0:
        dirs = [root for root, _, _ in os.walk(directory)]
        for d in dirs:
            os.chmod(d, 0o555)
        try:
            yield ()
        finally:
            for d in dirs:
                os.chmod(d, 0o755)
        return
    if not _unshare_works():
        why = "running as root without mount namespaces: no way to make a directory read-only here"
        if os.environ.get("CI"):  # as elsewhere in the suite: skip on a developer's machine, fail in CI
            pytest.fail(why)
        pytest.skip(why)
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    yield ("unshare", "-m", "sh", "-c", script, "sh", directory)


def reproduce_argv(out, **changes):
    t = {**TINY_REPRODUCE, **changes}
    return ["reproduce", "--arch", t["arch"], "--dataset", t["dataset"], "--seeds", *map(str, t["seeds"]),
            "--epochs", str(t["epochs"]), "--width", str(t["width"]), "--n-train", str(t["n_train"]),
            "--n-test", str(t["n_test"]), "--permutations", str(t["permutations"]),
            "--sample-rows", str(t["sample_rows"]), "--simple-eps", str(t.get("simple_eps", 0.25)),
            "--out", str(out), "--no-progress"]


def close(a, b, tol=1e-6, path=""):
    """Paths where two results.json trees differ (floats within ``tol``): forward passes in other
    processes may run on another thread count, which changes float sums in the last bits."""
    if isinstance(a, dict) and isinstance(b, dict):  # not "warnings": which unit warns first depends on the order
        return [p for k in sorted((set(a) | set(b)) - {"warnings"})  # units are computed in (cached statistics)
                for p in close(a.get(k), b.get(k), tol, f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b)) for p in close(x, y, tol, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        return [] if abs(a - b) <= tol * max(1.0, abs(a), abs(b)) else [path]
    return [] if a == b else [path]


class _Evil:
    """Unpickling this runs ``touch MARKER``: the payload of a crafted checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def write_evil_checkpoint(path, marker):
    torch.save({"format": CHECKPOINT_FORMAT, "meta": "{}", "model": _Evil(marker)}, path)
    # the payload is live: loading it the unsafe way runs it
    torch.load(path, weights_only=False)
    assert os.path.exists(marker)
    os.remove(marker)


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def nets(tiny_run):
    """The directory of the two trained seeds of the session's tiny reproduce run (seed0/, seed1/)."""
    (d,) = list((tiny_run[0] / "nets").glob("train-*"))
    return d


@pytest.fixture(scope="module")
def cli_run(tiny_run, tmp_path_factory):
    """A reproduce run directory fully cached for `reproduce_argv` (report included), built once."""
    from repmatch.cli import main

    out = tmp_path_factory.mktemp("cli_run") / "run"
    # the CLI's default penalties/clusters differ from tiny_run's: those units are computed here
    shutil.copytree(tiny_run[0], out, ignore=shutil.ignore_patterns("results.json"))
    assert main(reproduce_argv(out)) == 0
    assert (out / "report.html").exists()
    return out


@pytest.fixture
def run_copy(cli_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(cli_run, out)
    return out


@pytest.fixture(scope="module")
def acts(tmp_path_factory):
    """Activation files a.npz / b.npz (two layers), their reductions file, and the compare JSON."""
    d = tmp_path_factory.mktemp("acts")
    g = np.random.default_rng(0)
    X = np.maximum(g.standard_normal((300, 6)), 0)
    Y = np.maximum(X[:, ::-1] + 0.3 * g.standard_normal((300, 6)), 0)
    np.savez(d / "a.npz", l1=X, l2=X[:, :3])
    np.savez(d / "b.npz", l1=Y, l2=Y[:, :4])
    save_reductions(d / "red.npz", {"l1": Reduction.from_arrays(X, Y)})
    return d


@pytest.fixture
def previous(tmp_path):
    """An earlier output file that a failing command must leave as it was."""
    p = tmp_path / "previous.json"
    p.write_text('{"earlier": "result"}')
    return p


# ------------------------------------------------------------------------------------------- security
def test_crafted_checkpoint_is_refused_by_extract(nets, tmp_path, previous):
    evil, marker = tmp_path / "evil.pt", tmp_path / "PWNED"
    write_evil_checkpoint(evil, marker)
    res = cli("extract", "--checkpoint", evil, "--checkpoint", nets / "seed1" / "best.pt", "--out", previous,
              cwd=tmp_path)
    assert_error(res, "extract", "--checkpoint", "refusing to load", str(evil), "posix.system", "weights_only=True")
    assert not marker.exists()
    assert previous.read_text() == '{"earlier": "result"}'


def test_crafted_last_pt_planted_before_train_resumes_is_refused(nets, tmp_path):
    out = tmp_path / "train"
    shutil.copytree(nets / "seed0", out / "seed0")
    before = snapshot(out)
    marker = tmp_path / "PWNED"
    write_evil_checkpoint(out / "seed0" / "last.pt", marker)
    before["seed0/last.pt"] = snapshot(out)["seed0/last.pt"]
    res = cli("train", "--arch", "smallcnn", "--epochs", "2", "--width", "0.5", "--n-train", "200", "--n-test", "60",
              "--seeds", "0", "--out", out, "--quiet", cwd=tmp_path)
    assert_error(res, "train", "--out: cannot resume: refusing to load", "last.pt", "--no-resume")
    assert not marker.exists()
    assert snapshot(out) == before  # best.pt, train.json and the planted file untouched


def test_crafted_best_pt_in_a_run_directory_is_refused(run_copy, tmp_path):
    (best,) = run_copy.glob("nets/train-*/seed1/best.pt")
    marker = tmp_path / "PWNED"
    write_evil_checkpoint(best, marker)
    before = snapshot(run_copy)
    res = cli(*reproduce_argv(run_copy, ), "--no-report", cwd=tmp_path)
    assert_error(res, "reproduce", "refusing to load", str(best))
    assert not marker.exists()
    after = snapshot(run_copy)
    assert after == before  # nothing overwritten, the planted file kept for inspection, no lock left


# ------------------------------------------------------------------------------------------- damaged inputs
def _missing_keys(good, path):
    ckpt = read_checkpoint(good)
    meta = {k: ckpt[k] for k in ("config", "data", "history", "epoch", "best_test_acc", "best_epoch", "test_acc")}
    meta["scheduler"] = {}
    torch.save({"format": CHECKPOINT_FORMAT, "meta": json.dumps(meta), "model": ckpt["model"],
                "optimizer": ckpt["optimizer"], "rng": ckpt["rng"]}, path)


@pytest.mark.parametrize("kind, message", [
    ("truncated", "is damaged or not a PyTorch checkpoint"),
    ("text", "is damaged or not a PyTorch checkpoint"),
    ("empty", "is empty (0 bytes)"),
    ("missing keys", "is incomplete: missing model_kwargs"),
])
def test_damaged_checkpoints(kind, message, nets, tmp_path, previous):
    good = nets / "seed0" / "best.pt"
    bad = tmp_path / "bad.pt"
    if kind == "truncated":
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "text":
        bad.write_text("this is a text file, not a checkpoint\n")
    elif kind == "empty":
        bad.write_bytes(b"")
    else:
        _missing_keys(good, bad)
    res = cli("extract", "--checkpoint", good, "--checkpoint", bad, "--out", previous, cwd=tmp_path)
    assert_error(res, "extract", "--checkpoint", str(bad), message)
    assert previous.read_text() == '{"earlier": "result"}'


def _damage_npz(kind, acts, path):
    raw = (acts / "a.npz").read_bytes()
    if kind == "truncated zip":
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "bad member":
        import zipfile

        with zipfile.ZipFile(path, "w") as z:
            z.writestr("l1.npy", b"this member is no .npy array")
    elif kind == "CRC error":
        data = bytearray(raw)
        data[data.find(b"NUMPY") + 300] ^= 0xFF  # one flipped byte inside the first array's data
        path.write_bytes(bytes(data))
    elif kind == "missing layer keys":
        with np.load(acts / "red.npz") as f:
            entries = {k: f[k] for k in f.files if k != "l1/comoment"}
        np.savez(path, **entries)


@pytest.mark.parametrize("kind, message", [
    ("truncated zip", "damaged zip archive"),
    ("bad member", "member 'l1' is not an .npy array"),
    ("CRC error", "Bad CRC-32"),
    ("missing layer keys", "layer 'l1' of"),
])
def test_damaged_npz(kind, message, acts, tmp_path, previous):
    bad = tmp_path / "bad.npz"
    _damage_npz(kind, acts, bad)
    args = [bad] if kind == "missing layer keys" else [bad, acts / "b.npz"]
    res = cli("compare", *args, "--json", previous, cwd=tmp_path)
    line = assert_error(res, "compare", str(bad), message)
    assert line.split(": error: ")[1].startswith("FILE: " if len(args) == 1 else "A: ")
    assert previous.read_text() == '{"earlier": "result"}'


@pytest.mark.parametrize("kind, message", [
    ("truncated .npy", "truncated or damaged"),
    ("object dtype", "object array (dtype=object)"),
])
def test_bad_npy_files_name_the_file(kind, message, acts, tmp_path, previous):
    bad = tmp_path / "bad.npy"
    if kind == "truncated .npy":
        np.save(bad, np.ones((100, 4)))
        bad.write_bytes(bad.read_bytes()[:-500])
    else:
        np.save(bad, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.save(tmp_path / "good.npy", np.ones((100, 4)))
    res = cli("compare", tmp_path / "good.npy", bad, "--json", previous, cwd=tmp_path)
    assert_error(res, "compare", "B: could not read", str(bad), message)
    assert previous.read_text() == '{"earlier": "result"}'


@pytest.mark.parametrize("content, message", [
    ('{"format": "repmatch-reproduce-2", "config": {"arch": "x"}, "truncated', "is damaged: not valid JSON"),
    ("[1, 2, 3]", "is not a repmatch reproduce results file"),
    ('{"format": "repmatch-reproduce-2", "config": {}, "seeds": [0, 1], "pairs": [[0, 1]], "eps_grid": [0.1], '
     '"authors_eps": [0.1], "layers": "fc", "results": [], "networks": {}, "provenance": {}, "question": "?"}',
     "'layers' is a str, expected a list"),
])
def test_results_json_of_the_wrong_shape(content, message, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(content)
    (run / "report.html").write_text("<p>earlier report</p>")
    res = cli("report", run, cwd=tmp_path)
    assert_error(res, "report", str(run / "results.json"), message)
    assert (run / "report.html").read_text() == "<p>earlier report</p>"


# ------------------------------------------------------------------------------------------- devices, paths
@pytest.mark.parametrize("device, message", [
    pytest.param("cuda", "CUDA is not available",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
    ("tpu9", "not a torch device"),
])
def test_unusable_device_is_refused_before_any_work(device, message, nets, tmp_path, previous):
    res = cli("train", "--arch", "smallcnn", "--epochs", "1", "--out", tmp_path / "new", "--device", device,
              cwd=tmp_path)
    assert_error(res, "train", f"--device {device}", message)
    assert not (tmp_path / "new").exists()
    if device != "cuda":
        return  # the same check serves every command; run them all once
    res = cli("extract", "--checkpoint", nets / "seed0" / "best.pt", "--checkpoint", nets / "seed1" / "best.pt",
              "--out", previous, "--device", device, cwd=tmp_path)
    assert_error(res, "extract", f"--device {device}", message)
    assert previous.read_text() == '{"earlier": "result"}'
    res = cli(*reproduce_argv(tmp_path / "rep"), "--device", device, cwd=tmp_path)
    assert_error(res, "reproduce", f"--device {device}", message)
    assert not (tmp_path / "rep").exists()


def test_out_that_is_a_file_or_a_directory(nets, acts, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    a_dir = tmp_path / "a_dir"
    a_dir.mkdir()
    ckpts = ["--checkpoint", nets / "seed0" / "best.pt", "--checkpoint", nets / "seed1" / "best.pt"]
    cases = [
        (("compare", acts / "a.npz", acts / "b.npz", "--json", a_dir), "compare", f"--json: {a_dir} is a directory"),
        (("extract", *ckpts, "--out", a_dir), "extract", f"--out: {a_dir} is a directory"),
        (("train", "--arch", "smallcnn", "--epochs", "1", "--out", a_file), "train", f"--out: {a_file} is a file"),
        ((*reproduce_argv(a_file),), "reproduce", f"--out: {a_file} is a file"),
    ]
    for argv, command, message in cases:
        assert_error(cli(*argv, cwd=tmp_path), command, message)
    assert a_file.read_text() == "keep me" and os.listdir(a_dir) == []


def test_unwritable_output_directory(nets, acts, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "earlier.json").write_text("{}")
    ckpts = ["--checkpoint", nets / "seed0" / "best.pt", "--checkpoint", nets / "seed1" / "best.pt"]
    with read_only(ro) as prefix:
        res = cli("compare", acts / "a.npz", acts / "b.npz", "--json", ro / "out.json", cwd=tmp_path, prefix=prefix)
        assert_error(res, "compare", f"--json: cannot write in the directory {ro}")
        assert res.out == ""  # refused before any measure was computed
        res = cli("extract", *ckpts, "--out", ro / "red.npz", cwd=tmp_path, prefix=prefix)
        assert_error(res, "extract", f"--out: cannot write in the directory {ro}")
        res = cli("train", "--arch", "smallcnn", "--epochs", "1", "--out", ro / "new", cwd=tmp_path, prefix=prefix)
        assert_error(res, "train", f"--out: cannot write in the directory {ro}", "to create")
    assert sorted(os.listdir(ro)) == ["earlier.json"]


def test_save_npz_into_a_missing_directory_names_it(nets, tmp_path):
    missing = tmp_path / "no" / "such"
    res = cli("extract", "--checkpoint", nets / "seed0" / "best.pt", "--checkpoint", nets / "seed1" / "best.pt",
              "--save-npz", missing / "a.npz", missing / "b.npz", cwd=tmp_path)
    line = assert_error(res, "extract", f"--save-npz: the directory {missing} does not exist")
    assert ".repmatch-chunks" not in line and not (tmp_path / "no").exists()


def test_negative_seed_names_the_option(acts, tmp_path):
    assert_error(cli("compare", acts / "a.npz", acts / "b.npz", "--seed", "-1", cwd=tmp_path), "compare",
                 "--seed must be an integer >= 0, got -1")
    assert_error(cli("train", "--arch", "smallcnn", "--epochs", "1", "--seeds", "0", "-1", "--out", tmp_path / "t",
                     cwd=tmp_path), "train", "--seeds must be an integer >= 0, got -1")


def test_unreachable_scheduler(tmp_path, previous):
    zarr = pytest.importorskip("zarr")
    pytest.importorskip("distributed")
    for name, n in (("a", 4), ("b", 3)):
        z = zarr.open(str(tmp_path / f"{name}.zarr"), mode="w", shape=(100, n), chunks=(50, n), dtype="f8")
        z[:] = np.random.default_rng(0).random((100, n))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    res = cli("dask-reduce", tmp_path / "a.zarr", tmp_path / "b.zarr", "--out", previous, "--scheduler",
              f"tcp://127.0.0.1:{port}", "--connect-timeout", "2", cwd=tmp_path)
    assert_error(res, "dask-reduce", f"--scheduler tcp://127.0.0.1:{port}: cannot reach the dask scheduler")
    assert time.perf_counter() - t0 < 60
    assert previous.read_text() == '{"earlier": "result"}'


def test_divergence_at_a_huge_learning_rate(nets, tmp_path):
    out = tmp_path / "train"
    shutil.copytree(nets / "seed1", out / "seed1")  # an earlier seed's run in the same --out
    before = snapshot(out)
    res = cli("train", "--arch", "smallcnn", "--epochs", "1", "--width", "0.5", "--n-train", "200", "--n-test", "60",
              "--batch-size", "20", "--seeds", "0", "--lr", "1e9", "--out", out, "--quiet", cwd=tmp_path)
    assert_error(res, "train", "--lr: training diverged: seed 0, epoch 1", "lower the learning rate")
    assert not (out / "seed0" / "last.pt").exists() and not (out / "seed0" / "best.pt").exists()
    assert snapshot(out) == before


# ------------------------------------------------------------------------------------------- compare, extract
def test_constant_layer_among_several(tmp_path):
    g = np.random.default_rng(1)
    X = np.maximum(g.standard_normal((400, 6)), 0)
    Y = np.maximum(X[:, ::-1] + 0.3 * g.standard_normal((400, 6)), 0)
    np.savez(tmp_path / "a.npz", fc1=X, dead=np.zeros((400, 5)), fc2=X[:, :4])
    np.savez(tmp_path / "b.npz", fc1=Y, dead=np.full((400, 3), 2.0), fc2=Y[:, :5])
    res = cli("compare", tmp_path / "a.npz", tmp_path / "b.npz", "--json", tmp_path / "out.json", cwd=tmp_path)
    assert res.rc == 0, res
    assert "cka is undefined for layer 'dead'" in res.err and "Traceback" not in res.err
    data = json.loads((tmp_path / "out.json").read_text())
    undefined = {(u["layer"], u["measure"]) for u in data["undefined"]}
    assert undefined == {("dead", m) for m in ("cka", "pwcca", "svcca", "procrustes")}
    dead_cka = data["layers"]["dead"]["cka"]
    assert dead_cka["undefined"] is True and "no variance" in dead_cka["reason"]
    import repmatch

    assert data["layers"]["dead"]["bipartite"]["mean"] == 0.0  # defined: no live unit to match
    assert data["layers"]["fc1"]["cka"]["value"] == pytest.approx(repmatch.linear_cka(X, Y).value, abs=1e-12)
    assert data["layers"]["fc2"]["pwcca"]["value"] == pytest.approx(repmatch.pwcca(X[:, :4], Y[:, :5]).value, abs=1e-10)


@pytest.fixture(scope="module")
def nonfinite_checkpoint(nets, tmp_path_factory):
    ckpt = read_checkpoint(nets / "seed0" / "best.pt")
    ckpt["model"]["features.0.weight"][0, 0, 0, 0] = float("inf")  # inf x 0-valued pixels = NaN
    path = tmp_path_factory.mktemp("nonfinite") / "inf.pt"
    save_checkpoint(path, **{k: v for k, v in ckpt.items() if k != "format"})
    return path


def test_extract_refuses_nonfinite_activations(nonfinite_checkpoint, nets, tmp_path, previous):
    res = cli("extract", "--checkpoint", nonfinite_checkpoint, "--save-npz", previous, "--quiet", cwd=tmp_path)
    assert_error(res, "extract", "layer 'features.1' of model (batch 0) contains", "non-finite")
    assert previous.read_text() == '{"earlier": "result"}'
    res = cli("extract", "--checkpoint", nets / "seed1" / "best.pt", "--checkpoint", nonfinite_checkpoint,
              "--out", previous, "--quiet", cwd=tmp_path)
    assert_error(res, "extract", "layer 'features.1' of model_b contains", "non-finite")
    assert previous.read_text() == '{"earlier": "result"}'


def test_flags_that_cannot_apply(acts, nets, tmp_path, previous):
    red, a, b = acts / "red.npz", acts / "a.npz", acts / "b.npz"
    one = nets / "seed0" / "best.pt"
    cases = [
        (("compare", red, "--permutations", "9", "--json", previous),
         "--permutations: a permutation null shuffles rows", "--save-npz"),
        (("compare", red, "--method", "qr", "--json", previous),
         f"--method qr: {red} holds gram reductions", "extract --method qr"),
        (("compare", a, b, "--measures", "clusters", "--n-clusters", "50", "--json", previous),
         "--n-clusters 50: layer 'l1' has only", "live"),
        (("compare", a, b, "--restarts", "2", "--json", previous), "--restarts applies to simple matches", "--simple"),
        (("extract", "--checkpoint", one, "--save-npz", tmp_path / "x.npz", "--pairs", "all"),
         "--pairs all: applies to reductions of two networks", "--save-npz"),
        (("extract", "--checkpoint", one, "--save-npz", tmp_path / "x.npz", "--sample-seed", "3"),
         "--sample-seed applies to --conv-mode sample:K or --seq-mode sample:K only"),
    ]
    for argv, *fragments in cases:
        assert_error(cli(*argv, cwd=tmp_path), argv[0], *fragments)
    assert previous.read_text() == '{"earlier": "result"}' and not (tmp_path / "x.npz").exists()


def test_outputs_respect_the_umask(nets, acts, tmp_path):
    ckpts = ["--checkpoint", nets / "seed0" / "best.pt", "--checkpoint", nets / "seed1" / "best.pt"]
    res = cli("extract", *ckpts, "--n-images", "40", "--out", tmp_path / "red.npz", "--save-npz", tmp_path / "a.npz",
              tmp_path / "b.npz", "--quiet", cwd=tmp_path, umask=0o027)
    assert res.rc == 0, res
    res = cli("compare", acts / "a.npz", acts / "b.npz", "--json", tmp_path / "c.json", cwd=tmp_path, umask=0o027)
    assert res.rc == 0, res
    modes = {name: os.stat(tmp_path / name).st_mode & 0o777 for name in ("red.npz", "a.npz", "b.npz", "c.json")}
    assert modes == dict.fromkeys(modes, 0o640)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no temporary file left


# ------------------------------------------------------------------------------------------- reproduce run directories
def test_damaged_cache_files_are_recomputed_with_a_warning(run_copy, tmp_path):
    before = json.loads((run_copy / "results.json").read_text())
    cache = run_copy / "cache"
    (red,) = cache.glob("reductions-trained-0-1-half0-*.npz")
    (sample,) = cache.glob("sample-0-1-*.npz")
    red.write_bytes(red.read_bytes()[:1000])  # truncated
    sample.write_bytes(sample.read_bytes()[: sample.stat().st_size // 3])
    layer = before["layers"][0]["name"]
    unit = cache / f"subspace__pair0-1__{layer}.json"
    unit.write_text("[1, 2, 3]")  # a JSON of the wrong type
    doc = json.loads((cache / f"mi__pair0-1__{layer}.json").read_text())
    (cache / f"mi__pair0-1__{layer}.json").write_text(json.dumps({**doc, "value": 3}))  # right hash, wrong value
    res = cli(*reproduce_argv(run_copy), "--no-report", cwd=tmp_path)
    assert res.rc == 0, res
    warnings = [line for line in res.err.splitlines() if line.startswith("repmatch reproduce: warning: ")]
    for damaged in (red, sample, unit, cache / f"mi__pair0-1__{layer}.json"):
        assert any(f"cache file {damaged} is damaged" in w for w in warnings), res
    after = json.loads((run_copy / "results.json").read_text())
    assert f"subspace/pair0-1/{layer}" in after["provenance"]["computed"]
    assert close(after["results"], before["results"]) == []
    assert np.load(red)["layers"].size == len(before["layers"])  # rewritten whole


def test_damaged_best_pt_is_retrained(run_copy, tmp_path):
    (best,) = run_copy.glob("nets/train-*/seed0/best.pt")
    original = read_checkpoint(best)["model"]
    best.write_bytes(best.read_bytes()[:5000])
    before = json.loads((run_copy / "results.json").read_text())
    res = cli(*reproduce_argv(run_copy), "--no-report", cwd=tmp_path)
    assert res.rc == 0, res
    assert f"warning: {best} is damaged" in res.err and "retraining seed 0" in res.err
    assert (best.parent / "best.pt.damaged").stat().st_size == 5000  # kept for inspection
    retrained = read_checkpoint(best)["model"]
    for k in original:  # the same seed trains the same network (thread counts may change the last bits)
        torch.testing.assert_close(retrained[k], original[k], atol=1e-4, rtol=1e-4)
    after = json.loads((run_copy / "results.json").read_text())
    assert close(after["results"], before["results"], tol=1e-3) == []


def test_second_run_is_refused_while_the_first_holds_the_lock(run_copy, tmp_path):
    code = ("import sys, time; from repmatch._rundir import RunLock; "
            "RunLock(sys.argv[1], option='--out', "
            "command='repmatch reproduce --seeds 0 1 2 --permutations 99').acquire(); "
            "print('locked', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(run_copy)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(run_copy)
        res = cli(*reproduce_argv(run_copy), cwd=tmp_path)
        assert_error(res, "reproduce", f"--out: {run_copy} is in use by another repmatch run", f"pid {holder.pid}",
                     "command: repmatch reproduce --seeds 0 1 2 --permutations 99")
        assert snapshot(run_copy) == before
    finally:
        holder.kill()
        holder.wait()


def test_stale_lock_of_a_dead_process_is_taken_over(run_copy, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = run_copy / "repmatch.lock"
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "2020-01-01T00:00:00",
                                "command": "repmatch reproduce (killed)"}))
    res = cli(*reproduce_argv(run_copy), "--no-report", cwd=tmp_path)
    assert res.rc == 0, res
    assert f"took over the lock {lock} left by pid {dead.pid}" in res.err and "no longer running" in res.err
    assert "0 units computed" in res.err
    assert not lock.exists()  # released at the end


def test_fully_cached_run_in_a_read_only_directory_only_reads(run_copy, tmp_path):
    before = snapshot(run_copy)
    with read_only(run_copy) as prefix:
        res = cli(*reproduce_argv(run_copy), cwd=tmp_path, prefix=prefix)
        assert res.rc == 0, res
        assert "is read-only: every unit was cached and nothing was written" in res.err
        # anything not cached is refused, before any work
        res = cli(*reproduce_argv(run_copy, permutations=4), cwd=tmp_path, prefix=prefix)
        assert_error(res, "reproduce", f"--out: {run_copy} is read-only", "make it writable")
    assert snapshot(run_copy) == before
    unit = sorted((run_copy / "cache").glob("clusters__*.json"))[-1]
    unit.unlink()  # the same configuration, one unit short of fully cached
    before = snapshot(run_copy)
    with read_only(run_copy) as prefix:
        res = cli(*reproduce_argv(run_copy), cwd=tmp_path, prefix=prefix)
        key = unit.stem.replace("__", "/")
        assert_error(res, "reproduce", f"--out: {run_copy} is read-only, but unit {key} is not cached")
    assert snapshot(run_copy) == before


def test_another_configuration_keeps_the_previous_report(run_copy, tmp_path):
    old_results = (run_copy / "results.json").read_bytes()
    old_page = (run_copy / "report.html").read_bytes()
    res = cli(*reproduce_argv(run_copy, simple_eps=0.3), "--no-report", cwd=tmp_path)
    assert res.rc == 0, res
    assert "held the results of a different configuration (simple_eps 0.25 -> 0.3)" in res.err
    (kept,) = (run_copy / "previous").glob("config-*")
    assert (kept / "results.json").read_bytes() == old_results and (kept / "report.html").read_bytes() == old_page
    assert (kept / "tables").is_dir() and (kept / "figures").is_dir()
    new = json.loads((run_copy / "results.json").read_text())
    assert new["config"]["simple_eps"] == 0.3 and not (run_copy / "report.html").exists()  # moved, not overwritten
    # the kept results still build their page
    res = cli("report", kept, cwd=tmp_path)
    assert res.rc == 0, res
