"""Build the reproduce report from ``results.json`` alone: CSV tables, PNG/SVG figures, report.html.

Needs matplotlib, not torch: ``repmatch report RUN`` rebuilds everything from the numbers written by
``repmatch reproduce`` (:mod:`repmatch.reproduce`). The page reads top-down: the question, the setup,
the headline (the MMS curve on [0, 1) per layer and its summaries eps_50, max_epsilon and area, with
both null bands), the granularity answer, the calibrated best-match statistics, then details. Every
number and every figure has both nulls beside it (untrained network; shuffled rows: null mean and
p-value); the sentences that read the numbers come from :mod:`repmatch.report.summary`, computed
from the arrays the figures draw.
"""

from __future__ import annotations

import csv
import io
import os
from types import SimpleNamespace

import numpy as np

from ..alignment import BipartiteMatch
from ..calibration import HeldoutMatch, RotationBaseline
from ..clusters import ClusterResult
from ..inference import BootstrapResult, CurveNull, PermutationResult
from ..reference import Score
from ..simple import SimpleMatches
from ..softmatch import SoftMatch
from ..sparse import SparsePrediction

__all__ = ["build_report", "write_tables", "SECTIONS", "null_summary"]

#: Section headings of report.html, in order (the browser test checks them).
SECTIONS = (
    "The question",
    "Setup",
    "Headline: the whole maximum-match curve against both nulls",
    "Granularity: how big are the matches?",
    "Calibrated best-match statistics",
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
    """results.json read as result objects: one accessor per unit, each ``Cls.from_dict`` of what the
    pipeline wrote (:mod:`repmatch.pipeline.units`); ``None`` where a unit (or a part) was skipped."""

    def __init__(self, res: dict):
        self.res = res
        self.layers = [L["name"] for L in res["layers"]]
        self.pairs = [tuple(p) for p in res["pairs"]]
        self.grid = res["eps_grid"]
        self.authors = [e for e in res["authors_eps"] if any(abs(e - g) < 1e-9 for g in self.grid)]
        self._memo = {}

    def unit(self, pair_index: int, layer: str, name: str) -> dict:
        return self.res["results"][pair_index]["layers"][layer][name]

    def has(self, pair_index: int, layer: str, name: str) -> bool:
        return name in self.res["results"][pair_index]["layers"][layer]

    def _read(self, key, make):
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    # the trained pair
    def curve(self, i, L) -> dict:
        """The MMS curve and its summaries (:func:`repmatch.mms.summarize_curve`)."""
        return self.unit(i, L, "subspace")

    def alignment(self, i, L) -> BipartiteMatch:
        return self._read(("alignment", i, L), lambda: BipartiteMatch.from_dict(self.unit(i, L, "alignment")["bipartite"]))

    def simple(self, i, L, null: str | None = None):
        """:class:`SimpleMatches` of the trained pair (or of ``null``: "untrained" / "shuffled"); None if skipped."""
        d = self.unit(i, L, "simple") if null is None else (self.unit(i, L, "simple_nulls").get(null) or {})
        return self._read(("simple", i, L, null), lambda: None if "skipped" in d or not d else SimpleMatches.from_dict(d))

    def reference(self, i, L, name: str):
        d = self.unit(i, L, "reference").get(name) or {"skipped": "missing"}
        return None if "skipped" in d else Score.from_dict(d)

    def soft(self, i, L) -> SoftMatch:
        return self._read(("soft", i, L), lambda: SoftMatch.from_dict(self.unit(i, L, "soft")))

    def rotation(self, i, L) -> RotationBaseline:
        return self._read(("rot", i, L), lambda: RotationBaseline.from_dict(self.unit(i, L, "calibration")["rotation"]))

    def heldout(self, i, L, untrained: bool = False):
        d = (self.unit(i, L, "untrained") if untrained else self.unit(i, L, "calibration"))["heldout"]
        return None if "skipped" in d else HeldoutMatch.from_dict(d)

    def bootstrap(self, i, L, stat: str) -> BootstrapResult:
        return BootstrapResult.from_dict(self.unit(i, L, "calibration")["bootstrap"][stat])

    def sparse(self, i, L, null: str | None = None):
        """``(SparsePrediction, unit)`` of the trained pair (or of ``null``); ``(None, unit)`` if skipped."""
        if null is None:
            d = self.unit(i, L, "sparse")
        else:
            d = (self.unit(i, L, "sparse_nulls") if self.has(i, L, "sparse_nulls") else {}).get(null) or {"skipped": ""}
        return (None if "skipped" in d else SparsePrediction.from_dict(d["prediction"])), d

    def clusters(self, i, L) -> ClusterResult:
        return ClusterResult.from_dict(self.unit(i, L, "clusters"))

    def mi(self, i, L):
        d = self.unit(i, L, "mi")
        return None if "skipped" in d else BipartiteMatch.from_dict(d["bipartite"])

    # the nulls
    def untrained(self, i, L) -> dict:
        """The untrained-network unit: ``curve`` (dict), ``bipartite``, ``linear_cka``, ``soft`` as objects."""
        def make():
            d = self.unit(i, L, "untrained")
            return {"curve": d["curve"], "bipartite": BipartiteMatch.from_dict(d["bipartite"]),
                    "linear_cka": Score.from_dict(d["linear_cka"]), "soft": SoftMatch.from_dict(d["soft"]),
                    "permuted_matrix": d.get("permuted_matrix")}
        return self._read(("untrained", i, L), make)

    def shuffled_curve(self, i, L) -> CurveNull:
        return self._read(("shc", i, L), lambda: CurveNull.from_dict(self.unit(i, L, "shuffled")["curve"]))

    def shuffled(self, i, L, stat: str) -> PermutationResult:
        return self._read(("sh", i, L, stat),
                          lambda: PermutationResult.from_dict(self.unit(i, L, "shuffled")["statistics"][stat]))

    def first_permutation(self, i, L) -> dict:
        return self.unit(i, L, "shuffled").get("first_permutation") or {}

    # arrays over pairs and layers
    def array(self, get, layers=None) -> np.ndarray:
        """(n_pairs, n_layers) array of ``get(pair_index, layer)``; NaN where it is None."""
        layers = self.layers if layers is None else layers
        return np.array([[_nan(get(i, L)) for L in layers] for i in range(len(self.pairs))], dtype=float).reshape(
            len(self.pairs), len(layers))

    def mean(self, layer, get):
        vals = [_nan(get(i, layer)) for i in range(len(self.pairs))]
        return float(np.nanmean(vals)) if np.any(np.isfinite(vals)) else float("nan")


def null_summary(p: PermutationResult) -> dict:
    """Mean, spread and 95% range of a permutation null over the permutations on which the statistic is
    defined (None throughout when it is defined on none, or not on the observed data).

    Parameters
    ----------
    p : PermutationResult
        Its ``null`` (one value per permutation, NaN where undefined) and ``observed``.

    Returns
    -------
    dict
        ``null_mean``, ``null_std``, ``null_q025``, ``null_q975`` (floats or None) and ``n``, the
        number of finite null values.
    """
    ok = p.null[np.isfinite(p.null)]
    if ok.size == 0 or not np.isfinite(p.observed):
        return {"null_mean": None, "null_std": None, "null_q025": None, "null_q975": None, "n": int(ok.size)}
    return {"null_mean": float(ok.mean()), "null_std": float(ok.std()), "null_q025": float(np.quantile(ok, 0.025)),
            "null_q975": float(np.quantile(ok, 0.975)), "n": int(ok.size)}


def _opt(x):
    """A p-value or statistic for a table: None where undefined (NaN)."""
    return None if x is None or not np.isfinite(x) else float(x)


def _value(score):
    return None if score is None else score.value


def _size_distribution(sm) -> list:
    return [] if sm is None else [(kx, ky, n) for (kx, ky), n in sm.size_distribution().items()]


# ------------------------------------------------------------------------------------------ tables
def write_tables(res: dict, run_dir) -> dict:
    """Write every table of the report as CSV under ``run_dir/tables``; return {name: path}.

    Parameters
    ----------
    res : dict
        A results document (:func:`repmatch.io.load_results`).
    run_dir : str or os.PathLike
        The run directory.

    Returns
    -------
    dict of str to str
        ``similarity``, ``layers``, ``matching``, ``simple``, ``sparse``, ..., ``calibration`` (and
        ``heatmap`` when the results have one) -> the CSV file written.
    """
    v = _View(res)
    t = os.path.join(os.fspath(run_dir), "tables")
    out = {}
    rows = []
    for i, (a, b) in enumerate(v.pairs):
        for layer in v.layers:
            s, u, sh = v.curve(i, layer), v.untrained(i, layer)["curve"], v.shuffled_curve(i, layer)
            for k, e in enumerate(v.grid):
                rows.append([a, b, layer, e, s["similarity"][k], u["similarity"][k], float(sh.null_mean[k]),
                             float(sh.p_value[k]), e in v.authors])
    out["similarity"] = _write_csv(os.path.join(t, "similarity.csv"),
                                   ["seed_a", "seed_b", "layer", "eps", "similarity", "untrained_null",
                                    "shuffled_null_mean", "shuffled_p", "authors_eps"], rows)
    rows = []
    for i, (a, b) in enumerate(v.pairs):
        for layer in v.layers:
            s, u = v.curve(i, layer), v.untrained(i, layer)["curve"]
            rows.append([a, b, layer, s["n_x"], s["n_y"], s["n_samples"], s["samples_per_neuron"], s["dead_x"],
                         s["dead_y"], s["max_epsilon"], u["max_epsilon"]])
    out["layers"] = _write_csv(os.path.join(t, "layers.csv"),
                               ["seed_a", "seed_b", "layer", "n_x", "n_y", "n_samples", "samples_per_neuron",
                                "dead_x", "dead_y", "max_epsilon", "max_epsilon_untrained"], rows)
    rows = []
    for i, (a, b) in enumerate(v.pairs):
        for layer in v.layers:
            al, ub, mi = v.alignment(i, layer), v.untrained(i, layer)["bipartite"], v.mi(i, layer)
            ss, sb = v.shuffled(i, layer, "semi_match"), v.shuffled(i, layer, "bipartite_match")
            rows.append([a, b, layer, al.semi.mean, ub.semi.mean, null_summary(ss)["null_mean"], _opt(ss.p_value),
                         al.mean, ub.mean, null_summary(sb)["null_mean"], _opt(sb.p_value), al.agree,
                         int(al.x.size), al.chance, None if mi is None else mi.semi.mean,
                         None if mi is None else mi.mean, None if mi is None else mi.chance])
    out["matching"] = _write_csv(os.path.join(t, "matching.csv"),
                                 ["seed_a", "seed_b", "layer", "semi_mean", "semi_untrained", "semi_shuffled_mean",
                                  "semi_shuffled_p", "bipartite_mean", "bipartite_untrained",
                                  "bipartite_shuffled_mean", "bipartite_shuffled_p", "agree", "n_matched",
                                  "chance_mean_correlation", "mi_semi_mean", "mi_bipartite_mean", "mi_chance"], rows)
    rows = []
    for i, (a, b) in enumerate(v.pairs):
        for layer in v.layers:
            sm = v.simple(i, layer)
            for kx, ky, n in _size_distribution(sm):
                rows.append([a, b, layer, sm.eps, kx, ky, kx + ky, n])
    out["simple"] = _write_csv(os.path.join(t, "simple_matches.csv"),
                               ["seed_a", "seed_b", "layer", "eps", "size_x", "size_y", "size", "count"], rows)
    rows = []
    for i, (a, b) in enumerate(v.pairs):
        for layer in v.layers:
            sp, _ = v.sparse(i, layer)
            if sp is None:
                continue
            for d in ("x_to_y", "y_to_x"):
                p = getattr(sp, d)
                for k, alpha in enumerate(sp.alphas):
                    rows.append([a, b, layer, d, float(alpha), float(p.mean_fvu[k]), float(p.mean_nonzero[k]),
                                 _median_nonzero(p, k), p.to_dict(arrays=False)["n_inputs"], len(sp.mutual_pairs[k])])
    out["sparse"] = _write_csv(os.path.join(t, "sparse_prediction.csv"),
                               ["seed_a", "seed_b", "layer", "direction", "alpha", "heldout_fvu", "mean_nonzero",
                                "median_nonzero", "n_inputs", "mutual_pairs"], rows)
    rows = []
    for i, (a, b) in enumerate(v.pairs):
        for layer in v.layers:
            c = v.clusters(i, layer)
            base = c.baseline or {}
            rows.append([a, b, layer, c.n_clusters, c.between_score, base.get("between_score_mean"),
                         base.get("p_between"), c.within_score, base.get("within_score_mean"), c.mixed_share,
                         " ".join(f"{x}+{y}" for x, y in zip(c.count_x.tolist(), c.count_y.tolist()))])
    out["clusters"] = _write_csv(os.path.join(t, "clusters.csv"),
                                 ["seed_a", "seed_b", "layer", "n_clusters", "between_score", "random_between_mean",
                                  "p_between", "within_score", "random_within_mean", "mixed_share",
                                  "units_per_cluster_a+b"], rows)
    rows = []
    for i, (a, b) in enumerate(v.pairs):
        for layer in v.layers:
            cka = v.shuffled(i, layer, "linear_cka")
            rows.append([a, b, layer, _value(v.reference(i, layer, "linear_cka")),
                         v.untrained(i, layer)["linear_cka"].value, null_summary(cka)["null_mean"], _opt(cka.p_value),
                         _value(v.reference(i, layer, "svcca")), _value(v.reference(i, layer, "pwcca")),
                         _value(v.reference(i, layer, "procrustes"))])
    out["reference"] = _write_csv(os.path.join(t, "reference.csv"),
                                  ["seed_a", "seed_b", "layer", "linear_cka", "linear_cka_untrained",
                                   "linear_cka_shuffled_mean", "linear_cka_shuffled_p", "svcca", "pwcca",
                                   "procrustes_distance"], rows)
    rows = []
    for i, (a, b) in enumerate(v.pairs):
        for layer in v.layers:
            s, u = v.curve(i, layer), v.untrained(i, layer)["curve"]
            for stat in ("eps_50", "max_epsilon", "area"):
                p = v.shuffled(i, layer, stat)
                n = null_summary(p)
                rows.append([a, b, layer, stat, s.get(stat), u.get(stat), n["null_mean"], n["null_q025"],
                             n["null_q975"], _opt(p.p_value), p.n_permutations])
    out["summaries"] = _write_csv(os.path.join(t, "mms_summaries.csv"),
                                  ["seed_a", "seed_b", "layer", "statistic", "trained", "untrained_null",
                                   "shuffled_null_mean", "shuffled_null_q025", "shuffled_null_q975", "shuffled_p",
                                   "n_permutations"], rows)
    rows = []
    for i, (a, b) in enumerate(v.pairs):
        for layer in v.layers:
            rot, ho, uho = v.rotation(i, layer), v.heldout(i, layer), v.heldout(i, layer, untrained=True)
            for stat, key in (("semi_match", "semi"), ("bipartite_match", "bipartite")):
                bs = v.bootstrap(i, layer, stat)
                rows.append([a, b, layer, stat, getattr(rot, key), None if ho is None else getattr(ho, key),
                             None if uho is None else getattr(uho, key), float(getattr(rot, f"rotated_{key}").mean()),
                             getattr(rot, f"excess_{key}"), getattr(rot, f"p_{key}"), bs.low, bs.high, bs.n_groups])
            bs = v.bootstrap(i, layer, "soft_match_distance")
            rows.append([a, b, layer, "soft_match_distance", v.soft(i, layer).distance, None,
                         v.untrained(i, layer)["soft"].distance, None, None, None, bs.low, bs.high, bs.n_groups])
    out["calibration"] = _write_csv(os.path.join(t, "calibration.csv"),
                                    ["seed_a", "seed_b", "layer", "statistic", "in_sample", "heldout",
                                     "untrained_heldout_or_value", "rotated_basis_mean", "excess_over_rotation",
                                     "rotation_p", "bootstrap_low_images", "bootstrap_high_images", "n_images"], rows)
    heat = res.get("heatmap")
    if heat:
        rows = [[la] + list(row) for la, row in zip(heat["layers"], heat["matrix"])]
        out["heatmap"] = _write_csv(os.path.join(t, "layer_heatmap_cka.csv"),
                                    [f"seed{heat['a']} \\ seed{heat['b']}"] + heat["layers"], rows)
    return out


def _median_nonzero(path, k) -> float:
    return float(np.median(path.n_nonzero[k])) if path.n_nonzero.shape[1] else 0.0


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


def _shuffled(v, stat, what):
    """(n_pairs, n_layers) array of the shuffled null of ``stat``: ``what`` is "p_value" or a key of
    :func:`null_summary` ("null_mean", "null_q025", "null_q975")."""
    if what == "p_value":
        return v.array(lambda i, L: _opt(v.shuffled(i, L, stat).p_value))
    return v.array(lambda i, L: null_summary(v.shuffled(i, L, stat))[what])


def _nmean(a):
    """Mean of the finite values, None when there is none (no warning for all-undefined columns)."""
    a = np.asarray(a, dtype=float)
    return float(np.nanmean(a)) if np.any(np.isfinite(a)) else None


def _trio(t, u, s, p, digits=3):
    """"trained (untrained | shuffled mean, p≤max)" for one layer (arrays over pairs)."""
    m = lambda a: float(np.nanmean(a)) if np.any(np.isfinite(a)) else None  # noqa: E731
    pmax = float(np.nanmax(p)) if np.any(np.isfinite(p)) else None
    return f"{_f(m(t), digits)} ({_f(m(u), digits)} | {_f(m(s), digits)}, p≤{_p(pmax)})"


def build_report(run_dir, *, results: dict | None = None) -> str:
    """Write ``tables/*.csv``, ``figures/*.png|svg`` and ``report.html`` in ``run_dir``; return the page's path.

    ``results`` defaults to ``run_dir/results.json`` (nothing else in the run directory is read).

    Parameters
    ----------
    run_dir : str or os.PathLike
        The run directory; the tables, figures and page are written (atomically) inside it.
    results : dict, optional
        A results document as :func:`repmatch.io.load_results` returns it.

    Returns
    -------
    str
        The path of ``run_dir/report.html``.

    Raises
    ------
    FileNotFoundError
        When ``results`` is not given and ``run_dir`` has no results.json.
    ValueError
        When that results.json is damaged or of another format.
    """
    from ..io import load_results
    from ..subspace import MIN_SAMPLES_PER_NEURON
    from . import plots
    from . import summary as sm
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
    pairs_txt = sm.pairs_phrase(n_pairs)
    first_layer, mid_layer = layers[0], layers[len(layers) // 2]
    pair_txt = ", ".join(f"({a}, {b})" for a, b in v.pairs)
    n_perm = int(cfg["permutations"])
    alpha = float(res.get("significance", {}).get("alpha", cfg.get("alpha", 0.05)))
    grid = np.asarray(v.grid, dtype=float)

    rep = HtmlReport(f"repmatch reproduce: {cfg['arch']} on {cfg['dataset']}, seeds {', '.join(map(str, res['seeds']))}",
                     f"Run directory {os.path.abspath(run_dir)}; finished {res['provenance'].get('finished_utc', '?')}")
    c = SimpleNamespace(v=v, res=res, cfg=cfg, rep=rep, save=save, sm=sm, plots=plots, layers=layers, n_pairs=n_pairs,
                        label=label, shown=shown, grid=grid, pairs_txt=pairs_txt, pair_txt=pair_txt, alpha=alpha,
                        n_perm=n_perm, sequence=sequence, first_layer=first_layer, mid_layer=mid_layer,
                        run_dir=run_dir, tables=tables, min_samples=MIN_SAMPLES_PER_NEURON)
    for section in (_section_question, _section_setup, _section_headline, _section_granularity,
                    _section_calibration, _section_details, _section_files):
        section(c)
    return rep.write(os.path.join(run_dir, "report.html"))


def _section_question(c) -> None:
    """The report's section: the question."""
    v, res, cfg, rep, save, sm, plots = c.v, c.res, c.cfg, c.rep, c.save, c.sm, c.plots  # noqa: F841
    layers, n_pairs, label, shown, grid = c.layers, c.n_pairs, c.label, c.shown, c.grid  # noqa: F841
    pairs_txt, pair_txt, alpha, n_perm = c.pairs_txt, c.pair_txt, c.alpha, c.n_perm  # noqa: F841
    rep.section(SECTIONS[0], "question")
    rep.paragraph(res["question"] + " Networks with the same architecture were trained on the same data from "
                  "different random seeds. For every pair of seeds and every ReLU layer we ask whether the two "
                  "layers span the same subspaces (maximum match similarity, Wang et al. 2018), whether units "
                  "pair up one to one (semi- and bipartite matching, Li et al. 2016; soft matching, Khosla & "
                  "Williams 2023), one to many (sparse prediction) or many to many (clustering), and compare with "
                  "the reference measures (CKA, CCA, Procrustes).", note=True)
    rep.paragraph("Every number is shown beside two nulls: an untrained network of the same architecture "
                  f"(seed {res['untrained_seed_offset']} + b stands in for seed b, same initialisation as "
                  "training; one per pair, so it is a comparison, not a test) and the shuffled-row null (the rows "
                  "of network B permuted, breaking the correspondence of samples: null mean and the permutation "
                  f"p-value; {n_perm} permutations, so the smallest possible p is 1/{n_perm + 1} = "
                  f"{sm.min_p(n_perm):.3g}). Claims of significance use α = {alpha:g} and need p ≤ α in every pair.")


def _section_setup(c) -> None:
    """The report's section: setup."""
    v, res, cfg, rep, save, sm, plots = c.v, c.res, c.cfg, c.rep, c.save, c.sm, c.plots  # noqa: F841
    layers, n_pairs, label, shown, grid = c.layers, c.n_pairs, c.label, c.shown, c.grid  # noqa: F841
    pairs_txt, pair_txt, alpha, n_perm = c.pairs_txt, c.pair_txt, c.alpha, c.n_perm  # noqa: F841
    sequence = c.sequence
    rep.section(SECTIONS[1], "setup")
    d = res["data"]
    images = d.get("images", "test")
    if d.get("kind") == "text":
        data_row = (f"{d.get('name', cfg['dataset'])} ({d.get('source', '?')}, sha256 {str(d.get('sha256'))[:12]}...): "
                    f"{d.get('n_train', '?')} random training windows per epoch from {d.get('train_chars', '?')} "
                    f"characters, {d['n_test_used']} test windows of {d.get('context', '?')} characters from the last "
                    f"{d.get('test_chars', '?')}; {d.get('num_classes', '?')} distinct characters")
    else:
        data_row = (f"{d.get('name', cfg['dataset'])}: {d.get('n_train', '?')} training, {d['n_test_used']} images "
                    f"compared ({'every image, test images first' if images == 'all' else 'the test images'}; "
                    f"{d.get('image_size', '?')}px, {d.get('in_channels', '?')} channel(s))")
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
                        + "; held-out matching and sparse prediction fit on the first half of the inputs and are "
                          "scored on the second"],
        ["ε grid", f"{len(v.grid)} values in [{min(v.grid):g}, {max(v.grid):g}]; the authors' "
                   f"{', '.join(f'{e:g}' for e in v.authors)} marked; simple matches at ε = {cfg['simple_eps']:g}"],
        ["nulls", f"untrained networks; shuffled rows with {n_perm} permutations on an in-memory sample of up to "
                  f"{d.get('rows_per_image_in_sample', '?')} position(s) per image (about {cfg['sample_rows']} "
                  "rows per conv layer; every image for fully connected layers)"],
        ["calibration", f"random rotations of B's units: {cfg.get('n_rotations', '?')}; bootstrap over images: "
                        f"{cfg.get('n_boot', '?')} draws"],
        ["versions", ", ".join(f"{k} {val}" for k, val in res["versions"].items() if k != "platform")],
    ])
    rep.table(["layer", "module", "layout", "units", "samples", "samples per neuron", "dead units (A / B, mean)"],
              [[label[L["name"]], L["name"], f"{L.get('layout', '–')} ({L.get('layout_reason', '–')})", L["n_units"],
                L["n_samples"], _f(L["samples_per_neuron"], 1),
                f"{v.mean(L['name'], lambda i, la: v.curve(i, la)['dead_x']):.1f} / "
                f"{v.mean(L['name'], lambda i, la: v.curve(i, la)['dead_y']):.1f}"] for L in res["layers"]],
              caption="Layers compared, input to output (layout: how the output was read, and why)")


