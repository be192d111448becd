"""Turning user input into checked float64 arrays, with messages that name the argument.

Every public entry point of repmatch passes its array arguments through here, so a bad input
fails early with a ``ValueError`` that says which argument was wrong and what was seen (shape,
dtype, NaN/Inf), never later as a silent wrong number.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

__all__ = [
    "RepmatchWarning",
    "as_activations",
    "check_pair",
    "check_eps",
    "check_eps_grid",
    "check_finite",
    "to_numpy",
]


class RepmatchWarning(UserWarning):
    """Warnings about results that are legal but easy to misread (too few samples, dead units)."""


def to_numpy(a):
    """Return a NumPy view of ``a``; PyTorch tensors (any device) are detached and copied to host."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # torch.Tensor without importing torch
        a = a.detach().cpu()
        if str(a.dtype) == "torch.bfloat16":  # NumPy has no bfloat16; float32 holds it exactly
            a = a.float()
        a = a.numpy()
    return np.asarray(a)


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise a ValueError naming ``name`` if ``arr`` holds NaN or Inf, with the first bad position."""
    finite = np.isfinite(arr)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        value = arr[tuple(bad)]
        kind = "NaN" if np.isnan(value) else "Inf"
        n_bad = int((~finite).sum())
        raise ValueError(
            f"{name} contains {n_bad} non-finite value(s) ({kind} first at index {tuple(int(i) for i in bad)}); "
            f"activations must be finite"
        )


def as_real_array(a, name: str) -> np.ndarray:
    """``a`` (array-like or torch tensor) as a real numeric NumPy array, not copied when possible;
    ValueError naming ``name`` otherwise."""
    try:
        arr = to_numpy(a)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name} could not be converted to an array: {exc}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise ValueError(f"{name} must be real-valued, got dtype {arr.dtype}")
    return arr


def as_activations(a, name: str, *, dtype=np.float64, copy: bool = False) -> np.ndarray:
    """Check one activation matrix of shape (n_samples, n_neurons) and return it as ``dtype``.

    Raises ValueError naming ``name`` when the input is not numeric, not 2-D, has no rows or no
    columns, or holds NaN/Inf.
    """
    arr = as_real_array(a, name)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D with shape (n_samples, n_neurons), got {arr.ndim}-D array of shape {arr.shape}"
        )
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has no columns (shape {arr.shape}); need at least one neuron")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} has no rows (shape {arr.shape}); need at least one sample")
    out = np.array(arr, dtype=dtype, copy=True) if copy else np.asarray(arr, dtype=dtype)
    check_finite(out, name)
    return out


def check_pair(X, Y, *, names=("X", "Y"), dtype=np.float64):
    """Check two activation matrices that must describe the same inputs (same number of rows)."""
    Xa = as_activations(X, names[0], dtype=dtype)
    Ya = as_activations(Y, names[1], dtype=dtype)
    if Xa.shape[0] != Ya.shape[0]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same number of rows (samples): "
            f"{names[0]} has shape {Xa.shape}, {names[1]} has shape {Ya.shape}"
        )
    return Xa, Ya


def check_eps(eps, name: str = "eps") -> float:
    """Return ``eps`` as a float in [0, 1), or raise a ValueError naming it."""
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, (numbers.Real, np.floating, np.integer)):
        raise ValueError(f"{name} must be a real number in [0, 1), got {eps!r}")
    e = float(eps)
    if not np.isfinite(e) or e < 0.0 or e >= 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {e!r}")
    return e


def check_eps_grid(eps, name: str = "eps") -> np.ndarray:
    """Return a 1-D float array of values in [0, 1); scalars become length-1 arrays."""
    arr = np.atleast_1d(np.asarray(eps, dtype=object))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of numbers in [0, 1), got {eps!r}")
    return np.array([check_eps(e, f"{name}[{i}]") for i, e in enumerate(arr)], dtype=np.float64)


def check_positive_int(value, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    v = int(value)
    if v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v}")
    return v


def warn(message: str, stacklevel: int = 3) -> None:
    warnings.warn(message, RepmatchWarning, stacklevel=stacklevel)


def as_rng(rng) -> np.random.Generator:
    """``None`` -> a fixed-seed generator (results are deterministic unless a seed is given)."""
    if rng is None:
        return np.random.default_rng(0)
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (numbers.Integral, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ValueError(f"rng must be None, an int seed or a numpy.random.Generator, got {rng!r}")
