"""Plots of repmatch results: every figure has a title, axis labels and a legend; every figure that
draws a trained value draws both nulls (untrained network, shuffled rows) beside it. Needs
matplotlib (``pip install 'repmatch[full]'``).

Each ``fig_*`` function takes plain arrays (no repmatch objects), returns a matplotlib Figure, and
never shows it; :func:`save_figure` writes PNG and SVG atomically and returns the SVG text for
inlining into the HTML report.

Readable at any depth: figures are never wider than :data:`MAX_WIDTH_IN` inches (the report's
column, so the browser never shrinks them), layer labels turn vertical and shrink one point past
:data:`MANY_LAYERS` layers (never below :data:`MIN_FONT_PT`), legends sit outside the axes (below
the figure) so that they cover no data, per-layer curves are small multiples in a grid, and
layer x layer heatmaps get taller as layers are added so that every row keeps room for its label.
"""

from __future__ import annotations

import io
import math
import os

import numpy as np

from ..protocol import AUTHORS_EPS

__all__ = [
    "fig_similarity_vs_depth",
    "fig_curves_grid",
    "fig_summaries_vs_depth",
    "fig_similarity_curves",
    "fig_simple_sizes",
    "fig_matching_vs_depth",
    "fig_sorted_correlations",
    "fig_heatmap",
    "fig_heatmaps",
    "fig_sparse_prediction",
    "save_figure",
    "MAX_WIDTH_IN",
    "MIN_FONT_PT",
    "MANY_LAYERS",
]

#: Widest figure (inches): at 72 pt per inch and the browser's 4/3 px per pt it fits the report's
#: 1100-px column without being scaled down.
MAX_WIDTH_IN = 10.5
#: Smallest font of any label (points).
MIN_FONT_PT = 7.0
#: Above this many layers, layer labels are vertical and one point smaller.
MANY_LAYERS = 10

NULL_STYLES = {
    "untrained": dict(color="0.35", hatch="//", linestyle="--", marker="s", label="untrained network (null)"),
    "shuffled": dict(color="0.65", hatch="\\\\", linestyle=":", marker="^", label="shuffled rows (null)"),
}


def _plt():
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover
        raise ImportError("plots need matplotlib: pip install 'repmatch[full]'") from exc
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _tick_font(n: int) -> float:
    return max(MIN_FONT_PT, 8.0 if n <= MANY_LAYERS else 7.0)


def _depth_width(n_layers: int) -> float:
    return min(MAX_WIDTH_IN, max(6.5, 0.42 * n_layers + 3.0))


def _layer_axis(ax, layers, *, labels=True):
    x = np.arange(len(layers))
    ax.set_xticks(x)
    if labels:
        many = len(layers) > MANY_LAYERS
        ax.set_xticklabels(layers, rotation=90 if many else 45, ha="center" if many else "right",
                           fontsize=_tick_font(len(layers)))
        ax.set_xlabel("layer (input → output)")
    else:
        ax.set_xticklabels([])
    ax.set_xlim(-0.5, len(layers) - 0.5)


def _outside_legend(fig, handles, labels, *, ncol=None):
    """One legend for the whole figure, below the axes (constrained layout leaves room)."""
    pairs = [(h, lab) for h, lab in zip(handles, labels) if lab and not lab.startswith("_")]
    seen, hs, ls = set(), [], []
    for h, lab in pairs:
        if lab not in seen:
            seen.add(lab)
            hs.append(h)
            ls.append(lab)
    if not hs:
        return None
    ncol = ncol or min(len(hs), 3)
    return fig.legend(hs, ls, loc="outside lower center", ncol=ncol, fontsize=8, frameon=False)


def _band(ax, x, values, *, label, color=None, linestyle="-", marker="o", fill_alpha=0.18, hatch=None, lw=1.5,
          markersize=4):
    """Mean line with a min–max band over the first axis (e.g. over pairs of seeds)."""
    v = np.atleast_2d(np.asarray(values, dtype=float))
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (undefined values)
            mean = np.nanmean(v, axis=0)
            lo, hi = np.nanmin(v, axis=0), np.nanmax(v, axis=0)
    line = ax.plot(x, mean, linestyle=linestyle, marker=marker, color=color, label=label, lw=lw,
                   markersize=markersize)[0]
    if v.shape[0] > 1:
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=fill_alpha, hatch=hatch, linewidth=0)
    return line


