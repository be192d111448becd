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
        assert ax.get_title(), name
        assert ax.get_xlabel() and ax.get_ylabel(), name
        if name != "heat":
            assert ax.get_legend() is not None, name
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
