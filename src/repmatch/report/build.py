"""Build the reproduce report from ``results.json`` alone: CSV tables, PNG/SVG figures, report.html.

Needs matplotlib, not torch: ``repmatch report RUN`` rebuilds everything from the numbers written by
``repmatch reproduce`` (:mod:`repmatch.reproduce`). The page reads top-down: the question, the setup,
the headline per-layer curves with their null bands, the granularity answer, then details. Every
number is shown with its nulls beside it (untrained network; shuffled rows: null mean and p-value).
"""

from __future__ import annotations

import csv
import io
import os

import numpy as np

__all__ = ["build_report", "write_tables", "SECTIONS"]

#: Section headings of report.html, in order (the browser test checks them).
SECTIONS = (
    "The question",
    "Setup",
    "Headline: maximum match similarity against depth",
    "Granularity: how big are the matches?",
    "Details",
    "Files and provenance",
)


def _nan(v):
    return float("nan") if v is None else float(v)


def _write_csv(path: str, header, rows) -> str:
    from .._atomic import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow(["" if c is None else (f"{c:.6g}" if isinstance(c, float) else c) for c in row])
    return atomic_write_text(path, buf.getvalue())


def _eps_index(grid, e):
    grid = np.asarray(grid, dtype=float)
    i = int(np.argmin(np.abs(grid - e)))
    if abs(grid[i] - e) > 1e-9:
        raise ValueError(f"ε = {e} is not on the grid of results.json")
    return i


class _View:
    """Convenience accessors over results.json (lists over pairs, per layer)."""

    def __init__(self, res: dict):
        self.res = res
        self.layers = [L["name"] for L in res["layers"]]
        self.pairs = [tuple(p) for p in res["pairs"]]
        self.grid = res["eps_grid"]
        self.authors = [e for e in res["authors_eps"] if any(abs(e - g) < 1e-9 for g in self.grid)]

    def unit(self, pair_index: int, layer: str, name: str) -> dict:
        return self.res["results"][pair_index]["layers"][layer][name]

    def over_pairs(self, layer, name, getter):
        return [getter(self.unit(i, layer, name)) for i in range(len(self.pairs))]

    def mean(self, layer, name, getter):
        vals = [_nan(v) for v in self.over_pairs(layer, name, getter)]
        return float(np.nanmean(vals)) if np.any(np.isfinite(vals)) else float("nan")


