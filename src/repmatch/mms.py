"""Numbers that summarise the whole maximum-match-similarity curve (MMS against ε on [0, 1)).

At the authors' ε (0.15-0.5) the maximum match between two conv layers is often empty for trained
networks and for every null alike, so a table at those ε reads as a wall of zeros that cannot
discriminate anything. The curve on all of [0, 1) always moves; three numbers summarise it, each
computed with the public subspace API (:func:`repmatch.similarity_curve`,
:func:`repmatch.minimal_epsilon`, :func:`repmatch.max_epsilon`):

* ``eps_50`` — the smallest ε at which at least half of the live neurons of each layer are in the
  maximum match: ``minimal_epsilon(min_size=ceil(fraction * min(live_x, live_y)))`` with
  ``fraction = 0.5``. Smaller = more similar. Exact (up to the subspace module's tolerances).
* ``max_epsilon`` — the smallest ε at which every live neuron matches. Smaller = more similar.
* ``area`` — the area under the curve on [0, 1), the mean over ε of the similarity. Larger = more
  similar. The curve is non-decreasing and known exactly at the grid points and from
  ``max_epsilon`` on (where it equals the live fraction), so the area is bracketed: between two
  known points it lies between the left and the right value. ``area`` is the midpoint of the
  bracket ``[area_low, area_high]``, whose width is at most the grid step (0.025 by default).

"Live" neurons are those whose activation vector is not zero on the data (``Match.dead_x``).
"""

from __future__ import annotations

import math

import numpy as np

from .protocol import DEFAULT_EPS_GRID

__all__ = ["HEADLINE_GRID", "curve_area", "eps_at_fraction", "summarize_curve", "EPS50_FRACTION"]

#: ε grid of the headline curve: 0, 0.025, ..., 0.975 (40 values; the authors' 0.15, 0.2, 0.25, 0.3
#: and 0.5 are on it).
HEADLINE_GRID = DEFAULT_EPS_GRID
#: Share of the live neurons (of the smaller layer) that eps_50 asks to be matched on each side.
EPS50_FRACTION = 0.5


def curve_area(eps, similarity, *, max_epsilon: float, live_fraction: float) -> tuple:
    """``(area, low, high)`` of a non-decreasing step curve on [0, 1) known at ``eps`` (module docstring).

    ``similarity`` equals ``live_fraction`` for every ε >= ``max_epsilon``.

    Parameters
    ----------
    eps : array of float
        The grid, increasing, in [0, 1).
    similarity : array of float
        The curve's values on ``eps`` (non-decreasing).
    max_epsilon : float
        Where the curve reaches ``live_fraction``.
    live_fraction : float
        The curve's value from ``max_epsilon`` on.

    Returns
    -------
    tuple
        ``(area, low, high)``: the area under the step curve and bounds on it from the grid.
    """
    e = np.asarray(eps, dtype=float)
    s = np.asarray(similarity, dtype=float)
    if e.ndim != 1 or e.shape != s.shape or e.size == 0:
        raise ValueError(f"eps and similarity must be 1-D arrays of the same non-zero length, got {e.shape} and {s.shape}")
    order = np.argsort(e, kind="stable")
    e, s = e[order], s[order]
    if np.any(np.diff(s) < -1e-12):
        raise ValueError("similarity must be non-decreasing in ε")
    me = float(max_epsilon)
    lf = float(live_fraction)
    keep = e < me
    pts_e, pts_s = list(e[keep]), list(s[keep])
    exact_tail = me < 1.0
    if exact_tail:  # from max_epsilon on, every live neuron matches
        pts_e.append(me)
        pts_s.append(lf)
    if not pts_e:  # nothing known below 1: the curve lies in [0, live fraction]
        return 0.5 * lf, 0.0, lf
    low, high = 0.0, pts_s[0] * pts_e[0]  # on [0, first point) the curve is in [0, first value]
    for k in range(len(pts_e) - 1):
        w = pts_e[k + 1] - pts_e[k]
        low += pts_s[k] * w
        high += pts_s[k + 1] * w
    w = 1.0 - pts_e[-1]
    low += (lf if exact_tail else pts_s[-1]) * w
    high += lf * w
    return 0.5 * (low + high), low, high