def _section_headline(c) -> None:
    """The report's section: headline: the curve on [0, 1) and its summaries, with both nulls."""
    v, res, cfg, rep, save, sm, plots = c.v, c.res, c.cfg, c.rep, c.save, c.sm, c.plots  # noqa: F841
    layers, n_pairs, label, shown, grid = c.layers, c.n_pairs, c.label, c.shown, c.grid  # noqa: F841
    pairs_txt, pair_txt, alpha, n_perm = c.pairs_txt, c.pair_txt, c.alpha, c.n_perm  # noqa: F841
    MIN_SAMPLES_PER_NEURON = c.min_samples  # noqa: N806
    rep.section(SECTIONS[2], "headline")
    curve_t = np.array([[v.curve(i, L)["similarity"] for L in layers] for i in range(n_pairs)], dtype=float)
    curve_u = np.array([[v.untrained(i, L)["curve"]["similarity"] for L in layers] for i in range(n_pairs)], dtype=float)
    curve_s = np.array([[v.shuffled_curve(i, L).null_mean for L in layers] for i in range(n_pairs)],
                       dtype=float)
    e50_t = v.array(lambda i, L: v.curve(i, L)["eps_50"])
    svg, files = save(plots.fig_curves_grid(grid, shown, curve_t, {"untrained": curve_u, "shuffled": curve_s},
                                            authors_eps=v.authors, marks=e50_t,
                                            title=f"Maximum match similarity against ε ({cfg['arch']}, "
                                                  f"{cfg['dataset']}, {pairs_txt})"), "mms_curves")
    rep.figure(svg, f"One panel per layer: maximum match similarity (MMS) against ε on [0, 1) for the trained pairs "
               f"(blue: mean over {pairs_txt}, band min-max), the untrained-network null (dark grey, dashed) and the "
               "shuffled-row null (light grey, dotted: mean over permutations). Thin vertical lines: the authors' ε; "
               "red ticks: eps_50 of each trained pair. A layer is similar across seeds where the blue curve rises "
               "before both grey ones.", files=files)
    stats = [("eps_50", "eps_50 ↓", False, (0, 1.02)), ("max_epsilon", "max_epsilon ↓", False, (0, 1.02)),
             ("area", "area under the curve ↑", True, (0, 1.02))]
    arrays = {}
    panels = []
    for key, ylab, larger, ylim in stats:
        t = v.array(lambda i, L: v.curve(i, L)[key])  # noqa: B023
        u = v.array(lambda i, L: v.untrained(i, L)["curve"][key])  # noqa: B023
        s_mean = _shuffled(v, key, "null_mean")
        s_p = _shuffled(v, key, "p_value")
        arrays[key] = (t, u, s_mean, s_p, larger)
        panels.append({"ylabel": ylab, "trained": t, "untrained": u, "shuffled": s_mean, "ylim": ylim,
                       "shuffled_low": _shuffled(v, key, "null_q025"),
                       "shuffled_high": _shuffled(v, key, "null_q975")})
    svg, files = save(plots.fig_summaries_vs_depth(shown, panels, title="Three numbers that summarise the curve, "
                                                   "against depth"), "mms_summaries_vs_depth")
    rep.figure(svg, "eps_50: the smallest ε at which half of the live neurons of each layer are in the maximum match "
               "(minimal_epsilon); max_epsilon: the smallest ε at which all are; area: the mean of MMS over ε in "
               "[0, 1). Arrows: which way is more similar. Blue: trained pairs; dark grey: untrained network; light "
               "grey: shuffled rows (mean, and the 95% range of the permutation null).", files=files)
    rows = []
    for j, L in enumerate(layers):
        rows.append([label[L]] + [_trio(*[a[:, j] for a in arrays[k][:4]]) for k, *_ in stats])
    rep.table(["layer", "eps_50 ↓", "max_epsilon ↓", "area ↑"], rows,
              caption=f"Mean over {pairs_txt}: trained (untrained null | shuffled null mean, p = the largest "
                      "permutation p-value over pairs)")
    for key, _lab, larger, _ in stats:
        t, u, s_mean, s_p, _l = arrays[key]
        vs = sm.verdicts(layers, t, u, s_p, larger=larger, alpha=alpha, n_permutations=n_perm)
        rep.paragraph(sm.sentence(key, vs, larger=larger, alpha=alpha, n_permutations=n_perm), note=True)

    few = [L["name"] for L in res["layers"] if L["samples_per_neuron"] < MIN_SAMPLES_PER_NEURON]
    if few:
        rep.paragraph(f"Caution: {', '.join(few)} {'has' if len(few) == 1 else 'have'} fewer than "
                      f"{MIN_SAMPLES_PER_NEURON:g} samples per neuron; spans of that many vectors cover most of the "
                      "sample space, so their matches are close to trivial (compare more images).", note=True)


