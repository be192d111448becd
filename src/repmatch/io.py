"""Activation and reduction files: what ``repmatch extract`` writes and ``repmatch compare`` reads.

Formats
-------
``.npy``
    One activation matrix (n_samples, n_neurons), one layer. Arrays of more than 2 dimensions are
    rejected with a message (flatten or pick a conv mode when extracting).
``.npz`` of activations
    One array per layer, keyed by layer name. Comparing two such files compares every layer name
    present in both with its twin.
``.npz`` of reductions
    Written by :func:`save_reductions`: for every layer pair a :class:`~repmatch.Reduction`
    (both networks' statistics for that layer), keys ``<layer>/mean``, ``<layer>/comoment``, ...
    plus a marker entry ``repmatch_reductions``. A single such file is a complete comparison input.

Every write is atomic (temporary file in the same directory, then rename).
"""

from __future__ import annotations

import os

import numpy as np

from ._atomic import atomic_savez
from .reduce import Reduction

__all__ = ["load_activations", "save_reductions", "load_reductions", "is_reduction_file", "atomic_savez"]

_MARKER = "repmatch_reductions"
#: Format tag of the manifest.json of a directory of chunked activations (``repmatch extract --save``).
SAVED_FORMAT = "repmatch-activations-1"
_FIELDS = ("method", "n_x", "n_y", "n_samples", "mean", "comoment", "r", "scale", "sqsum", "depth")


def _check_exists(path, name: str) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{name}: no such file: {path}")
    if os.path.isdir(path):
        raise ValueError(f"{name}: {path} is a directory, expected a .npy or .npz file")
    return path


def load_activations(path, name: str = "file") -> dict:
    """Read a ``.npy`` (one layer, named after the file) or ``.npz`` (one array per layer) file.

    Returns ``{layer_name: ndarray}``. Raises FileNotFoundError for a missing file and ValueError
    naming ``name`` for unsupported suffixes, unreadable contents or arrays that are not 2-D.
    """
    path = _check_exists(path, name)
    suffix = os.path.splitext(path)[1].lower()
    try:
        if suffix == ".npy":
            arrays = {os.path.splitext(os.path.basename(path))[0]: np.load(path, allow_pickle=False)}
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                if _MARKER in f.files or "repmatch_reduction" in f.files:
                    raise ValueError(f"{name}: {path} holds reductions, not activations; use load_reductions")
                arrays = {k: f[k] for k in f.files}
        else:
            raise ValueError(f"{name}: {path} must be a .npy or .npz file, got suffix {suffix!r}")
    except (OSError, EOFError) as exc:
        raise ValueError(f"{name}: could not read {path}: {exc}") from exc
    if not arrays:
        raise ValueError(f"{name}: {path} contains no arrays")
    for layer, arr in arrays.items():
        if arr.ndim != 2:
            raise ValueError(
                f"{name}: layer {layer!r} in {path} has shape {arr.shape}; activations must be 2-D "
                "(n_samples, n_neurons) — extract conv layers with a conv mode such as 'positions'"
            )
    return arrays


def is_reduction_file(path) -> bool:
    """True if ``path`` is an ``.npz`` written by :func:`save_reductions` or ``Reduction.save``."""
    path = os.fspath(path)
    if not path.lower().endswith(".npz") or not os.path.isfile(path):
        return False
    try:
        with np.load(path, allow_pickle=False) as f:
            return _MARKER in f.files or "repmatch_reduction" in f.files
    except Exception:
        return False


def save_reductions(path, reductions: dict, *, metadata: dict | None = None) -> None:
    """Write ``{layer_name: Reduction}`` to one ``.npz`` file atomically.

    ``metadata`` (JSON-serialisable) is stored alongside, e.g. checkpoints, dataset and conv mode.
    """
    import json

    from .reduce import _FORMAT_VERSION

    arrays = {_MARKER: np.array(_FORMAT_VERSION), "layers": np.array(list(reductions), dtype=str)}
    for layer, r in reductions.items():
        if "/" in layer:
            raise ValueError(f"layer names may not contain '/': {layer!r}")
        if not isinstance(r, Reduction):
            raise ValueError(f"reductions[{layer!r}] must be a Reduction, got {type(r).__name__}")
        for key, value in r._npz_fields().items():
            arrays[f"{layer}/{key}"] = value
    arrays["metadata"] = np.array(json.dumps(metadata or {}))
    atomic_savez(path, **arrays)


def load_reductions(path, name: str = "file") -> tuple[dict, dict]:
    """Read a file written by :func:`save_reductions` (or a single ``Reduction.save`` file).

    Returns ``({layer_name: Reduction}, metadata)``.
    """
    import json

    path = _check_exists(path, name)
    with np.load(path, allow_pickle=False) as f:
        if "repmatch_reduction" in f.files:
            return {os.path.splitext(os.path.basename(path))[0]: Reduction._from_npz_dict(f, path)}, {}
        if _MARKER not in f.files:
            raise ValueError(f"{name}: {path} is not a repmatch reductions file")
        out = {}
        for layer in [str(s) for s in f["layers"]]:
            sub = {k: f[f"{layer}/{k}"] for k in _FIELDS if f"{layer}/{k}" in f.files}
            sub["repmatch_reduction"] = np.asarray(f[_MARKER])  # the file's format version
            out[layer] = Reduction._from_npz_dict(sub, f"{path}:{layer}")
        metadata = json.loads(str(f["metadata"])) if "metadata" in f.files else {}
    return out, metadata


def read_saved_manifest(directory) -> dict:
    """The ``manifest.json`` of a ``repmatch extract --save DIR`` directory (chunked activations)."""
    import json

    path = os.path.join(os.fspath(directory), "manifest.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"save directory {directory}: no manifest.json (extraction incomplete or wrong path)")
    with open(path) as fh:
        manifest = json.load(fh)
    if manifest.get("format") != SAVED_FORMAT:
        raise ValueError(f"{path} is not a repmatch activations manifest ({SAVED_FORMAT})")
    return manifest
