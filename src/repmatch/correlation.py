"""Correlation matrices and constant-unit masks from one streaming :class:`~repmatch.Reduction`.

Follows spec/convergent-learning.md section 1: per-unit means and standard deviations, within-net
and between-net Pearson correlation matrices, all read off the count, means and centred co-moment
that a :class:`~repmatch.Reduction` accumulates in float64 (Chan et al. merge, so a reduction of
many batches, or of batches reduced on different machines and merged, gives the same numbers as one
in-memory pass up to rounding).

This module was ``repmatch.stats`` (still importable, deprecated). Note that the package attribute
``repmatch.correlation`` is the function :func:`correlation`: import from the module with
``from repmatch.correlation import CorrelationStats`` (``import repmatch.correlation as m`` gives
the function).

Constant units
--------------
A unit whose standard deviation is at most :data:`CONSTANT_TOL` times the magnitude of its mean
(or exactly zero) is *constant* (a dead ReLU unit, a saturated unit); this is the one rule of every
centred measure (:func:`repmatch._validate.constant_units`). It has no correlation with
anything: its rows and columns of every correlation matrix are set to 0 (the diagonal entry too),
and it is flagged in ``constant_x`` / ``constant_y``. No correlation is ever NaN and nothing is
divided by zero. Measures built on these statistics exclude constant units (matchings list them as
unmatched, clustering labels them -1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._resolve import as_reduction as _resolve_reduction
from ._validate import CONSTANT_TOL, check_positive_int, check_tol, constant_units, report_constant
from .reduce import Reduction

__all__ = [
    "CONSTANT_TOL",
    "CorrelationStats",
    "correlation_from_reduction",
    "correlation",
    "as_reduction",
]

@dataclass(frozen=True)
class CorrelationStats:
    """Within-net and between-net Pearson correlations of two layers (spec/convergent-learning.md 1).

    Attributes
    ----------
    between : ndarray, shape (n_x, n_y)
        ``between[i, j]`` = correlation of unit i of X with unit j of Y. Rows of constant X units and
        columns of constant Y units are 0.
    within_x, within_y : ndarray, shapes (n_x, n_x) and (n_y, n_y)
        Within-net correlation matrices; diagonal 1 for live units, 0 for constant ones.
    constant_x, constant_y : ndarray of bool
        Masks of the constant units (see module docstring).
    mean_x, mean_y, std_x, std_y : ndarray
        Per-unit means and standard deviations (ddof=0).
    n_samples : int
        Number of rows the statistics were computed from.

    ``np.asarray(stats)`` gives ``between``.
    """

    between: np.ndarray
    within_x: np.ndarray
    within_y: np.ndarray
    constant_x: np.ndarray
    constant_y: np.ndarray
    mean_x: np.ndarray
    mean_y: np.ndarray
    std_x: np.ndarray
    std_y: np.ndarray
    n_samples: int

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.between, dtype=dtype)

    @property
    def shape(self) -> tuple:
        return self.between.shape

    @property
    def n_x(self) -> int:
        return self.between.shape[0]

    @property
    def n_y(self) -> int:
        return self.between.shape[1]

    @property
    def joint(self) -> np.ndarray:
        """The (n_x + n_y) x (n_x + n_y) correlation matrix of [X Y] (within blocks on the diagonal)."""
        return np.block([[self.within_x, self.between], [self.between.T, self.within_y]])

    def to_dict(self) -> dict:
        return {
            "n_x": self.n_x,
            "n_y": self.n_y,
            "n_samples": self.n_samples,
            "between": self.between.tolist(),
            "constant_x": np.flatnonzero(self.constant_x).tolist(),
            "constant_y": np.flatnonzero(self.constant_y).tolist(),
            "mean_between": float(self.between.mean()),
            "within_x": self.within_x.tolist(),
            "within_y": self.within_y.tolist(),
            "mean_x": self.mean_x.tolist(),
            "mean_y": self.mean_y.tolist(),
            "std_x": self.std_x.tolist(),
            "std_y": self.std_y.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "CorrelationStats":
        """The inverse of :meth:`to_dict` (also after a JSON round trip)."""
        from ._schema import bools, check_kind, floats

        d = check_kind(d, "correlation_stats", "CorrelationStats")
        nx, ny = int(d["n_x"]), int(d["n_y"])
        return cls(between=floats(d["between"], shape=(nx, ny)), within_x=floats(d["within_x"], shape=(nx, nx)),
                   within_y=floats(d["within_y"], shape=(ny, ny)), constant_x=bools(d["constant_x"], nx),
                   constant_y=bools(d["constant_y"], ny), mean_x=floats(d["mean_x"]), mean_y=floats(d["mean_y"]),
                   std_x=floats(d["std_x"]), std_y=floats(d["std_y"]), n_samples=int(d["n_samples"]))


def as_reduction(X, Y=None, *, measure: str = "this measure") -> Reduction:
    """``X`` if it is a :class:`Reduction` (``Y`` omitted), else the reduction of ``(X, Y)``.

    Kept for callers of ``repmatch.stats.as_reduction`` (now ``repmatch.correlation``); the resolver is
    :func:`repmatch._resolve.as_reduction` (its docstring has the contract).

    Parameters
    ----------
    X : array of shape (n_samples, n_x), or Reduction
    Y : array of shape (n_samples, n_y), optional
    measure : str
        The measure's name, for the messages.

    Returns
    -------
    Reduction
    """
    return _resolve_reduction(X, Y, measure=measure)


def correlation_from_reduction(r: Reduction, *, min_samples: int = 2, constant_tol: float = CONSTANT_TOL) -> CorrelationStats:
    """Within- and between-net correlation matrices from the moments of a :class:`Reduction`.

    Parameters
    ----------
    r : Reduction
        Streaming statistics of the two layers.
    min_samples : int
        Fewer rows than this raise a ValueError (a correlation needs at least two samples).
    constant_tol : float
        A unit with ``std <= constant_tol * |mean|`` (or ``std == 0``) is constant (module
        docstring); the default :data:`CONSTANT_TOL` is the rule every measure uses.

    Returns
    -------
    CorrelationStats
        Cached on the reduction: further calls (by other measures) are free until it is updated.

    Notes
    -----
    ``c_ij = C_ij / sqrt(C_ii C_jj)`` with ``C`` the centred co-moment (spec section 1); the result is
    clipped to [-1, 1] against rounding. Constant units get zero rows and columns (module docstring)
    and a :class:`~repmatch.RepmatchWarning` lists how many there are.
    """
    if not isinstance(r, Reduction):
        raise ValueError(f"r must be a Reduction, got {type(r).__name__}")
    _check_samples(r, min_samples)
    constant_tol = check_tol(constant_tol, "constant_tol")
    return r.cached(("correlation_stats", constant_tol), lambda: _correlation_stats(r, constant_tol))


def _correlation_stats(r: Reduction, constant_tol: float) -> CorrelationStats:
    # the stored units (each neuron divided by a power of two, Reduction.scale): correlations do not
    # depend on a neuron's scale, and these never under- or overflow
    C = np.array(r.stored_comoment)
    stored_mean = r.stored_mean
    std, const, scale = _spread(stored_mean, np.diag(C), r.n_samples, constant_tol)
    with np.errstate(over="ignore", under="ignore"):
        mean, std = stored_mean * r.scale, std * r.scale
    live = ~const
    R = C * scale[:, None] * scale[None, :]
    np.clip(R, -1.0, 1.0, out=R)
    R[const, :] = 0.0
    R[:, const] = 0.0
    idx = np.flatnonzero(live)
    R[idx, idx] = 1.0
    nx = r.n_x
    stats = CorrelationStats(
        between=R[:nx, nx:].copy(),
        within_x=R[:nx, :nx].copy(),
        within_y=R[nx:, nx:].copy(),
        constant_x=const[:nx].copy(),
        constant_y=const[nx:].copy(),
        mean_x=mean[:nx].copy(),
        mean_y=mean[nx:].copy(),
        std_x=std[:nx].copy(),
        std_y=std[nx:].copy(),
        n_samples=int(r.n_samples),
    )
    for arr in (stats.between, stats.within_x, stats.within_y, stats.constant_x, stats.constant_y,
                stats.mean_x, stats.mean_y, stats.std_x, stats.std_y):
        arr.setflags(write=False)  # shared through the reduction's cache: keep it intact
    _warn_constant(const, nx)
    return stats


def _check_samples(r: Reduction, min_samples: int) -> None:
    min_samples = check_positive_int(min_samples, "min_samples")
    if r.n_samples < min_samples:
        raise ValueError(
            f"the reduction has seen {r.n_samples} sample(s); correlations need at least {min_samples}"
        )


def _spread(mean: np.ndarray, comoment_diag: np.ndarray, n_samples: int, constant_tol: float = CONSTANT_TOL) -> tuple:
    """(standard deviations, constant-unit mask, correlation scales) from the means and the
    co-moment's diagonal: ``scale = 1 / sqrt(C_ii)`` for live units, 0 for constant ones."""
    std = np.sqrt(np.maximum(comoment_diag, 0.0) / n_samples)
    const = constant_units(mean, std, tol=constant_tol)
    scale = np.zeros_like(std)
    scale[~const] = 1.0 / np.sqrt(comoment_diag[~const])
    return std, const, scale


