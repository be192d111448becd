"""Seeded, deterministic, resumable training with the authors' recipe (shared/spec/subspace-match.md section 5).

SGD with momentum 0.9 and weight decay 5e-4, batch 128, learning rate 0.1 (0.05 for vgg16), multiplied
by 0.1 at 50% and 75% of the epochs (epochs 80 and 120 of 160), cross-entropy loss, augmentation as
in :mod:`repmatch.nets.datasets`. The checkpoint with the best test accuracy is kept as ``best.pt``.

Determinism. The initial weights depend only on ``seed``; the batches (order and augmentation) of
epoch ``e`` depend only on ``(seed, e)``; deterministic algorithms are switched on while training
and the global RNG is forked (so the caller's random state is untouched) and saved in every
checkpoint. On the same machine and thread count the same seed gives the same weights bit for bit.

Resume. After every epoch ``last.pt`` is written atomically (temporary file, fsync, rename) with
the model, optimiser (momentum buffers), scheduler, RNG state, completed epoch and history. Calling
:func:`train` again with the same arguments continues from it and ends with exactly the weights an
uninterrupted run would have. Checkpoints hold tensors and JSON only and are read with
``torch.load(weights_only=True)`` (:mod:`repmatch.nets.checkpoints`): a crafted ``last.pt`` planted
in ``out`` is refused, not executed; a damaged one is an error naming it.

Divergence. A non-finite training loss stops training at that batch with a FloatingPointError
(the epoch is not saved; earlier epochs' checkpoints are kept).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from .._atomic import atomic_write_bytes
from .._progress import progress as _bar
from .architectures import build_model, input_size_for, _check_arch
from .checkpoints import (CHECKPOINT_FORMAT, CheckpointError, atomic_torch_save, load_checkpoint,  # noqa: F401
                          read_checkpoint, save_checkpoint)
from .datasets import NATIVE_SIZE, ImageDataset, load_dataset, _canonical

__all__ = ["train", "train_seeds", "TrainResult", "load_checkpoint", "read_checkpoint", "evaluate", "default_lr",
           "milestones", "atomic_torch_save", "CHECKPOINT_FORMAT"]
# Keys of the run configuration that must agree for a resume to be the same run.
_RESUME_KEYS = ("arch", "dataset", "seed", "epochs", "width", "lr", "batch_size", "momentum", "weight_decay",
                "augment", "n_train", "n_test", "image_size")


#: The transformers' recipe (AdamW), instead of the CNN papers' SGD: base learning rate, weight decay,
#: gradient-norm clip. Measured here: SGD at lr 0.1 leaves vit-tiny near chance for several epochs.
TRANSFORMER_RECIPE = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05, "clip_grad_norm": 1.0}


def _is_transformer(arch: str) -> bool:
    from .transformers import TRANSFORMER_ARCHS

    return _check_arch(arch) in TRANSFORMER_ARCHS


def default_lr(arch: str) -> float:
    """The authors' base learning rate: 0.05 for vgg16, 0.1 otherwise; 1e-3 (AdamW) for the transformers.

    Parameters
    ----------
    arch : str
        One of :data:`~repmatch.nets.ARCHITECTURES`.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        When ``arch`` is unknown.
    """
    if _is_transformer(arch):
        return TRANSFORMER_RECIPE["lr"]
    return 0.05 if _check_arch(arch).startswith("vgg16") else 0.1


def recipe_text(config: dict) -> str:
    """One line saying how a run of ``config`` (a checkpoint's ``config``) was trained."""
    if config.get("optimizer") == "adamw":
        return (f"{config['epochs']} epochs, AdamW lr {config['lr']:g}, weight decay {config['weight_decay']:g}, "
                f"gradient norm clipped at {config.get('clip_grad_norm', 1.0):g}, x0.1 at 50% and 75% of the epochs, "
                f"batch {config['batch_size']}")
    return (f"{config['epochs']} epochs, SGD momentum {config.get('momentum', 0.9):g}, weight decay "
            f"{config.get('weight_decay', 5e-4):g}, lr {config.get('lr', 0.1):g}, batch {config.get('batch_size', 128)}: "
            "the authors' recipe")


def _loss_and_correct(logits, y):
    """Mean cross-entropy, correct predictions and predictions made: per image, or per position of a
    (batch, tokens, classes) output (next-character prediction)."""
    if logits.dim() == 3:
        logits, y = logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
    return nn.functional.cross_entropy(logits, y), int((logits.argmax(1) == y).sum()), int(y.numel())


def milestones(epochs: int) -> list:
    """Epochs after which the learning rate is divided by 10: 50% and 75% of ``epochs`` (80, 120 of 160).

    Parameters
    ----------
    epochs : int
        Epochs of the run.

    Returns
    -------
    list of int
        Increasing milestones below ``epochs`` (at most two; empty for a single epoch).
    """
    m1 = max(1, int(round(0.5 * epochs)))
    m2 = max(m1 + 1, int(round(0.75 * epochs)))
    return [m for m in (m1, m2) if m < epochs] if epochs > 1 else []


@dataclass
class TrainResult:
    """What one seed's training produced; ``history`` has one dict per completed epoch."""

    seed: int
    out_dir: str
    epochs_completed: int
    best_epoch: int
    best_test_acc: float
    last_test_acc: float
    history: list = field(default_factory=list)
    resumed_from: int = 0
    images_per_s: float = float("nan")

    @property
    def best_checkpoint(self) -> str:
        return os.path.join(self.out_dir, "best.pt")

    @property
    def last_checkpoint(self) -> str:
        return os.path.join(self.out_dir, "last.pt")

    def to_dict(self) -> dict:
        return {**asdict(self), "best_checkpoint": self.best_checkpoint, "last_checkpoint": self.last_checkpoint}


@contextlib.contextmanager
def _deterministic():
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)
        torch.backends.cudnn.benchmark = prev_bench


