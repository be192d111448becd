"""v-minimal matches and simple matches: the finest units of similarity (spec sections 2-4).

A *simple match* is a non-empty match that is not the union of strictly smaller matches; a match is
simple iff it is v-minimal for some neuron v in it (spec section 2). Every match, the maximum
match in particular, is the union of the simple matches it contains.

The v-minimal search is the deletion algorithm of spec section 3 with two exact accelerations:

* after a successful deletion the current set becomes the maximum match of what is left (not just
  the set minus one neuron). This returns the same final set in the same order of deletions as the
  plain algorithm: the maximum match of ``S - {u}`` equals that of ``maxmatch(S) - {u}``, so
  neurons the plain algorithm would delete one test at a time go at once, untested;
* every test runs on the reduced geometry of the current set (at most |S| x |S|, compressed again
  as S shrinks) and only re-checks the side whose span lost a vector, stopping as soon as v falls.

In the approximate case v-minimal matches need not be unique and a layer can have exponentially
many simple matches, so :func:`simple_matches` returns the distinct matches *found* (one search per
v in the maximum match, plus ``restarts`` random deletion orders per v) — not an enumeration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._progress import progress as _bar
from ._searchtree import SearchTree
from ._threads import available_cores, single_threaded_blas
from ._validate import as_rng, check_eps, check_positive_int, warn
from .subspace import Geometry, Match, _make_match, _resolve, _threshold, bounded_prune, watch_prune

__all__ = ["v_minimal_match", "simple_matches", "SimpleMatches"]


def _deletion(geo: Geometry, I: np.ndarray, J: np.ndarray, v: int, order, threshold: float) -> tuple:
    """Deletion search for a v-minimal match inside the match (I, J), which must contain v.

    ``order`` lists global neuron indices to try removing (v excluded). Works on the geometry
    restricted to the current set (restricted again whenever the set halves); returns global
    ``(I, J, certain)``. The result is always a certified match containing v; ``certain`` is False
    when some deletion test could not be decided (u was then kept, so the match may not be minimal).
    """
    cols = np.concatenate([I, J])  # global index of each local column
    n_i = I.size
    space = geo.tiers.restrict(cols)
    Il = np.arange(n_i)
    Jl = np.arange(n_i, cols.size)
    pos = {int(g): i for i, g in enumerate(cols)}
    v_loc = pos[int(v)]
    present = np.ones(cols.size, dtype=bool)
    certain = True
    for u in order:
        ul = pos.get(int(u))
        if ul is None or not present[ul]:
            continue
        # S is a match, so removing u only moves the other side's distances: re-check that side first.
        if ul < n_i:
            res, sure = watch_prune(space, Il[Il != ul], Jl, threshold, check_I=False, check_J=True, watch=v_loc)
        else:
            res, sure = watch_prune(space, Il, Jl[Jl != ul], threshold, check_I=True, check_J=False, watch=v_loc)
        certain &= sure
        if res is None:
            continue
        Il, Jl = res
        present[:] = False
        present[Il] = True
        present[Jl] = True
        if 2 * (Il.size + Jl.size) <= cols.size and cols.size > 8:
            keep = np.concatenate([Il, Jl])
            space = space.restrict(keep)
            cols = cols[keep]
            n_i = Il.size
            Il = np.arange(n_i)
            Jl = np.arange(n_i, keep.size)
            pos = {int(g): i for i, g in enumerate(cols)}
            v_loc = pos[int(v)]
            present = np.ones(keep.size, dtype=bool)
    return np.sort(cols[Il]), np.sort(cols[Jl]), certain


def _global_index(geo: Geometry, side: str, index) -> int:
    if side not in ("x", "y"):
        raise ValueError(f"side must be 'x' or 'y', got {side!r}")
    n_side = geo.n_x if side == "x" else geo.n_y
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
        raise ValueError(f"index must be an integer column of {side.upper()}, got {index!r}")
    i = int(index)
    if not 0 <= i < n_side:
        raise ValueError(f"index={i} is out of range for side={side!r} with {n_side} neurons")
    return i if side == "x" else geo.n_x + i


def _order(candidates: np.ndarray, v: int, rng) -> np.ndarray:
    others = candidates[candidates != v]
    if rng is None:
        return others
    return rng.permutation(others)


def v_minimal_match(
    X, Y=None, eps=None, *, side: str = "x", index: int, rng=None, method: str | None = None, tol: float | None = None,
    rank_tol: float | None = None,
) -> Match | None:
    """A v-minimal ε-match containing neuron ``index`` of X (``side="x"``) or of Y (``side="y"``).

    Returns ``None`` if that neuron is not in the maximum match (then it is in no match).

    Parameters
    ----------
    X, Y : array-like of shape (n_samples, n_x) and (n_samples, n_y)
        Activations of the two layers on the same inputs, rows in the same order. Alternatively
        pass a :class:`~repmatch.Reduction` (or a ``Geometry``) as ``X`` and omit ``Y``.
    eps : float in [0, 1)
        Largest allowed relative distance of a neuron to the other side's span (required).
    side : {"x", "y"}, default "x"
        Which layer ``index`` refers to.
    index : int
        Column of that layer (0-based) the match must contain.
    rng : None, int or numpy.random.Generator
        ``None`` tries deletions in a fixed order (X's columns ascending, then Y's); otherwise in a
        random order drawn from ``rng`` (in the approximate case different orders can give
        different v-minimal matches).
    method : {"gram", "qr"}, optional
        Reduction used for in-memory arrays (default "gram"; "qr" resolves exact matches to 1e-9).
    tol : float, optional
        Exact-match tolerance; default 1e-6 ("gram") or 1e-9 ("qr"), must lie in (0, 1).
    rank_tol : float, optional
        Numerical rank of a span (default :data:`~repmatch.reduce.RANK_TOL` = 1e-10).

    Returns
    -------
    Match or None
        The v-minimal match (sorted column indices ``.x``, ``.y``, its ``.similarity`` and
        ``.eps``), or ``None`` when the neuron is in no match at ``eps`` (also when that could not
        be decided; a RepmatchWarning then says so).

    Raises
    ------
    ValueError
        When ``eps`` is missing or not in [0, 1), ``side`` is not "x" or "y", or ``index`` is not an
        integer column of that side.

    Notes
    -----
    The result is a match, contains v, and no strictly smaller match contains v (spec section 3).
    In the exact case with linearly independent neurons it is the unique v-minimum match.
    With a Reduction as first argument pass ``eps`` by keyword (or as the second argument).
    """
    geo, eps = _resolve(X, Y, eps, method=method, tol=tol, rank_tol=rank_tol)
    if eps is None:
        raise ValueError("eps is required")
    eps = check_eps(eps)
    v = _global_index(geo, side, index)
    thr = _threshold(eps, geo.tol)
    (I, J), hi = bounded_prune(geo.tiers, geo.live_x, geo.live_y, thr)
    S = np.concatenate([I, J])
    if v not in S:
        if v in np.concatenate(hi):
            warn(f"whether neuron {index} of {side.upper()} is in any match at eps={eps:g} could not be decided "
                 "(its distance is within its rounding-error bound of the threshold); returning None")
        return None
    gen = None if rng is None else as_rng(rng)
    I, J, certain = _Searches(geo, I, J, thr)([v], _order(S, v, gen))[v]
    if not certain:
        warn(f"the match found for neuron {index} of {side.upper()} is a certified match containing it, but some "
             "deletion tests could not be decided: it may not be minimal")
    return _make_match(geo, I, J, eps)


@dataclass(frozen=True)
class SimpleMatches:
    """Distinct simple matches found in one layer pair at one ε.

    Attributes
    ----------
    matches : list of Match
        Each is v-minimal for every neuron listed in ``found_for`` at the same position. Sorted by
        size, then by their columns.
    found_for : list of list of (side, index)
        The neurons whose v-minimal search returned each match.
    maximum : Match
        The maximum match; the union of ``matches`` equals it.
    restarts : int
        Random deletion orders tried per neuron beyond the fixed order.
    exhaustive : bool
        Always False: in the approximate case simple matches are found, not enumerated
        (in the exact case with linearly independent neurons the list is complete).
    not_minimal_for : list of (side, index)
        Neurons whose search met a deletion test no tier could decide (almost always empty): the
        match found for them is a certified match containing them, but may not be minimal.
    """

    matches: list
    found_for: list
    maximum: Match
    eps: float
    restarts: int
    exhaustive: bool = False
    not_minimal_for: list = None

    def __post_init__(self):
        if self.not_minimal_for is None:
            object.__setattr__(self, "not_minimal_for", [])

    def __len__(self) -> int:
        return len(self.matches)

    def __iter__(self):
        return iter(self.matches)

    def __getitem__(self, i):
        return self.matches[i]

    @property
    def sizes(self) -> np.ndarray:
        """Size |x| + |y| of each match."""
        return np.array([m.size for m in self.matches], dtype=np.intp)

    def size_distribution(self) -> dict:
        """Map (|x|, |y|) -> number of simple matches of that shape."""
        out: dict = {}
        for m in self.matches:
            key = (len(m.x), len(m.y))
            out[key] = out.get(key, 0) + 1
        return dict(sorted(out.items()))

    def to_dict(self) -> dict:
        return {
            "eps": self.eps,
            "restarts": self.restarts,
            "exhaustive": self.exhaustive,
            "note": "distinct simple matches found by the v-minimal search from every neuron of the maximum match; "
            "in the approximate case there can be many more",
            "n_matches": len(self.matches),
            "not_minimal_for": [[side, int(i)] for side, i in self.not_minimal_for],
            "maximum_match": self.maximum.to_dict(),
            "matches": [
                {"x": [int(i) for i in m.x], "y": [int(j) for j in m.y], "found_for": [[s, int(i)] for s, i in f],
                 **({"uncertain_x": [int(i) for i in m.uncertain_x], "uncertain_y": [int(j) for j in m.uncertain_y]}
                    if not m.certified else {})}
                for m, f in zip(self.matches, self.found_for)
            ],
            "size_distribution": [
                {"size_x": int(a), "size_y": int(b), "count": int(c)} for (a, b), c in self.size_distribution().items()
            ],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "SimpleMatches":
        """The inverse of :meth:`to_dict` (also after a JSON round trip). Every match shares the
        maximum match's ε, layer sizes, dead neurons and tolerances, so only its columns are stored."""
        import dataclasses

        from ._schema import ints

        if not isinstance(d, dict) or "maximum_match" not in d:
            raise ValueError("SimpleMatches.from_dict needs the dict of SimpleMatches.to_dict()")
        maximum = Match.from_dict(d["maximum_match"])
        matches = [dataclasses.replace(maximum, x=ints(m["x"]), y=ints(m["y"]),
                                       uncertain_x=ints(m.get("uncertain_x", [])),
                                       uncertain_y=ints(m.get("uncertain_y", []))) for m in d["matches"]]
        found = [[(s, int(i)) for s, i in m["found_for"]] for m in d["matches"]]
        return cls(matches=matches, found_for=found, maximum=maximum, eps=float(d["eps"]),
                   restarts=int(d["restarts"]), exhaustive=bool(d["exhaustive"]),
                   not_minimal_for=[(s, int(i)) for s, i in d.get("not_minimal_for", [])])


