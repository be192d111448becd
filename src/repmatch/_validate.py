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
    "CONSTANT_TOL",
    "RepmatchWarning",
    "as_activations",
    "as_rng",
    "check_pair",
    "check_choice",
    "check_eps",
    "check_eps_grid",
    "check_finite",
    "check_fraction",
    "check_positive_int",
    "check_tol",
    "constant_units",
    "report_constant",
    "to_numpy",
]


class RepmatchWarning(UserWarning):
    """Warnings about results that are legal but easy to misread (too few samples, dead units)."""


def to_numpy(a):
    """Return a NumPy view of ``a``; PyTorch tensors (any device) are detached and copied to host.

    Parameters
    ----------
    a : array_like or torch.Tensor
        The input.

    Returns
    -------
    ndarray
        ``a`` as NumPy (bfloat16 tensors as float32), not copied when possible.
    """
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # torch.Tensor without importing torch
        a = a.detach().cpu()
        if str(a.dtype) == "torch.bfloat16":  # NumPy has no bfloat16; float32 holds it exactly
            a = a.float()
        a = a.numpy()
    return np.asarray(a)


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise a ValueError naming ``name`` if ``arr`` holds NaN or Inf, with the first bad position.

    Parameters
    ----------
    arr : ndarray
        The array to check.
    name : str
        The argument's name, used in the message.

    Returns
    -------
    None
        Raises ValueError when ``arr`` is not finite.
    """
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

    Parameters
    ----------
    a : array_like or torch.Tensor
        The activations.
    name : str
        The argument's name, used in the messages.
    dtype : numpy dtype
        Returned dtype (float64 by default).
    copy : bool
        Always copy (otherwise only when a conversion needs it).

    Returns
    -------
    ndarray of shape (n_samples, n_neurons)
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
    """Check two activation matrices that must describe the same inputs (same number of rows).

    Parameters
    ----------
    X, Y : array_like or torch.Tensor
        The two activation matrices.
    names : tuple of str
        Their names, used in the messages.
    dtype : numpy dtype
        Returned dtype (float64 by default).

    Returns
    -------
    (ndarray, ndarray)
        The two checked arrays.
    """
    Xa = as_activations(X, names[0], dtype=dtype)
    Ya = as_activations(Y, names[1], dtype=dtype)
    if Xa.shape[0] != Ya.shape[0]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same number of rows (samples): "
            f"{names[0]} has shape {Xa.shape}, {names[1]} has shape {Ya.shape}"
        )
    return Xa, Ya


def check_eps(eps, name: str = "eps") -> float:
    """Return ``eps`` as a float in [0, 1), or raise a ValueError naming it.

    Parameters
    ----------
    eps : float
        The value given.
    name : str
        The argument's name, used in the message.

    Returns
    -------
    float
    """
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, (numbers.Real, np.floating, np.integer)):
        raise ValueError(f"{name} must be a real number in [0, 1), got {eps!r}")
    e = float(eps)
    if not np.isfinite(e) or e < 0.0 or e >= 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {e!r}")
    return e


def check_eps_grid(eps, name: str = "eps") -> np.ndarray:
    """Return a 1-D float array of values in [0, 1); scalars become length-1 arrays.

    Parameters
    ----------
    eps : float or sequence of float
        The value(s) given.
    name : str
        The argument's name; entries are named ``name[i]`` in messages.

    Returns
    -------
    ndarray of float64, 1-D
    """
    arr = np.atleast_1d(np.asarray(eps, dtype=object))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of numbers in [0, 1), got {eps!r}")
    return np.array([check_eps(e, f"{name}[{i}]") for i, e in enumerate(arr)], dtype=np.float64)


def check_positive_int(value, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as an int >= ``minimum``, or raise a ValueError naming it.

    Parameters
    ----------
    value : int
        The value given (bools and floats are rejected, even 3.0).
    name : str
        The argument's name, used in the message.
    minimum : int
        Smallest allowed value (1 by default; 0 for counts that may be empty).

    Returns
    -------
    int
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    v = int(value)
    if v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v}")
    return v


def warn(message: str, stacklevel: int = 3) -> None:
    """Issue a :class:`RepmatchWarning` (legal input whose result is easy to misread)."""
    warnings.warn(message, RepmatchWarning, stacklevel=stacklevel)


def as_rng(rng) -> np.random.Generator:
    """``rng`` as a NumPy Generator; ``None`` gives a fixed-seed one (deterministic unless seeded).

    Parameters
    ----------
    rng : None, int or numpy.random.Generator
        ``None`` (seed 0), an integer seed, or a generator (returned as is).

    Returns
    -------
    numpy.random.Generator
    """
    if rng is None:
        return np.random.default_rng(0)
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (numbers.Integral, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ValueError(f"rng must be None, an int seed or a numpy.random.Generator, got {rng!r}")


# ---------------------------------------------------------------------------- the shared vocabulary
# Every check below returns the checked value (converted) and raises ValueError with the message
# shape ``"{name} must ..., got {value!r}"``: the argument's name first, then what was expected,
# then what was seen. The API modules, the pipeline config and the CLI all use them (the CLI passes
# the option's spelling, "--n-bins", as the name), so one mistake reads the same everywhere.


def check_tol(value, name: str = "tol", *, allow_zero: bool = True) -> float:
    """Return a tolerance as a finite float >= 0 (> 0 unless ``allow_zero``), or raise naming it.

    Parameters
    ----------
    value : float
        The tolerance given.
    name : str
        The argument's name, used in the message.
    allow_zero : bool
        Whether 0 is a legal value (exact comparisons).

    Returns
    -------
    float
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    v = float(value)
    if not np.isfinite(v) or v < 0.0 or (v == 0.0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {v!r}")
    return v


def check_fraction(value, name: str, *, low: float = 0.0, high: float = 1.0, high_open: bool = True) -> float:
    """Return ``value`` as a float in ``[low, high)`` (or ``[low, high]``), or raise naming it.

    Parameters
    ----------
    value : float
        The value given.
    name : str
        The argument's name, used in the message.
    low, high : float
        The interval's ends; ``low`` is always allowed.
    high_open : bool
        Whether ``high`` itself is excluded (default) or allowed.

    Returns
    -------
    float
    """
    interval = f"[{low:g}, {high:g}{')' if high_open else ']'}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    v = float(value)
    if not np.isfinite(v) or v < low or v > high or (high_open and v == high):
        raise ValueError(f"{name} must lie in {interval}, got {v!r}")
    return v


def check_choice(value, name: str, choices) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a ValueError listing them.

    Parameters
    ----------
    value : object
        The value given.
    name : str
        The argument's name, used in the message.
    choices : sequence
        The allowed values.

    Returns
    -------
    object
        ``value`` itself.
    """
    choices = tuple(choices)
    try:
        ok = value in choices
    except TypeError:  # unhashable or incomparable
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


# ---------------------------------------------------------------------------- constant units
#: THE constant-unit rule of every centred measure (correlation, matchings, clustering, soft
#: matching, sparse prediction, the reference scores' reports): a unit is constant when its
#: standard deviation (ddof 0) is ``<= CONSTANT_TOL * |mean|``, or exactly 0. Averaging identical
#: float64 values leaves a centred residual of about 1e-16 * |mean| per sample, so a truly constant
#: unit has a relative spread near machine epsilon; 1e-10 sits six orders above that rounding and
#: far below any real activation spread. (The subspace match is uncentred: there a constant
#: non-zero neuron is a legal direction and only an all-zero one is *dead*; MI bins its own way and
#: excludes a unit whose values fall in one bin, which every constant unit does.)
CONSTANT_TOL = 1e-10


def constant_units(mean, std, *, tol: float = CONSTANT_TOL) -> np.ndarray:
    """Mask of the constant units (rule of :data:`CONSTANT_TOL`) from per-unit means and std's.

    Parameters
    ----------
    mean, std : array_like of shape (n_units,)
        Per-unit means and standard deviations (ddof 0), in the same units.
    tol : float
        Relative tolerance: a unit with ``std <= tol * |mean|`` (or ``std == 0``) is constant.
        ``tol=0`` keeps only exactly constant units.

    Returns
    -------
    ndarray of bool, shape (n_units,)
    """
    tol = check_tol(tol, "tol")
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    with np.errstate(over="ignore"):
        return (std == 0) | (std <= tol * np.abs(mean))


def report_constant(constant_x, constant_y, *, measure: str, consequence: str = "they are excluded",
                    rule: str = "std <= CONSTANT_TOL * |mean|", see: str | None = "constant_x / constant_y",
                    stacklevel: int = 4) -> None:
    """The one report of constant units: a :class:`RepmatchWarning` naming how many each side has.

    Parameters
    ----------
    constant_x, constant_y : array_like of bool
        Masks of the constant units of X and Y (``constant_units``).
    measure : str
        The measure that met them, first word of the message.
    consequence : str
        What the measure does with them (e.g. "they get zero correlation").
    rule : str
        The rule that made them constant, for the message (MI's is its own: one bin).
    see : str or None
        The result fields that list them, for the message.
    stacklevel : int
        Passed to :func:`warnings.warn`.

    Returns
    -------
    None
        Nothing is warned when neither side has a constant unit.
    """
    nx, ny = int(np.sum(constant_x)), int(np.sum(constant_y))
    if nx or ny:
        warnings.warn(
            f"{measure}: {nx} unit(s) of X and {ny} of Y are constant on the data ({rule}); "
            f"{consequence}" + (f" (see {see})" if see else ""),
            RepmatchWarning, stacklevel=stacklevel,
        )