def _section_granularity(c) -> None:
    """The report's section: granularity."""
    v, res, cfg, rep, save, sm, plots = c.v, c.res, c.cfg, c.rep, c.save, c.sm, c.plots  # noqa: F841
    layers, n_pairs, label, shown, grid = c.layers, c.n_pairs, c.label, c.shown, c.grid  # noqa: F841
    pairs_txt, pair_txt, alpha, n_perm = c.pairs_txt, c.pair_txt, c.alpha, c.n_perm  # noqa: F841
    rep.section(SECTIONS[3], "granularity")
    def _sizes(sm):
        return [] if sm is None else sm.sizes.tolist()

    sizes = {L: sum((_sizes(v.simple(i, L)) for i in range(n_pairs)), []) for L in layers}
    null_sizes = {name: {L: sum((_sizes(v.simple(i, L, name)) for i in range(n_pairs)), []) for L in layers}
                  for name in ("untrained", "shuffled")}
    svg, files = save(plots.fig_simple_sizes(sizes, eps=cfg["simple_eps"], nulls=null_sizes,
                                             title=f"Sizes of the simple matches (ε = {cfg['simple_eps']:g}, "
                                                   f"{pairs_txt})"), "simple_sizes")
    none = not any(sizes.values())
    rep.figure(svg, "Each point is one simple match (a smallest group of units of A and B spanning the same "
               "subspace within ε); size = units of A + units of B; size 2 is a one-to-one neuron match. Blue: "
               "trained pairs; grey: the same search against the untrained network and on shuffled rows (first "
               "permutation); bars: medians."
               + (f" No layer has a non-empty maximum match at ε = {cfg['simple_eps']:g}, so there are no simple "
                  "matches to show: at this ε the two networks share no subspace spanned by their neurons (rerun "
                  "with a larger --simple-eps, e.g. 0.5, to see the granularity where matches exist)." if none else ""),
               files=files)
    rows = []
    for L in layers:
        ok = [s for s in (v.simple(i, L) for i in range(n_pairs)) if s is not None]
        allsz = sizes[L]
        n_matches = f"{np.mean([len(s) for s in ok]):.1f}" if ok else "skipped"
        one2one = f"{np.mean([int(np.sum(s.sizes == 2)) for s in ok]):.1f}" if ok else "skipped"
        nulls_n = []
        for name in ("untrained", "shuffled"):
            ns = [x for x in (v.simple(i, L, name) for i in range(n_pairs)) if x is not None]
            nulls_n.append(f"{np.mean([len(x) for x in ns]):.1f}" if ns else "–")
        k_simple = _eps_index(v.grid, cfg["simple_eps"]) if any(abs(g - cfg["simple_eps"]) < 1e-9 for g in v.grid) \
            else None
        rows.append([label[L], n_matches, one2one, _f(np.median(allsz), 1) if allsz else "–",
                     int(max(allsz)) if allsz else "–", *nulls_n,
                     _f(v.mean(L, lambda i, la: v.curve(i, la)["similarity"][k_simple]) if k_simple is not None
                        else None)])
    rep.table(["layer", "simple matches per pair", "one-to-one (size 2) per pair", "median size (all pairs)",
               "largest (all pairs)", "per pair, untrained null", "per pair, shuffled null",
               f"MMS at ε={cfg['simple_eps']:g}"], rows,
              caption=f"Simple matches: counts are means per pair over {pairs_txt}; sizes pool the matches of "
                      "every pair")
    semi = v.array(lambda i, L: v.alignment(i, L).semi.mean)
    bip = v.array(lambda i, L: v.alignment(i, L).mean)
    match_nulls = {"semi": _shuffled(v, "semi_match", "null_mean"),
                   "bipartite": _shuffled(v, "bipartite_match", "null_mean")}
    match_untr = {"semi": v.array(lambda i, L: v.untrained(i, L)["bipartite"].semi.mean),
                  "bipartite": v.array(lambda i, L: v.untrained(i, L)["bipartite"].mean)}

    def _held(key):
        return v.array(lambda i, L: None if v.heldout(i, L) is None else getattr(v.heldout(i, L), key))

    heldout = {"semi": _held("semi"), "bipartite": _held("bipartite")}
    rotated = {"semi": v.array(lambda i, L: float(v.rotation(i, L).rotated_semi.mean())),
               "bipartite": v.array(lambda i, L: float(v.rotation(i, L).rotated_bipartite.mean()))}
    svg, files = save(plots.fig_matching_vs_depth(shown, semi, bip, match_nulls, untrained=match_untr,
                                                  heldout=heldout, rotated=rotated), "matching_vs_depth")
    rep.figure(svg, "Mean correlation of each unit with its partner: semi-matching (best partner, may repeat; top) "
               "and bipartite matching (one-to-one; bottom). Solid: in sample; dashed: the assignment fitted on one "
               "half of the images and scored on the other; dash-dot: the same matching against a random rotation "
               "of B's units (same subspace, no privileged axes); dark grey: untrained network; light grey: shuffled "
               "rows. A shared neuron basis shows as solid and dashed well above the rotation baseline and the "
               "untrained network.", files=files)
    rows = []
    for j, L in enumerate(layers):
        rows.append([label[L], _trio(semi[:, j], match_untr["semi"][:, j], match_nulls["semi"][:, j],
                              _shuffled(v, "semi_match", "p_value")[:, j]),
                     _trio(bip[:, j], match_untr["bipartite"][:, j], match_nulls["bipartite"][:, j],
                           _shuffled(v, "bipartite_match", "p_value")[:, j]),
                     _f(v.mean(L, lambda i, la: v.alignment(i, la).agreement)),
                     _f(v.mean(L, lambda i, la: v.alignment(i, la).chance))])
    rep.table(["layer", "semi-matching", "bipartite matching", "agreement share", "random pairing"], rows,
              caption=f"One-to-one matching, mean matched correlation (mean over {pairs_txt}): trained (untrained | "
                      "shuffled mean, p). Agreement: share of units whose semi- and bipartite partners coincide. "
                      "Random pairing: mean of the between-net matrix.")
    for key, what in (("bipartite_match", "bipartite matching"), ("semi_match", "semi-matching")):
        t = semi if key == "semi_match" else bip
        u = match_untr["semi" if key == "semi_match" else "bipartite"]
        vs = sm.verdicts(layers, t, u, _shuffled(v, key, "p_value"), larger=True, alpha=alpha,
                         n_permutations=n_perm)
        rep.paragraph(sm.sentence(what, vs, larger=True, alpha=alpha, n_permutations=n_perm), note=True)
    c.semi, c.bip, c.heldout = semi, bip, heldout


