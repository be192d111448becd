"""Stage: train (or load) one network per seed.

Training is resumable inside :func:`repmatch.nets.train_seeds`; the directory is named after the
training configuration (``OUT/nets/train-<hash>/seed<k>/``), so that changing ``--epochs``,
``--width`` or ``--n-train`` trains new networks instead of clashing with old checkpoints. A damaged
checkpoint is quarantined and its seed retrained (deterministically); a planted pickle is refused.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass

from .. import _rundir
from .._atomic import atomic_write_text
from .cache import digest, file_digest

__all__ = ["Networks", "train_stage", "say"]


def say(cfg, msg):
    """Print ``[reproduce] msg`` to stderr when ``cfg.progress``.

    Parameters
    ----------
    cfg : ReproduceConfig
    msg : str

    Returns
    -------
    None
    """
    if cfg.progress:
        print(f"[reproduce] {msg}", file=sys.stderr, flush=True)


@dataclass
class Networks:
    """The trained networks of a run: ``models[seed]``, their training records and checkpoint digests."""

    nets_dir: str
    models: dict
    infos: dict
    ckpt_hash: dict

    @property
    def info0(self) -> dict:
        return self.infos[next(iter(self.infos))]


def _read_text(path: str):
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except (OSError, ValueError):
        return None


def finished(seed_dir: str, epochs: int) -> bool:
    """Whether ``seed_dir`` holds a finished training run (train.json lists ``epochs`` epochs)."""
    path = os.path.join(seed_dir, "train.json")
    if not (os.path.exists(path) and os.path.exists(os.path.join(seed_dir, "best.pt"))):
        return False
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return False
    return len(doc.get("history", [])) >= epochs


def train_stage(cfg, cache, readonly: bool) -> Networks:
    """Train the seeds that are not finished, then load every seed's best checkpoint.

    A damaged ``last.pt`` (or one without a ``best.pt``) is quarantined and that seed trained from
    the start; a damaged ``best.pt`` is quarantined and its seed retrained.

    Parameters
    ----------
    cfg : ReproduceConfig
    cache : Cache
        Records the training time, and refuses training in a read-only run directory.
    readonly : bool
        Whether the run directory is read-only (nothing is written).

    Returns
    -------
    Networks
        The networks' directory, every seed's model (on ``cfg.device``), checkpoint dict and
        checkpoint digest.

    Raises
    ------
    RunDirReadOnly
        A ValueError: a seed needs training in a read-only run directory.
    UnsafeCheckpointError
        A ValueError: a checkpoint would need arbitrary unpickling (never overwritten).
    """
    from ..nets import CheckpointError, UnsafeCheckpointError, load_checkpoint, read_checkpoint, train_seeds

    train_cfg = {"arch": cfg.arch, "dataset": cfg.dataset, "epochs": cfg.epochs, "width": cfg.width,
                 "n_train": cfg.n_train, "n_test": cfg.n_test}
    nets_dir = os.path.join(cfg.out, "nets", "train-" + digest(train_cfg)[:10])
    train_cfg_path = os.path.join(nets_dir, "train-config.json")
    if not readonly and _read_text(train_cfg_path) != json.dumps(train_cfg, indent=2):  # nothing rewritten needlessly
        os.makedirs(nets_dir, exist_ok=True)
        atomic_write_text(train_cfg_path, json.dumps(train_cfg, indent=2))
    need_training = [s for s in cfg.seeds if not finished(os.path.join(nets_dir, f"seed{s}"), cfg.epochs)]
    train = dict(out=nets_dir, epochs=cfg.epochs, width=cfg.width, n_train=cfg.n_train, n_test=cfg.n_test,
                 data_dir=cfg.data_dir, device=cfg.device, progress=cfg.progress)  # per-epoch lines; bars on a tty
    if need_training:
        cache.need(f"seed(s) {need_training} are not trained")
        for s in need_training:  # a damaged last.pt is not resumed from: that seed starts over
            last = os.path.join(nets_dir, f"seed{s}", "last.pt")
            if os.path.exists(last) and not os.path.exists(os.path.join(os.path.dirname(last), "best.pt")):
                # best.pt is written before last.pt: without it, resuming could never rewrite it
                _rundir.quarantine(last, "has no best.pt beside it", f"seed {s} is trained from the start")
            elif os.path.exists(last):
                try:
                    read_checkpoint(last)
                except UnsafeCheckpointError:
                    raise
                except CheckpointError as exc:
                    _rundir.quarantine(last, exc.reason, f"seed {s} is trained from the start")
        say(cfg, f"training {cfg.arch} on {cfg.dataset}, seeds {need_training}, {cfg.epochs} epochs -> {nets_dir}")
        t0 = time.perf_counter()
        train_seeds(cfg.arch, cfg.dataset, need_training, **train)
        cache.seconds["train"] = time.perf_counter() - t0
    models, infos, ckpt_hash = {}, {}, {}
    for s in cfg.seeds:
        path = os.path.join(nets_dir, f"seed{s}", "best.pt")
        try:
            models[s], infos[s] = load_checkpoint(path, device=cfg.device)
        except UnsafeCheckpointError:
            raise  # a planted pickle is refused, never overwritten unseen
        except CheckpointError as exc:  # damaged (truncated, empty...): retrain that seed, deterministically
            cache.need(f"{path} is damaged and seed {s} must be retrained")
            _rundir.quarantine(path, exc.reason, f"retraining seed {s}")
            train_seeds(cfg.arch, cfg.dataset, [s], resume=False, **train)
            models[s], infos[s] = load_checkpoint(path, device=cfg.device)
        ckpt_hash[s] = file_digest(path)
    return Networks(nets_dir, models, infos, ckpt_hash)