def _null_band(ax, x, arr, name, *, label=True, **kw):
    st = NULL_STYLES.get(name, dict(color="0.6", hatch=None, linestyle="--", marker=".", label=f"{name} null"))
    marker = kw.pop("marker", st["marker"])
    return _band(ax, x, arr, label=st["label"] if label else None, color=st["color"], linestyle=st["linestyle"],
                 marker=marker, fill_alpha=0.12, hatch=st["hatch"], lw=1.2, markersize=3, **kw)


def fig_similarity_vs_depth(layers, eps_values, trained, nulls=None, *, title="Maximum match similarity against depth"):
    """Similarity against layer depth at a few ε (the authors'), one panel per ε, with both null bands.

    trained : array (n_pairs, n_layers, n_eps); nulls : {name: array (n_pairs, n_layers, n_eps)}.
    Lines are means over pairs of seeds, bands their min–max.

    Parameters
    ----------
    layers : sequence of str
        Layer labels, in depth order.
    eps_values : sequence of float
        The ε of the panels (the third axis of the arrays).
    trained : array-like of shape (n_pairs, n_layers, n_eps)
    nulls : dict of str to array-like of shape (n_pairs, n_layers, n_eps), optional
        Null bands by name (keys ``"untrained"`` and ``"shuffled"`` get their own styles).
    title : str

    Returns
    -------
    matplotlib.figure.Figure
        Not yet saved (see :func:`save_figure`).
    """
    plt = _plt()
    trained = np.asarray(trained, dtype=float)
    x = np.arange(len(layers))
    k = len(eps_values)
    fig, axes = plt.subplots(k, 1, figsize=(_depth_width(len(layers)), 1.5 * k + 2.2), sharex=True,
                             layout="constrained", squeeze=False)
    for i, e in enumerate(eps_values):
        ax = axes[i, 0]
        _band(ax, x, trained[:, :, i], label="trained pairs", color="tab:blue")
        for name, arr in (nulls or {}).items():
            _null_band(ax, x, np.asarray(arr, dtype=float)[:, :, i], name)
        ax.set_ylim(-0.04, 1.04)
        ax.set_ylabel(f"MMS, ε = {e:g}", fontsize=8)
        ax.grid(alpha=0.3)
        _layer_axis(ax, layers, labels=i == k - 1)
    axes[0, 0].set_title(title)
    _outside_legend(fig, *axes[0, 0].get_legend_handles_labels())
    return fig


