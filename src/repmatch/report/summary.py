"""The report's reading of the numbers: per-layer verdicts against both nulls, and the sentences.

Everything here is computed from the arrays the figures draw, so the text cannot say more than the
figures show. Two nulls, two kinds of statement:

* **untrained network** — one untrained network per pair of seeds, so there is no distribution
  to test against: the text says in how many pairs the trained value is better, never
  "significant";
* **shuffled rows** — a permutation test per pair; a layer is "beyond the shuffled null" when
  ``p <= alpha`` in every pair. With ``n`` permutations the smallest possible p-value is
  ``1 / (1 + n)``; when that exceeds ``alpha`` the test cannot reject at any data, and the text
  says "not testable at n permutations" instead of claiming anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LayerVerdict", "verdicts", "sentence", "min_p", "can_test", "pairs_phrase"]


def min_p(n_permutations: int) -> float:
    """The smallest p-value a permutation test with ``n_permutations`` draws can give.

    Parameters
    ----------
    n_permutations : int

    Returns
    -------
    float
        ``1 / (n_permutations + 1)``.
    """
    return 1.0 / (1 + int(n_permutations))


def can_test(n_permutations: int, alpha: float) -> bool:
    """Whether a permutation test with ``n_permutations`` draws can reach p <= ``alpha`` at all.

    Parameters
    ----------
    n_permutations : int
    alpha : float
        The significance level.

    Returns
    -------
    bool
        ``min_p(n_permutations) <= alpha``.
    """
    return min_p(n_permutations) <= alpha


def pairs_phrase(n_pairs: int) -> str:
    """"the 3 pairs of seeds" / "the one pair of seeds" (never "the 1 pairs").

    Parameters
    ----------
    n_pairs : int

    Returns
    -------
    str
    """
    return "the one pair of seeds" if n_pairs == 1 else f"the {n_pairs} pairs of seeds"


@dataclass(frozen=True)
class LayerVerdict:
    layer: str
    beats_untrained: int      # pairs in which the trained value is strictly better than the untrained one
    n_pairs: int
    shuffled: str             # "significant", "not significant", "not testable" or "undefined"
    max_p: float | None       # the largest shuffled p-value over pairs

    @property
    def beats_untrained_everywhere(self) -> bool:
        return self.beats_untrained == self.n_pairs

    @property
    def beats_both(self) -> bool:
        return self.beats_untrained_everywhere and self.shuffled == "significant"


def _better(a, b, larger: bool) -> bool:
    if a is None or b is None or not (np.isfinite(a) and np.isfinite(b)):
        return False
    return a > b if larger else a < b


def verdicts(layers, trained, untrained, shuffled_p, *, larger: bool, alpha: float, n_permutations: int) -> list:
    """One :class:`LayerVerdict` per layer; arrays are (n_pairs, n_layers), NaN where undefined.

    Parameters
    ----------
    layers : sequence of str
    trained, untrained : array-like of shape (n_pairs, n_layers)
        The statistic on the trained networks and on the untrained null.
    shuffled_p : array-like of shape (n_pairs, n_layers)
        p-values against the shuffled-row null.
    larger : bool
        Whether larger values mean more similar.
    alpha : float
        The significance level.
    n_permutations : int
        Permutations of the shuffled null (decides whether it can be tested at ``alpha``).

    Returns
    -------
    list of LayerVerdict
        Per layer: pairs in which trained beats untrained (strictly; undefined values never do),
        and the shuffled-null status ("significant" when p <= alpha in every pair, "not
        significant", "not testable" or "undefined") with the largest p over pairs.

    Raises
    ------
    ValueError
        When the three arrays do not all have shape (n_pairs, len(layers)).
    """
    t = np.asarray(trained, dtype=float)
    u = np.asarray(untrained, dtype=float)
    p = np.asarray(shuffled_p, dtype=float)
    if not (t.shape == u.shape == p.shape and t.ndim == 2 and t.shape[1] == len(layers)):
        raise ValueError(f"trained, untrained and shuffled_p must be (n_pairs, {len(layers)}) arrays, "
                         f"got {t.shape}, {u.shape}, {p.shape}")
    can = can_test(n_permutations, alpha)
    out = []
    for j, layer in enumerate(layers):
        wins = sum(_better(t[i, j], u[i, j], larger) for i in range(t.shape[0]))
        pj = p[:, j]
        if not np.all(np.isfinite(pj)):
            status = "undefined"
        elif not can:
            status = "not testable"
        else:
            status = "significant" if np.all(pj <= alpha) else "not significant"
        out.append(LayerVerdict(layer, int(wins), t.shape[0], status,
                                float(np.max(pj)) if np.all(np.isfinite(pj)) else None))
    return out


def _names(vs) -> str:
    return ", ".join(v.layer for v in vs) if vs else "no layer"


def sentence(measure: str, vs: list, *, larger: bool, alpha: float, n_permutations: int) -> str:
    """The report's reading of one statistic over all layers (module docstring).

    Parameters
    ----------
    measure : str
        The statistic's name as shown.
    vs : list of LayerVerdict
        From :func:`verdicts`.
    larger, alpha, n_permutations
        As given to :func:`verdicts`.

    Returns
    -------
    str
        A few sentences: where the trained value beats the untrained network, and where (if
        testable) it beats the shuffled-row null.
    """
    if not vs:
        return f"{measure}: no layer."
    n_pairs = vs[0].n_pairs
    better = "above" if larger else "below"
    direction = "larger" if larger else "smaller"
    allp = "in every pair" if n_pairs > 1 else "in the one pair"
    beat_u = [v for v in vs if v.beats_untrained_everywhere]
    lose_u = [v for v in vs if not v.beats_untrained_everywhere]
    if beat_u:
        parts = [f"{measure} ({direction} = more similar) is {better} the untrained-network value {allp} of seeds in "
                 f"{_names(beat_u)}"]
    else:
        parts = [f"{measure} ({direction} = more similar) is {better} the untrained-network value {allp} of seeds "
                 "in no layer"]
    if lose_u and beat_u:
        parts[-1] += (f"; not in {_names(lose_u)}, where an untrained network of the same architecture matches as "
                      "well in at least one pair (what is shared there reflects the input and the architecture)")
    elif lose_u:
        parts[-1] += (": in every layer an untrained network of the same architecture matches as well in at least one "
                      "pair")
    parts[-1] += " (one untrained network per pair: a comparison, not a test)."
    if not can_test(n_permutations, alpha):
        parts.append(f"Against the shuffled-row null it is not testable at {n_permutations} permutations (the "
                     f"smallest possible p is 1/{n_permutations + 1} = {min_p(n_permutations):.3g} > α = {alpha:g}; "
                     f"rerun with --permutations {int(np.ceil(1 / alpha)) - 1} or more).")
    else:
        sig = [v for v in vs if v.shuffled == "significant"]
        undef = [v for v in vs if v.shuffled == "undefined"]
        parts.append(f"It is beyond the shuffled-row null at p ≤ {alpha:g} {allp} in {_names(sig)}"
                     + (f" (undefined in {_names(undef)})" if undef else "") + ".")
        both = [v for v in vs if v.beats_both]
        parts.append(f"Both nulls beaten: {_names(both)}.")
    return " ".join(parts)
