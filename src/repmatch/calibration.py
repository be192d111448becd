"""Calibrated baselines for best-match statistics (semi- and bipartite matching).

A best-match statistic takes a maximum over candidate partners, so it is biased upwards twice:
by the noise it selects (the largest of many noisy correlations is large even when all true
correlations are equal) and by whatever any basis of the other layer would give (a unit is
correlated with *some* direction of a layer that represents the same input). Two baselines
separate these from a privileged, shared neuron basis:

* :func:`rotation_baseline` — the other layer's live units are replaced by a random orthogonal
  rotation of them (Haar-distributed, :func:`scipy.stats.ortho_group`), which spans the same
  subspace, keeps its total variance and its whole information content, but has no privileged
  axes. ``excess = observed - mean rotated`` is what the neuron basis itself adds ("excess
  correlation", as in neuron-universality studies of language models). Computed from moments: the
  rotated layer's means and co-moments are ``Q^T mu`` and ``Q^T C Q``, so it streams.
* :func:`heldout_match` — the assignment is fitted on one set of inputs and its correlations are
  scored on another (disjoint images), which removes the selection bias of the maximum. With
  ``cross=True`` both directions are used (fit on A, score on B and fit on B, score on A) and
  averaged.

Bootstrap confidence intervals over images (rows grouped by image for conv layers) are
:func:`repmatch.bootstrap_ci` with ``groups=``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._resolve import as_reduction
from ._validate import as_rng, check_positive_int
from .reduce import Reduction
from .correlation import correlation_from_reduction

__all__ = ["RotationBaseline", "HeldoutMatch", "rotation_baseline", "heldout_match", "rotate_y"]


@dataclass(frozen=True)
class RotationBaseline:
    """Observed semi/bipartite means against the same with Y's live units randomly rotated.

    Attributes
    ----------
    semi, bipartite : float
        Observed mean matched correlations.
    rotated_semi, rotated_bipartite : ndarray (n_rotations,)
        The same statistics after each random rotation of Y's live units.
    excess_semi, excess_bipartite : float
        Observed minus the mean over rotations.
    p_semi, p_bipartite : float
        ``(1 + #{rotated >= observed}) / (1 + n_rotations)``: is the neuron basis more aligned
        than a random basis of the same subspace?
    unit_excess : ndarray (n live X units,)
        Per X unit: its best correlation minus the mean over rotations of its best rotated one.
    n_rotations : int
    """

    semi: float
    bipartite: float
    rotated_semi: np.ndarray = field(repr=False)
    rotated_bipartite: np.ndarray = field(repr=False)
    unit_excess: np.ndarray = field(repr=False)
    n_rotations: int

    @property
    def excess_semi(self) -> float:
        return float(self.semi - self.rotated_semi.mean())

    @property
    def excess_bipartite(self) -> float:
        return float(self.bipartite - self.rotated_bipartite.mean())

    @property
    def p_semi(self) -> float:
        return float((1 + np.sum(self.rotated_semi >= self.semi)) / (1 + self.n_rotations))

    @property
    def p_bipartite(self) -> float:
        return float((1 + np.sum(self.rotated_bipartite >= self.bipartite)) / (1 + self.n_rotations))

    def to_dict(self) -> dict:
        return {"kind": "rotation_baseline", "semi": self.semi, "bipartite": self.bipartite,
                "rotated_semi_mean": float(self.rotated_semi.mean()),
                "rotated_semi_std": float(self.rotated_semi.std()),
                "rotated_bipartite_mean": float(self.rotated_bipartite.mean()),
                "rotated_bipartite_std": float(self.rotated_bipartite.std()),
                "excess_semi": self.excess_semi, "excess_bipartite": self.excess_bipartite,
                "p_semi": self.p_semi, "p_bipartite": self.p_bipartite,
                "unit_excess_mean": float(self.unit_excess.mean()) if self.unit_excess.size else 0.0,
                "n_rotations": self.n_rotations, "rotated_semi": self.rotated_semi.tolist(),
                "rotated_bipartite": self.rotated_bipartite.tolist(), "unit_excess": self.unit_excess.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "RotationBaseline":
        """The inverse of :meth:`to_dict` (also after a JSON round trip)."""
        from ._schema import check_kind, floats, num

        d = check_kind(d, "rotation_baseline", "RotationBaseline")
        if "rotated_semi" not in d:
            raise ValueError("RotationBaseline.from_dict: this dict has no 'rotated_semi' (written by an older repmatch)")
        return cls(num(d["semi"]), num(d["bipartite"]), floats(d["rotated_semi"]), floats(d["rotated_bipartite"]),
                   floats(d["unit_excess"]), int(d["n_rotations"]))


def rotate_y(r: Reduction, Q: np.ndarray, live_y: np.ndarray) -> Reduction:
    """A reduction of ``[X, Y']`` where ``Y'[:, live_y] = Y[:, live_y] @ Q`` (other columns unchanged).

    Parameters
    ----------
    r : Reduction
        The two layers.
    Q : ndarray of shape (len(live_y), len(live_y))
        An orthogonal matrix.
    live_y : array of int
        The Y units to rotate.

    Returns
    -------
    Reduction
        A new host reduction of the rotated layers (moments only).
    """
    n = r.n_x + r.n_y
    T = np.eye(n)
    idx = r.n_x + np.asarray(live_y, dtype=int)
    T[np.ix_(idx, idx)] = Q
    out = Reduction(r.n_x, r.n_y)
    out.add_moments(r.n_samples, T.T @ r.mean, T.T @ r.comoment @ T)
    return out


def rotation_baseline(X, Y=None, *, n_rotations: int = 20, rng=None) -> RotationBaseline:
    """Semi- and bipartite matching against a randomly rotated basis of Y (module docstring).

    Parameters
    ----------
    X, Y : arrays, or a Reduction as X with Y omitted
    n_rotations : int
        Random rotations (Haar) of Y's live units; each costs one bipartite matching.
    rng : None, int or Generator

    Returns
    -------
    RotationBaseline
    """
    import warnings

    from scipy.stats import ortho_group

    from ._validate import RepmatchWarning
    from .alignment import bipartite_match

    r = as_reduction(X, Y, measure="rotation_baseline")
    if r.method != "gram":  # a QR factor cannot be rotated from moments; the moments are enough here
        r = _moments_only(r)
    n_rot = check_positive_int(n_rotations, "n_rotations")
    g = as_rng(rng)
    st = correlation_from_reduction(r)
    live_y = np.flatnonzero(~st.constant_y)
    obs = bipartite_match(r)
    if live_y.size == 0 or obs.semi.x.size == 0:
        z = np.zeros(n_rot)
        return RotationBaseline(obs.semi.mean, obs.mean, z, z.copy(), np.zeros(obs.semi.x.size), n_rot)
    semi = np.empty(n_rot)
    bip = np.empty(n_rot)
    unit = np.zeros(obs.semi.x.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)  # the constant units were reported above
        for k in range(n_rot):
            Q = ortho_group.rvs(live_y.size, random_state=g) if live_y.size > 1 else np.array([[g.choice([-1.0, 1.0])]])
            b = bipartite_match(rotate_y(r, Q, live_y))
            semi[k], bip[k] = b.semi.mean, b.mean
            unit += b.semi.values  # X is unchanged: the same live X units, in the same order
    return RotationBaseline(obs.semi.mean, obs.mean, semi, bip, obs.semi.values - unit / n_rot, n_rot)


def _moments_only(r: Reduction) -> Reduction:
    out = Reduction(r.n_x, r.n_y)
    out.add_moments(r.n_samples, r.mean, r.comoment)
    return out


@dataclass(frozen=True)
class HeldoutMatch:
    """Matchings fitted on one set of inputs and scored on another.

    Attributes
    ----------
    semi, bipartite : float
        Held-out mean matched correlation: the fitted pairs' correlations on the scoring inputs
        (mean over the two directions when ``cross``). A unit constant on the scoring inputs
        counts as correlation 0.
    semi_in_sample, bipartite_in_sample : float
        The usual (in-sample) means on the scoring inputs, for comparison: the selection bias is
        ``in_sample - heldout``.
    pair_stability : float
        Share of bipartite pairs found identically on both sets (``cross`` only, else NaN).
    directions : list of dict
        Per direction: ``semi``, ``bipartite``, ``semi_in_sample``, ``bipartite_in_sample``.
    """

    semi: float
    bipartite: float
    semi_in_sample: float
    bipartite_in_sample: float
    pair_stability: float
    directions: list

    def to_dict(self) -> dict:
        return {"kind": "heldout_match", "semi": self.semi, "bipartite": self.bipartite,
                "semi_in_sample": self.semi_in_sample, "bipartite_in_sample": self.bipartite_in_sample,
                "pair_stability": self.pair_stability, "directions": self.directions}

    @classmethod
    def from_dict(cls, d: dict) -> "HeldoutMatch":
        """The inverse of :meth:`to_dict` (also after a JSON round trip; ``None`` reads as NaN)."""
        from ._schema import check_kind, num

        d = check_kind(d, "heldout_match", "HeldoutMatch")
        directions = [{k: num(v) if k != "direction" and (v is None or isinstance(v, (int, float))) else v
                       for k, v in dd.items()} for dd in d["directions"]]
        return cls(num(d["semi"]), num(d["bipartite"]), num(d["semi_in_sample"]), num(d["bipartite_in_sample"]),
                   num(d["pair_stability"]), directions)


def _as_red(obj, name):
    """``fit`` / ``score`` (a Reduction, or a pair ``(X, Y)``) through the one resolver."""
    if isinstance(obj, Reduction):
        return as_reduction(obj, measure="heldout_match", names=(name, "Y"))
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        return as_reduction(obj[0], obj[1], measure="heldout_match", names=(f"{name}[0]", f"{name}[1]"))
    raise ValueError(f"{name} must be a Reduction or a pair (X, Y) of activation arrays, got {type(obj).__name__}")


def _one_way(fit: Reduction, score: Reduction) -> tuple:
    from .alignment import bipartite_match

    bf = bipartite_match(fit)
    bs = bipartite_match(score)
    R = np.asarray(correlation_from_reduction(score).between)
    semi = float(R[bf.semi.x, bf.semi.y].mean()) if bf.semi.x.size else 0.0
    bip = float(R[bf.x, bf.y].mean()) if bf.x.size else 0.0
    d = {"semi": semi, "bipartite": bip, "semi_in_sample": bs.semi.mean, "bipartite_in_sample": bs.mean}
    return d, set(zip(bf.x.tolist(), bf.y.tolist()))


def heldout_match(fit, score, *, cross: bool = True) -> HeldoutMatch:
    """Fit semi- and bipartite matching on ``fit``, score their pairs on ``score`` (module docstring).

    Parameters
    ----------
    fit, score : Reduction or (X, Y)
        The two layers on two disjoint sets of inputs (e.g. two halves of the test images).
    cross : bool
        Also fit on ``score`` and score on ``fit``, and average the two directions.

    Returns
    -------
    HeldoutMatch
        Held-out and in-sample means of both matchings, the pairs' stability across the two
        directions (NaN without ``cross``) and each direction's numbers.
    """
    import warnings

    from ._validate import RepmatchWarning

    a = _as_red(fit, "fit")
    b = _as_red(score, "score")
    if (a.n_x, a.n_y) != (b.n_x, b.n_y):
        raise ValueError(f"fit and score must hold the same layers: fit has {a.n_x} + {a.n_y} units, "
                         f"score has {b.n_x} + {b.n_y}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepmatchWarning)
        dirs = [_one_way(a, b)]
        if cross:
            dirs.append(_one_way(b, a))
    keys = ("semi", "bipartite", "semi_in_sample", "bipartite_in_sample")
    mean = {k: float(np.mean([d[k] for d, _ in dirs])) for k in keys}
    if cross:
        pa, pb = dirs[0][1], dirs[1][1]
        stab = len(pa & pb) / max(1, max(len(pa), len(pb)))
    else:
        stab = float("nan")
    return HeldoutMatch(mean["semi"], mean["bipartite"], mean["semi_in_sample"], mean["bipartite_in_sample"],
                        float(stab), [d for d, _ in dirs])