def fig_curves_grid(eps_grid, layers, trained, nulls=None, *, authors_eps=AUTHORS_EPS, marks=None,
                    title="Maximum match similarity against ε, every layer", ylabel="MMS"):
    """The headline: one small panel per layer, similarity against ε on [0, 1), both null bands.

    trained : array (n_pairs, n_layers, n_grid); nulls : {name: same shape}; marks : optional
    (n_pairs, n_layers) values (eps_50) drawn as ticks on the trained curve. The authors' ε are
    thin vertical lines.

    Parameters
    ----------
    eps_grid : array-like of shape (n_grid,)
    layers : sequence of str
        Panel titles, in depth order.
    trained : array-like of shape (n_pairs, n_layers, n_grid)
    nulls : dict of str to array-like of the same shape, optional
        Null bands by name (keys ``"untrained"`` and ``"shuffled"`` get their own styles).
    authors_eps : sequence of float, default :data:`~repmatch.protocol.AUTHORS_EPS`
        Where the vertical lines are drawn.
    marks : array-like of shape (n_pairs, n_layers), optional
        ε values drawn as ticks (NaN: none).
    title, ylabel : str

    Returns
    -------
    matplotlib.figure.Figure
        Not yet saved (see :func:`save_figure`).
    """
    plt = _plt()
    trained = np.asarray(trained, dtype=float)
    n = len(layers)
    ncols = n if n <= 5 else math.ceil(n / math.ceil(n / 5))  # balanced rows of at most 5 panels
    nrows = math.ceil(n / ncols)
    width = min(MAX_WIDTH_IN, 2.2 * ncols + 0.6)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, 1.75 * nrows + 1.3), sharex=True, sharey=True,
                             layout="constrained", squeeze=False)
    e = np.asarray(eps_grid, dtype=float)
    for j in range(nrows * ncols):
        ax = axes[j // ncols, j % ncols]
        if j >= n:
            ax.set_axis_off()
            continue
        for a in authors_eps:
            ax.axvline(a, color="0.85", linewidth=0.7, zorder=0)
        _band(ax, e, trained[:, j, :], label="trained pairs", color="tab:blue", marker=None)
        for name, arr in (nulls or {}).items():
            _null_band(ax, e, np.asarray(arr, dtype=float)[:, j, :], name, marker=None)
        if marks is not None:
            m = np.asarray(marks, dtype=float)[:, j]
            m = m[np.isfinite(m)]
            if m.size:
                ax.plot(m, np.full(m.size, 0.5), "|", color="tab:red", markersize=8, mew=1.5, label="eps_50 (trained)")
        ax.set_title(layers[j], fontsize=_tick_font(n))
        ax.set_ylim(-0.04, 1.04)
        ax.set_xlim(0, 1)
        ax.tick_params(labelsize=MIN_FONT_PT + 0.5)
        ax.grid(alpha=0.25)
        if j % ncols == 0:
            ax.set_ylabel(ylabel, fontsize=8)
        if j // ncols == nrows - 1 or j + ncols >= n:
            ax.set_xlabel("ε", fontsize=8)
            ax.xaxis.set_tick_params(labelbottom=True)
    fig.suptitle(title, fontsize=11)
    h, lab = axes[0, 0].get_legend_handles_labels()
    from matplotlib.lines import Line2D

    h.append(Line2D([], [], color="0.85", lw=0.7))
    lab.append("authors' ε (0.15 … 0.5)")
    _outside_legend(fig, h, lab, ncol=min(5, len(h)))
    return fig


def fig_summaries_vs_depth(layers, panels, *, title="Summaries of the MMS curve against depth"):
    """One panel per statistic against depth: trained, untrained null, shuffled null (mean, 95% range).

    panels : list of dicts with ``ylabel``, ``trained`` and ``untrained`` arrays (n_pairs, n_layers),
    ``shuffled`` (n_pairs, n_layers, means) and optional ``shuffled_low``/``shuffled_high``
    (2.5% / 97.5% of the permutation null, averaged over pairs).

    Parameters
    ----------
    layers : sequence of str
        Layer labels, in depth order.
    panels : list of dict
        As above; a panel may also give ``ylim`` (a (low, high) pair).
    title : str

    Returns
    -------
    matplotlib.figure.Figure
        Not yet saved (see :func:`save_figure`).
    """
    plt = _plt()
    x = np.arange(len(layers))
    k = len(panels)
    fig, axes = plt.subplots(k, 1, figsize=(_depth_width(len(layers)), 1.7 * k + 2.0), sharex=True,
                             layout="constrained", squeeze=False)
    for i, p in enumerate(panels):
        ax = axes[i, 0]
        _band(ax, x, p["trained"], label="trained pairs", color="tab:blue")
        _null_band(ax, x, p["untrained"], "untrained")
        _null_band(ax, x, p["shuffled"], "shuffled")
        if p.get("shuffled_low") is not None:
            ax.fill_between(x, np.nanmean(p["shuffled_low"], axis=0), np.nanmean(p["shuffled_high"], axis=0),
                            color="0.65", alpha=0.15, linewidth=0, label="shuffled null, 95% range")
        ax.set_ylabel(p["ylabel"], fontsize=8)
        if p.get("ylim"):
            ax.set_ylim(*p["ylim"])
        ax.grid(alpha=0.3)
        _layer_axis(ax, layers, labels=i == k - 1)
    axes[0, 0].set_title(title)
    _outside_legend(fig, *axes[0, 0].get_legend_handles_labels(), ncol=4)
    return fig


def fig_similarity_curves(eps_grid, curves, *, authors_eps=AUTHORS_EPS, nulls=None,
                          title="Maximum match similarity against ε"):
    """All layers in one panel (kept for small runs and the API): similarity against ε per layer.

    curves : {layer: array (n_pairs, n_grid)}; nulls : {layer: array} drawn dotted in the layer's colour.

    Parameters
    ----------
    eps_grid : array-like of shape (n_grid,)
    curves : dict of str to array-like of shape (n_pairs, n_grid)
    authors_eps : sequence of float, default :data:`~repmatch.protocol.AUTHORS_EPS`
        Where the vertical lines are drawn.
    nulls : dict of str to array-like of shape (n_pairs, n_grid), optional
    title : str

    Returns
    -------
    matplotlib.figure.Figure
        Not yet saved (see :func:`save_figure`).
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 4.6), layout="constrained")
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
    _outside_legend(fig, handles, labels, ncol=min(5, len(handles)))
    return fig


def fig_simple_sizes(sizes_by_layer, *, eps=None, title=None, nulls=None):
    """Simple-match sizes (|x| + |y|) per layer: trained pairs and both nulls side by side.

    sizes_by_layer : {layer: list of sizes}; nulls : {"untrained"|"shuffled": {layer: sizes}}.

    Parameters
    ----------
    sizes_by_layer : dict of str to sequence of int
        The trained pairs' simple-match sizes per layer (the layers, in depth order).
    eps : float, optional
        The ε, shown in the default title.
    title : str, optional
        Default "Sizes of the simple matches found (ε = ...)".
    nulls : dict of str to dict of str to sequence of int, optional

    Returns
    -------
    matplotlib.figure.Figure
        Not yet saved (see :func:`save_figure`).
    """
    plt = _plt()
    layers = list(sizes_by_layer)
    groups = [("trained pairs", sizes_by_layer, "tab:blue", "o")]
    for name, d in (nulls or {}).items():
        st = NULL_STYLES.get(name, dict(color="0.5", marker="."))
        groups.append((st.get("label", name), d, st["color"], st["marker"]))
    fig, ax = plt.subplots(figsize=(_depth_width(len(layers)), 4.4), layout="constrained")
    rng = np.random.default_rng(0)
    width = 0.8 / len(groups)
    any_point = False
    extra = []
    for gi, (label, d, color, marker) in enumerate(groups):
        off = (gi - (len(groups) - 1) / 2) * width
        shown = False
        for i, layer in enumerate(layers):
            s = np.asarray(d.get(layer, []), dtype=float)
            if s.size:
                any_point = True
                ax.scatter(i + off + rng.uniform(-0.3, 0.3, s.size) * width, s, s=9, alpha=0.6, color=color,
                           marker=marker, label=None if shown else label)
                if s.size >= 3:
                    ax.hlines(np.median(s), i + off - width / 2, i + off + width / 2, color=color, lw=2)
                shown = True
        if not shown:  # keep every group in the legend, even when it has no simple match anywhere
            from matplotlib.lines import Line2D

            proxy = Line2D([], [], linestyle="", marker=marker, color=color, label=f"{label}: none")
            ax.add_artist(proxy)
            extra.append(proxy)
    if not any_point:
        ax.text(0.5, 0.5, "no simple matches at this ε (trained pairs or nulls)", transform=ax.transAxes,
                ha="center", va="center", color="0.4")
    _layer_axis(ax, layers)
    ax.set_yscale("log")
    if not any_point:
        ax.set_ylim(1.5, 100)
    ax.set_ylabel("simple match size |x| + |y| (log)")
    ax.set_title(title or ("Sizes of the simple matches found" + (f" (ε = {eps:g})" if eps is not None else "")))
    ax.grid(alpha=0.3, axis="y")
    h, lab = ax.get_legend_handles_labels()
    _outside_legend(fig, h + extra, lab + [p.get_label() for p in extra])
    return fig


def fig_matching_vs_depth(layers, semi, bipartite, null=None, *, untrained=None, heldout=None, rotated=None,
                          title="Mean matched correlation against depth"):
    """Semi- and bipartite matching per layer (arrays (n_pairs, n_layers)) with their nulls and baselines.

    ``null`` (shuffled rows) and ``untrained`` are dicts ``{"semi": arr, "bipartite": arr}`` (or a
    single array, taken as the bipartite null); ``heldout`` and ``rotated`` the same for the
    held-out score and the random-rotation baseline. One panel per statistic.

    Parameters
    ----------
    layers : sequence of str
        Layer labels, in depth order.
    semi, bipartite : array-like of shape (n_pairs, n_layers)
        Mean matched correlations of the trained pairs.
    null, untrained, heldout, rotated : dict or array-like, optional
        As above; a missing key draws nothing.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
        Not yet saved (see :func:`save_figure`).
    """
    plt = _plt()

    def as_dict(v):
        return v if isinstance(v, dict) or v is None else {"bipartite": v}

    null, untrained, heldout, rotated = map(as_dict, (null, untrained, heldout, rotated))
    x = np.arange(len(layers))
    fig, axes = plt.subplots(2, 1, figsize=(_depth_width(len(layers)), 6.4), sharex=True, layout="constrained")
    for ax, key, values, color in ((axes[0], "semi", semi, "tab:orange"), (axes[1], "bipartite", bipartite, "tab:blue")):
        _band(ax, x, values, label="trained pairs (in sample)", color=color)
        if heldout and heldout.get(key) is not None:
            _band(ax, x, heldout[key], label="trained, held-out images", color=color, linestyle="--", marker="D",
                  fill_alpha=0.08, markersize=3)
        if rotated and rotated.get(key) is not None:
            _band(ax, x, rotated[key], label="rotated basis of B (baseline)", color="tab:purple", linestyle="-.",
                  marker="x", fill_alpha=0.08, markersize=4)
        if untrained and untrained.get(key) is not None:
            _null_band(ax, x, untrained[key], "untrained")
        if null and null.get(key) is not None:
            _null_band(ax, x, null[key], "shuffled")
        ax.set_ylabel(f"{key}: mean corr.", fontsize=8)
        ax.grid(alpha=0.3)
    _layer_axis(axes[0], layers, labels=False)
    _layer_axis(axes[1], layers)
    axes[0].set_title(title)
    from matplotlib.lines import Line2D

    h0, l0 = axes[0].get_legend_handles_labels()
    proxies = {"trained pairs (in sample)": Line2D([], [], color="k", marker="o", markersize=4),
               "trained, held-out images": Line2D([], [], color="k", linestyle="--", marker="D", markersize=3)}
    _outside_legend(fig, [proxies.get(lab, h) for h, lab in zip(h0, l0)], l0, ncol=3)
    return fig


def fig_sorted_correlations(semi_sorted, bipartite_sorted, *, layer="", title=None, nulls=None):
    """Matched correlations of every unit, sorted by the semi-matching value (Li et al. figure 2).

    nulls : {"untrained"|"shuffled": sorted semi-matching values of that null}.

    Parameters
    ----------
    semi_sorted, bipartite_sorted : sequence of float
        Each unit's semi- and bipartite-matching correlation, in the order of the sorted semi values.
    layer : str, default ""
        Shown in the default title.
    title : str, optional
    nulls : dict of str to sequence of float or None, optional
        As above (None entries are not drawn).

    Returns
    -------
    matplotlib.figure.Figure
        Not yet saved (see :func:`save_figure`).
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 4.4), layout="constrained")
    ax.plot(np.arange(len(semi_sorted)), semi_sorted, label="trained: semi-matching", color="tab:orange")
    ax.plot(np.arange(len(bipartite_sorted)), bipartite_sorted, ".", markersize=3, label="trained: bipartite matching",
            color="tab:blue")
    for name, vals in (nulls or {}).items():
        st = NULL_STYLES.get(name, dict(color="0.5", linestyle="--", label=name))
        v = np.asarray([np.nan if x is None else x for x in vals], dtype=float)
        ax.plot(np.arange(v.size), v, linestyle=st["linestyle"], color=st["color"],
                label=f"{st['label']}: semi-matching")
    ax.set_xlabel("unit of network A (sorted by semi-matching correlation)")
    ax.set_ylabel("correlation with its partner in B")
    ax.set_title(title or f"Matched correlations, {layer}")
    ax.grid(alpha=0.3)
    _outside_legend(fig, *ax.get_legend_handles_labels(), ncol=2)
    return fig