# ------------------------------------------------------------------------------------------ tables
def write_tables(res: dict, run_dir) -> dict:
    """Write every table of the report as CSV under ``run_dir/tables``; return {name: path}."""
    v = _View(res)
    t = os.path.join(os.fspath(run_dir), "tables")
    out = {}
    rows = []
    for i, (a, b) in enumerate(v.pairs):
        for layer in v.layers:
            s, u, sh = (v.unit(i, layer, k) for k in ("subspace", "untrained", "shuffled"))
            for k, e in enumerate(v.grid):
                rows.append([a, b, layer, e, s["similarity"][k], u["similarity"][k], sh["similarity_null_mean"][k],
                             sh["similarity_p"][k], e in v.authors])
    out["similarity"] = _write_csv(os.path.join(t, "similarity.csv"),
                                   ["seed_a", "seed_b", "layer", "eps", "similarity", "untrained_null",
                                    "shuffled_null_mean", "shuffled_p", "authors_eps"], rows)
    rows = []
    for i, (a, b) in enumerate(v.pairs):
        for layer in v.layers:
            s, u = v.unit(i, layer, "subspace"), v.unit(i, layer, "untrained")
            rows.append([a, b, layer, s["n_x"], s["n_y"], s["n_samples"], s["samples_per_neuron"], s["dead_x"],
                         s["dead_y"], s["max_epsilon"], u["max_epsilon"]])
    out["layers"] = _write_csv(os.path.join(t, "layers.csv"),
                               ["seed_a", "seed_b", "layer", "n_x", "n_y", "n_samples", "samples_per_neuron",
                                "dead_x", "dead_y", "max_epsilon", "max_epsilon_untrained"], rows)
    rows = []
    for i, (a, b) in enumerate(v.pairs):
        for layer in v.layers:
            al, u, sh, mi = (v.unit(i, layer, k) for k in ("alignment", "untrained", "shuffled", "mi"))
            rows.append([a, b, layer, al["semi_mean"], u["semi_mean"], sh["semi_match"]["null_mean"],
                         sh["semi_match"]["p_value"], al["bipartite_mean"], u["bipartite_mean"],
                         sh["bipartite_match"]["null_mean"], sh["bipartite_match"]["p_value"], al["agree"],
                         al["n_matched"], al["chance"], mi.get("semi_mean"), mi.get("bipartite_mean"), mi.get("chance")])
    out["matching"] = _write_csv(os.path.join(t, "matching.csv"),
                                 ["seed_a", "seed_b", "layer", "semi_mean", "semi_untrained", "semi_shuffled_mean",
                                  "semi_shuffled_p", "bipartite_mean", "bipartite_untrained",
                                  "bipartite_shuffled_mean", "bipartite_shuffled_p", "agree", "n_matched",
                                  "chance_mean_correlation", "mi_semi_mean", "mi_bipartite_mean", "mi_chance"], rows)
    rows = []
    for i, (a, b) in enumerate(v.pairs):
        for layer in v.layers:
            sm = v.unit(i, layer, "simple")
            for kx, ky, n in sm.get("size_distribution", []):
                rows.append([a, b, layer, sm["eps"], kx, ky, kx + ky, n])
    out["simple"] = _write_csv(os.path.join(t, "simple_matches.csv"),
                               ["seed_a", "seed_b", "layer", "eps", "size_x", "size_y", "size", "count"], rows)
    rows = []
    for i, (a, b) in enumerate(v.pairs):
        for layer in v.layers:
            sp = v.unit(i, layer, "sparse")
            if "skipped" in sp:
                continue
            for d in ("x_to_y", "y_to_x"):
                for k, alpha in enumerate(sp["alphas"]):
                    rows.append([a, b, layer, d, alpha, sp[d]["mean_fvu"][k], sp[d]["mean_nonzero"][k],
                                 sp[d]["median_nonzero"][k], sp[d]["n_inputs"], sp["mutual_pairs"][k]])
    out["sparse"] = _write_csv(os.path.join(t, "sparse_prediction.csv"),
                               ["seed_a", "seed_b", "layer", "direction", "alpha", "heldout_fvu", "mean_nonzero",
                                "median_nonzero", "n_inputs", "mutual_pairs"], rows)
    rows = []
    for i, (a, b) in enumerate(v.pairs):
        for layer in v.layers:
            c = v.unit(i, layer, "clusters")
            base = c.get("baseline") or {}
            rows.append([a, b, layer, c["n_clusters"], c.get("between"), base.get("between_score_mean"),
                         base.get("p_between"), c.get("within"), base.get("within_score_mean"), c.get("mixed_share"),
                         " ".join(f"{x}+{y}" for x, y in zip(c["count_x"], c["count_y"]))])
    out["clusters"] = _write_csv(os.path.join(t, "clusters.csv"),
                                 ["seed_a", "seed_b", "layer", "n_clusters", "between_score", "random_between_mean",
                                  "p_between", "within_score", "random_within_mean", "mixed_share",
                                  "units_per_cluster_a+b"], rows)
    rows = []
    for i, (a, b) in enumerate(v.pairs):
        for layer in v.layers:
            r, u, sh = (v.unit(i, layer, k) for k in ("reference", "untrained", "shuffled"))
            rows.append([a, b, layer, r.get("linear_cka"), u["linear_cka"], sh["linear_cka"]["null_mean"],
                         sh["linear_cka"]["p_value"], r.get("svcca"), r.get("pwcca"), r.get("procrustes")])
    out["reference"] = _write_csv(os.path.join(t, "reference.csv"),
                                  ["seed_a", "seed_b", "layer", "linear_cka", "linear_cka_untrained",
                                   "linear_cka_shuffled_mean", "linear_cka_shuffled_p", "svcca", "pwcca",
                                   "procrustes_distance"], rows)
    heat = res.get("heatmap")
    if heat:
        rows = [[la] + list(row) for la, row in zip(heat["layers"], heat["matrix"])]
        out["heatmap"] = _write_csv(os.path.join(t, "layer_heatmap_cka.csv"),
                                    [f"seed{heat['a']} \\ seed{heat['b']}"] + heat["layers"], rows)
    return out


