"""Soft matching distance: optimal transport between the units of two layers (Khosla & Williams 2023).

Every unit is a point in sample space (its activation vector over the inputs, its "tuning
curve"). A layer of ``n`` units is the uniform distribution over its ``n`` points, and the soft
matching distance is the 2-Wasserstein distance between the two layers' distributions::

    d(X, Y)^2 = min_{P in T(n_x, n_y)}  sum_ij P_ij c_ij,
    T(n_x, n_y) = {P >= 0 : every row of P sums to 1/n_x, every column to 1/n_y},
    c_ij = (1/m) ||x_i - y_j||^2          (mean over the m samples).

When ``n_x == n_y`` an optimal ``P`` is a permutation matrix divided by ``n`` (Birkhoff), so the
distance is the one-to-one (bipartite) matching distance; for different widths the "soft
permutation" ``P`` lets a unit split its mass over several partners. It is a metric on layers
modulo permutations of units: symmetric, zero exactly when the two point clouds coincide (for
example ``d(X, X[:, perm]) = 0`` and ``d(X, [X X]) = 0``: duplicating every unit changes nothing),
and it satisfies the triangle inequality. It is sensitive to rotations within a layer, like the
subspace match and unlike CKA or CCA.

Preprocessing (``standardize``)
-------------------------------
Units are always centred (a unit's mean is an offset, not tuning). With ``standardize=True``
(default) every live unit is scaled to unit variance, so ``c_ij = 2 - 2 r_ij`` for two live units
with correlation ``r_ij``; the distance then lies in [0, 2] and does not depend on the scale of
either layer (layers of one network differ in scale by orders of magnitude, which would dominate
every comparison). ``standardize=False`` keeps the centred scale (the distance is in activation
units). Constant units (``repmatch.CONSTANT_TOL``) are the zero vector after centring; they
still carry mass ``1/n`` (a dead unit is part of the layer) and cost 1 against a live
standardised unit.

``mean_correlation = sum_ij P_ij r_ij`` is the transport-weighted mean correlation of the optimal
plan (the soft analogue of the bipartite mean); with ``standardize=True`` and no constant unit,
``distance**2 == 2 - 2 * mean_correlation``.

Solvers
-------
The marginals are rational: scaled by ``L = lcm(n_x, n_y)`` every X unit supplies ``L / n_x`` and
every Y unit takes ``L / n_y`` unit masses. Replicating units accordingly turns the transport
problem into an L x L linear assignment, whose optimum is the transport optimum (transportation
polytopes with integer marginals have integer vertices), solved exactly by
:func:`scipy.optimize.linear_sum_assignment` (``solver="assignment"``). When ``L`` exceeds
``max_assignment`` (default 2048: e.g. 500 vs 512 units give L = 64,000) the transportation
linear program is solved with HiGHS (:func:`scipy.optimize.linprog`, ``solver="linprog"``), whose
optimum is accurate to its feasibility tolerance (:data:`LINPROG_TOL`). ``"auto"`` (default)
picks the assignment whenever ``L <= max_assignment``.

Works on two activation arrays or on one :class:`~repmatch.Reduction` (the costs need only the
centred co-moment), so it streams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ._resolve import as_reduction
from ._validate import CONSTANT_TOL, check_choice, check_positive_int, check_tol, constant_units, report_constant

__all__ = ["SoftMatch", "soft_match", "soft_matching_distance", "soft_match_from_correlation", "transport_costs", "LINPROG_TOL",
           "SOLVERS", "MAX_ASSIGNMENT"]

#: Solvers of the transport problem (module docstring).
SOLVERS = ("auto", "assignment", "linprog")
#: Largest replicated assignment (L = lcm(n_x, n_y)) that ``solver="auto"`` solves as an assignment.
MAX_ASSIGNMENT = 2048
#: Primal and dual feasibility tolerance passed to HiGHS for the transportation LP. The plan's
#: marginals are exact to about this much (then projected), and the LP's optimal cost to about
#: ``LINPROG_TOL * max(c)``; the tests compare the two solvers at this tolerance.
LINPROG_TOL = 1e-9


@dataclass(frozen=True)
class SoftMatch:
    """Result of :func:`soft_match`.

    Attributes
    ----------
    distance : float
        The soft matching distance (>= 0; smaller = more similar).
    plan : ndarray (n_x, n_y)
        An optimal transport plan: rows sum to 1/n_x, columns to 1/n_y.
    mean_correlation : float
        ``sum_ij plan_ij * r_ij`` (constant units have correlation 0).
    costs : ndarray (n_x, n_y)
        ``c_ij`` (module docstring).
    n_x, n_y, n_samples : int
    constant_x, constant_y : ndarray of bool
    standardize : bool
    solver : str
        ``"assignment"`` or ``"linprog"``.
    """

    distance: float
    plan: np.ndarray = field(repr=False)
    mean_correlation: float
    costs: np.ndarray = field(repr=False)
    n_x: int
    n_y: int
    n_samples: int
    constant_x: np.ndarray = field(repr=False)
    constant_y: np.ndarray = field(repr=False)
    standardize: bool
    solver: str

    larger_is_more_similar = False

    def __float__(self) -> float:
        return float(self.distance)

    @property
    def value(self) -> float:
        return float(self.distance)

    def partners(self, side: str = "x") -> list:
        """For every unit of ``side``, its partners on the other side with the share of its mass."""
        if side not in ("x", "y"):
            raise ValueError(f"side must be 'x' or 'y', got {side!r}")
        P = self.plan if side == "x" else self.plan.T
        scale = P.shape[0]
        return [{int(j): float(P[i, j] * scale) for j in np.flatnonzero(P[i] > 0)} for i in range(P.shape[0])]

    def to_dict(self, *, arrays: bool = True) -> dict:
        """A JSON-ready dict; ``arrays=False`` leaves out the (n_x, n_y) plan and costs."""
        out = {"kind": "soft_match", "distance": self.distance, "mean_correlation": self.mean_correlation,
               "n_x": self.n_x, "n_y": self.n_y, "n_samples": self.n_samples,
               "constant_x": np.flatnonzero(self.constant_x).tolist(),
               "constant_y": np.flatnonzero(self.constant_y).tolist(), "standardize": self.standardize,
               "solver": self.solver, "larger_is_more_similar": False}
        if arrays and self.plan is not None and self.costs is not None:
            i, j = np.nonzero(self.plan)  # an optimal plan has at most n_x + n_y - 1 non-zeros
            out["plan"] = {"i": i.tolist(), "j": j.tolist(), "value": self.plan[i, j].tolist()}
            out["costs"] = np.asarray(self.costs).tolist()
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "SoftMatch":
        """The inverse of :meth:`to_dict`; ``plan`` and ``costs`` are None when it was written with
        ``arrays=False``."""
        from ._schema import bools, check_kind, floats, ints, num

        d = check_kind(d, "soft_match", "SoftMatch")
        nx, ny = int(d["n_x"]), int(d["n_y"])
        plan = costs = None
        if "plan" in d:
            plan = np.zeros((nx, ny))
            plan[ints(d["plan"]["i"]), ints(d["plan"]["j"])] = floats(d["plan"]["value"])
            costs = floats(d["costs"], shape=(nx, ny))
        return cls(distance=num(d["distance"]), plan=plan, mean_correlation=num(d["mean_correlation"]), costs=costs,
                   n_x=nx, n_y=ny, n_samples=int(d["n_samples"]), constant_x=bools(d["constant_x"], nx),
                   constant_y=bools(d["constant_y"], ny), standardize=bool(d["standardize"]), solver=str(d["solver"]))


def transport_costs(X, Y=None, *, standardize: bool = True, constant_tol: float = CONSTANT_TOL) -> tuple:
    """``(costs, correlations, constant_x, constant_y, n_samples)`` of two layers (module docstring).

    Parameters
    ----------
    X, Y : arrays (n_samples, n_x), (n_samples, n_y); or a Reduction as X with Y omitted
    standardize : bool
        Scale every live unit to unit variance (default) or keep the centred scale.
    constant_tol : float
        Units with ``std <= constant_tol * |mean|`` are constant (default
        :data:`repmatch.CONSTANT_TOL`): the zero vector after centring.

    Returns
    -------
    tuple
        ``costs[i, j]``, the mean squared difference over samples between centred (and, with
        ``standardize``, unit-variance) unit i of X and unit j of Y; ``correlations``, 0 where a
        unit is constant; the constant-unit masks; the number of samples.
    """
    r = as_reduction(X, Y, measure="soft matching")
    if r.n_samples < 2:
        raise ValueError(f"soft matching needs at least 2 samples, got {r.n_samples}")
    n = r.n_samples
    C = r.comoment / n  # centred covariance (ddof 0), float64
    mean = r.mean
    var = np.maximum(np.diag(C), 0.0)
    std = np.sqrt(var)
    const = constant_units(mean, std, tol=constant_tol)
    scale = np.zeros_like(std)
    scale[~const] = 1.0 / std[~const]
    nx = r.n_x
    corr = C[:nx, nx:] * scale[:nx, None] * scale[None, nx:]
    np.clip(corr, -1.0, 1.0, out=corr)
    if standardize:
        sq = (~const).astype(float)  # unit variance for live units, 0 for constant ones
        cross = corr
    else:
        sq = np.where(const, 0.0, var)
        cross = np.where(const[:nx, None] | const[None, nx:], 0.0, C[:nx, nx:])
    costs = sq[:nx, None] + sq[None, nx:] - 2.0 * cross
    np.maximum(costs, 0.0, out=costs)  # rounding can make |x - y|^2 of equal units a hair negative
    report_constant(const[:nx], const[nx:], measure="soft matching", stacklevel=3,
                    consequence="they are the zero vector after centring and still carry mass 1/n")
    return costs, corr, const[:nx].copy(), const[nx:].copy(), n


def _assignment_plan(costs: np.ndarray) -> np.ndarray:
    from scipy.optimize import linear_sum_assignment

    nx, ny = costs.shape
    L = nx * ny // math.gcd(nx, ny)
    rx, ry = L // nx, L // ny
    big = np.repeat(np.repeat(costs, rx, axis=0), ry, axis=1)  # (L, L): unit masses
    rows, cols = linear_sum_assignment(big)
    P = np.zeros((nx, ny))
    np.add.at(P, (rows // rx, cols // ry), 1.0 / L)
    return P


def _linprog_plan(costs: np.ndarray, tol: float = LINPROG_TOL) -> np.ndarray:
    import scipy.sparse as sp
    from scipy.optimize import linprog

    nx, ny = costs.shape
    # variables P.ravel() (row-major); row sums then column sums
    rows = sp.kron(sp.identity(nx, format="csr"), np.ones((1, ny)), format="csr")
    cols = sp.kron(np.ones((1, nx)), sp.identity(ny, format="csr"), format="csr")
    A = sp.vstack([rows, cols], format="csr")
    b = np.concatenate([np.full(nx, 1.0 / nx), np.full(ny, 1.0 / ny)])
    res = linprog(costs.ravel(), A_eq=A, b_eq=b, bounds=(0, None), method="highs",
                  options={"primal_feasibility_tolerance": tol, "dual_feasibility_tolerance": tol})
    if res.status != 0 or res.x is None:  # pragma: no cover - HiGHS solves every feasible transport LP
        raise ValueError(f"the transport linear program failed: {res.message}")
    return np.maximum(res.x.reshape(nx, ny), 0.0)


def soft_match(X, Y=None, *, standardize: bool = True, solver: str = "auto",
               max_assignment: int = MAX_ASSIGNMENT, linprog_tol: float = LINPROG_TOL,
               constant_tol: float = CONSTANT_TOL) -> SoftMatch:
    """Soft matching distance between two layers and its optimal transport plan (module docstring).

    Parameters
    ----------
    X, Y : arrays (n_samples, n_x), (n_samples, n_y); or a Reduction as X with Y omitted
    standardize : bool
        Scale every live unit to unit variance (default) or keep the centred scale.
    solver : {"auto", "assignment", "linprog"}
    max_assignment : int
        Largest ``lcm(n_x, n_y)`` solved as an assignment under ``solver="auto"``.
    linprog_tol : float
        HiGHS's primal and dual feasibility tolerance for ``solver="linprog"`` (default
        :data:`LINPROG_TOL`, module docstring).
    constant_tol : float
        The constant-unit tolerance (default :data:`repmatch.CONSTANT_TOL`).

    Returns
    -------
    SoftMatch

    Examples
    --------
    >>> import numpy as np, repmatch
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((500, 4))
    >>> round(repmatch.soft_match(X, np.hstack([X, X])).distance, 12)   # duplicated units: distance 0
    0.0
    """
    check_choice(solver, "solver", SOLVERS)
    if not isinstance(standardize, (bool, np.bool_)):
        raise ValueError(f"standardize must be True or False, got {standardize!r}")
    max_assignment = check_positive_int(max_assignment, "max_assignment")
    linprog_tol = check_tol(linprog_tol, "linprog_tol", allow_zero=False)
    costs, corr, cx, cy, n = transport_costs(X, Y, standardize=bool(standardize), constant_tol=constant_tol)
    return _solve(costs, corr, cx, cy, n, standardize, solver, max_assignment, linprog_tol)


def soft_match_from_correlation(corr, constant_x, constant_y, *, n_samples: int = 0, solver: str = "auto",
                                max_assignment: int = MAX_ASSIGNMENT, linprog_tol: float = LINPROG_TOL) -> SoftMatch:
    """The standardised soft match from a correlation matrix and the constant-unit masks.

    Equal to ``soft_match(X, Y)`` when ``corr`` is their correlation matrix (zero for constant
    units): with standardised units the costs are ``a_i + b_j - 2 r_ij``, ``a`` = 1 for live units
    and 0 for constant ones. For callers that already hold the correlations (bootstrap draws).

    Parameters
    ----------
    corr : array of shape (n_x, n_y)
        Between-net correlations (0 for constant units).
    constant_x, constant_y : array of bool
        Constant-unit masks.
    n_samples : int
        Recorded in the result.
    solver, max_assignment, linprog_tol
        As in :func:`soft_match`.

    Returns
    -------
    SoftMatch
    """
    R = np.asarray(corr, dtype=np.float64)
    cx = np.asarray(constant_x, dtype=bool)
    cy = np.asarray(constant_y, dtype=bool)
    if R.ndim != 2 or R.shape != (cx.size, cy.size):
        raise ValueError(f"corr must have shape (len(constant_x), len(constant_y)), got {R.shape}")
    costs = (~cx).astype(float)[:, None] + (~cy).astype(float)[None, :] - 2.0 * R
    np.maximum(costs, 0.0, out=costs)
    return _solve(costs, R, cx, cy, n_samples, True, solver, max_assignment, linprog_tol)


def _solve(costs, corr, cx, cy, n, standardize, solver, max_assignment, linprog_tol=LINPROG_TOL) -> SoftMatch:
    check_choice(solver, "solver", SOLVERS)
    nx, ny = costs.shape
    L = nx * ny // math.gcd(nx, ny)
    if solver == "auto":
        solver = "assignment" if L <= max_assignment else "linprog"
    P = _assignment_plan(costs) if solver == "assignment" else _linprog_plan(costs, linprog_tol)
    d2 = float(np.sum(P * costs))
    return SoftMatch(distance=math.sqrt(max(d2, 0.0)), plan=P, mean_correlation=float(np.sum(P * corr)),
                     costs=costs, n_x=nx, n_y=ny, n_samples=int(n), constant_x=cx, constant_y=cy,
                     standardize=bool(standardize), solver=solver)


def soft_matching_distance(X, Y=None, **kwargs) -> float:
    """Just the distance of :func:`soft_match`.

    Parameters
    ----------
    X, Y, **kwargs
        As in :func:`soft_match`.

    Returns
    -------
    float
    """
    return soft_match(X, Y, **kwargs).distance
