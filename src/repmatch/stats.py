"""Correlation matrices and constant-unit masks from one streaming :class:`~repmatch.Reduction`.

Follows spec/convergent-learning.md section 1: per-unit means and standard deviations, within-net
and between-net Pearson correlation matrices, all read off the count, means and centred co-moment
that a :class:`~repmatch.Reduction` accumulates in float64 (Chan et al. merge, so a reduction of
many batches, or of batches reduced on different machines and merged, gives the same numbers as one
in-memory pass up to rounding).

Constant units
--------------
A unit whose standard deviation is at most :data:`CONSTANT_TOL` times the magnitude of its mean
(or exactly zero) is *constant* (a dead ReLU unit, a saturated unit). It has no correlation with
anything: its rows and columns of every correlation matrix are set to 0 (the diagonal entry too),
and it is flagged in ``constant_x`` / ``constant_y``. No correlation is ever NaN and nothing is
divided by zero. Measures built on these statistics exclude constant units (matchings list them as
unmatched, clustering labels them -1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import check_pair, warn
from .reduce import Reduction

__all__ = [
    "CONSTANT_TOL",
    "CorrelationStats",
    "correlation_from_reduction",
    "correlation",
    "as_reduction",
]

#: A unit is constant when ``std <= CONSTANT_TOL * |mean|`` (or ``std == 0``). Averaging identical
#: float64 values leaves a centred residual of about 1e-16 * |mean| per sample, so a truly constant
#: unit has a relative spread near machine epsilon; 1e-10 sits six orders above that rounding and
#: far below any real activation spread.
CONSTANT_TOL = 1e-10


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
    """Return ``X`` if it is a :class:`Reduction` (``Y`` must then be omitted), else reduce ``(X, Y)``."""
    if isinstance(X, Reduction):
        if Y is not None:
            raise ValueError("Y must be omitted when X is a Reduction (it already holds both layers)")
        if X.n_samples == 0:
            raise ValueError("X is a Reduction that has seen no samples; call update() first")
        return X
    if Y is None:
        raise ValueError(f"Y is required for {measure} when X is an activation array (or pass a Reduction as X)")
    Xa, Ya = check_pair(X, Y)
    return Reduction.from_arrays(Xa, Ya)


def _constant_mask(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return (std == 0) | (std <= CONSTANT_TOL * np.abs(mean))


def correlation_from_reduction(r: Reduction, *, min_samples: int = 2) -> CorrelationStats:
    """Within- and between-net correlation matrices from the moments of a :class:`Reduction`.

    Parameters
    ----------
    r : Reduction
        Streaming statistics of the two layers.
    min_samples : int
        Fewer rows than this raise a ValueError (a correlation needs at least two samples).

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
    key = ("correlation_stats",)
    cached = r._cache.get(key)
    if cached is not None:
        return cached
    # the stored units (each neuron divided by a power of two, Reduction.scale): correlations do not
    # depend on a neuron's scale, and these never under- or overflow
    C = r._comoment
    std, const, scale = _spread(r._mean, np.diag(C), r.n_samples)
    with np.errstate(over="ignore", under="ignore"):
        mean, std = r._mean * r._scale, std * r._scale
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
    r._cache[key] = stats
    return stats


def _check_samples(r: Reduction, min_samples: int) -> None:
    if r.n_samples < min_samples:
        raise ValueError(
            f"the reduction has seen {r.n_samples} sample(s); correlations need at least {min_samples}"
        )


def _spread(mean: np.ndarray, comoment_diag: np.ndarray, n_samples: int) -> tuple:
    """(standard deviations, constant-unit mask, correlation scales) from the means and the
    co-moment's diagonal: ``scale = 1 / sqrt(C_ii)`` for live units, 0 for constant ones."""
    std = np.sqrt(np.maximum(comoment_diag, 0.0) / n_samples)
    const = _constant_mask(mean, std)
    scale = np.zeros_like(std)
    scale[~const] = 1.0 / np.sqrt(comoment_diag[~const])
    return std, const, scale


def _warn_constant(const: np.ndarray, nx: int) -> None:
    if const.any():
        warn(
            f"{int(const[:nx].sum())} unit(s) of X and {int(const[nx:].sum())} of Y are constant on the data; "
            "they get zero correlation and are excluded from matchings (see constant_x / constant_y)"
        )


def device_between_correlation(r: Reduction, *, min_samples: int = 2) -> tuple:
    """The between-net correlation of a device reduction, computed and kept on its device.

    Returns ``(R, constant_x, constant_y)``: ``R`` a float64 (n_x, n_y) torch tensor on
    ``r.device`` equal to :func:`correlation_from_reduction`'s ``between`` (same formula, scales
    computed on the host as there, same clipping, constant units zeroed; bit for bit on CPU torch
    for the same accumulators), the masks host arrays. Cached on the reduction until its next
    update. Only the means and the co-moment's diagonal (n_x + n_y numbers each) cross to the
    host, to find the constant units.
    """
    if r.device is None:
        raise ValueError("device_between_correlation needs a reduction on a torch device")
    _check_samples(r, min_samples)
    import torch

    key = ("device_between_correlation",)
    cached = r._cache.get(key)  # cleared by updates, like correlation_from_reduction's
    if cached is not None:
        return cached
    C = r.device_tensors()["comoment"]
    # scales on the host, as in correlation_from_reduction: the same rounding
    _, const, scale = _spread(r._mean, torch.diagonal(C).cpu().numpy(), r.n_samples)
    nx = r.n_x
    sx = torch.as_tensor(scale[:nx], device=C.device)
    sy = torch.as_tensor(scale[nx:], device=C.device)
    R = C[:nx, nx:] * sx[:, None] * sy[None, :]
    R.clamp_(-1.0, 1.0)
    R[torch.as_tensor(const[:nx], device=C.device), :] = 0.0
    R[:, torch.as_tensor(const[nx:], device=C.device)] = 0.0
    _warn_constant(const, nx)
    out = (R, const[:nx].copy(), const[nx:].copy())
    r._cache[key] = out
    return out


def correlation(X, Y=None) -> CorrelationStats:
    """Between-net Pearson correlation of every unit of X with every unit of Y (spec section 1).

    Parameters
    ----------
    X : array of shape (n_samples, n_x), or Reduction
        Activations of the first network (rows = inputs), or a :class:`Reduction` holding both layers.
    Y : array of shape (n_samples, n_y), optional
        Activations of the second network on the same inputs; omit when ``X`` is a Reduction.

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
    return correlation_from_reduction(as_reduction(X, Y, measure="correlation"))