def simple_matches(
    X,
    Y=None,
    eps=None,
    *,
    rng=None,
    restarts: int = 0,
    method: str | None = None,
    tol: float | None = None,
    rank_tol: float | None = None,
    progress: bool = False,
    n_jobs: int = 1,
) -> SimpleMatches:
    """Distinct simple matches found by a v-minimal search from every neuron v of the maximum match.

    Parameters
    ----------
    restarts : int
        Extra searches per neuron, each with a random deletion order drawn from ``rng``
        (seeded: the same ``rng`` gives the same result).
    progress : bool
        Show a progress bar over the deletions (needs tqdm; only in one process).
    n_jobs : int, default 1
        Processes for the searches of the fixed order (-1: one per available core). The searches
        are split into ``n_jobs`` interleaved groups of neurons, each run as one shared tree in a
        forked process; the result is the same for every ``n_jobs``.

    Returns
    -------
    SimpleMatches
        ``.matches`` (each with ``.x``, ``.y``), ``.sizes``, ``.size_distribution()``, ``.maximum``.
    """
    geo, eps, thr, I, J, S, gen, restarts, hi = _plan(X, Y, eps, rng=rng, restarts=restarts, method=method,
                                                      tol=tol, rank_tol=rank_tol)
    # the fixed order is the same for every neuron: all of its searches run as one tree
    wrap = (lambda order: _bar(order, desc=f"simple matches (eps={eps:g})", enabled=progress, unit="deletion"))
    n_jobs = available_cores() if n_jobs == -1 else check_positive_int(n_jobs, "n_jobs")
    search = _Searches(geo, I, J, thr)
    fixed = search([int(v) for v in S], S, wrap=wrap, n_jobs=n_jobs)

    def searches():
        for v in S:
            v = int(v)
            for k, order in enumerate(_orders(S, v, gen, restarts)):
                if k == 0:
                    yield v, fixed[v]
                    continue
                yield v, search([v], order)[v]

    return _assemble(geo, eps, restarts, I, J, searches(), hi)