def _warn_constant(const: np.ndarray, nx: int) -> None:
    report_constant(const[:nx], const[nx:], measure="correlation", stacklevel=6,
                    consequence="they get zero correlation and are excluded from matchings")


def device_between_correlation(r: Reduction, *, min_samples: int = 2, constant_tol: float = CONSTANT_TOL) -> tuple:
    """The between-net correlation of a device reduction, computed and kept on its device.

    Parameters
    ----------
    r : Reduction
        A reduction on a torch device (``r.device`` not None).
    min_samples : int
        Fewer rows than this raise a ValueError.
    constant_tol : float
        The constant-unit tolerance (:data:`CONSTANT_TOL`, module docstring).

    Returns
    -------
    tuple
        ``(R, constant_x, constant_y)``: ``R`` a float64 (n_x, n_y) torch tensor on ``r.device``
        equal to :func:`correlation_from_reduction`'s ``between`` (same formula, scales computed on
        the host as there, same clipping, constant units zeroed; bit for bit on CPU torch for the
        same accumulators), the masks host arrays. Cached on the reduction until its next update.

    Notes
    -----
    The tensor work is the reduction's backend's (``r.backend.between_correlation``): this module
    never imports torch. Only the means and the co-moment's diagonal (n_x + n_y numbers each) cross
    to the host, to find the constant units.
    """
    backend = r.backend
    if backend is None:
        raise ValueError("r must be a reduction on a torch device for device_between_correlation "
                         "(use correlation_from_reduction on the host)")
    _check_samples(r, min_samples)
    constant_tol = check_tol(constant_tol, "constant_tol")

    def compute():
        # scales on the host, as in correlation_from_reduction: the same rounding
        _, const, scale = _spread(r.stored_mean, backend.comoment_diagonal(r), r.n_samples, constant_tol)
        R = backend.between_correlation(r, scale, const)
        _warn_constant(const, r.n_x)
        return (R, const[: r.n_x].copy(), const[r.n_x:].copy())

    return r.cached(("device_between_correlation", constant_tol), compute)


def correlation(X, Y=None, *, constant_tol: float = CONSTANT_TOL) -> CorrelationStats:
    """Between-net Pearson correlation of every unit of X with every unit of Y (spec section 1).

    Parameters
    ----------
    X : array of shape (n_samples, n_x), or Reduction
        Activations of the first network (rows = inputs), or a :class:`Reduction` holding both layers.
    Y : array of shape (n_samples, n_y), optional
        Activations of the second network on the same inputs; omit when ``X`` is a Reduction.
    constant_tol : float
        Constant-unit tolerance (module docstring); default :data:`CONSTANT_TOL`.

    Returns
    -------
    CorrelationStats
        ``np.asarray(result)`` is the (n_x, n_y) between-net matrix; ``within_x``, ``within_y``
        and the constant-unit masks come with it.

    Examples
    --------
    >>> import numpy as np, repmatch
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((500, 4)); Y = X[:, ::-1] + 0.1 * rng.standard_normal((500, 4))
    >>> c = repmatch.correlation(X, Y)
    >>> bool(c.between[0, 3] > 0.99)
    True
    """
    r = _resolve_reduction(X, Y, measure="correlation")
    return correlation_from_reduction(r, constant_tol=constant_tol)