@torch.no_grad()
def evaluate(model: nn.Module, loader, device="cpu") -> tuple:
    """Mean cross-entropy and accuracy of ``model`` on ``loader`` (eval mode, restored afterwards).

    Parameters
    ----------
    model : torch.nn.Module
        Already on ``device``.
    loader : iterable
        Yields ``(inputs, targets)`` batches.
    device : str or torch.device, default "cpu"
        Where the batches are moved.

    Returns
    -------
    loss : float
        Mean cross-entropy per sample (0.0 for an empty loader).
    accuracy : float
        Share of samples classified correctly (0.0 for an empty loader).
    """
    was_training = model.training
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    try:
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss, c, k = _loss_and_correct(model(xb), yb)
            loss_sum += float(loss) * k
            correct += c
            n += k
    finally:
        model.train(was_training)
    return loss_sum / max(n, 1), correct / max(n, 1)


def _prepare_data(arch, dataset, data, data_dir, n_train, n_test, image_size) -> ImageDataset:
    from .text import TextDataset, load_text_dataset
    from .transformers import TRANSFORMER_DEFAULTS

    if data is not None:
        if not isinstance(data, (ImageDataset, TextDataset)):
            raise ValueError(f"data must be an ImageDataset or TextDataset from load_dataset, got {type(data).__name__}")
    else:
        name = _canonical(dataset)
        if name in NATIVE_SIZE:
            size = image_size if image_size is not None else input_size_for(arch, NATIVE_SIZE[name])
            data = load_dataset(name, data_dir, image_size=size, n_train=n_train, n_test=n_test)
        else:
            context = TRANSFORMER_DEFAULTS.get(arch, {}).get("context", 64)
            data = load_text_dataset(name, context=context, n_train=n_train, n_test=n_test)
    text = isinstance(data, TextDataset)
    if text != (arch == "char-tiny"):
        raise ValueError(f"arch {arch} cannot be trained on {'text' if text else 'images'} ({data.name}): "
                         + ("char-tiny is the text model; use vit-tiny or a CNN for images" if not text
                            else "the text datasets are for char-tiny"))
    return data


def _config_diff(saved: dict, current: dict) -> list:
    return [f"{k}: checkpoint has {saved.get(k)!r}, now {current.get(k)!r}" for k in _RESUME_KEYS
            if saved.get(k) != current.get(k)]


