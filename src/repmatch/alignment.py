"""One-to-one alignment of units: semi-matching and bipartite matching (Li et al., ICLR 2016).

Follows spec/convergent-learning.md section 2. Both matchings read a similarity matrix ``S`` of
shape (n_x, n_y) between the units of two networks, either the between-net Pearson correlation
(``measure="correlation"``, from moments: arrays or a :class:`~repmatch.Reduction`) or the mutual
information (``measure="mi"``, from arrays or a streamed :class:`~repmatch.MIHistogram`).

* :func:`semi_match` — every unit of X takes the unit of Y it is most similar to (several X units
  may pick the same Y unit).
* :func:`bipartite_match` — the one-to-one assignment maximising the total similarity, solved
  exactly by :func:`scipy.optimize.linear_sum_assignment` (milliseconds for 512 units; the authors'
  general max-weight matching took up to 700 s for 384). With ``n_x != n_y`` the
  ``min(n_x, n_y)`` best pairs are formed and the rest are listed as unmatched.

On a device. For a :class:`~repmatch.Reduction` on a torch device (``measure="correlation"``) the
between-net correlation is formed on that device and stays there: the semi-matching is an argmax
there, and on a GPU (``solver="auto"``) the assignment is solved there too by an auction algorithm
(``repmatch._torch.auction_assignment``) whose total is certified to be within
:data:`ASSIGN_TOL` of the optimum. Only the pairs and a few numbers come back to the host.

Constant units (zero variance; or, for MI, all values in one bin) have no similarity: they are
excluded from both matchings and listed in ``unmatched_x`` / ``unmatched_y``.

Chance level: pairing units at random gives an expected matched correlation equal to the mean of
the between-net matrix (``chance`` in the results); see :mod:`repmatch.inference` for permutation tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize

from ._resolve import as_reduction, as_rows
from ._validate import CONSTANT_TOL, check_choice, check_tol, report_constant, warn
from .correlation import correlation_from_reduction, device_between_correlation

__all__ = ["SemiMatch", "BipartiteMatch", "semi_match", "bipartite_match", "similarity_matrix", "MEASURES",
           "SOLVERS", "ASSIGN_TOL"]

MEASURES = ("correlation", "mi")

#: Assignment solvers of :func:`bipartite_match`: ``"scipy"`` (exact LAPJV on the host), ``"auction"``
#: (on the similarity matrix's torch device, within :data:`ASSIGN_TOL`), ``"auto"`` (auction when the
#: matrix is on a GPU, else SciPy).
SOLVERS = ("auto", "scipy", "auction")

#: The auction solver's bound on the total matched similarity: its assignment's total is within
#: ``ASSIGN_TOL`` of the optimum (certified by a dual bound computed with it; a larger certified gap
#: falls back to SciPy on the host, with a warning). Correlations are at most 1 in size, so this is
#: about 1e-9 / n of each pair's value: pairs equal the exact solver's whenever the best assignment
#: beats every other by more than ASSIGN_TOL; with ties (e.g. duplicate units) an equally good one
#: may be returned, and ``agree`` (which depends on the pairs) may then differ between solvers.
ASSIGN_TOL = 1e-9


@dataclass(frozen=True)
class Similarity:
    """A unit-by-unit similarity matrix with the masks of units that take no part (internal).

    ``S`` is a NumPy array, or a torch tensor on the device of a device reduction (the masks are
    host arrays either way)."""

    S: object
    excluded_x: np.ndarray
    excluded_y: np.ndarray
    measure: str
    n_samples: int


def similarity_matrix(X, Y=None, *, measure: str = "correlation", n_bins: int = 10, zero_threshold=1e-6,
                      constant_tol: float = CONSTANT_TOL) -> Similarity:
    """Between-net similarity for matching: correlation (from moments) or MI (from histograms).

    Parameters
    ----------
    X, Y, measure, n_bins, zero_threshold
        As in :func:`semi_match`.
    constant_tol : float
        The constant-unit tolerance of the correlation (:data:`repmatch.CONSTANT_TOL`).

    Returns
    -------
    Similarity
        The matrix (NumPy, or a torch tensor on a device reduction's device) and the masks of the
        units that take no part (constant ones; for MI, those whose values fall in one bin).
    """
    from .mi import MIHistogram

    check_choice(measure, "measure", MEASURES)
    if isinstance(X, Similarity):
        return X
    if measure == "correlation":
        if isinstance(X, MIHistogram):
            raise ValueError("X is an MIHistogram, which holds no correlations; use measure='mi' or pass activations")
        r = as_reduction(X, Y, measure="correlation matching")
        if r.device is not None:  # formed and kept on the reduction's device
            R, cx, cy = device_between_correlation(r, constant_tol=constant_tol)
            return Similarity(R, cx, cy, measure, r.n_samples)
        st = correlation_from_reduction(r, constant_tol=constant_tol)
        return Similarity(st.between, st.constant_x, st.constant_y, measure, st.n_samples)
    if isinstance(X, MIHistogram):
        if Y is not None:
            raise ValueError("Y must be omitted when X is an MIHistogram")
        h = X
    else:
        Xa, Ya = as_rows(X, Y, measure="measure='mi'", needs="histograms", alternative="an MIHistogram")
        h = MIHistogram.from_arrays(Xa, Ya, n_bins=n_bins, zero_threshold=zero_threshold)
    S = h.mutual_information()
    ex, ey = h.single_bin_x(), h.single_bin_y()
    S[ex, :] = 0.0
    S[:, ey] = 0.0
    report_constant(ex, ey, measure="MI matching", rule="all their values fall in one bin", stacklevel=3,
                    consequence="they get zero mutual information and are excluded from matchings")
    return Similarity(S, ex, ey, measure, h.n_samples)


def _pairs_dict(x, y, v):
    return [{"x": int(i), "y": int(j), "value": float(s)} for i, j, s in zip(x, y, v)]


def _pairs_fields(d: dict) -> dict:
    """The fields of :class:`_UnitPairs` from a ``to_dict`` output (inverse of :func:`_pairs_dict`)."""
    from ._schema import floats, ints, num

    pairs = d["pairs"]
    return {"x": ints([p["x"] for p in pairs]), "y": ints([p["y"] for p in pairs]),
            "values": floats([p["value"] for p in pairs]), "unmatched_x": ints(d["unmatched_x"]),
            "unmatched_y": ints(d["unmatched_y"]), "n_x": int(d["n_x"]), "n_y": int(d["n_y"]),
            "measure": str(d["measure"]), "chance": num(d["chance"]), "n_samples": int(d["n_samples"])}


@dataclass(frozen=True)
class _UnitPairs:
    """What semi- and bipartite matching share: pairs of units, their similarities, the leftovers."""

    x: np.ndarray
    y: np.ndarray
    values: np.ndarray
    unmatched_x: np.ndarray
    unmatched_y: np.ndarray
    n_x: int
    n_y: int
    measure: str
    chance: float
    n_samples: int

    larger_is_more_similar = True

    @property
    def mean(self) -> float:
        """Mean matched similarity (the authors' per-layer number); 0.0 when nothing is matched."""
        return float(self.values.mean()) if self.values.size else 0.0


@dataclass(frozen=True)
class SemiMatch(_UnitPairs):
    """Semi-matching: each live unit of X paired with its most similar live unit of Y.

    Attributes
    ----------
    x, y : ndarray of int
        The pairs ``(x[k], y[k])``; ``x`` is sorted. Several entries of ``y`` may be equal.
    values : ndarray
        Similarity of each pair (correlation or MI in nats).
    unmatched_x, unmatched_y : ndarray of int
        X units left out (constant); Y units picked by nobody (constant ones included).
    measure : str
        ``"correlation"`` or ``"mi"``.
    chance : float
        Mean of the similarity matrix over live units: the expected value of a random pairing.
    """

    @property
    def n_distinct_y(self) -> int:
        """How many different Y units are picked (n_x when the semi-matching is one-to-one)."""
        return int(np.unique(self.y).size)

    def to_dict(self) -> dict:
        return {
            "kind": "semi_match",
            "measure": self.measure,
            "mean": self.mean,
            "chance": self.chance,
            "n_x": self.n_x,
            "n_y": self.n_y,
            "n_pairs": int(self.x.size),
            "n_distinct_y": self.n_distinct_y,
            "pairs": _pairs_dict(self.x, self.y, self.values),
            "unmatched_x": self.unmatched_x.tolist(),
            "unmatched_y": self.unmatched_y.tolist(),
            "n_samples": self.n_samples,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "SemiMatch":
        """The inverse of :meth:`to_dict` (also after a JSON round trip)."""
        from ._schema import check_kind

        return cls(**_pairs_fields(check_kind(d, "semi_match", "SemiMatch")))


@dataclass(frozen=True)
class BipartiteMatch(_UnitPairs):
    """One-to-one matching maximising the total similarity.

    Attributes
    ----------
    x, y : ndarray of int
        The ``min(n_live_x, n_live_y)`` pairs, sorted by ``x``; each unit appears at most once.
    values : ndarray
        Similarity of each pair.
    unmatched_x, unmatched_y : ndarray of int
        Units left without a partner (constant units, and the surplus when the sizes differ).
    agree : int
        Number of matched X units whose bipartite partner is also their semi-matching choice.
    semi : SemiMatch
        The semi-matching computed from the same matrix.
    chance : float
        Mean of the similarity matrix over live units (expected value of a random pairing).
    solver : str
        The assignment solver that produced the pairs: ``"scipy"`` or ``"auction"`` (``"none"``
        when one side has no live unit, so there was nothing to solve).
    optimality_gap : float
        Certified upper bound on how far the matched total is below the optimum: 0 for SciPy's
        exact solver, at most :data:`ASSIGN_TOL` for the auction.
    """

    agree: int
    semi: SemiMatch
    solver: str = "scipy"
    optimality_gap: float = 0.0

    @property
    def agreement(self) -> float:
        """Share of matched X units on which semi- and bipartite matching agree (``agree / n_pairs``)."""
        return self.agree / self.x.size if self.x.size else 0.0

    @property
    def permutation(self) -> np.ndarray:
        """Y's columns reordered: the partners of the matched X units in X order, then unmatched Y.

        ``S[np.ix_(m.x, m.permutation[:len(m.x)])]`` has the matched values on its diagonal (the
        "bright diagonal" plot of spec section 2).
        """
        return np.concatenate([self.y, self.unmatched_y]).astype(int)

    def sorted_curve(self) -> dict:
        """The authors' plot (spec section 2): matched X units sorted by their semi-matching value
        (descending), with the semi-matching and the bipartite value of each. Units with no
        bipartite partner (when n_x > n_y) get ``None`` there."""
        order = np.argsort(-self.semi.values, kind="stable")
        bip = dict(zip(self.x.tolist(), self.values.tolist()))
        xs = self.semi.x[order]
        return {
            "x": xs.tolist(),
            "semi": self.semi.values[order].tolist(),
            "bipartite": [bip.get(int(i)) for i in xs],
        }

    def to_dict(self) -> dict:
        return {
            "kind": "bipartite_match",
            "measure": self.measure,
            "mean": self.mean,
            "semi_mean": self.semi.mean,
            "chance": self.chance,
            "agree": self.agree,
            "agreement": self.agreement,
            "n_x": self.n_x,
            "n_y": self.n_y,
            "n_pairs": int(self.x.size),
            "pairs": _pairs_dict(self.x, self.y, self.values),
            "unmatched_x": self.unmatched_x.tolist(),
            "unmatched_y": self.unmatched_y.tolist(),
            "sorted_curve": self.sorted_curve(),
            "n_samples": self.n_samples,
            "solver": self.solver,
            "optimality_gap": self.optimality_gap,
            "semi": self.semi.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "BipartiteMatch":
        """The inverse of :meth:`to_dict` (also after a JSON round trip)."""
        from ._schema import check_kind, num

        d = check_kind(d, "bipartite_match", "BipartiteMatch")
        if "semi" not in d:
            raise ValueError("BipartiteMatch.from_dict: this dict has no 'semi' (written by an older repmatch)")
        return cls(**_pairs_fields(d), agree=int(d["agree"]), semi=SemiMatch.from_dict(d["semi"]),
                   solver=str(d.get("solver", "scipy")), optimality_gap=num(d.get("optimality_gap", 0.0)))


def _live(sim: Similarity) -> tuple:
    """(live X units, live Y units, S restricted to them where S lives, or None if a side has none).

    Computed once per matching and shared by the semi-matching, the chance level and the assignment.
    """
    lx = np.flatnonzero(~sim.excluded_x)
    ly = np.flatnonzero(~sim.excluded_y)
    if not lx.size or not ly.size:
        return lx, ly, None
    if isinstance(sim.S, np.ndarray):
        return lx, ly, sim.S[np.ix_(lx, ly)]
    return lx, ly, _device().select_block(sim.S, lx, ly)


def _chance(sub) -> float:
    """Mean of the live block: the expected value of a random pairing (0.0 when there is none)."""
    return 0.0 if sub is None else float(sub.mean())


def _row_best(sub):
    """(argmax, max) of every row: first maximum on ties, as NumPy; host arrays."""
    if isinstance(sub, np.ndarray):
        best = np.argmax(sub, axis=1)
        return best, sub[np.arange(sub.shape[0]), best]
    return _device().row_best(sub)


def _semi(sim: Similarity, live: tuple) -> SemiMatch:
    n_x, n_y = sim.S.shape
    lx, ly, sub = live
    if sub is not None:
        best, v = _row_best(sub)
        x, y = lx, ly[best]
    else:
        x = y = np.empty(0, dtype=int)
        v = np.empty(0)
    return SemiMatch(
        x=x, y=y, values=v,
        unmatched_x=np.flatnonzero(sim.excluded_x) if ly.size else np.arange(n_x),
        unmatched_y=np.setdiff1d(np.arange(n_y), y),
        n_x=n_x, n_y=n_y, measure=sim.measure, chance=_chance(sub), n_samples=sim.n_samples,
    )


def semi_match(X, Y=None, *, measure: str = "correlation", n_bins: int = 10, zero_threshold=1e-6,
               constant_tol: float = CONSTANT_TOL) -> SemiMatch:
    """Pair every unit of X with its most similar unit of Y (spec/convergent-learning.md section 2).

    Parameters
    ----------
    X : array (n_samples, n_x), Reduction, or MIHistogram
        Activations of network A; or a :class:`~repmatch.Reduction` (``measure="correlation"``) or
        :class:`~repmatch.MIHistogram` (``measure="mi"``) holding both layers, with ``Y`` omitted.
    Y : array (n_samples, n_y), optional
    measure : {"correlation", "mi"}
        Similarity to maximise: Pearson correlation (signed, as the authors) or mutual information.
    n_bins, zero_threshold
        MI binning, used when ``measure="mi"`` and arrays are given (see :func:`repmatch.mi_bin_edges`).
    constant_tol : float
        Units with ``std <= constant_tol * |mean|`` are constant and left unmatched (default
        :data:`repmatch.CONSTANT_TOL`, the rule of every measure; ``measure="correlation"``).

    Returns
    -------
    SemiMatch
        Pairs, matched values, their ``mean``, the ``chance`` level and the unmatched units.

    Examples
    --------
    >>> import numpy as np, repmatch
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((1000, 5)); Y = X[:, [3, 1, 4, 0, 2]] + 0.3 * rng.standard_normal((1000, 5))
    >>> repmatch.semi_match(X, Y).y.tolist()
    [3, 1, 4, 0, 2]
    """
    sim = similarity_matrix(X, Y, measure=measure, n_bins=n_bins, zero_threshold=zero_threshold,
                            constant_tol=constant_tol)
    return _semi(sim, _live(sim))


def _assign(sub, solver: str, assign_tol: float = ASSIGN_TOL) -> tuple:
    """(rows, cols, values, solver used, certified gap) of the maximum-total assignment of ``sub``."""
    on_device = not isinstance(sub, np.ndarray)
    if solver == "auto":
        solver = "auction" if on_device and sub.device.type != "cpu" else "scipy"
    if solver == "auction":
        backend = _device()
        t = sub if on_device else backend.to_device(sub, "cpu")
        ri, ci, gap, _ = backend.auction_assignment(t, assign_tol)
        if gap <= assign_tol:
            return ri, ci, backend.entries(t, ri, ci), "auction", gap
        why = (f"certified gap {gap:.3g} exceeds assign_tol={assign_tol:g}" if np.isfinite(gap)
               else "hit its round limit (many tied similarities)")
        warn(f"the auction assignment {why}; solved exactly with SciPy on the host instead")
    host = sub if not on_device else _device().to_host(sub)
    ri, ci = scipy.optimize.linear_sum_assignment(host, maximize=True)
    return ri, ci, host[ri, ci], "scipy", 0.0


def _device():
    """The torch device backend (``repmatch._torch``, what ``Reduction.backend`` gives), imported
    only when a matrix lives on a device or the auction is asked for: this module imports no torch."""
    from . import _torch

    return _torch


def bipartite_match(X, Y=None, *, measure: str = "correlation", n_bins: int = 10, zero_threshold=1e-6,
                    solver: str = "auto", assign_tol: float = ASSIGN_TOL,
                    constant_tol: float = CONSTANT_TOL) -> BipartiteMatch:
    """One-to-one matching of units maximising the total similarity (spec section 2).

    Parameters
    ----------
    X, Y, measure, n_bins, zero_threshold, constant_tol
        As in :func:`semi_match`.
    solver : {"auto", "scipy", "auction"}
        ``"scipy"``: exact LAPJV (:func:`scipy.optimize.linear_sum_assignment`) on the host.
        ``"auction"``: the auction algorithm on the similarity matrix's torch device (CPU torch for
        host inputs), total within :data:`ASSIGN_TOL` of the optimum (certified). ``"auto"``
        (default): auction when the matrix is on a GPU (a device reduction there), else SciPy.
    assign_tol : float
        The auction's certified bound on the total's distance from the optimum (default
        :data:`ASSIGN_TOL`); a larger certified gap falls back to SciPy, with a warning.

    Returns
    -------
    BipartiteMatch
        Pairs (each unit at most once), matched values and their ``mean``, the number of units on
        which the semi-matching agrees (``agree``, ``agreement``), the semi-matching itself, the
        ``chance`` level and the unmatched units.

    Notes
    -----
    Solved as a rectangular linear assignment problem on the live units (maximising). With ties
    the assignment found is one of the optimal ones; the total is unique. ``solver`` and
    ``optimality_gap`` (0 for SciPy, the certified bound for the auction) are in the result.
    """
    check_choice(solver, "solver", SOLVERS)
    assign_tol = check_tol(assign_tol, "assign_tol", allow_zero=False)
    sim = similarity_matrix(X, Y, measure=measure, n_bins=n_bins, zero_threshold=zero_threshold,
                            constant_tol=constant_tol)
    live = _live(sim)
    semi = _semi(sim, live)
    n_x, n_y = sim.S.shape
    lx, ly, sub = live
    used, gap = "none", 0.0  # no live pair to form: no solver ran
    if sub is not None:
        ri, ci, v, used, gap = _assign(sub, solver, assign_tol)
        x, y = lx[ri], ly[ci]
    else:
        x = y = np.empty(0, dtype=int)
        v = np.empty(0)
    semi_choice = dict(zip(semi.x.tolist(), semi.y.tolist()))
    agree = int(sum(semi_choice.get(int(i)) == int(j) for i, j in zip(x, y)))
    return BipartiteMatch(
        x=x, y=y, values=v,
        unmatched_x=np.setdiff1d(np.arange(n_x), x),
        unmatched_y=np.setdiff1d(np.arange(n_y), y),
        n_x=n_x, n_y=n_y, measure=sim.measure, chance=_chance(sub), agree=agree, semi=semi,
        n_samples=sim.n_samples, solver=used, optimality_gap=gap,
    )