# ------------------------------------------------------------------------------------------ the page
def _f(x, digits=3):
    if x is None:
        return "–"
    x = float(x)
    if not np.isfinite(x):
        return "–"
    return f"{x:.{digits}f}"


def _p(x):
    return "–" if x is None else f"{float(x):.2g}"


def build_report(run_dir, *, results: dict | None = None) -> str:
    """Write ``tables/*.csv``, ``figures/*.png|svg`` and ``report.html`` in ``run_dir``; return the page's path.

    ``results`` defaults to ``run_dir/results.json`` (nothing else in the run directory is read).
    """
    from ..reproduce import load_results
    from . import plots
    from .html import HtmlReport

    run_dir = os.fspath(run_dir)
    res = results if results is not None else load_results(run_dir)
    v = _View(res)
    cfg = res["config"]
    tables = write_tables(res, run_dir)
    figdir = os.path.join(run_dir, "figures")

    def save(fig, name):
        saved = plots.save_figure(fig, os.path.join(figdir, name))
        files = {k: os.path.relpath(p, run_dir) for k, p in saved.items() if k in ("png", "svg")}
        return saved["svg_text"], files

    n_pairs, layers = len(v.pairs), v.layers
    # Display names: transformer layers are labelled by block ("block 2 MLP (GELU)"), CNN layers by module.
    label = {L["name"]: L.get("label", L["name"]) for L in res["layers"]}
    shown = [label[L] for L in layers]
    sequence = any(L.get("layout") == "sequence" for L in res["layers"])
    first_layer, mid_layer = layers[0], layers[len(layers) // 2]
    pair_txt = ", ".join(f"({a}, {b})" for a, b in v.pairs)
    idx = [_eps_index(v.grid, e) for e in v.authors]

    def arr(name, key):
        return np.array([[[_nan(v.unit(i, L, name)[key][k]) for k in idx] for L in layers] for i in range(n_pairs)])

    trained, untrained, shuffled = arr("subspace", "similarity"), arr("untrained", "similarity"), \
        arr("shuffled", "similarity_null_mean")

    rep = HtmlReport(f"repmatch reproduce: {cfg['arch']} on {cfg['dataset']}, seeds {', '.join(map(str, res['seeds']))}",
                     f"Run directory {os.path.abspath(run_dir)}; finished {res['provenance'].get('finished_utc', '?')}")
    # -- the question
    rep.section(SECTIONS[0], "question")
    rep.paragraph(res["question"] + " Networks with the same architecture were trained on the same data from "
                  "different random seeds. For every pair of seeds and every ReLU layer we ask whether the two "
                  "layers span the same subspaces (maximum match similarity, Wang et al. 2018), whether units "
                  "pair up one to one (semi- and bipartite matching, Li et al. 2016), one to many (sparse "
                  "prediction) or many to many (clustering), and compare with the reference measures (CKA, "
                  "CCA, Procrustes).", note=True)
    rep.paragraph("Every number is shown beside two nulls: an untrained network of the same architecture "
                  f"(seed {res['untrained_seed_offset']} + b stands in for seed b, same initialisation as "
                  "training) and the shuffled-row null (the rows of network B permuted, breaking the "
                  "correspondence of samples; mean over permutations and the permutation p-value).")
    # -- setup
    rep.section(SECTIONS[1], "setup")
    d = res["data"]
    if d.get("kind") == "text":
        data_row = (f"{d.get('name', cfg['dataset'])} ({d.get('source', '?')}, sha256 {str(d.get('sha256'))[:12]}...): "
                    f"{d.get('n_train', '?')} random training windows per epoch from {d.get('train_chars', '?')} "
                    f"characters, {d['n_test_used']} test windows of {d.get('context', '?')} characters from the last "
                    f"{d.get('test_chars', '?')}; {d.get('num_classes', '?')} distinct characters")
    else:
        data_row = (f"{d.get('name', cfg['dataset'])}: {d.get('n_train', '?')} training, {d['n_test_used']} test images "
                    f"({d.get('image_size', '?')}px, {d.get('in_channels', '?')} channel(s))")
    rep.table(["item", "value"], [
        ["architecture", cfg["arch"] + (f" (width x{cfg['width']:g})" if cfg["width"] != 1 else "")],
        ["dataset", data_row],
        ["training", res.get("recipe", f"{cfg['epochs']} epochs, SGD momentum 0.9, weight decay 5e-4, the authors' "
                     "recipe") + "; best test-accuracy checkpoint used"
                     + ("; accuracy = next-character accuracy over every position" if d.get("kind") == "text" else "")],
        ["seeds / pairs", f"{', '.join(map(str, res['seeds']))} / {pair_txt}"],
        ["test accuracy", ", ".join(f"seed {s}: {n['test_acc']:.3f} (epoch {n['best_epoch']})"
                                    for s, n in res["networks"].items())],
        ["activations", ("every block's MLP activation (GELU) and output; every token of every test input is a sample "
                         "and every feature a neuron (sequence layout, seq mode 'tokens')" if sequence else
                         f"every ReLU, conv mode '{cfg['conv_mode']}' (every spatial position is a sample)")
                        + " on the test inputs; sparse prediction fits on the first half of them and is scored on the "
                          "second"],
        ["ε grid", f"{len(v.grid)} values in [{min(v.grid):g}, {max(v.grid):g}]; the authors' "
                   f"{', '.join(f'{e:g}' for e in v.authors)} marked; simple matches at ε = {cfg['simple_eps']:g}"],
        ["nulls", f"untrained networks; shuffled rows with {cfg['permutations']} permutations on an in-memory sample "
                  f"of up to {cfg['sample_rows']} rows per layer (sampled positions, with replacement)"],
        ["versions", ", ".join(f"{k} {val}" for k, val in res["versions"].items() if k != "platform")],
    ])
    rep.table(["layer", "module", "layout", "units", "samples", "samples per neuron", "dead units (A / B, mean)"],
              [[label[L["name"]], L["name"], f"{L.get('layout', '–')} ({L.get('layout_reason', '–')})", L["n_units"],
                L["n_samples"], _f(L["samples_per_neuron"], 1),
                f"{v.mean(L['name'], 'subspace', lambda u: u['dead_x']):.1f} / "
                f"{v.mean(L['name'], 'subspace', lambda u: u['dead_y']):.1f}"] for L in res["layers"]],
              caption="Layers compared, input to output (layout: how the output was read, and why)")
    # -- headline
    rep.section(SECTIONS[2], "headline")
    svg, files = save(plots.fig_similarity_vs_depth(
        shown, v.authors, trained, {"untrained": untrained, "shuffled": shuffled},
        title=f"Maximum match similarity against depth ({cfg['arch']}, {cfg['dataset']}, {n_pairs} pairs)"),
        "similarity_vs_depth")
    rep.figure(svg, "Maximum match similarity of the same layer in two networks, for each of the authors' ε "
               f"(coloured: mean over the {n_pairs} pairs of seeds, band: min-max). Dashed grey: the untrained-"
               "network null (darker, hatched) and the shuffled-row null (lighter).", files=files)
    rows = []
    for j, L in enumerate(layers):
        row = [label[L]]
        for k, e in enumerate(v.authors):
            ps = [v.unit(i, L, "shuffled")["similarity_p"][idx[k]] for i in range(n_pairs)]
            row.append(f"{_f(np.nanmean(trained[:, j, k]))} ({_f(np.nanmean(untrained[:, j, k]))} | "
                       f"{_f(np.nanmean(shuffled[:, j, k]))}, p≤{_p(max(_nan(p) for p in ps))})")
        rows.append(row)
    rep.table(["layer"] + [f"ε = {e:g}" for e in v.authors], rows,
              caption="Maximum match similarity, mean over pairs: trained (untrained null | shuffled null mean, "
                      "p = the largest permutation p-value over pairs)")
    # A data-driven reading of the headline (no judgement beyond "above both nulls in every pair").
    e_top = max(v.authors)
    kt = v.authors.index(e_top)
    above = [L for j, L in enumerate(layers)
             if np.all(trained[:, j, kt] > np.maximum(untrained[:, j, kt], shuffled[:, j, kt]))]
    bip_above = [L for L in layers
                 if all(v.unit(i, L, "alignment")["bipartite_mean"] > v.unit(i, L, "untrained")["bipartite_mean"]
                        and v.unit(i, L, "shuffled")["bipartite_match"]["p_value"] <= 0.1 for i in range(n_pairs))]
    rep.paragraph(f"At a glance: at ε = {e_top:g} the trained pairs exceed both nulls in every pair in "
                  f"{', '.join(above) if above else 'no layer'}; bipartite matching exceeds the untrained null "
                  f"(and the shuffled null at p ≤ 0.1) in every pair in {', '.join(bip_above) if bip_above else 'no layer'}. "
                  "Where the untrained null is as high as the trained value, the similarity reflects the input and "
                  "the architecture rather than anything learned.", note=True)
    from ..subspace import MIN_SAMPLES_PER_NEURON

    few = [L["name"] for L in res["layers"] if L["samples_per_neuron"] < MIN_SAMPLES_PER_NEURON]
    if few:
        rep.paragraph(f"Caution: {', '.join(few)} {'has' if len(few) == 1 else 'have'} fewer than "
                      f"{MIN_SAMPLES_PER_NEURON:g} samples per neuron; spans of that many vectors cover most of the "
                      "sample space, so their matches are close to trivial (use more test images).", note=True)
    rep.table(["layer", "max_epsilon (trained)", "max_epsilon (untrained)"],
              [[L, _f(v.mean(L, "subspace", lambda u: u["max_epsilon"])),
                _f(v.mean(L, "untrained", lambda u: u["max_epsilon"]))] for L in layers],
              caption="max_epsilon: the smallest ε at which the two whole layers match (smaller = more similar)")
    # -- granularity
    rep.section(SECTIONS[3], "granularity")
    sizes = {L: sum((list(v.unit(i, L, "simple").get("sizes", [])) for i in range(n_pairs)), []) for L in layers}
    svg, files = save(plots.fig_simple_sizes(sizes, eps=cfg["simple_eps"],
                                             title=f"Sizes of the simple matches (ε = {cfg['simple_eps']:g}, all pairs)"),
                      "simple_sizes")
    none = not any(sizes.values())
    rep.figure(svg, "Each point is one simple match (a smallest group of units of A and B spanning the same "
               "subspace within ε); size = units of A + units of B. Size 2 would be a one-to-one neuron match."
               + (f" No layer has a non-empty maximum match at ε = {cfg['simple_eps']:g}, so there are no simple "
                  "matches to show: at this ε the two networks share no subspace spanned by their neurons (rerun "
                  "with a larger --simple-eps, e.g. 0.5, to see the granularity where matches exist)." if none else ""),
               files=files)
    rows = []
    for L in layers:
        sm = [v.unit(i, L, "simple") for i in range(n_pairs)]
        skipped = [s for s in sm if "skipped" in s]
        n = [s.get("n_matches", 0) for s in sm if "skipped" not in s]
        allsz = sizes[L]
        rows.append([L, "skipped" if skipped and not n else f"{np.mean(n):.1f}",
                     _f(np.median(allsz), 1) if allsz else "–", int(max(allsz)) if allsz else "–",
                     sum(1 for s in allsz if s == 2),
                     _f(v.mean(L, "subspace", lambda u: u["similarity"][_eps_index(v.grid, cfg["simple_eps"])])
                        if any(abs(g - cfg["simple_eps"]) < 1e-9 for g in v.grid) else None)])
    rep.table(["layer", "simple matches per pair", "median size", "largest", "one-to-one (size 2)",
               f"MMS at ε={cfg['simple_eps']:g}"], rows, caption="Simple matches")
    semi = np.array([[v.unit(i, L, "alignment")["semi_mean"] for L in layers] for i in range(n_pairs)], dtype=float)
    bip = np.array([[v.unit(i, L, "alignment")["bipartite_mean"] for L in layers] for i in range(n_pairs)], dtype=float)
    bnull = np.array([[v.unit(i, L, "shuffled")["bipartite_match"]["null_mean"] for L in layers]
                      for i in range(n_pairs)], dtype=float)
    svg, files = save(plots.fig_matching_vs_depth(shown, semi, bip, bnull), "matching_vs_depth")
    rep.figure(svg, "Mean correlation of each unit with its partner: semi-matching (best partner, may repeat) and "
               "bipartite matching (one-to-one). Where the bipartite value falls well below the semi value, "
               "units do not pair up one to one. Grey: shuffled-row null of the bipartite value.", files=files)
    rows = []
    for L in layers:
        g = lambda name, key: v.mean(L, name, lambda u: u[key])  # noqa: E731
        sh = lambda key, f: v.mean(L, "shuffled", lambda u: u[key][f])  # noqa: E731
        rows.append([label[L], _f(g("alignment", "semi_mean")), _f(g("untrained", "semi_mean")),
                     f"{_f(sh('semi_match', 'null_mean'))} (p≤{_p(max(_nan(v.unit(i, L, 'shuffled')['semi_match']['p_value']) for i in range(n_pairs)))})",
                     _f(g("alignment", "bipartite_mean")), _f(g("untrained", "bipartite_mean")),
                     f"{_f(sh('bipartite_match', 'null_mean'))} (p≤{_p(max(_nan(v.unit(i, L, 'shuffled')['bipartite_match']['p_value']) for i in range(n_pairs)))})",
                     _f(g("alignment", "agreement")), _f(g("alignment", "chance"))])
    rep.table(["layer", "semi", "untrained", "shuffled (mean, p)", "bipartite", "untrained", "shuffled (mean, p)",
               "agreement share", "random pairing"], rows,
              caption="One-to-one matching (mean matched correlation, mean over pairs). Agreement: share of units "
                      "whose semi- and bipartite partners coincide. Random pairing: mean of the between-net matrix.")
    # -- details
    rep.section(SECTIONS[4], "details")
    curves = {L: np.array([v.unit(i, L, "subspace")["similarity"] for i in range(n_pairs)], dtype=float)
              for L in layers}
    nulls = {L: np.array([v.unit(i, L, "untrained")["similarity"] for i in range(n_pairs)], dtype=float)
             for L in layers}
    svg, files = save(plots.fig_similarity_curves(v.grid, curves, authors_eps=v.authors, nulls=nulls,
                                                  title="Maximum match similarity against ε, per layer"),
                      "similarity_curves")
    rep.figure(svg, "Similarity against ε for every layer (solid: trained pairs, dotted: trained vs untrained). "
               "Vertical lines: the authors' ε values. MMS is a step function of ε; read the whole curve.",
               files=files)
    for L in dict.fromkeys([first_layer, mid_layer]):
        al = v.unit(0, L, "alignment")
        semi_s = [_nan(x) for x in al["sorted_semi"]]
        bip_s = [_nan(x) for x in al["sorted_bipartite"]]
        a, b = v.pairs[0]
        svg, files = save(plots.fig_sorted_correlations(semi_s, bip_s, layer=L,
                                                        title=f"Matched correlations, {L} (seed {a} vs seed {b})"),
                          f"sorted_correlations_{L}")
        rep.figure(svg, f"Units of seed {a} sorted by their best correlation with seed {b} (semi-matching), "
                   "with the correlation of their one-to-one (bipartite) partner.", files=files)
        if "permuted_matrix" in al:
            M = np.array(al["permuted_matrix"], dtype=float)
            svg, files = save(plots.fig_heatmap(M, xlabel=f"network B (seed {b}): unit, permuted by the matching",
                                                ylabel=f"network A (seed {a}): unit, best matched first",
                                                title=f"Between-network correlations, {L}", cmap="RdBu_r",
                                                vmin=-1, vmax=1, colorbar_label="correlation"),
                              f"permuted_correlations_{L}")
            rep.figure(svg, al.get("permuted_matrix_note", "").capitalize() + ". A bright diagonal means one-to-one "
                       "partners.",
                       files=files)
        sp = v.unit(0, L, "sparse")
        if "skipped" not in sp:
            svg, files = save(plots.fig_sparse_prediction(
                sp["alphas"], sp["x_to_y"]["mean_fvu"], sp["x_to_y"]["mean_nonzero"], n_inputs=sp["x_to_y"]["n_inputs"],
                layer=L, title=f"Sparse prediction of seed {b} from seed {a}, {L}"), f"sparse_{L}")
            rep.figure(svg, f"LASSO prediction of every unit of seed {b} from all units of seed {a} ({L}): held-out "
                       f"fraction of variance unexplained ({sp['n_train']} training rows, {sp['n_test']} held-out "
                       f"rows; split: {sp.get('split', 'halves of the test images')}) and non-zero inputs per unit, "
                       "against the L1 penalty.", files=files)
    rows = []
    for L in layers:
        sp = v.unit(0, L, "sparse")
        if "skipped" in sp:
            rows.append([L] + ["skipped"] * 4)
            continue
        al = sp["alphas"]
        for k, alpha in enumerate(al):
            rows.append([L, f"{alpha:g}", _f(sp["x_to_y"]["mean_fvu"][k]), _f(sp["x_to_y"]["mean_nonzero"][k], 1),
                         sp["mutual_pairs"][k]])
    rep.table(["layer", "λ", "held-out FVU (A→B)", "inputs per unit", "mutual strongest pairs"], rows,
              caption=f"Sparse prediction, seed {v.pairs[0][0]} → seed {v.pairs[0][1]}")
    rows = []
    for L in layers:
        c = v.unit(0, L, "clusters")
        base = c.get("baseline") or {}
        rows.append([L, c["n_clusters"], _f(c.get("between")), f"{_f(base.get('between_score_mean'))} "
                     f"(p={_p(base.get('p_between'))})", _f(c.get("within")), _f(base.get("within_score_mean")),
                     " ".join(f"{x}+{y}" for x, y in zip(c["count_x"], c["count_y"]))])
    rep.table(["layer", "clusters", "between-net |corr| in clusters", "random partition (mean, p)",
               "within-net", "random", "units per cluster (A+B)"], rows,
              caption=f"Spectral clustering of the units of both networks (seed {v.pairs[0][0]} and "
                      f"{v.pairs[0][1]}); balanced clusters with strong between-net affinity = shared subspaces "
                      "with different bases")
    rows = []
    for L in layers:
        mi = v.unit(0, L, "mi")
        if "skipped" in mi:
            rows.append([L, "skipped (layer too wide)", "", "", ""])
        else:
            rows.append([L, _f(mi["semi_mean"]), _f(mi["bipartite_mean"]), _f(mi["chance"]),
                         f"{mi['semi_pairs_shared_with_correlation']} of {mi['n_x']}"])
    rep.table(["layer", "MI semi-matching (nats)", "MI bipartite", "random pairing", "semi pairs shared with correlation"],
              rows, caption="Mutual-information matching on the in-memory sample (first pair)")
    rows = []
    for L in layers:
        g = lambda key: v.mean(L, "reference", lambda u: u.get(key))  # noqa: E731
        rows.append([L, _f(g("linear_cka")), _f(v.mean(L, "untrained", lambda u: u["linear_cka"])),
                     f"{_f(v.mean(L, 'shuffled', lambda u: u['linear_cka']['null_mean']))}", _f(g("svcca")),
                     _f(g("pwcca")), _f(g("procrustes"))])
    rep.table(["layer", "linear CKA ↑", "untrained", "shuffled", "SVCCA ↑", "PWCCA ↑", "Procrustes distance ↓"], rows,
              caption="Reference measures (mean over pairs; ↑ larger = more similar, ↓ smaller = more similar). "
                      "CKA and CCA are invariant to rotations within a layer, MMS is not: they are not comparable "
                      "number for number.")
    heat = res.get("heatmap")
    if heat:
        M = np.array([[_nan(x) for x in row] for row in heat["matrix"]])
        svg, files = save(plots.fig_heatmap(M, xlabel=f"network B (seed {heat['b']}): layer",
                                            ylabel=f"network A (seed {heat['a']}): layer",
                                            title="Linear CKA between every pair of layers", xticklabels=heat["layers"],
                                            yticklabels=heat["layers"], vmin=0, vmax=1, colorbar_label="linear CKA"),
                          "layer_heatmap")
        rep.figure(svg, f"Linear CKA between every layer of seed {heat['a']} and every layer of seed {heat['b']} "
                   "(conv layers average-pooled over positions). The diagonal should stand out.", files=files)
    # -- files
    rep.section(SECTIONS[5], "files")
    rep.table(["table", "file"], [[k, os.path.relpath(p, run_dir)] for k, p in tables.items()])
    prov = res["provenance"]
    rep.paragraph(f"Units computed in the last run: {len(prov['computed'])}; reused from the cache: "
                  f"{len(prov['reused'])}; {prov['seconds']:.1f} s. Rebuild this page with "
                  f"`repmatch report {run_dir}`.")
    return rep.write(os.path.join(run_dir, "report.html"))