class _Searches:
    """The deletion searches from one certified maximum match (I, J) (global indices).

    The geometry restricted to S = I + J, the factorisation of S itself (the root of every tree)
    and the certified re-check of each distinct result are computed once and shared by every call:
    the fixed order's searches, each restart's order, a Dask task's jobs."""

    def __init__(self, geo: Geometry, I, J, thr: float):
        self.geo, self.I, self.J, self.thr = geo, I, J, thr
        self.S = np.concatenate([I, J]).astype(np.intp)
        self._checked: dict = {}
        self._root = None
        if self.S.size:
            self.space = geo.tiers.restrict(self.S)
            loc = np.full(int(self.S.max()) + 1, -1, dtype=np.intp)
            loc[self.S] = np.arange(self.S.size)
            self.loc = loc
            # one tree engine for every call: it holds the host Gram matrix of S (F^T F on a QR
            # reduction, a host copy of a device one) and no state of its own between runs
            self.tree = SearchTree(self.space, self.I.size, thr)

    def _root_spans(self):
        if self._root is None:
            with single_threaded_blas():
                self._root = (self.tree._spans(self.loc[self.I], self.loc[self.J]),)
        return self._root[0]

    def __call__(self, members, order, wrap=None, n_jobs: int = 1) -> dict:
        """``{v: (I, J, certain)}`` (global indices): the searches of ``members`` in one ``order``,
        run as one screened tree (:mod:`repmatch._searchtree`), or as ``n_jobs`` trees over
        interleaved groups of the members in forked processes.

        Each distinct result is checked again as a match by the certified tiers; a search whose
        result fails that check (never seen; it would mean a screening bound was wrong) is redone
        by the certified per-neuron search."""
        if self.S.size == 0:
            return {}
        S, loc, space, thr = self.S, self.loc, self.space, self.thr
        order = np.asarray(order, dtype=np.intp)
        job = (self.tree, loc[self.I], loc[self.J], loc[order], self._root_spans())
        found = _run_trees(job, [int(loc[v]) for v in members], n_jobs, wrap)
        out = {}
        for v_loc, (Il, Jl, certain) in found.items():
            key = (Il.tobytes(), Jl.tobytes())
            if key not in self._checked:
                self._checked[key] = bool((space.decide(Jl, Il, thr) == 1).all()
                                          and (space.decide(Il, Jl, thr) == 1).all())
            v = int(S[v_loc])
            if self._checked[key]:
                out[v] = (S[Il], S[Jl], certain)
            else:  # pragma: no cover - a screening bound was wrong; the certified search decides
                out[v] = _deletion(self.geo, self.I, self.J, v, order[order != v], thr)
        return out


