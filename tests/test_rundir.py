"""Run directories (repmatch._rundir): the lock, damaged cache files as misses, kept results of other configurations.

The same behaviour through the command line, in subprocesses, is in test_faults.py.
"""

import json
import os
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repmatch import Reduction
from repmatch import _rundir as rd
from repmatch.io import save_reductions


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


# ------------------------------------------------------------------------------------------------ lock
def test_lock_records_the_holder_and_is_released(tmp_path):
    with rd.RunLock(tmp_path / "run", option="--out", command="repmatch reproduce --seeds 0 1",
                    config={"seeds": [0, 1], "progress": True}) as lock:
        assert not lock.readonly
        info = json.loads((tmp_path / "run" / rd.LOCK_NAME).read_text())
        assert info["pid"] == os.getpid() and info["command"] == "repmatch reproduce --seeds 0 1"
        assert info["config_hash"] == rd.config_hash({"seeds": [0, 1]})  # progress changes no number
        assert os.stat(lock.path).st_mode & 0o777 == 0o666 & ~_umask()
    assert not (tmp_path / "run" / rd.LOCK_NAME).exists()


def test_second_holder_is_refused_naming_the_first(tmp_path):
    first = rd.RunLock(tmp_path, option="--out", command="repmatch reproduce --permutations 99",
                       config={"permutations": 99}).acquire()
    errors = []

    def other():  # another thread: a separate open file, so flock conflicts as with another process
        try:
            rd.RunLock(tmp_path, option="--out", config={"permutations": 10}).acquire()
        except rd.RunDirLocked as exc:
            errors.append(str(exc))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    first.release()
    assert len(errors) == 1
    msg = errors[0]
    assert msg.startswith(f"--out: {tmp_path} is in use by another repmatch run (pid {os.getpid()}")
    assert "command: repmatch reproduce --permutations 99" in msg and "a different configuration" in msg
    rd.RunLock(tmp_path).acquire().release()  # free again


def test_nested_use_in_one_thread_is_reentrant(tmp_path):
    outer = rd.RunLock(tmp_path).acquire()
    with rd.RunLock(tmp_path) as inner:
        assert not inner.readonly
    assert (tmp_path / rd.LOCK_NAME).exists()  # still held by the outer lock
    outer.release()
    assert not (tmp_path / rd.LOCK_NAME).exists()


