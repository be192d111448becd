"""Measures other than the subspace match, for ``repmatch compare --measures``.

``compute(name, layer, X, Y, reduction, options)`` returns ``(json_dict, table_lines)`` for one
layer pair; ``X``/``Y`` are in-memory activations or ``None`` when only a reduction is available
(then measures that need the rows raise ValueError naming the measure). A thin layer over the
Python API: every number comes from a public repmatch function.

``options`` is a mapping; keys read here (all optional): ``seed`` (int), ``alphas`` (LASSO
penalties for ``sparse``), ``n_clusters`` (for ``clusters``), ``n_bins`` (for ``mi``),
``permutations`` (int, default 0: with X and Y in memory, add a permutation-test p-value for the
scalar measures).

Measures
--------
semi        semi-matching on correlation (mean matched correlation, chance level)
bipartite   bipartite matching on correlation (mean, semi-matching mean, agreement)
mi          semi- and bipartite matching on mutual information (needs activations)
sparse      exact LASSO path, both directions (held-out FVU and inputs per unit per penalty)
clusters    spectral clustering of the units of both layers with a random-partition baseline
cka         linear CKA (plus debiased linear CKA when activations are in memory)
cca         mean squared canonical correlation
svcca       SVCCA (99% variance kept)
pwcca       projection-weighted CCA
procrustes  orthogonal Procrustes distance (smaller = more similar)
"""

from __future__ import annotations


AVAILABLE: tuple = ("semi", "bipartite", "mi", "sparse", "clusters", "cka", "cca", "svcca", "pwcca", "procrustes")
#: Cheap, moment-based measures (work from a reductions file too); subspace is added by compare.
DEFAULT: tuple = ("semi", "bipartite", "cka", "pwcca", "svcca", "procrustes")
#: Measures that need the activations' rows (not computable from a reductions file).
NEED_ROWS: tuple = ("mi",)

# scalar -> registered name in repmatch.inference.SCALARS, for the optional permutation p-values
_NULL_NAMES = {
    "semi": "semi_match",
    "bipartite": "bipartite_match",
    "mi": "mi_semi_match",
    "cka": "linear_cka",
    "cca": "mean_squared_cca",
    "svcca": "svcca",
    "pwcca": "pwcca",
    "procrustes": "procrustes",
}


def _opt(options, key, default):
    if options is None:
        return default
    if isinstance(options, dict):
        v = options.get(key, default)
    else:
        v = getattr(options, key, default)
    return default if v is None else v


def _need_rows(name, X, Y):
    if X is None or Y is None:
        raise ValueError(
            f"measure {name!r} needs the activations themselves (a reductions file holds only moments); "
            "compare two activation files instead"
        )


def _null(name, X, Y, options, data, lines):
    n_perm = int(_opt(options, "permutations", 0))
    if n_perm <= 0 or X is None or Y is None:
        return
    import repmatch

    res = repmatch.permutation_test(_NULL_NAMES[name], X, Y, n_permutations=n_perm, rng=int(_opt(options, "seed", 0)))
    data["permutation_test"] = res.to_dict()
    lines.append(f"    permutation null ({n_perm} shuffles): mean {res.null_mean:.4f} ± {res.null_std:.4f}, p = {res.p_value:.4g}")


def live_units(X, Y, reduction) -> int:
    """Units of both layers together that are not constant on the data (what clustering can group)."""
    import repmatch

    st = repmatch.correlation_from_reduction(reduction) if reduction is not None else repmatch.correlation(X, Y)
    return int((~st.constant_x).sum() + (~st.constant_y).sum())


def _fmt_unmatched(m):
    return f"unmatched X {len(m.unmatched_x)}, Y {len(m.unmatched_y)}"


