"""Report building blocks: every figure saves as PNG + SVG with title and labels; the HTML is self-contained."""

import html.parser

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from repmatch.report import HtmlReport
from repmatch.report import plots


class _Collector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []
        self.external = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href") and v and v.startswith(("http:", "https:", "//")):
                self.external.append(v)


def test_figures_and_report(tmp_path):
    g = np.random.default_rng(0)
    layers = ["conv1", "conv2", "fc1"]
    eps = [0.15, 0.25, 0.5]
    trained = g.uniform(0.2, 0.9, size=(3, 3, 3))
    nulls = {"untrained": trained * 0.3, "shuffled": trained * 0.1}
    figs = {
        "depth": plots.fig_similarity_vs_depth(layers, eps, trained, nulls),
        "curves": plots.fig_similarity_curves(np.linspace(0, 0.6, 7), {k: g.uniform(size=(3, 7)) for k in layers},
                                              nulls={"conv1": g.uniform(size=(3, 7)) * 0.1}),
        "sizes": plots.fig_simple_sizes({"conv1": [2, 2, 4, 10], "conv2": [], "fc1": [30]}, eps=0.25),
        "matching": plots.fig_matching_vs_depth(layers, g.uniform(size=(3, 3)), g.uniform(size=(3, 3)),
                                                null=g.uniform(size=(3, 3)) * 0.1),
        "sorted": plots.fig_sorted_correlations(np.sort(g.uniform(size=20))[::-1], g.uniform(size=20), layer="conv1"),
        "heat": plots.fig_heatmap(g.uniform(size=(3, 3)), xlabel="network B (seed 1) layer",
                                  ylabel="network A (seed 0) layer", title="Linear CKA, layer × layer",
                                  xticklabels=layers, yticklabels=layers, colorbar_label="linear CKA"),
        "sparse": plots.fig_sparse_prediction([0, 1e-3, 1e-2, 1e-1], [0.2, 0.25, 0.5, 1.0], [60, 20, 3, 0],
                                              n_inputs=64, layer="conv1"),
    }
    for name, fig in figs.items():
        ax = fig.axes[0]
        assert ax.get_title() or fig.get_suptitle(), name
        assert any(a.get_xlabel() for a in fig.axes) and ax.get_ylabel(), name  # multi-panel: x label at the bottom
        if name != "heat":
            assert ax.get_legend() is not None or fig.legends, name
    report = HtmlReport("Test report", "subtitle <with> escapes")
    report.section("The question").paragraph("Do two networks learn the same representation?", note=True)
    for name, fig in figs.items():
        saved = plots.save_figure(fig, tmp_path / name)
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
        assert saved["svg_text"].lstrip().startswith("<?xml")
        report.figure(saved["svg_text"], f"figure {name}", files=saved)
    report.table(["layer", "similarity"], [["conv1", 0.123456], ["fc1", 1]], caption="numbers")
    path = report.write(tmp_path / "report.html")
    text = open(path, encoding="utf-8").read()
    parser = _Collector()
    parser.feed(text)
    assert parser.tags.count("svg") == len(figs)
    assert parser.tags.count("figure") == len(figs)
    assert not parser.external
    assert "subtitle &lt;with&gt; escapes" in text and "0.1235" in text
    assert "<?xml" not in text


def _overlaps(a, b, pad=0.5):
    return not (a.x1 <= b.x0 + pad or b.x1 <= a.x0 + pad or a.y1 <= b.y0 + pad or b.y1 <= a.y0 + pad)