def _section_calibration(c) -> None:
    """The report's section: calibration."""
    v, res, cfg, rep, save, sm, plots = c.v, c.res, c.cfg, c.rep, c.save, c.sm, c.plots  # noqa: F841
    layers, n_pairs, label, shown, grid = c.layers, c.n_pairs, c.label, c.shown, c.grid  # noqa: F841
    pairs_txt, pair_txt, alpha, n_perm = c.pairs_txt, c.pair_txt, c.alpha, c.n_perm  # noqa: F841
    semi, bip, heldout = c.semi, c.bip, c.heldout
    rep.section(SECTIONS[4], "calibration")
    rows = []
    for j, L in enumerate(layers):
        row = [label[L]]
        for key, stat in (("semi", "semi_match"), ("bipartite", "bipartite_match")):
            boot = [v.bootstrap(i, L, stat) for i in range(n_pairs)]
            hw = [0.5 * (bs.high - bs.low) for bs in boot]
            ex = [getattr(v.rotation(i, L), f"excess_{key}") for i in range(n_pairs)]
            pr = [getattr(v.rotation(i, L), f"p_{key}") for i in range(n_pairs)]
            uho = [_nan(None if v.heldout(i, L, untrained=True) is None else getattr(v.heldout(i, L, untrained=True), key))
                   for i in range(n_pairs)]
            row += [f"{_f(_nmean((semi if key == 'semi' else bip)[:, j]))} ±{_f(np.mean(hw)) if hw else '–'}",
                    _f(_nmean(heldout[key][:, j])), _f(_nmean(uho)),
                    f"{_f(np.mean(ex))} (p≤{_p(max(pr))})"]
        rows.append(row)
    rep.table(["layer", "semi: in sample ±95% (images)", "held-out", "held-out, untrained", "excess over rotation",
               "bipartite: in sample ±95% (images)", "held-out", "held-out, untrained", "excess over rotation"], rows,
              caption=f"Calibrated best-match statistics (mean over {pairs_txt}). ±: half-width of the 95% bootstrap "
                      "interval that resamples images (all positions of an image together), on the in-memory sample. "
                      "Held-out: pairs fitted on one half of the images, correlations scored on the other (both "
                      "directions averaged). Excess: in-sample value minus its mean over random rotations of B's "
                      f"units (p: share of {cfg.get('n_rotations', '?')} rotations at least as high, plus one).")
    soft_t = v.array(lambda i, L: v.soft(i, L).distance)
    soft_u = v.array(lambda i, L: v.untrained(i, L)["soft"].distance)
    soft_s = _shuffled(v, "soft_distance", "null_mean")
    soft_p = _shuffled(v, "soft_distance", "p_value")
    rows = []
    for j, L in enumerate(layers):
        hw = [0.5 * (bs.high - bs.low) for bs in (v.bootstrap(i, L, "soft_match_distance") for i in range(n_pairs))]
        rows.append([label[L], _trio(soft_t[:, j], soft_u[:, j], soft_s[:, j], soft_p[:, j]), _f(np.mean(hw)) if hw else "–",
                     _f(v.mean(L, lambda i, la: v.soft(i, la).mean_correlation))])
    rep.table(["layer", "soft matching distance ↓", "±95% (images)", "transport-weighted mean correlation"], rows,
              caption="Soft matching distance (optimal transport between the standardised units of the two layers, "
                      "Khosla & Williams 2023; in [0, 2], 0 = the same units up to permutation): trained (untrained | "
                      "shuffled mean, p).")
    vs = sm.verdicts(layers, soft_t, soft_u, soft_p, larger=False, alpha=alpha, n_permutations=n_perm)
    rep.paragraph(sm.sentence("soft matching distance", vs, larger=False, alpha=alpha, n_permutations=n_perm), note=True)