#: The tree job handed to forked workers (read by _tree_worker; set only while a pool runs).
_JOB = None


def _tree(job, members, wrap=None) -> dict:
    tree, Il, Jl, order, root = job
    with single_threaded_blas():
        return tree.run(Il, Jl, members, order, wrap=wrap, spans=root)


def _tree_worker(members) -> dict:
    return _tree(_JOB, members)


def _run_trees(job, members, n_jobs: int, wrap) -> dict:
    """The searches of ``members`` (local indices): one tree, or ``n_jobs`` trees in forked
    processes (where fork is available; otherwise one tree)."""
    import multiprocessing as mp

    n_jobs = max(1, min(int(n_jobs), len(members)))
    if n_jobs == 1 or "fork" not in mp.get_all_start_methods():
        return _tree(job, members, wrap)
    global _JOB
    import concurrent.futures

    # interleaved, not contiguous: contiguous groups put X's and Y's neurons in different processes,
    # whose trees can differ a lot in size (measured: 1.18x on two cores against 1.8x interleaved)
    members = np.asarray(members, dtype=np.intp)
    chunks = [members[k::n_jobs] for k in range(n_jobs) if members[k::n_jobs].size]
    _JOB = job
    try:
        with concurrent.futures.ProcessPoolExecutor(len(chunks), mp_context=mp.get_context("fork")) as pool:
            parts = list(pool.map(_tree_worker, chunks))
    finally:
        _JOB = None
    return {v: r for part in parts for v, r in part.items()}