def test_stale_lock_is_taken_over_with_a_warning(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / rd.LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "command": "repmatch reproduce (killed)"}))
    with pytest.warns(rd.RunDirWarning, match=f"took over the lock .* left by pid {dead.pid}.*no longer running"):
        lock = rd.RunLock(tmp_path, option="--out").acquire()
    assert lock.took_over["pid"] == dead.pid
    assert json.loads((tmp_path / rd.LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()


def test_lock_held_by_a_live_process_is_not_taken_over(tmp_path):
    code = ("import sys, time; from repmatch._rundir import RunLock; RunLock(sys.argv[1]).acquire(); "
            "print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(rd.RunDirLocked, match=f"pid {holder.pid}"):
            rd.RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    with warnings.catch_warnings(record=True) as w:  # its lock file stays, but the kernel dropped the lock
        warnings.simplefilter("always")
        rd.RunLock(tmp_path).acquire().release()
    assert any(f"pid {holder.pid}" in str(x.message) for x in w)


def test_a_file_is_not_a_run_directory(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is a file, expected a directory"):
        rd.RunLock(tmp_path / "f", option="--out").acquire()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories (test_faults covers it)")
def test_read_only_directory_is_not_locked(tmp_path):
    os.chmod(tmp_path, 0o555)
    try:
        assert rd.writable(tmp_path)[0] is False
        with rd.RunLock(tmp_path) as lock:
            assert lock.readonly
        assert not (tmp_path / rd.LOCK_NAME).exists()
    finally:
        os.chmod(tmp_path, 0o755)


def test_writable_is_tried(tmp_path):
    assert rd.writable(tmp_path) == (True, "")
    ok, why = rd.writable(tmp_path / "missing")
    assert not ok and why
    assert os.listdir(tmp_path) == []  # the probe is removed


# ------------------------------------------------------------------------------------------------ cache files
def _record(tmp_path):
    path = tmp_path / "unit.json"
    value = {"similarity": [0.0, 0.25, 1.0], "n_x": 4}
    path.write_text(json.dumps({"key": "subspace/p/l", "hash": "abc", "value": value}))
    return path, value


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(0, 200), junk=st.binary(max_size=8))
def test_damaged_unit_json_is_a_miss(tmp_path_factory, cut, junk):
    path, value = _record(tmp_path_factory.mktemp("u"))
    data = path.read_bytes()
    damaged = data[:cut] + junk
    path.write_bytes(damaged)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        got = rd.read_unit_json(str(path), "subspace/p/l", "abc")
    if damaged == data or (damaged.startswith(data) and damaged[len(data):].strip() == b""):
        assert got == value  # only the intact record is read back
    else:
        assert got is None or got == value
        if got is None:
            assert any(issubclass(x.category, rd.RunDirWarning) and "is damaged" in str(x.message) for x in w)


@pytest.mark.parametrize("content, warned", [
    ("[1, 2]", True),  # a JSON of the wrong type
    ('{"key": "subspace/p/l", "hash": "abc", "value": 3}', True),  # right hash, value of the wrong type
    ('{"key": "other/unit", "hash": "abc", "value": {}}', True),  # another unit's record
    ('{"key": "subspace/p/l", "hash": "old", "value": {}}', False),  # a changed parameter: an ordinary miss
])
def test_unit_json_of_the_wrong_shape(tmp_path, content, warned):
    path = tmp_path / "unit.json"
    path.write_text(content)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert rd.read_unit_json(str(path), "subspace/p/l", "abc") is None
    assert bool([x for x in w if issubclass(x.category, rd.RunDirWarning)]) == warned


@pytest.fixture(scope="module")
def reductions_file(tmp_path_factory):
    g = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("red") / "red.npz"
    reds = {"a": Reduction.from_arrays(g.standard_normal((50, 3)), g.standard_normal((50, 2))),
            "b": Reduction.from_arrays(g.standard_normal((50, 4)), g.standard_normal((50, 4)))}
    save_reductions(path, reds)
    return path


@settings(max_examples=30, deadline=None)
@given(fraction=st.floats(0.0, 0.999))
def test_truncated_reductions_are_a_miss(reductions_file, tmp_path_factory, fraction):
    data = reductions_file.read_bytes()
    path = tmp_path_factory.mktemp("t") / "red.npz"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.warns(rd.RunDirWarning, match="is damaged"):
        assert rd.load_cached_reductions(str(path), ["a", "b"]) is None


def test_cached_reductions_checked_for_layers_and_sizes(reductions_file):
    assert set(rd.load_cached_reductions(str(reductions_file), ["a", "b"], sizes={"a": (3, 2)})) == {"a", "b"}
    with pytest.warns(rd.RunDirWarning, match=r"no reduction for layer\(s\) \['c'\]"):
        assert rd.load_cached_reductions(str(reductions_file), ["a", "c"]) is None
    with pytest.warns(rd.RunDirWarning, match="has 3 x 2 units, expected 3 x 3"):
        assert rd.load_cached_reductions(str(reductions_file), ["a"], sizes={"a": (3, 3)}) is None


def test_cached_sample_checked(tmp_path):
    g = np.random.default_rng(1)
    path = tmp_path / "s.npz"
    np.savez(path, **{"0_x": g.random((10, 3), dtype=np.float32), "0_y": g.random((10, 2), dtype=np.float32)})
    got = rd.load_cached_sample(str(path), ["l"])
    assert got["l"][0].dtype == np.float64 and got["l"][1].shape == (10, 2)
    with pytest.warns(rd.RunDirWarning, match="is damaged"):  # a second layer is missing
        assert rd.load_cached_sample(str(path), ["l", "m"]) is None
    np.savez(path, **{"0_x": np.ones((10, 3)), "0_y": np.ones((9, 2))})
    with pytest.warns(rd.RunDirWarning, match="have shapes"):
        assert rd.load_cached_sample(str(path), ["l"]) is None


def test_quarantine_keeps_the_file(tmp_path):
    p = tmp_path / "best.pt"
    p.write_bytes(b"xx")
    with pytest.warns(rd.RunDirWarning, match="best.pt is truncated: moved to best.pt.damaged; retraining"):
        rd.quarantine(str(p), "is truncated", "retraining")
    assert not p.exists() and (tmp_path / "best.pt.damaged").read_bytes() == b"xx"


# ------------------------------------------------------------------------------------------------ results
def _results(out, config):
    os.makedirs(out / "tables", exist_ok=True)
    (out / "results.json").write_text(json.dumps({"config": config, "n": 1}))
    (out / "report.html").write_text("page")
    (out / "tables" / "t.csv").write_text("a,b")


def test_same_configuration_is_not_archived(tmp_path):
    _results(tmp_path, {"seeds": [0, 1], "out": "x", "progress": True, "device": "cpu"})
    # where and how verbosely it runs changes no number
    assert rd.archive_previous_results(str(tmp_path), {"seeds": [0, 1], "out": "y", "progress": False,
                                                       "device": "cuda"}) is None
    assert (tmp_path / "results.json").exists()


def test_other_configuration_is_kept_under_its_hash(tmp_path):
    old = {"seeds": [0, 1, 2], "permutations": 10}
    _results(tmp_path, old)
    with pytest.warns(rd.RunDirWarning, match=r"different configuration \(permutations 10 -> 99; seeds "):
        dest = rd.archive_previous_results(str(tmp_path), {"seeds": [0, 1], "permutations": 99})
    assert dest == os.path.join(str(tmp_path), "previous", f"config-{rd.config_hash(old)}")
    assert json.loads(open(os.path.join(dest, "results.json")).read())["config"] == old
    assert open(os.path.join(dest, "tables", "t.csv")).read() == "a,b"
    assert not (tmp_path / "results.json").exists() and not (tmp_path / "report.html").exists()


def test_unreadable_results_are_kept_too(tmp_path):
    (tmp_path / "results.json").write_text("{trunc")
    with pytest.warns(rd.RunDirWarning, match="unreadable"):
        dest = rd.archive_previous_results(str(tmp_path), {"seeds": [0, 1]})
    assert os.path.basename(dest).startswith("unreadable-")
    assert open(os.path.join(dest, "results.json")).read() == "{trunc"
