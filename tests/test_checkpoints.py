"""Checkpoints are read with torch.load(weights_only=True); everything but tensors is JSON."""

import collections
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from repmatch.nets import (CheckpointError, UnsafeCheckpointError, load_checkpoint, load_dataset,  # noqa: E402
                           read_checkpoint, train)
from repmatch.nets import checkpoints as ck  # noqa: E402

SMALL = dict(n_train=256, n_test=128, width=0.5, batch_size=64, progress=False)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", n_train=256, n_test=128)


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    train("smallcnn", data=digits, seed=0, epochs=2, out=out, **SMALL)
    return out


def test_file_holds_only_tensors_and_json(trained):
    raw = torch.load(trained / "last.pt", weights_only=True)  # the safe loader accepts it as it is
    assert set(raw) == {"format", "meta", "model", "optimizer", "rng"} and raw["format"] == ck.CHECKPOINT_FORMAT
    meta = json.loads(raw["meta"])
    assert set(meta) == set(ck.META_KEYS)
    assert meta["epoch"] == 2 and len(meta["history"]) == 2 and meta["config"]["seed"] == 0
    assert all(isinstance(v, torch.Tensor) for v in raw["model"].values())
    ckpt = read_checkpoint(trained / "last.pt")
    assert isinstance(ckpt["scheduler"]["milestones"], collections.Counter)
    assert ckpt["scheduler"]["milestones"] == collections.Counter({1: 1})  # milestones(2) == [1]


def test_malicious_pickle_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch '{marker}'",))

    path = tmp_path / "evil.pt"
    torch.save({"format": ck.CHECKPOINT_FORMAT, "meta": "{}", "model": Payload()}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"checkpoint: refusing to load .*evil\.pt.*posix\.system"):
        read_checkpoint(path)
    with pytest.raises(UnsafeCheckpointError, match="--checkpoint: refusing"):
        load_checkpoint(path, name="--checkpoint")
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is real: the unsafe loader runs it
    assert marker.exists()


def test_format_1_checkpoints_are_still_read_and_resumed(digits, tmp_path):
    """A checkpoint of the first format (plain entries, Counter milestones) resumes bit for bit."""
    full = train("smallcnn", data=digits, seed=1, epochs=3, out=tmp_path / "full", **SMALL)

    def stop(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train("smallcnn", data=digits, seed=1, epochs=3, out=tmp_path / "cut", callback=stop, **SMALL)
    new = read_checkpoint(tmp_path / "cut" / "last.pt")
    old = {**new, "format": "repmatch-checkpoint-1"}  # what the first format stored, entry for entry
    torch.save(old, tmp_path / "cut" / "last.pt")
    assert read_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 1
    resumed = train("smallcnn", data=digits, seed=1, epochs=3, out=tmp_path / "cut", **SMALL)
    assert resumed.resumed_from == 1
    a, b = read_checkpoint(full.last_checkpoint)["model"], read_checkpoint(resumed.last_checkpoint)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    model, _ = load_checkpoint(resumed.best_checkpoint)
    assert not model.training


@pytest.mark.parametrize("make, match", [
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.write_text("not a checkpoint"), "is damaged or not a PyTorch checkpoint"),
    (lambda p: torch.save([1, 2], p), "is not a repmatch training checkpoint"),
    (lambda p: torch.save({"format": ck.CHECKPOINT_FORMAT, "meta": "{oops", "model": {}}, p), "bad JSON"),
    (lambda p: torch.save({"format": ck.CHECKPOINT_FORMAT, "meta": "[1]", "model": {}}, p), "not an object"),
])
def test_damaged_files_name_the_file(make, match, tmp_path):
    path = tmp_path / "x.pt"
    make(path)
    with pytest.raises(CheckpointError, match=match) as info:
        read_checkpoint(path, name="--checkpoint")
    assert str(info.value).startswith(f"--checkpoint: {path}") and info.value.reason in str(info.value)
    assert not isinstance(info.value, UnsafeCheckpointError)


@settings(max_examples=25, deadline=None)
@given(st.floats(0.05, 0.95))
def test_truncated_checkpoint_is_a_checkpoint_error(trained, tmp_path_factory, fraction):
    data = (trained / "best.pt").read_bytes()
    path = tmp_path_factory.mktemp("trunc") / "best.pt"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match="best.pt"):
        read_checkpoint(path)


def test_weights_that_do_not_fit_and_missing_entries(trained, tmp_path):
    ckpt = read_checkpoint(trained / "best.pt")
    ckpt["model_kwargs"] = {**ckpt["model_kwargs"], "width": 1.0}  # the weights are of width 0.5
    ck.save_checkpoint(tmp_path / "wide.pt", **{k: v for k, v in ckpt.items() if k != "format"})
    with pytest.raises(CheckpointError, match="do not fit its architecture"):
        load_checkpoint(tmp_path / "wide.pt")
    with pytest.raises(ValueError, match="missing entries"):
        ck.save_checkpoint(tmp_path / "x.pt", model={}, optimizer={}, rng=torch.zeros(1), scheduler={})
    with pytest.raises(TypeError):  # not JSON: refused when saving, not when the file is read back
        ck.save_checkpoint(tmp_path / "y.pt", **{**{k: v for k, v in ckpt.items() if k != "format"},
                                                 "history": [object()]})
    assert not (tmp_path / "y.pt").exists()


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.integers(0, 10_000), st.integers(1, 5), max_size=6),
       st.floats(1e-6, 1.0), st.integers(0, 500))
def test_scheduler_state_survives_json(milestones, gamma, last_epoch):
    state = {"milestones": collections.Counter(milestones), "gamma": gamma, "last_epoch": last_epoch,
             "base_lrs": [0.1], "_last_lr": [0.1 * gamma]}
    text = json.dumps(ck._json_scheduler(state))
    assert ck._torch_scheduler(json.loads(text)) == state