def _label_room(labels, fs) -> float:
    """Inches taken by rotated tick labels (or horizontal ones, beside the axis) of font size ``fs``."""
    if labels is None:
        return 0.45
    longest = max((len(str(x)) for x in labels), default=1)
    return 0.62 * fs / 72 * longest + 0.4


def _heat_panel(ax, m, *, xlabel, ylabel, title, xticklabels, yticklabels, cmap, vmin, vmax):
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    fs = _tick_font(max(m.shape))
    if xticklabels is not None:
        ax.set_xticks(np.arange(len(xticklabels)))
        ax.set_xticklabels(xticklabels, rotation=90, fontsize=fs)
    if yticklabels is not None:
        ax.set_yticks(np.arange(len(yticklabels)))
        ax.set_yticklabels(yticklabels, fontsize=fs)
    elif yticklabels is None and xticklabels is not None:
        ax.set_yticks(np.arange(m.shape[0]))
        ax.set_yticklabels([])
    ax.set_xlabel(xlabel, fontsize=8)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    return im


def _heat_layout(n_panels: int, n: int, labels) -> tuple:
    """(panels per row, panel side in inches, label room): the widest rows whose panels keep at least
    0.2 in (14 pt) per matrix row, so that 7-pt labels never overlap."""
    fs = _tick_font(n)
    room = _label_room(labels, fs)
    min_side = max(2.3, 0.2 * n + 0.4) if labels is not None else 2.3
    for k in range(n_panels, 0, -1):
        side = (MAX_WIDTH_IN - room - 1.0 - 0.15 * k) / k
        if side >= min_side:
            return k, min(side, 5.5), room
    return 1, min_side, room


