"""Seeded, deterministic, resumable training (smallcnn on a slice of the digits: ~0.1 s an epoch)."""

import json
import os

import pytest

torch = pytest.importorskip("torch")
# Tiny models: extra threads only add synchronisation overhead (and contention on shared CI runners).
torch.set_num_threads(1)

from repmatch.nets import (default_lr, load_checkpoint, load_dataset, milestones, read_checkpoint, train,  # noqa: E402
                           train_seeds)

SMALL = dict(n_train=256, n_test=128, width=0.5, batch_size=64, progress=False)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", n_train=256, n_test=128)


def state(path):
    return read_checkpoint(path)


def assert_same_tensors(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_same_seed_same_weights_bit_for_bit(tmp_path, digits):
    r1 = train("smallcnn", data=digits, seed=0, epochs=2, out=tmp_path / "a", **SMALL)
    r2 = train("smallcnn", data=digits, seed=0, epochs=2, out=tmp_path / "b", **SMALL)
    r3 = train("smallcnn", data=digits, seed=1, epochs=2, out=tmp_path / "c", **SMALL)
    a, b, c = (state(r.last_checkpoint)["model"] for r in (r1, r2, r3))
    assert_same_tensors(a, b)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert [h["train_loss"] for h in r1.history] == [h["train_loss"] for h in r2.history]


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path, digits):
    full = train("smallcnn", data=digits, seed=3, epochs=4, out=tmp_path / "full", **SMALL)

    def interrupt(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train("smallcnn", data=digits, seed=3, epochs=4, out=tmp_path / "cut", callback=interrupt, **SMALL)
    assert state(tmp_path / "cut" / "last.pt")["epoch"] == 2
    resumed = train("smallcnn", data=digits, seed=3, epochs=4, out=tmp_path / "cut", **SMALL)
    assert resumed.resumed_from == 2 and resumed.epochs_completed == 4
    a, b = state(full.last_checkpoint), state(resumed.last_checkpoint)
    assert_same_tensors(a["model"], b["model"])
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in h]  # noqa: E731
    assert strip(full.history) == strip(resumed.history)
    # a finished run resumes to nothing
    again = train("smallcnn", data=digits, seed=3, epochs=4, out=tmp_path / "cut", **SMALL)
    assert again.resumed_from == 4 and again.history == resumed.history


def test_checkpoints_best_last_and_json(tmp_path, digits):
    r = train("smallcnn", data=digits, seed=0, epochs=3, out=tmp_path, **SMALL)
    assert {"last.pt", "best.pt", "train.json"} <= set(os.listdir(tmp_path))
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]
    accs = [h["test_acc"] for h in r.history]
    best = state(r.best_checkpoint)
    assert best["test_acc"] == max(accs) == r.best_test_acc and best["epoch"] == accs.index(max(accs)) + 1
    info = json.loads((tmp_path / "train.json").read_text())
    assert info["best_test_acc"] == r.best_test_acc and len(info["history"]) == 3
    assert r.images_per_s > 0 and all(h["images_per_s"] > 0 for h in r.history)
    model, ckpt = load_checkpoint(r.best_checkpoint)
    x = next(iter(digits.loader("test", batch_size=128)))[0]
    from repmatch.nets import evaluate

    assert evaluate(model, digits.loader("test"))[1] == pytest.approx(ckpt["test_acc"])
    assert not model.training and model(x).shape == (128, 10)


def test_learns_something(tmp_path):
    r = train("smallcnn", "digits", seed=0, epochs=6, out=tmp_path, progress=False, lr=0.05)
    assert r.best_test_acc > 0.5  # chance is 0.1


def test_schedule_authors_recipe(tmp_path, digits):
    assert milestones(160) == [80, 120] and milestones(4) == [2, 3] and milestones(1) == []
    assert default_lr("vgg16") == 0.05 and default_lr("vgg16_bn") == 0.05 and default_lr("vgg11") == 0.1
    r = train("smallcnn", data=digits, seed=0, epochs=4, out=tmp_path, **SMALL)
    assert [h["lr"] for h in r.history] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    opt = state(r.last_checkpoint)["optimizer"]
    assert opt["param_groups"][0]["momentum"] == 0.9 and opt["param_groups"][0]["weight_decay"] == 5e-4


def test_resume_refuses_a_different_run(tmp_path, digits):
    train("smallcnn", data=digits, seed=0, epochs=1, out=tmp_path, **SMALL)
    with pytest.raises(ValueError, match="seed"):
        train("smallcnn", data=digits, seed=1, epochs=1, out=tmp_path, **SMALL)
    r = train("smallcnn", data=digits, seed=1, epochs=1, out=tmp_path, resume=False, **SMALL)
    assert r.resumed_from == 0


def test_global_rng_untouched_and_seeds_layout(tmp_path, digits):
    before = torch.get_rng_state()
    results = train_seeds("smallcnn", seeds=[0, 1], out=tmp_path, data=digits, epochs=1, **SMALL)
    assert torch.equal(before, torch.get_rng_state())
    assert [r.seed for r in results] == [0, 1]
    assert (tmp_path / "seed0" / "best.pt").exists() and (tmp_path / "seed1" / "last.pt").exists()


@pytest.mark.parametrize("kwargs,match", [
    ({"epochs": 0}, "epochs"),
    ({"epochs": 1, "seed": -1}, "seed"),
    ({"epochs": 1, "batch_size": 0}, "batch_size"),
    ({"epochs": 1, "arch": "alexnet"}, "vgg11"),
    ({"epochs": 1, "dataset": "svhn"}, "fashion-mnist"),
])
def test_bad_arguments(tmp_path, kwargs, match):
    kwargs = {"arch": "smallcnn", "dataset": "digits", **kwargs}
    with pytest.raises(ValueError, match=match):
        train(kwargs.pop("arch"), kwargs.pop("dataset"), out=tmp_path, progress=False, **kwargs)


def test_progress_reports_epochs_and_throughput(tmp_path, digits, capsys):
    train("smallcnn", data=digits, seed=0, epochs=1, out=tmp_path, width=0.5, batch_size=64, progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "images/s" in err and "test acc" in err
