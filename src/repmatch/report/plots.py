"""Plots of repmatch results: every figure has a title, axis labels and a legend; nulls are drawn
beside the numbers they qualify. Needs matplotlib (``pip install 'repmatch[full]'``).

Each ``fig_*`` function takes plain arrays (no repmatch objects), returns a matplotlib Figure, and
never shows it; :func:`save_figure` writes PNG and SVG atomically and returns the SVG text for
inlining into the HTML report.
"""

from __future__ import annotations

import io
import os

import numpy as np

__all__ = [
    "fig_similarity_vs_depth",
    "fig_similarity_curves",
    "fig_simple_sizes",
    "fig_matching_vs_depth",
    "fig_sorted_correlations",
    "fig_heatmap",
    "fig_sparse_prediction",
    "save_figure",
]

_NULL_STYLES = {
    "untrained": dict(color="0.45", hatch="//"),
    "shuffled": dict(color="0.7", hatch="\\\\"),
}


def _plt():
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover
        raise ImportError("plots need matplotlib: pip install 'repmatch[full]'") from exc
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _band(ax, x, values, *, label, color=None, linestyle="-", marker="o", fill_alpha=0.18, hatch=None):
    """Mean line with a min–max band over the first axis (e.g. over pairs of seeds)."""
    v = np.atleast_2d(np.asarray(values, dtype=float))
    mean = np.nanmean(v, axis=0)
    line = ax.plot(x, mean, linestyle=linestyle, marker=marker, color=color, label=label)[0]
    if v.shape[0] > 1:
        ax.fill_between(x, np.nanmin(v, axis=0), np.nanmax(v, axis=0), color=line.get_color(),
                        alpha=fill_alpha, hatch=hatch, linewidth=0)
    return line


def fig_similarity_vs_depth(layers, eps_values, trained, nulls=None, *, title="Maximum match similarity against depth"):
    """Headline: similarity against layer depth, one line per ε, with null bands.

    trained : array (n_pairs, n_layers, n_eps); nulls : {name: array (n_pairs, n_layers, n_eps)}.
    Lines are means over pairs of seeds, bands their min–max; null bands are grey, one per null.
    """
    plt = _plt()
    trained = np.asarray(trained, dtype=float)
    x = np.arange(len(layers))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(layers) + 3), 4.2))
    colors = plt.cm.viridis(np.linspace(0.05, 0.85, len(eps_values)))
    for k, (e, c) in enumerate(zip(eps_values, colors)):
        _band(ax, x, trained[:, :, k], label=f"trained, ε = {e:g}", color=c)
        for name, arr in (nulls or {}).items():
            arr = np.asarray(arr, dtype=float)
            style = _NULL_STYLES.get(name, dict(color="0.6", hatch=None))
            _band(ax, x, arr[:, :, k], label=f"{name} null, ε = {e:g}" if len(eps_values) == 1 or k == len(eps_values) - 1 else None,
                  color=style["color"], linestyle="--", marker=".", fill_alpha=0.12, hatch=style["hatch"])
    ax.set_xticks(x)
    ax.set_xticklabels(layers, rotation=45, ha="right")
    ax.set_xlabel("layer (input → output)")
    ax.set_ylabel("maximum match similarity")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="best")
    fig.tight_layout()
    return fig