def fig_heatmap(matrix, *, xlabel, ylabel, title, xticklabels=None, yticklabels=None, cmap="viridis",
                vmin=None, vmax=None, colorbar_label=""):
    """A labelled heatmap: rows are ``ylabel`` (e.g. "network A (seed 0) layer"), columns ``xlabel``.

    Parameters
    ----------
    matrix : array-like of shape (n_rows, n_cols)
    xlabel, ylabel, title : str
    xticklabels, yticklabels : sequence of str, optional
        Tick labels of the columns and rows.
    cmap : str, default "viridis"
    vmin, vmax : float, optional
        The colour scale (default: the data's range).
    colorbar_label : str, default ""

    Returns
    -------
    matplotlib.figure.Figure
        Not yet saved (see :func:`save_figure`).
    """
    plt = _plt()
    m = np.asarray(matrix, dtype=float)
    _, side, room = _heat_layout(1, max(m.shape), xticklabels)
    side = min(side, max(3.6, 0.3 * max(m.shape) + 1.5))
    fig, ax = plt.subplots(figsize=(side + room + 1.2, side + room + 0.6), layout="constrained")
    im = _heat_panel(ax, m, xlabel=xlabel, ylabel=ylabel, title=title, xticklabels=xticklabels,
                     yticklabels=yticklabels, cmap=cmap, vmin=vmin, vmax=vmax)
    cb = fig.colorbar(im, ax=ax, shrink=0.9)
    cb.set_label(colorbar_label, fontsize=8)
    return fig