def _depth_figures(n_layers, seed=0):
    g = np.random.default_rng(seed)
    layers = [f"layer{k // 6 + 1}.{(k // 2) % 3}.relu{k % 2 + 1}" for k in range(n_layers)]
    eps = [0.15, 0.25, 0.5]
    grid = np.linspace(0, 0.975, 40)
    t = g.uniform(size=(3, n_layers, 3))
    curves = np.sort(g.uniform(size=(3, n_layers, 40)), axis=2)
    M = g.uniform(size=(n_layers, n_layers))
    pairs = lambda: g.uniform(size=(3, n_layers))  # noqa: E731
    return layers, {
        "depth": plots.fig_similarity_vs_depth(layers, eps, t, {"untrained": t * 0.5, "shuffled": t * 0.1}),
        "grid": plots.fig_curves_grid(grid, layers, curves, {"untrained": curves * 0.8, "shuffled": curves * 0.3},
                                      marks=pairs()),
        "summaries": plots.fig_summaries_vs_depth(layers, [
            {"ylabel": "eps_50", "trained": pairs(), "untrained": pairs(), "shuffled": pairs(),
             "shuffled_low": pairs() * 0.9, "shuffled_high": pairs() * 1.1}] * 3),
        "matching": plots.fig_matching_vs_depth(layers, pairs(), pairs(), {"semi": pairs(), "bipartite": pairs()},
                                                untrained={"semi": pairs(), "bipartite": pairs()},
                                                heldout={"semi": pairs(), "bipartite": pairs()},
                                                rotated={"semi": pairs(), "bipartite": pairs()}),
        "sizes": plots.fig_simple_sizes({L: [2, 3, 4] for L in layers}, eps=0.25,
                                        nulls={"untrained": {layers[0]: [2]}, "shuffled": {}}),
        "heat": plots.fig_heatmaps({"trained": M, "untrained network (null)": M, "shuffled rows (null)": M},
                                   xlabels={"trained": "B", "untrained network (null)": "U", "shuffled rows (null)": "S"},
                                   ylabel="A: layer", title="CKA", ticklabels=layers, vmin=0, vmax=1),
    }


@pytest.mark.parametrize("n_layers", [3, 19])
def test_figures_stay_readable_at_any_depth(n_layers):
    """Width within the page column, fonts >= MIN_FONT_PT, legends outside every axes, tick labels apart."""
    layers, figs = _depth_figures(n_layers)
    for name, fig in figs.items():
        w, h = fig.get_size_inches()
        assert w <= plots.MAX_WIDTH_IN + 1e-9, (name, w)
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison and ax.get_label() != "<colorbar>"]
        for leg in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]:
            lb = leg.get_window_extent(r)
            for ax in axes:
                assert not _overlaps(lb, ax.get_window_extent(r)), f"{name}: legend covers an axes"
        fig_box = fig.bbox
        for ax in axes:
            for axis in (ax.xaxis, ax.yaxis):
                lo, hi = sorted(axis.get_view_interval())
                labels = [t for t, loc in zip(axis.get_ticklabels(), axis.get_majorticklocs())
                          if t.get_visible() and t.get_text() and lo - 1e-9 <= loc <= hi + 1e-9]  # drawn ones
                boxes = [t.get_window_extent(r) for t in labels]
                for t, b in zip(labels, boxes):
                    assert t.get_fontsize() >= plots.MIN_FONT_PT, (name, t.get_text(), t.get_fontsize())
                    assert b.x0 >= fig_box.x0 - 1 and b.y0 >= fig_box.y0 - 1, f"{name}: {t.get_text()} cut off"
                    assert b.x1 <= fig_box.x1 + 1 and b.y1 <= fig_box.y1 + 1, f"{name}: {t.get_text()} cut off"
                for i in range(len(boxes) - 1):
                    assert not _overlaps(boxes[i], boxes[i + 1], pad=0.0), \
                        f"{name}: tick labels {labels[i].get_text()!r} and {labels[i + 1].get_text()!r} overlap"
        # every layer is labelled on the depth axes
        if name in ("depth", "summaries", "matching", "sizes"):
            shown = {t.get_text() for ax in axes for t in ax.get_xticklabels() if t.get_text()}
            assert shown == set(layers), name
        import matplotlib.pyplot as plt

        plt.close(fig)
