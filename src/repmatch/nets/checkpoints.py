"""Training checkpoints that are safe to load: tensors through ``torch.load(weights_only=True)``, the rest JSON.

A checkpoint written by :func:`repmatch.nets.train` is one ``torch.save`` file (written atomically)
holding a dict of exactly these entries::

    format      "repmatch-checkpoint-2"
    meta        a JSON text: config, model_kwargs, data (with the normalisation), history, epoch,
                best_test_acc, best_epoch, test_acc and the learning-rate scheduler's state
    model       the model's state_dict (tensors)
    optimizer   the optimiser's state_dict (tensors and plain numbers, lists and dicts)
    rng         the torch RNG state (a uint8 tensor)

Reading never unpickles arbitrary objects: :func:`read_checkpoint` calls ``torch.load`` with
``weights_only=True``, which accepts only tensors and plain containers and numbers. A file that needs
anything else (a crafted pickle whose loading would run code, or a checkpoint of another program) is
refused with :class:`UnsafeCheckpointError`; truncated, empty, text or otherwise damaged files and
dicts without the entries above raise :class:`CheckpointError`. Both are ``ValueError`` subclasses
whose message names the file (and the command-line option, through ``name``).

Checkpoints of the first format (``repmatch-checkpoint-1``: the same information as plain entries,
the scheduler's milestones as a ``collections.Counter``) are still read, through the same safe loader.
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import re
import warnings

import torch

from .._atomic import atomic_write_bytes

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "UnsafeCheckpointError", "save_checkpoint", "read_checkpoint",
           "load_checkpoint", "atomic_torch_save"]

CHECKPOINT_FORMAT = "repmatch-checkpoint-2"
#: Formats :func:`read_checkpoint` accepts (all read with ``weights_only=True``).
READABLE_FORMATS = ("repmatch-checkpoint-1", CHECKPOINT_FORMAT)
#: Entries held in the JSON ``meta`` text (format 2) or as plain entries (format 1).
META_KEYS = ("config", "model_kwargs", "data", "history", "epoch", "best_test_acc", "best_epoch", "test_acc",
             "scheduler")
#: Entries that must be tensors or state dicts.
TENSOR_KEYS = ("model", "optimizer", "rng")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: damaged, empty, not a repmatch checkpoint, or incomplete.

    ``reason`` is what is wrong with the file, without the option and path that start the message.
    """

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason if reason is not None else message


class UnsafeCheckpointError(CheckpointError):
    """A file whose loading would need unpickling arbitrary Python objects (and could run code)."""


def atomic_torch_save(obj, path) -> None:
    """``torch.save`` to a temporary file in the same directory, fsync, then ``os.replace``.

    Parameters
    ----------
    obj : object
        What to save.
    path : str or os.PathLike
        The file to write (replaced if it exists).

    Returns
    -------
    None
    """
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _json_scheduler(state: dict) -> dict:
    """A scheduler state_dict with its Counter of milestones as ``[[epoch, count], ...]`` (JSON-safe)."""
    out = dict(state)
    if isinstance(out.get("milestones"), collections.Counter):
        out["milestones"] = [[int(k), int(v)] for k, v in sorted(out["milestones"].items())]
    return out


def _torch_scheduler(state: dict) -> dict:
    """Inverse of :func:`_json_scheduler` (a format-1 checkpoint's Counter is passed through)."""
    out = dict(state)
    m = out.get("milestones")
    if isinstance(m, list):
        out["milestones"] = collections.Counter({int(k): int(v) for k, v in m})
    return out


def save_checkpoint(path, *, model: dict, optimizer: dict, rng: torch.Tensor, scheduler: dict, **meta) -> None:
    """Write a checkpoint atomically: state dicts as tensors, everything else as one JSON text.

    ``meta`` must hold the entries of :data:`META_KEYS` except ``scheduler``; a value that is not
    JSON-serialisable raises TypeError here, at save time, rather than making the file unreadable.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file to write (replaced if it exists).
    model, optimizer : dict
        The model's and the optimiser's ``state_dict()``.
    rng : torch.Tensor
        The torch RNG state (``torch.get_rng_state()``).
    scheduler : dict
        The learning-rate scheduler's ``state_dict()`` (stored in the JSON meta).
    **meta
        The other entries of :data:`META_KEYS` (config, model_kwargs, data, history, ...).

    Returns
    -------
    None

    Raises
    ------
    ValueError
        When an entry of :data:`META_KEYS` is missing.
    TypeError
        When a meta value is not JSON-serialisable.
    """
    missing = [k for k in META_KEYS if k != "scheduler" and k not in meta]
    if missing:
        raise ValueError(f"save_checkpoint: missing entries {missing}")
    text = json.dumps({**meta, "scheduler": _json_scheduler(scheduler)}, allow_nan=True)
    atomic_torch_save({"format": CHECKPOINT_FORMAT, "meta": text, "model": model, "optimizer": optimizer,
                       "rng": rng}, path)


def _fail(name: str, path: str, reason: str) -> CheckpointError:
    return CheckpointError(f"{name}: {path} {reason}", reason)


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _unsafe_detail(message: str) -> str:
    m = re.search(r"GLOBAL ([\w.]+)", message)
    if m:
        return f"it refers to the Python object {m.group(1)}"
    m = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\s*\n|$)", message, re.S)
    if m:
        return f"the weights-only unpickler stopped at: {' '.join(m.group(1).split())}"
    return "it holds something other than tensors and plain data"