def fig_heatmaps(matrices, *, xlabels, ylabel, title, ticklabels=None, cmap="viridis", vmin=None, vmax=None,
                 colorbar_label=""):
    """Several heatmaps of one kind (trained and both nulls) with one shared colour scale.

    matrices : {panel title: matrix}; xlabels : {panel title: x label}. As many side by side as fit
    the column with legible labels; more layers, fewer per row (:func:`_heat_layout`). Row labels
    are written on the first panel of each row only (the rows are the same layers).

    Parameters
    ----------
    matrices : dict of str to array-like of shape (n, n)
    xlabels : dict of str to str
    ylabel, title : str
    ticklabels : sequence of str, optional
        Labels of the rows and columns (the same layers).
    cmap : str, default "viridis"
    vmin, vmax : float, optional
        The shared colour scale.
    colorbar_label : str, default ""

    Returns
    -------
    matplotlib.figure.Figure
        Not yet saved (see :func:`save_figure`).
    """
    plt = _plt()
    items = list(matrices.items())
    n = max(np.asarray(m).shape[0] for _, m in items)
    per_row, side, room = _heat_layout(len(items), n, ticklabels)
    nrows = math.ceil(len(items) / per_row)
    width = min(MAX_WIDTH_IN, per_row * (side + 0.15) + room + 1.0)
    fig, axes = plt.subplots(nrows, per_row, figsize=(width, nrows * (side + room + 0.45) + 0.5),
                             layout="constrained", squeeze=False)
    im = None
    for k in range(nrows * per_row):
        ax = axes[k // per_row, k % per_row]
        if k >= len(items):
            ax.set_axis_off()
            continue
        name, m = items[k]
        first = k % per_row == 0
        im = _heat_panel(ax, np.asarray(m, dtype=float), xlabel=xlabels[name], ylabel=ylabel if first else "",
                         title=name, xticklabels=ticklabels, yticklabels=ticklabels if first else None, cmap=cmap,
                         vmin=vmin, vmax=vmax)
    cb = fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8)
    cb.set_label(colorbar_label, fontsize=8)
    fig.suptitle(title, fontsize=11)
    return fig