def eps_at_fraction(X, Y=None, *, fraction: float = EPS50_FRACTION, live: tuple | None = None) -> dict:
    """Smallest ε with at least ``fraction`` of the live neurons matched on each side.

    Returns ``{"eps", "min_size", "size_x", "size_y"}`` (``eps`` None when a side has no live
    neuron; 1.0, with ``"none_below_1": True``, when no ε < 1 reaches the size, as for max_epsilon). ``live = (n_live_x, n_live_y)`` skips finding the dead neurons again.

    Parameters
    ----------
    X : array (n_samples, n_x) or Reduction
    Y : array (n_samples, n_y), optional
    fraction : float in (0, 1]
        Share of the live neurons of each side that must be matched.
    live : tuple of int, optional
        ``(n_live_x, n_live_y)`` when already known.

    Returns
    -------
    dict
        ``{"eps", "min_size", "size_x", "size_y"}`` (and ``"none_below_1"`` when no ε < 1 reaches it).
    """
    from .subspace import NoMatchError, maximum_match, minimal_epsilon

    f = float(fraction)
    if not 0 < f <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction!r}")
    if live is None:
        m = maximum_match(X, Y, eps=0.0)
        live = (m.n_x - len(m.dead_x), m.n_y - len(m.dead_y))
    k = math.ceil(f * min(live))
    if k < 1:
        return {"eps": None, "min_size": 0, "size_x": 0, "size_y": 0}
    try:
        eps, m = minimal_epsilon(X, Y, min_size=k)
    except NoMatchError:  # no ε < 1 reaches it (layers orthogonal where it matters): 1, as max_epsilon says
        return {"eps": 1.0, "min_size": int(k), "size_x": 0, "size_y": 0, "none_below_1": True}
    out = {"eps": float(eps), "min_size": int(k), "size_x": len(m.x), "size_y": len(m.y)}
    for name in ("uncertain_x", "uncertain_y"):  # certified results may flag undecided neurons
        u = getattr(m, name, None)
        if u is not None:
            out[name] = int(len(u))
    return out


def summarize_curve(X, Y=None, *, eps=HEADLINE_GRID, fraction: float = EPS50_FRACTION) -> dict:
    """The curve on ``eps`` and its summaries (``max_epsilon``, ``eps_50``, ``area``) from one reduction.

    Parameters
    ----------
    X : array (n_samples, n_x) or Reduction
    Y : array (n_samples, n_y), optional
    eps : sequence of float
        The ε grid (default: the headline grid of :mod:`repmatch.protocol`).
    fraction : float
        As in :func:`eps_at_fraction`.

    Returns
    -------
    dict
        The curve and its summaries (``max_epsilon``, ``eps_50``, ``area``, sizes, dead neurons).
    """
    from ._resolve import as_reduction
    from .subspace import similarity_curve

    r = X if Y is None else as_reduction(X, Y, measure="the MMS curve")
    c = similarity_curve(r, eps=list(eps))
    n_live_x, n_live_y = c.n_x - len(c.dead_x), c.n_y - len(c.dead_y)
    live_frac = (n_live_x + n_live_y) / (c.n_x + c.n_y)
    area, lo, hi = curve_area(c.eps, c.similarity, max_epsilon=c.max_epsilon, live_fraction=live_frac)
    e50 = eps_at_fraction(r, fraction=fraction, live=(n_live_x, n_live_y))
    out = {"eps": c.eps.tolist(), "similarity": c.similarity.tolist(), "size_x": c.size_x.tolist(),
           "size_y": c.size_y.tolist(), "max_epsilon": float(c.max_epsilon), "eps_50": e50["eps"],
           "eps_50_min_size": e50["min_size"], "area": area, "area_low": lo, "area_high": hi,
           "n_x": c.n_x, "n_y": c.n_y, "n_samples": c.n_samples, "dead_x": len(c.dead_x),
           "dead_y": len(c.dead_y), "samples_per_neuron": c.n_samples / max(1, c.n_x + c.n_y)}
    for name in ("uncertain_x", "uncertain_y"):
        u = getattr(c, name, None)
        if u is not None:
            out[name] = np.asarray(u).tolist()
        if name in e50:
            out[f"eps_50_{name}"] = e50[name]
    return out