def read_checkpoint(path, *, name: str = "checkpoint") -> dict:
    """Read a repmatch checkpoint safely; return the dict with ``meta`` merged in (see the module doc).

    Returns ``{"format", "config", "model_kwargs", "data", "history", "epoch", "best_test_acc",
    "best_epoch", "test_acc", "scheduler", "model", "optimizer", "rng"}``, tensors on the CPU
    (move them where they are used). Raises FileNotFoundError for a missing file, :class:`UnsafeCheckpointError` for a
    file that needs arbitrary unpickling, and :class:`CheckpointError` for anything damaged or
    incomplete; every message starts with ``name`` and names the file.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file.
    name : str, default "checkpoint"
        What the file is to the caller (e.g. an option name), starting every message.

    Returns
    -------
    dict
        The entries above.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    UnsafeCheckpointError
        A :class:`CheckpointError` (so a ValueError): loading would need arbitrary unpickling.
    CheckpointError
        A ValueError: the file is a directory, empty, damaged, of another format or incomplete.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{name}: no such file: {path}")
    if os.path.isdir(path):
        raise _fail(name, path, "is a directory, expected a checkpoint file (best.pt or last.pt)")
    if os.path.getsize(path) == 0:
        raise _fail(name, path, "is empty (0 bytes): damaged or never written")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):  # torch's zip format, or a pickle
        raise _fail(name, path, f"is damaged or not a PyTorch checkpoint (it starts with {head!r}, neither a zip "
                                "archive nor a pickle)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's note on the pickle protocol of plain pickles
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            raise UnsafeCheckpointError(
                f"{name}: refusing to load {path}: {_unsafe_detail(str(exc))}, and unpickling it could run "
                "arbitrary code (checkpoints are read with torch.load(weights_only=True)); use checkpoints "
                "written by repmatch train") from None
        raise _fail(name, path, f"is damaged or not a PyTorch checkpoint ({_first_line(exc)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError,
            UnicodeDecodeError) as exc:
        if isinstance(exc, (PermissionError, IsADirectoryError)):
            raise
        raise _fail(name, path, f"is damaged or not a PyTorch checkpoint ({type(exc).__name__}: "
                                f"{_first_line(exc)})") from None
    if not isinstance(obj, dict) or obj.get("format") not in READABLE_FORMATS:
        what = f"format {obj.get('format')!r}" if isinstance(obj, dict) else f"a {type(obj).__name__}"
        raise _fail(name, path, f"is not a repmatch training checkpoint ({what}; expected format "
                                f"{CHECKPOINT_FORMAT})")
    if obj["format"] == CHECKPOINT_FORMAT:
        text = obj.get("meta")
        if not isinstance(text, str):
            raise _fail(name, path, "is incomplete: no 'meta' entry")
        try:
            meta = json.loads(text)
        except ValueError as exc:
            raise _fail(name, path, f"has a damaged 'meta' entry (bad JSON: {exc})") from None
        if not isinstance(meta, dict):
            raise _fail(name, path, f"has a damaged 'meta' entry (a {type(meta).__name__}, not an object)")
        ckpt = {"format": obj["format"], **meta, **{k: obj[k] for k in TENSOR_KEYS if k in obj}}
    else:
        ckpt = dict(obj)
    missing = [k for k in (*META_KEYS, *TENSOR_KEYS) if k not in ckpt]
    if missing:
        raise _fail(name, path, f"is incomplete: missing {', '.join(missing)}")
    bad = [k for k, kind in (("config", dict), ("model_kwargs", dict), ("data", dict), ("history", list),
                             ("scheduler", dict), ("model", dict), ("optimizer", dict), ("rng", torch.Tensor))
           if not isinstance(ckpt[k], kind)]
    if bad:
        raise _fail(name, path, f"is damaged: entries of the wrong type: {', '.join(bad)}")
    ckpt["scheduler"] = _torch_scheduler(ckpt["scheduler"])
    return ckpt


def load_checkpoint(path, *, device="cpu", name: str = "checkpoint") -> tuple:
    """Rebuild the model saved in a checkpoint written by :func:`~repmatch.nets.train` (read safely).

    Returns ``(model, checkpoint)`` with the model in eval mode on ``device``; ``checkpoint`` is
    :func:`read_checkpoint`'s dict (``config``, ``data`` with the normalisation, ``history``,
    ``test_acc``, ...). Errors as in :func:`read_checkpoint`; weights that do not fit the
    architecture named in the checkpoint are a :class:`CheckpointError` too.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file (``best.pt`` or ``last.pt``).
    device : str or torch.device, default "cpu"
        Where the model is put.
    name : str, default "checkpoint"
        What the file is to the caller, starting every message.

    Returns
    -------
    model : torch.nn.Module
        In eval mode on ``device``.
    checkpoint : dict
        :func:`read_checkpoint`'s dict.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    CheckpointError
        A ValueError: as in :func:`read_checkpoint`, or a model that cannot be built or weights
        that do not fit it.
    """
    from .architectures import build_model

    ckpt = read_checkpoint(path, name=name)
    path = os.fspath(path)
    try:
        model = build_model(**ckpt["model_kwargs"])
    except (TypeError, ValueError) as exc:
        raise _fail(name, path, f"describes a model repmatch cannot build ({_first_line(exc)})") from None
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise _fail(name, path, f"holds weights that do not fit its architecture ({_first_line(exc)})") from None
    model.to(device)
    model.eval()
    return model, ckpt
