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

import json
import os
import zipfile

import numpy as np

from ._atomic import atomic_savez
from .reduce import Reduction

__all__ = ["load_activations", "save_reductions", "load_reductions", "is_reduction_file", "atomic_savez", "load_results"]

_MARKER = "repmatch_reductions"
#: Format tag of the manifest.json of a directory of chunked activations (``repmatch extract --save``).
SAVED_FORMAT = "repmatch-activations-1"
_FIELDS = ("method", "n_x", "n_y", "n_samples", "mean", "comoment", "r", "scale", "sqsum", "depth", "digest")


#: What reading a damaged .npy/.npz raises: truncated data (EOFError, ValueError), a damaged zip or a
#: CRC mismatch (BadZipFile), a member that is not an .npy (ValueError), an unreadable file (OSError).
_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zipfile.LargeZipFile)


def _why(exc: BaseException) -> str:
    """What went wrong reading a file, in words (object arrays are named as such: never unpickled)."""
    text = " ".join(str(exc).split())
    if "allow_pickle" in text:
        return "it holds an object array (dtype=object), which repmatch never unpickles; save numeric arrays"
    if isinstance(exc, zipfile.BadZipFile):
        return f"damaged zip archive ({text or 'BadZipFile'})"
    if isinstance(exc, EOFError) or "reshape" in text or "truncated" in text.lower() or "Failed to read" in text:
        return f"truncated or damaged ({text or type(exc).__name__})"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npy`` or ``.npz`` file (suffix case ignored); object arrays are never unpickled.
    name : str, default "file"
        What the file is to the caller (e.g. an option name), used in messages.

    Returns
    -------
    dict of str to ndarray
        Every array of the file, each of shape (n_samples, n_neurons) in its stored dtype (real
        numbers or bool); a ``.npy`` gives one entry named after the file without its suffix.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When ``path`` is a directory, has another suffix, is damaged, holds reductions or no
        arrays, or an array is not 2-D real numbers.
    """
    path = _check_exists(path, name)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".npy", ".npz"):
        raise ValueError(f"{name}: {path} must be a .npy or .npz file, got suffix {suffix!r}")
    reductions = False
    try:
        if suffix == ".npy":
            with open(path, "rb") as fh:
                arrays = {os.path.splitext(os.path.basename(path))[0]: np.load(fh, allow_pickle=False)}
        else:
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
                reductions = _MARKER in f.files or "repmatch_reduction" in f.files
                arrays = {} if reductions else {k: f[k] for k in f.files}
    except PermissionError:
        raise
    except _READ_ERRORS as exc:
        raise ValueError(f"{name}: could not read {path}: {_why(exc)}") from None
    if reductions:
        raise ValueError(f"{name}: {path} holds reductions, not activations; use load_reductions")
    if not arrays:
        raise ValueError(f"{name}: {path} contains no arrays")
    for layer, arr in arrays.items():
        if not isinstance(arr, np.ndarray):  # np.load hands back the raw bytes of a member that is no .npy
            raise ValueError(f"{name}: could not read {path}: damaged: member {layer!r} is not an .npy array")
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.iscomplexobj(arr):
            raise ValueError(f"{name}: layer {layer!r} in {path} has dtype {arr.dtype}; activations must be real "
                             "numbers")
        if arr.ndim != 2:
            raise ValueError(
                f"{name}: layer {layer!r} in {path} has shape {arr.shape}; activations must be 2-D "
                "(n_samples, n_neurons) — extract conv layers with a conv mode such as 'positions'"
            )
    return arrays


def is_reduction_file(path) -> bool:
    """True if ``path`` is an ``.npz`` written by :func:`save_reductions` or ``Reduction.save``.

    Parameters
    ----------
    path : str or os.PathLike
        Any path.

    Returns
    -------
    bool
        False for a missing file, another suffix or a file that cannot be read (never raises).
    """
    path = os.fspath(path)
    if not path.lower().endswith(".npz") or not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
            return _MARKER in f.files or "repmatch_reduction" in f.files
    except Exception:
        return False


def save_reductions(path, reductions: dict, *, metadata: dict | None = None) -> None:
    """Write ``{layer_name: Reduction}`` to one ``.npz`` file atomically.

    ``metadata`` (JSON-serialisable) is stored alongside, e.g. checkpoints, dataset and conv mode.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npz`` file to write (replaced if it exists).
    reductions : dict of str to Reduction
        One reduction per layer, in the order to store; names may not contain "/".
    metadata : dict, optional
        JSON-serialisable information stored with them (default ``{}``).

    Returns
    -------
    None

    Raises
    ------
    ValueError
        When a layer name contains "/" or a value is not a :class:`~repmatch.Reduction`.
    """
    from .reduce import _FORMAT_VERSION

    arrays = {_MARKER: np.array(_FORMAT_VERSION), "layers": np.array(list(reductions), dtype=str)}
    for layer, r in reductions.items():
        if "/" in layer:
            raise ValueError(f"layer names may not contain '/': {layer!r}")
        if not isinstance(r, Reduction):
            raise ValueError(f"reductions[{layer!r}] must be a Reduction, got {type(r).__name__}")
        for key, value in r.npz_fields().items():
            arrays[f"{layer}/{key}"] = value
    arrays["metadata"] = np.array(json.dumps(metadata or {}))
    atomic_savez(path, **arrays)


def load_reductions(path, name: str = "file") -> tuple[dict, dict]:
    """Read a file written by :func:`save_reductions` (or a single ``Reduction.save`` file).

    Returns ``({layer_name: Reduction}, metadata)``. A damaged file (truncated, a bad zip member, a CRC
    error, a layer without one of its fields, metadata that is not JSON) raises a ValueError naming
    ``name``, the file and what is wrong.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npz`` file.
    name : str, default "file"
        What the file is to the caller, used in messages.

    Returns
    -------
    reductions : dict of str to Reduction
        One per layer, in the stored order (a single ``Reduction.save`` file gives one, named after
        the file without its suffix).
    metadata : dict
        The stored metadata (``{}`` when there is none).

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When ``path`` is a directory, not a reductions file, or damaged.
    """
    path = _check_exists(path, name)
    try:
        # our own file object: numpy leaves its handle open when the zip turns out to be damaged
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
            if "repmatch_reduction" in f.files:
                single = {k: f[k] for k in f.files}
                return {os.path.splitext(os.path.basename(path))[0]: _reduction(single, name, path, None)}, {}
            if _MARKER not in f.files:
                raise ValueError(f"{name}: {path} is not a repmatch reductions file")
            if "layers" not in f.files:
                raise ValueError(f"{name}: {path} is damaged: no 'layers' entry")
            out = {}
            for layer in [str(s) for s in np.atleast_1d(f["layers"])]:
                sub = {k: f[f"{layer}/{k}"] for k in _FIELDS if f"{layer}/{k}" in f.files}
                sub["repmatch_reduction"] = np.asarray(f[_MARKER])  # the file's format version
                out[layer] = _reduction(sub, name, path, layer)
            metadata = {}
            if "metadata" in f.files:
                try:
                    metadata = json.loads(str(f["metadata"]))
                except ValueError as exc:
                    raise ValueError(f"{name}: {path} is damaged: its metadata is not valid JSON ({exc})") from None
                if not isinstance(metadata, dict):
                    raise ValueError(f"{name}: {path} is damaged: its metadata is a {type(metadata).__name__}, "
                                     "not a JSON object")
    except PermissionError:
        raise
    except _READ_ERRORS as exc:
        if isinstance(exc, ValueError) and str(exc).startswith(f"{name}: "):
            raise  # ours, already naming the file
        raise ValueError(f"{name}: could not read {path}: {_why(exc)}") from None
    return out, metadata


def _reduction(fields: dict, name: str, path: str, layer) -> Reduction:
    """One Reduction from its npz fields, with every missing or inconsistent field named."""
    where = f"layer {layer!r} of {path}" if layer is not None else path
    required = ["method", "n_x", "n_y", "n_samples", "mean", "comoment"]
    if "method" in fields and str(fields["method"]) == "qr":
        required.append("r")
    missing = [k for k in required if k not in fields]
    if missing:
        raise ValueError(f"{name}: {where} is damaged: missing field(s) {', '.join(missing)}")
    try:
        return Reduction.from_npz_fields(fields, where)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        text = " ".join(str(exc).split())
        raise ValueError(f"{name}: {where} is damaged: {text or type(exc).__name__}") from None


def read_saved_manifest(directory) -> dict:
    """The ``manifest.json`` of a ``repmatch extract --save DIR`` directory (chunked activations)."""
    path = os.path.join(os.fspath(directory), "manifest.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"save directory {directory}: no manifest.json (extraction incomplete or wrong path)")
    try:
        with open(path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except ValueError as exc:  # bad JSON or not UTF-8
        raise ValueError(f"{path} is damaged: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != SAVED_FORMAT:
        raise ValueError(f"{path} is not a repmatch activations manifest ({SAVED_FORMAT})")
    return manifest


def load_results(run_dir) -> dict:
    """Read ``run_dir/results.json`` of ``repmatch reproduce`` (or a path to the file itself).

    Every unit in it is a measure's result as ``to_dict()`` (docs/reproduce.md); read one back with
    its class's ``from_dict``. A file of another format (an older repmatch) is refused, not misread.

    Parameters
    ----------
    run_dir : str or os.PathLike
        A run directory holding ``results.json``, or the path of the file.

    Returns
    -------
    dict
        The parsed document (its ``"format"`` is :data:`~repmatch.pipeline.config.RESULTS_FORMAT`).

    Raises
    ------
    FileNotFoundError
        When there is no such file.
    ValueError
        When the file is not valid JSON or not a results file of this format.
    """
    from .pipeline.config import RESULTS_FORMAT

    path = os.fspath(run_dir)
    if os.path.isdir(path):
        path = os.path.join(path, "results.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no results.json at {path} (write one with `repmatch reproduce --out "
                                f"{os.path.dirname(path) or '.'}` first)")
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except ValueError as exc:  # truncated, not JSON, not UTF-8
        raise ValueError(f"{path} is damaged: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != RESULTS_FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        older = (f" (it has format {found!r}, written by another version of repmatch: rerun `repmatch reproduce` "
                 "with the same --out to recompute it)") if isinstance(found, str) and found.startswith(
                     "repmatch-reproduce-") else ""
        raise ValueError(f"{path} is not a repmatch reproduce results file (format {RESULTS_FORMAT}){older}")
    return doc