def fig_similarity_curves(eps_grid, curves, *, authors_eps=(0.15, 0.2, 0.25, 0.3, 0.5), nulls=None,
                          title="Maximum match similarity against ε"):
    """One panel line per layer: similarity against ε (mean over pairs, min–max band).

    curves : {layer: array (n_pairs, n_grid)}; nulls : {layer: array (n_pairs, n_grid)} drawn dashed.
    The authors' ε values are marked with vertical lines.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    colors = plt.cm.plasma(np.linspace(0.05, 0.85, max(1, len(curves))))
    for (layer, arr), c in zip(curves.items(), colors):
        _band(ax, eps_grid, arr, label=layer, color=c, marker=None)
        if nulls and layer in nulls:
            _band(ax, eps_grid, nulls[layer], label=None, color=c, linestyle=":", marker=None, fill_alpha=0.08)
    for e in authors_eps:
        ax.axvline(e, color="0.8", linewidth=0.8, zorder=0)
    ax.set_xlabel("ε (relative distance allowed; sine of the angle)")
    ax.set_ylabel("maximum match similarity")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if nulls:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="0.4", linestyle=":"))
        labels.append("null (dotted)")
    ax.legend(handles, labels, fontsize=7, ncol=2, loc="best")
    fig.tight_layout()
    return fig


def fig_simple_sizes(sizes_by_layer, *, eps=None, title=None):
    """Distribution of simple-match sizes (|x| + |y|) per layer, as box plots with the points."""
    plt = _plt()
    layers = list(sizes_by_layer)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(layers) + 3), 4.0))
    data = [np.asarray(sizes_by_layer[k], dtype=float) for k in layers]
    positions = np.arange(len(layers))
    nonempty = [i for i, d in enumerate(data) if d.size]
    if nonempty:
        ax.boxplot([data[i] for i in nonempty], positions=positions[nonempty], widths=0.5, showfliers=False)
    rng = np.random.default_rng(0)
    for i, d in enumerate(data):
        if d.size:
            ax.scatter(i + rng.uniform(-0.15, 0.15, d.size), d, s=6, alpha=0.5, color="tab:blue",
                       label="one simple match" if i == nonempty[0] else None)
    if not nonempty:
        ax.text(0.5, 0.5, "no simple matches at this ε", transform=ax.transAxes, ha="center", va="center",
                color="0.4")
    ax.set_xticks(positions)
    ax.set_xticklabels(layers, rotation=45, ha="right")
    ax.set_yscale("log")
    ax.set_xlabel("layer")
    ax.set_ylabel("simple match size |x| + |y| (log)")
    ax.set_title(title or ("Sizes of the simple matches found" + (f" (ε = {eps:g})" if eps is not None else "")))
    ax.grid(alpha=0.3, axis="y")
    if nonempty:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def fig_matching_vs_depth(layers, semi, bipartite, null=None, *, title="Mean matched correlation against depth"):
    """Semi-matching and bipartite mean correlation per layer (arrays (n_pairs, n_layers)) and a null."""
    plt = _plt()
    x = np.arange(len(layers))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(layers) + 3), 4.0))
    _band(ax, x, semi, label="semi-matching", color="tab:orange")
    _band(ax, x, bipartite, label="bipartite matching", color="tab:blue")
    if null is not None:
        _band(ax, x, null, label="null (shuffled rows, bipartite)", color="0.6", linestyle="--", marker=".")
    ax.set_xticks(x)
    ax.set_xticklabels(layers, rotation=45, ha="right")
    ax.set_xlabel("layer (input → output)")
    ax.set_ylabel("mean matched correlation")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def fig_sorted_correlations(semi_sorted, bipartite_sorted, *, layer="", title=None):
    """Matched correlations of every unit, sorted by the semi-matching value (Li et al. figure 2)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    ax.plot(np.arange(len(semi_sorted)), semi_sorted, label="semi-matching", color="tab:orange")
    ax.plot(np.arange(len(bipartite_sorted)), bipartite_sorted, ".", markersize=3, label="bipartite matching",
            color="tab:blue")
    ax.set_xlabel("unit of network A (sorted by semi-matching correlation)")
    ax.set_ylabel("correlation with its partner in B")
    ax.set_title(title or f"Matched correlations, {layer}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def fig_heatmap(matrix, *, xlabel, ylabel, title, xticklabels=None, yticklabels=None, cmap="viridis",
                vmin=None, vmax=None, colorbar_label=""):
    """A labelled heatmap: rows are ``ylabel`` (e.g. "network A (seed 0) layer"), columns ``xlabel``."""
    plt = _plt()
    m = np.asarray(matrix, dtype=float)
    size = min(9.0, 3.0 + 0.35 * max(m.shape)) if xticklabels is not None else 5.5
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    cb = fig.colorbar(im, ax=ax)
    cb.set_label(colorbar_label)
    if xticklabels is not None:
        ax.set_xticks(np.arange(len(xticklabels)))
        ax.set_xticklabels(xticklabels, rotation=45, ha="right", fontsize=7)
    if yticklabels is not None:
        ax.set_yticks(np.arange(len(yticklabels)))
        ax.set_yticklabels(yticklabels, fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def fig_sparse_prediction(alphas, fvu, nonzero, *, n_inputs=None, layer="", title=None):
    """Sparse prediction: held-out fraction of variance unexplained and inputs per unit against λ."""
    plt = _plt()
    a = np.asarray(alphas, dtype=float)
    shown = np.where(a > 0, a, np.nan)
    xs = np.where(np.isnan(shown), np.nanmin(shown) / 10 if np.any(a > 0) else 1e-6, shown)
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    ax.plot(xs, fvu, "o-", color="tab:red", label="held-out 1 − R²")
    ax.set_xscale("log")
    ax.set_xlabel("L1 penalty λ (λ = 0 drawn at the left edge)")
    ax.set_ylabel("fraction of variance unexplained", color="tab:red")
    ax2 = ax.twinx()
    ax2.plot(xs, nonzero, "s--", color="tab:blue", label="non-zero inputs per unit")
    ax2.set_ylabel("non-zero inputs per predicted unit" + (f" (of {n_inputs})" if n_inputs else ""), color="tab:blue")
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="center left")
    ax.set_title(title or f"Sparse prediction, {layer}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def save_figure(fig, base_path) -> dict:
    """Write ``base_path.png`` and ``base_path.svg`` atomically; return paths and the SVG text."""
    from .._atomic import atomic_write_bytes

    plt = _plt()
    base_path = os.fspath(base_path)
    out = {}
    for fmt in ("png", "svg"):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=110)
        data = buf.getvalue()
        out[fmt] = atomic_write_bytes(f"{base_path}.{fmt}", data)
        if fmt == "svg":
            out["svg_text"] = data.decode("utf-8")
    plt.close(fig)
    return out