def compute(name, layer, X, Y, reduction, options):
    """Compute measure ``name`` for one layer pair; returns ``(json_dict, table_lines)``."""
    import repmatch

    if name not in AVAILABLE:
        raise ValueError(f"unknown measure {name!r}; available: subspace, {', '.join(AVAILABLE)}")
    src = reduction if reduction is not None else None
    if src is None:
        _need_rows(name, X, Y)
    seed = int(_opt(options, "seed", 0))
    lines: list = []

    def moments():
        return (src,) if src is not None else (X, Y)

    if name == "semi":
        m = repmatch.semi_match(*moments())
        data = m.to_dict()
        lines.append(
            f"  semi-matching (correlation): mean {m.mean:.4f} over {len(m.x)} X units, "
            f"{m.n_distinct_y} distinct Y partners (chance {m.chance:.4f}; X left out {len(m.unmatched_x)}, "
            f"Y chosen by no X unit {len(m.unmatched_y)})"
        )
    elif name == "bipartite":
        m = repmatch.bipartite_match(*moments())
        data = m.to_dict()
        lines.append(
            f"  bipartite matching (correlation): mean {m.mean:.4f}, semi-matching {m.semi.mean:.4f}, "
            f"agree {m.agree}/{len(m.x)} (chance {m.chance:.4f}; {_fmt_unmatched(m)})"
        )
    elif name == "mi":
        _need_rows(name, X, Y)
        h = repmatch.MIHistogram.from_arrays(X, Y, n_bins=int(_opt(options, "n_bins", 10)))
        b = repmatch.bipartite_match(h, measure="mi")
        data = b.to_dict()
        lines.append(
            f"  mutual information (nats): semi-matching mean {b.semi.mean:.4f}, bipartite mean {b.mean:.4f}, "
            f"agree {b.agree}/{len(b.x)} (chance {b.chance:.4f})"
        )
    elif name == "sparse":
        alphas = _opt(options, "alphas", repmatch.sparse.DEFAULT_ALPHAS)
        if X is not None and Y is not None:
            res = repmatch.sparse_prediction(X, Y, alphas=alphas, rng=seed)
        else:
            res = repmatch.sparse_prediction(src, alphas=alphas)
        data = res.to_dict()
        p = res.x_to_y
        where = f"held-out FVU ({p.n_test} test rows)" if p.held_out else "training FVU (no held-out rows)"
        lines.append(f"  sparse prediction (LASSO, z-scored): {where}; mean non-zero inputs per unit")
        lines.append("    alpha       X->Y fvu  inputs      Y->X fvu  inputs    mutual pairs")
        q = res.y_to_x
        for k, a in enumerate(res.alphas):
            lines.append(
                f"    {a:<10.3g}  {p.mean_fvu[k]:<8.4f}  {p.mean_nonzero[k]:<10.1f}  "
                f"{q.mean_fvu[k]:<8.4f}  {q.mean_nonzero[k]:<8.1f}  {len(res.mutual_pairs[k])}"
            )
    elif name == "clusters":
        n_live = live_units(X, Y, src)
        if n_live == 0:
            raise ValueError("every unit of both layers is constant on this data: no live unit to cluster")
        # an explicit n_clusters above n_live is refused by `repmatch compare` before any work; the
        # default (8) is lowered to the live units
        k = min(int(_opt(options, "n_clusters", 8)), n_live)
        c = repmatch.spectral_clusters(*moments(), n_clusters=k, rng=seed)
        data = c.to_dict()
        bl = c.baseline
        lines.append(
            f"  spectral clusters (k={c.n_clusters}, |correlation| affinity): between-net |r| {c.between_score:.4f} "
            f"(random partitions {bl['between_score_mean']:.4f} ± {bl['between_score_std']:.4f}, p = {bl['p_between']:.3g}); "
            f"units in mixed clusters {c.mixed_share:.2%}"
        )
        lines.append("    cluster  from X  from Y  within |r|  between |r|")
        for i in range(c.n_clusters):
            lines.append(f"    {i:<7d}  {c.count_x[i]:<6d}  {c.count_y[i]:<6d}  {c.within[i]:<10.4f}  {c.between[i]:.4f}")
    elif name == "cka":
        s = repmatch.linear_cka(*moments())
        data = s.to_dict()
        text = f"  linear CKA: {s.value:.4f}"
        if X is not None and Y is not None:
            try:
                d = repmatch.debiased_linear_cka(X, Y)
                data["debiased"] = d.to_dict()
                text += f"    debiased: {d.value:.4f}"
            except ValueError as exc:
                data["debiased"] = {"error": str(exc)}
        lines.append(text + "    (larger = more similar)")
    elif name in ("cca", "svcca", "pwcca", "procrustes"):
        fn = {
            "cca": repmatch.mean_squared_cca,
            "svcca": repmatch.svcca,
            "pwcca": repmatch.pwcca,
            "procrustes": repmatch.procrustes_distance,
        }[name]
        s = fn(*moments())
        data = s.to_dict()
        label = {"cca": "mean squared CCA", "svcca": "SVCCA", "pwcca": "PWCCA", "procrustes": "Procrustes distance"}[name]
        lines.append(f"  {label}: {s.value:.4f}    ({'larger' if s.larger_is_more_similar else 'smaller'} = more similar)")
    if name in _NULL_NAMES:
        _null(name, X, Y, options, data, lines)
    return data, lines