def train(arch: str, dataset: str = "digits", *, seed: int = 0, epochs: int, out,
          width: float = 1.0, lr: float | None = None, batch_size: int = 128, momentum: float = 0.9,
          weight_decay: float | None = None, augment: bool = True, data_dir=None, n_train: int | None = None,
          n_test: int | None = None, image_size: int | None = None, data: ImageDataset | None = None,
          device="cpu", resume: bool = True, progress: bool = True, callback=None,
          eval_batch_size: int = 512) -> TrainResult:
    """Train one network with the authors' recipe, writing ``last.pt``/``best.pt``/``train.json`` to ``out``.

    Parameters
    ----------
    arch : str
        One of :data:`~repmatch.nets.ARCHITECTURES`.
    dataset : str
        One of :data:`~repmatch.nets.DATASETS` (ignored when ``data`` is given).
    seed : int
        Determines the initial weights, batch order and augmentation.
    epochs : int
        Total epochs; the learning-rate milestones are at 50% and 75% of it (:func:`milestones`).
    out : path
        Directory for this run's checkpoints. An existing ``last.pt`` there is resumed from when
        ``resume`` is true (its configuration must match; otherwise a ValueError lists differences).
    width : float
        Channel multiplier (see :mod:`~repmatch.nets.architectures`).
    lr : float, optional
        Base learning rate; default :func:`default_lr` (0.1, or 0.05 for vgg16; 1e-3 for the
        transformers, which are trained with AdamW: :data:`TRANSFORMER_RECIPE`).
    weight_decay : float, optional
        Default 5e-4 (SGD, the CNNs) or 0.05 (AdamW, the transformers).
    augment : bool
        Use the dataset's augmentation (crop, and flip where it applies) on training batches.
    data_dir, n_train, n_test, image_size
        Passed to :func:`~repmatch.nets.load_dataset`; ``image_size`` defaults to what ``arch``
        needs (32 for VGG on 28x28 images).
    data : ImageDataset, optional
        An already loaded dataset (saves reloading when training several seeds).
    callback : callable, optional
        Called as ``callback(record)`` after each epoch's checkpoint is safely on disk; ``record``
        is that epoch's history entry. An exception raised there stops training (useful for tests
        and schedulers); calling :func:`train` again resumes after that epoch.

    Returns
    -------
    TrainResult
    """
    from .._validate import check_positive_int

    arch = _check_arch(arch)
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    data = _prepare_data(arch, dataset, data, data_dir, n_train, n_test, image_size)
    lr = float(lr) if lr is not None else default_lr(arch)
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    adamw = _is_transformer(arch)
    if weight_decay is None:
        weight_decay = TRANSFORMER_RECIPE["weight_decay"] if adamw else 5e-4
    out = os.fspath(out)
    text = getattr(data, "kind", "image") == "text"
    config = {"arch": arch, "dataset": data.name, "seed": seed, "epochs": epochs, "width": float(width), "lr": lr,
              "batch_size": batch_size, "momentum": float(momentum), "weight_decay": float(weight_decay),
              "augment": bool(augment), "n_train": int(len(data.y_train)), "n_test": int(len(data.y_test)),
              "image_size": None if text else data.image_size, "milestones": milestones(epochs)}
    if adamw:
        config.update(optimizer="adamw", clip_grad_norm=TRANSFORMER_RECIPE["clip_grad_norm"])
    if text:
        config["context"] = data.context
        model_kwargs = {"arch": arch, "num_classes": data.num_classes, "context": data.context, "width": float(width)}
    else:
        model_kwargs = {"arch": arch, "num_classes": data.num_classes, "in_channels": data.in_channels,
                        "image_size": data.image_size, "width": float(width)}
    last_path, best_path = os.path.join(out, "last.pt"), os.path.join(out, "best.pt")

    with torch.random.fork_rng(devices=[]), _deterministic():
        torch.manual_seed(seed)
        model = build_model(seed=seed, **model_kwargs).to(device)
        if adamw:
            opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        else:
            opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones(epochs), gamma=0.1)
        history, start, best_acc, best_epoch = [], 0, -1.0, 0
        if resume and os.path.exists(last_path):
            try:  # read safely: tensors and plain data only, never arbitrary pickles
                ckpt = read_checkpoint(last_path, name="cannot resume")
            except CheckpointError as exc:
                raise type(exc)(f"{exc}; to start this seed over instead, remove it or pass resume=False "
                                "(--no-resume)", exc.reason) from None
            diff = _config_diff(ckpt.get("config", {}), config)
            if diff:
                raise ValueError(f"out={out!r} holds a checkpoint of a different run ({'; '.join(diff)}); "
                                 "use another --out directory or resume=False (--no-resume) to start over")
            try:
                model.load_state_dict(ckpt["model"])
                opt.load_state_dict(ckpt["optimizer"])
                sched.load_state_dict(ckpt["scheduler"])
                torch.set_rng_state(ckpt["rng"])  # read_checkpoint leaves tensors on the CPU
                history, start = list(ckpt["history"]), int(ckpt["epoch"])
                best_acc, best_epoch = float(ckpt["best_test_acc"]), int(ckpt["best_epoch"])
            except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
                reason = f"holds a training state that does not fit this run ({' '.join(str(exc).split())[:160]})"
                raise CheckpointError(f"cannot resume: {last_path} {reason}; to start this seed over instead, "
                                      "remove it or pass resume=False (--no-resume)", reason) from None
        resumed_from = start
        test_loader = data.loader("test", batch_size=eval_batch_size)
        for epoch in range(start, epochs):
            loader = data.loader("train", batch_size=batch_size, shuffle=True, augment=augment, seed=seed, epoch=epoch)
            model.train()
            t0, loss_sum, correct, n = time.perf_counter(), 0.0, 0, 0
            bar = _bar(loader, total=len(loader), desc=f"seed {seed} epoch {epoch + 1}/{epochs}", enabled=progress)
            for batch_index, (xb, yb) in enumerate(bar):
                xb, yb = xb.to(device), yb.to(device)
                opt.zero_grad(set_to_none=True)
                loss, c, k = _loss_and_correct(model(xb), yb)
                loss.backward()
                if adamw:
                    nn.utils.clip_grad_norm_(model.parameters(), TRANSFORMER_RECIPE["clip_grad_norm"])
                opt.step()
                loss_sum += loss.item() * k
                if not math.isfinite(loss_sum):  # stop at the first bad batch; this epoch is not saved
                    raise FloatingPointError(
                        f"training diverged: seed {seed}, epoch {epoch + 1}, batch {batch_index + 1} gave loss "
                        f"{loss.item()} at learning rate {opt.param_groups[0]['lr']:g}; lower the learning rate")
                correct += c
                n += k
                if bar is not loader:
                    bar.set_postfix(loss=f"{loss_sum / n:.3f}", acc=f"{correct / n:.3f}")
            seconds = time.perf_counter() - t0
            lr_used = opt.param_groups[0]["lr"]
            sched.step()
            test_loss, test_acc = evaluate(model, test_loader, device)
            record = {"epoch": epoch + 1, "lr": lr_used, "train_loss": loss_sum / n, "train_acc": correct / n,
                      "test_loss": test_loss, "test_acc": test_acc, "seconds": seconds, "images_per_s": n / seconds}
            history.append(record)
            improved = test_acc > best_acc
            if improved:
                best_acc, best_epoch = test_acc, epoch + 1
            # tensors in the torch file, everything else as JSON (see checkpoints.py: safe to load)
            ckpt = dict(config=config, model_kwargs=model_kwargs, data=data.describe(), model=model.state_dict(),
                        optimizer=opt.state_dict(), scheduler=sched.state_dict(), rng=torch.get_rng_state(),
                        epoch=epoch + 1, history=history, best_test_acc=best_acc, best_epoch=best_epoch,
                        test_acc=test_acc)
            if improved:  # best first: a crash between the two writes never leaves last ahead of a missing best
                save_checkpoint(best_path, **ckpt)
            save_checkpoint(last_path, **ckpt)
            atomic_write_bytes(os.path.join(out, "train.json"), json.dumps(
                {"config": config, "model_kwargs": model_kwargs, "data": data.describe(), "history": history,
                 "best_epoch": best_epoch, "best_test_acc": best_acc}, indent=2).encode())
            if progress:
                print(f"seed {seed} epoch {epoch + 1}/{epochs}: loss {record['train_loss']:.4f} "
                      f"train acc {record['train_acc']:.4f} test acc {test_acc:.4f} lr {lr_used:g} "
                      f"({record['images_per_s']:.0f} images/s)", file=sys.stderr)
            if callback is not None:
                callback(record)

    ran = history[resumed_from:]
    seconds_run = sum(r["seconds"] for r in ran)
    ips = sum(r["images_per_s"] * r["seconds"] for r in ran) / seconds_run if ran else float("nan")
    return TrainResult(seed=seed, out_dir=out, epochs_completed=len(history), best_epoch=best_epoch,
                       best_test_acc=best_acc, last_test_acc=history[-1]["test_acc"] if history else float("nan"),
                       history=history, resumed_from=resumed_from, images_per_s=ips)