def _section_details(c) -> None:
    """The report's section: details."""
    v, res, cfg, rep, save, sm, plots = c.v, c.res, c.cfg, c.rep, c.save, c.sm, c.plots  # noqa: F841
    layers, n_pairs, label, shown, grid = c.layers, c.n_pairs, c.label, c.shown, c.grid  # noqa: F841
    pairs_txt, pair_txt, alpha, n_perm = c.pairs_txt, c.pair_txt, c.alpha, c.n_perm  # noqa: F841
    first_layer, mid_layer = c.first_layer, c.mid_layer
    rep.section(SECTIONS[5], "details")
    idx = [_eps_index(v.grid, e) for e in v.authors]

    def at_authors(curve):
        return np.array([[[_nan(curve(i, L)[k]) for k in idx] for L in layers] for i in range(n_pairs)])

    trained = at_authors(lambda i, L: v.curve(i, L)["similarity"])
    untrained = at_authors(lambda i, L: v.untrained(i, L)["curve"]["similarity"])
    shuffled = at_authors(lambda i, L: v.shuffled_curve(i, L).null_mean)
    svg, files = save(plots.fig_similarity_vs_depth(
        layers, v.authors, trained, {"untrained": untrained, "shuffled": shuffled},
        title=f"MMS at the authors' ε against depth ({pairs_txt})"), "similarity_vs_depth")
    rep.figure(svg, "The paper's view: maximum match similarity at each of the authors' ε, one panel per ε (blue: "
               f"mean over {pairs_txt}, band min-max; dark grey: untrained network; light grey: shuffled rows). Where "
               "everything is 0 the single ε cannot discriminate; the curves above can.", files=files)
    rows = []
    for j, L in enumerate(layers):
        row = [L]
        for k, e in enumerate(v.authors):
            ps = np.array([_nan(v.shuffled_curve(i, L).p_value[idx[k]]) for i in range(n_pairs)])
            row.append(_trio(trained[:, j, k], untrained[:, j, k], shuffled[:, j, k], ps))
        rows.append(row)
    rep.table(["layer"] + [f"ε = {e:g}" for e in v.authors], rows,
              caption=f"MMS at the authors' ε, mean over {pairs_txt}: trained (untrained | shuffled mean, p)")
    for L in dict.fromkeys([first_layer, mid_layer]):
        al = v.unit(0, L, "alignment")
        sc = v.alignment(0, L).sorted_curve()
        semi_s = [_nan(x) for x in sc["semi"]]
        bip_s = [_nan(x) for x in sc["bipartite"]]
        a, b = v.pairs[0]
        nulls = {"untrained": v.untrained(0, L)["bipartite"].sorted_curve()["semi"],
                 "shuffled": v.first_permutation(0, L).get("sorted_semi") or []}
        svg, files = save(plots.fig_sorted_correlations(semi_s, bip_s, layer=L, nulls=nulls,
                                                        title=f"Matched correlations, {L} (seed {a} vs seed {b})"),
                          f"sorted_correlations_{L}")
        rep.figure(svg, f"Units of seed {a} sorted by their best correlation with seed {b} (semi-matching), with the "
                   "correlation of their one-to-one (bipartite) partner; grey: the sorted semi-matching values against "
                   "the untrained network and on shuffled rows (first permutation).", files=files)
        if "permuted_matrix" in al:
            mats = {f"trained (seed {b})": al["permuted_matrix"]}
            xl = {f"trained (seed {b})": f"network B (seed {b}): unit, permuted by the matching"}
            um = v.untrained(0, L)["permuted_matrix"]
            shm = v.first_permutation(0, L).get("permuted_matrix")
            if um:
                mats["untrained network (null)"] = um
                xl["untrained network (null)"] = "untrained network: unit, permuted by its matching"
            if shm:
                mats["shuffled rows (null)"] = shm
                xl["shuffled rows (null)"] = f"seed {b} on shuffled rows: unit, permuted"
            svg, files = save(plots.fig_heatmaps(mats, xlabels=xl, ylabel=f"network A (seed {a}): unit, best matched "
                                                 "first", title=f"Between-network correlations, {L}", cmap="RdBu_r",
                                                 vmin=-1, vmax=1, colorbar_label="correlation"),
                              f"permuted_correlations_{L}")
            note = al.get("permuted_matrix_note", "")
            rep.figure(svg, note[:1].upper() + note[1:] + ", beside the same for each null. A "
                       "bright diagonal means one-to-one partners.", files=files)
        sp, sp_unit = v.sparse(0, L)
        if sp is not None:
            nulls = {}
            for k in ("untrained", "shuffled"):
                spk, _ = v.sparse(0, L, k)
                if spk is not None and spk.x_to_y is not None:
                    nulls[k] = spk.x_to_y.mean_fvu.tolist()
            xy = sp.x_to_y
            svg, files = save(plots.fig_sparse_prediction(
                sp.alphas.tolist(), xy.mean_fvu.tolist(), xy.mean_nonzero.tolist(),
                n_inputs=xy.to_dict(arrays=False)["n_inputs"], layer=L, nulls=nulls,
                title=f"Sparse prediction of seed {b} from seed {a}, {L}"), f"sparse_{L}")
            rep.figure(svg, f"LASSO prediction of every unit of seed {b} from all units of seed {a} ({L}): held-out "
                       f"fraction of variance unexplained ({xy.n_train} training rows, {xy.n_test} held-out "
                       f"rows; split: {sp_unit.get('split', 'halves of the test images')}) and non-zero inputs per unit, "
                       "against the L1 penalty; grey: the held-out FVU of the same prediction from the untrained "
                       "network and on shuffled rows.", files=files)
    rows = []
    for L in layers:
        sp, _ = v.sparse(0, L)
        if sp is None:
            rows.append([L] + ["skipped"] * 5)
            continue
        spn = {n: v.sparse(0, L, n)[0] for n in ("untrained", "shuffled")}
        for k, alpha_k in enumerate(sp.alphas.tolist()):
            nv = [_f(spn[n].x_to_y.mean_fvu[k]) if spn[n] is not None and spn[n].x_to_y is not None else "–"
                  for n in ("untrained", "shuffled")]
            rows.append([L, f"{alpha_k:g}", f"{_f(sp.x_to_y.mean_fvu[k])} ({nv[0]} | {nv[1]})",
                         _f(sp.x_to_y.mean_nonzero[k], 1), len(sp.mutual_pairs[k])])
    rep.table(["layer", "λ", "held-out FVU A→B (untrained | shuffled)", "inputs per unit", "mutual strongest pairs"],
              rows, caption=f"Sparse prediction, seed {v.pairs[0][0]} → seed {v.pairs[0][1]}")
    rows = []
    for L in layers:
        c = v.clusters(0, L)
        base = c.baseline or {}
        rows.append([L, c.n_clusters, _f(c.between_score), f"{_f(base.get('between_score_mean'))} "
                     f"(p={_p(base.get('p_between'))})", _f(c.within_score), _f(base.get("within_score_mean")),
                     " ".join(f"{x}+{y}" for x, y in zip(c.count_x.tolist(), c.count_y.tolist()))])
    rep.table(["layer", "clusters", "between-net |corr| in clusters", "random partition (mean, p)",
               "within-net", "random", "units per cluster (A+B)"], rows,
              caption=f"Spectral clustering of the units of both networks (seed {v.pairs[0][0]} and "
                      f"{v.pairs[0][1]}); balanced clusters with strong between-net affinity = shared subspaces "
                      "with different bases")
    rows = []
    for L in layers:
        mi = v.mi(0, L)
        if mi is None:
            rows.append([L, "skipped (layer too wide)", "", "", ""])
        else:
            rows.append([L, _f(mi.semi.mean), _f(mi.mean), _f(mi.chance),
                         f"{v.unit(0, L, 'mi')['semi_pairs_shared_with_correlation']} of {mi.n_x}"])
    rep.table(["layer", "MI semi-matching (nats)", "MI bipartite", "random pairing", "semi pairs shared with correlation"],
              rows, caption="Mutual-information matching on the in-memory sample (first pair)")
    rows = []
    for L in layers:
        g = lambda key: v.mean(L, lambda i, la: _value(v.reference(i, la, key)))  # noqa: E731
        p_cka = max(_nan(_opt(v.shuffled(i, L, "linear_cka").p_value)) for i in range(n_pairs))
        rows.append([L, f"{_f(g('linear_cka'))} ({_f(v.mean(L, lambda i, la: v.untrained(i, la)['linear_cka'].value))} | "
                        f"{_f(v.mean(L, lambda i, la: null_summary(v.shuffled(i, la, 'linear_cka'))['null_mean']))}, "
                        f"p≤{_p(p_cka)})",
                     _f(g("svcca")), _f(g("pwcca")), _f(g("procrustes"))])
    rep.table(["layer", "linear CKA ↑ (untrained | shuffled, p)", "SVCCA ↑", "PWCCA ↑", "Procrustes distance ↓"], rows,
              caption=f"Reference measures (mean over {pairs_txt}; ↑ larger = more similar, ↓ smaller = more similar). "
                      "CKA and CCA are invariant to rotations within a layer, MMS is not: they are not comparable "
                      "number for number.")
    heat = res.get("heatmap")
    if heat:
        mats = {f"seed {heat['a']} vs seed {heat['b']}": heat["matrix"]}
        xl = {f"seed {heat['a']} vs seed {heat['b']}": f"network B (seed {heat['b']}): layer"}
        if heat.get("untrained_matrix") is not None:
            mats["vs untrained network (null)"] = heat["untrained_matrix"]
            xl["vs untrained network (null)"] = "untrained network: layer"
        if heat.get("shuffled_matrix") is not None:
            mats["vs shuffled images (null)"] = heat["shuffled_matrix"]
            xl["vs shuffled images (null)"] = f"network B (seed {heat['b']}), images shuffled: layer"
        M = {k: np.array([[_nan(x) for x in row] for row in m]) for k, m in mats.items()}
        svg, files = save(plots.fig_heatmaps(M, xlabels=xl, ylabel=f"network A (seed {heat['a']}): layer",
                                             title="Linear CKA between every pair of layers", ticklabels=heat["layers"],
                                             vmin=0, vmax=1, colorbar_label="linear CKA"), "layer_heatmap")
        rep.figure(svg, f"Linear CKA between every layer of seed {heat['a']} and every layer of seed {heat['b']} "
                   "(conv layers average-pooled over positions), beside the same against the untrained network and "
                   f"with the images of B shuffled (mean of {heat.get('n_permutations', '?')} permutations). The "
                   "diagonal should stand out.", files=files)


def _section_files(c) -> None:
    """The report's section: files."""
    v, res, cfg, rep, save, sm, plots = c.v, c.res, c.cfg, c.rep, c.save, c.sm, c.plots  # noqa: F841
    layers, n_pairs, label, shown, grid = c.layers, c.n_pairs, c.label, c.shown, c.grid  # noqa: F841
    pairs_txt, pair_txt, alpha, n_perm = c.pairs_txt, c.pair_txt, c.alpha, c.n_perm  # noqa: F841
    run_dir, tables = c.run_dir, c.tables
    rep.section(SECTIONS[6], "files")
    rep.table(["table", "file"], [[k, os.path.relpath(p, run_dir)] for k, p in tables.items()])
    prov = res["provenance"]
    rep.paragraph(f"Units computed in the last run: {len(prov['computed'])}; reused from the cache: "
                  f"{len(prov['reused'])}; {prov['seconds']:.1f} s. Rebuild this page with "
                  f"`repmatch report {run_dir}`.")