# The three steps of simple_matches, shared with repmatch.distributed.simple_matches_parallel, which
# runs the searches as tasks: the plan and the deletion orders are drawn on the client in this order.
def _plan(X, Y, eps, *, rng, restarts, method, tol, rank_tol=None):
    """Checked inputs, the certified maximum match (I, J), its neurons S, the generator of the orders
    and the certified superset of the maximum match."""
    geo, eps = _resolve(X, Y, eps, method=method, tol=tol, rank_tol=rank_tol)
    if eps is None:
        raise ValueError("eps is required")
    eps = check_eps(eps)
    restarts = check_positive_int(restarts, "restarts", minimum=0)
    gen = as_rng(rng)
    thr = _threshold(eps, geo.tol)
    (I, J), hi = bounded_prune(geo.tiers, geo.live_x, geo.live_y, thr)
    if hi[0].size + hi[1].size > I.size + J.size:
        warn(f"{hi[0].size + hi[1].size - I.size - J.size} neuron(s) could not be decided at eps={eps:g}; "
             "simple matches are searched inside the certified maximum match (see SimpleMatches.maximum)")
    return geo, eps, thr, I, J, np.concatenate([I, J]), gen, restarts, hi


def _orders(S: np.ndarray, v: int, gen, restarts: int) -> list:
    """The deletion orders searched from v: the fixed one, then ``restarts`` drawn from ``gen``."""
    return [_order(S, v, None)] + [_order(S, v, gen) for _ in range(restarts)]


def _assemble(geo: Geometry, eps: float, restarts: int, I, J, results, hi=None) -> SimpleMatches:
    """SimpleMatches from ``(v, (x_cols, y_cols))`` search results, in search order."""
    found: dict = {}
    not_minimal = []
    for v, (mi, mj, certain) in results:
        side, idx = ("x", v) if v < geo.n_x else ("y", v - geo.n_x)
        if not certain and (side, idx) not in not_minimal:
            not_minimal.append((side, idx))
        key = (tuple(mi.tolist()), tuple(mj.tolist()))
        entry = found.setdefault(key, [])
        if (side, idx) not in entry:
            entry.append((side, idx))
    keys = sorted(found, key=lambda k: (len(k[0]) + len(k[1]), k))
    matches = [_make_match(geo, np.array(k[0], dtype=np.intp), np.array(k[1], dtype=np.intp), eps) for k in keys]
    return SimpleMatches(
        matches=matches,
        found_for=[found[k] for k in keys],
        maximum=_make_match(geo, I, J, eps, hi=hi),
        eps=eps,
        restarts=restarts,
        not_minimal_for=not_minimal,
    )