def train_seeds(arch: str, dataset: str = "digits", seeds=(0, 1, 2), *, out, data_dir=None, n_train=None,
                n_test=None, image_size=None, **kwargs) -> list:
    """Train one network per seed into ``out/seed<k>/`` (the dataset is loaded once); returns TrainResults.

    Parameters
    ----------
    arch : str
        One of :data:`~repmatch.nets.ARCHITECTURES`.
    dataset : str, default "digits"
        The dataset (see :func:`~repmatch.nets.load_dataset`).
    seeds : iterable of int, default (0, 1, 2)
        At least one seed.
    out : str or os.PathLike
        Directory of the seeds' subdirectories.
    data_dir, n_train, n_test, image_size
        How the dataset is loaded (as in :func:`train`).
    **kwargs
        Passed to :func:`train` for every seed (epochs, lr, device, progress, ...).

    Returns
    -------
    list of TrainResult
        One per seed, in the order given.

    Raises
    ------
    ValueError
        When ``arch`` is unknown or ``seeds`` is empty, or as :func:`train` raises.
    """
    arch = _check_arch(arch)
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must contain at least one seed")
    data = _prepare_data(arch, dataset, kwargs.pop("data", None), data_dir, n_train, n_test, image_size)
    return [train(arch, data.name, seed=s, out=os.path.join(os.fspath(out), f"seed{s}"), data=data, **kwargs)
            for s in seeds]