def fig_sparse_prediction(alphas, fvu, nonzero, *, n_inputs=None, layer="", title=None, nulls=None):
    """Sparse prediction: held-out fraction of variance unexplained and inputs per unit against λ.

    nulls : {"untrained"|"shuffled": held-out FVU per λ of that null}.

    Parameters
    ----------
    alphas : array-like of shape (n_alphas,)
        The L1 penalties λ (λ = 0 is drawn at the left edge of the log axis).
    fvu, nonzero : array-like of shape (n_alphas,)
        Held-out fraction of variance unexplained and mean non-zero inputs per unit at each λ.
    n_inputs : int, optional
        Inputs available per unit, shown on the axis label.
    layer : str, default ""
        Shown in the default title.
    title : str, optional
    nulls : dict of str to array-like of shape (n_alphas,), optional

    Returns
    -------
    matplotlib.figure.Figure
        Not yet saved (see :func:`save_figure`).
    """
    plt = _plt()
    a = np.asarray(alphas, dtype=float)
    shown = np.where(a > 0, a, np.nan)
    xs = np.where(np.isnan(shown), np.nanmin(shown) / 10 if np.any(a > 0) else 1e-6, shown)
    fig, ax = plt.subplots(figsize=(7.0, 4.4), layout="constrained")
    ax.plot(xs, fvu, "o-", color="tab:red", label="trained: held-out 1 − R²")
    for name, v in (nulls or {}).items():
        st = NULL_STYLES.get(name, dict(color="0.5", linestyle="--", marker=".", label=name))
        ax.plot(xs, v, linestyle=st["linestyle"], marker=st["marker"], color=st["color"],
                label=f"{st['label']}: held-out 1 − R²")
    ax.set_xscale("log")
    ax.set_xlabel("L1 penalty λ (λ = 0 drawn at the left edge)")
    ax.set_ylabel("held-out FVU", color="tab:red")
    ax2 = ax.twinx()
    ax2.plot(xs, nonzero, "s--", color="tab:blue", label="trained: non-zero inputs per unit")
    ax2.set_ylabel("inputs per unit" + (f" (of {n_inputs})" if n_inputs else ""), color="tab:blue")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.set_title(title or f"Sparse prediction, {layer}")
    ax.grid(alpha=0.3)
    _outside_legend(fig, h1 + h2, l1 + l2, ncol=2)
    return fig


def save_figure(fig, base_path) -> dict:
    """Write ``base_path.png`` and ``base_path.svg`` atomically; return paths and the SVG text.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        Closed after saving.
    base_path : str or os.PathLike
        The path without its suffix.

    Returns
    -------
    dict
        ``"png"`` and ``"svg"``: the files written; ``"svg_text"``: the SVG document.
    """
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
