"""Helpers of the result objects' ``from_dict``: the inverse of their ``to_dict``.

The result objects of the measures are the only schema of repmatch's JSON (``results.json`` of
``repmatch reproduce``, the ``--json`` output of the CLI): ``to_dict()`` writes one, and the class's
``from_dict`` reads it back. A dict written by ``to_dict`` may have been through JSON, where tuples
became lists and, in ``results.json``, non-finite floats became ``None``; these helpers undo that.
"""

from __future__ import annotations

import numpy as np

__all__ = ["num", "floats", "ints", "bools", "check_kind", "opt_num"]


def num(v) -> float:
    """A float; ``None`` (a NaN or an infinity written as JSON null) reads back as NaN.

    Parameters
    ----------
    v : number or None
        The value read from the dict.

    Returns
    -------
    float
    """
    return float("nan") if v is None else float(v)


def opt_num(v):
    """``None`` stays ``None`` (an optional number), anything else is a float.

    Parameters
    ----------
    v : number or None
        The value read from the dict.

    Returns
    -------
    float or None
    """
    return None if v is None else float(v)


def floats(v, shape=None) -> np.ndarray:
    """A float64 array from (nested) lists; ``None`` entries are NaN. ``shape`` restores the shape
    of an empty array (``[]`` carries none).

    Parameters
    ----------
    v : number or (nested) list of numbers and None
        The value read from the dict.
    shape : tuple of int, optional
        Shape to give the array when it is empty (ignored otherwise).

    Returns
    -------
    ndarray of float64
        Same shape as ``v`` (or ``shape`` when empty).
    """
    a = np.array(v, dtype=object)
    a = np.zeros(a.shape) if a.size == 0 else np.where(a == None, np.nan, a).astype(np.float64)  # noqa: E711
    if shape is not None and a.size == 0:
        a = a.reshape(shape)
    return a


def ints(v) -> np.ndarray:
    """An integer index array (``np.intp``).

    Parameters
    ----------
    v : sequence of int
        The indices read from the dict (any nesting is flattened).

    Returns
    -------
    ndarray of intp, 1-D
        Empty (length 0) when ``v`` is empty.
    """
    return np.asarray(v, dtype=np.intp).reshape(-1) if len(v) else np.zeros(0, dtype=np.intp)


def bools(indices, n: int) -> np.ndarray:
    """A boolean mask of length ``n`` from the list of its true indices (how ``to_dict`` writes masks).

    Parameters
    ----------
    indices : sequence of int
        Positions that are True.
    n : int
        Length of the mask.

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    m = np.zeros(int(n), dtype=bool)
    m[ints(indices)] = True
    return m


def check_kind(d, kind: str, cls: str) -> dict:
    """``d`` as a dict whose ``"kind"`` (when present) is ``kind``; else a ValueError naming both.

    Parameters
    ----------
    d : object
        What was passed to ``from_dict``.
    kind : str
        The ``"kind"`` the class writes.
    cls : str
        The class's name, used in messages.

    Returns
    -------
    dict
        ``d`` itself.

    Raises
    ------
    ValueError
        When ``d`` is not a dict, or its ``"kind"`` is another one.
    """
    if not isinstance(d, dict):
        raise ValueError(f"{cls}.from_dict needs a dict (the output of {cls}.to_dict()), got {type(d).__name__}")
    if "kind" in d and d["kind"] != kind:
        raise ValueError(f"{cls}.from_dict: this dict has kind {d['kind']!r}, not {kind!r}")
    return d
