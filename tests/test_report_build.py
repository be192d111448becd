"""The reproduce report is rebuilt from results.json alone: tables, figures and a self-contained page."""

import csv
import json
from html.parser import HTMLParser

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from repmatch import BipartiteMatch, PermutationResult  # noqa: E402
from repmatch.report.build import SECTIONS, build_report  # noqa: E402


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.h2, self.external, self._in_h2 = [], [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_h2 = tag == "h2"
        for k, val in attrs:
            if k in ("src",) or (k == "href" and val and val.startswith(("http:", "https:", "//"))):
                self.external.append(val)

    def handle_data(self, data):
        if self._in_h2:
            self.h2.append(data)
            self._in_h2 = False


@pytest.fixture(scope="module")
def rebuilt(tiny_run, tmp_path_factory):
    """A directory holding only the tiny run's results.json, with the report built from it."""
    run = tmp_path_factory.mktemp("report-only")
    (run / "results.json").write_text((tiny_run[0] / "results.json").read_text())
    page = build_report(run)
    return run, page, tiny_run[1]


def test_report_from_results_json_alone(rebuilt):
    run, page, res = rebuilt
    text = open(page, encoding="utf-8").read()
    parser = _Page()
    parser.feed(text)
    assert parser.h2 == list(SECTIONS)
    n_svg = parser.tags.count("svg")
    assert n_svg == parser.tags.count("figure") >= 8
    assert not parser.external  # self-contained: no external resources
    assert "<?xml" not in text
    figs = sorted(p.name for p in (run / "figures").iterdir())
    assert len([f for f in figs if f.endswith(".png")]) == n_svg == len([f for f in figs if f.endswith(".svg")])
    for name in ("mms_curves", "mms_summaries_vs_depth", "similarity_vs_depth", "simple_sizes", "matching_vs_depth",
                 "layer_heatmap"):
        assert (run / "figures" / f"{name}.png").stat().st_size > 1000
    # the headline numbers are on the page with both nulls: trained (untrained | shuffled mean, p)
    for L in res["layers"]:
        unit = res["results"][0]["layers"][L["name"]]
        e50 = unit["subspace"]["eps_50"]
        sh = PermutationResult.from_dict(unit["shuffled"]["statistics"]["eps_50"])
        null = sh.null[np.isfinite(sh.null)]
        cell = (f"{e50:.3f} ({unit['untrained']['curve']['eps_50']:.3f} | {null.mean():.3f}, "
                f"p≤{sh.p_value:.2g})")
        assert cell in text, cell
    mms = res["results"][0]["layers"][res["layers"][0]["name"]]["subspace"]["similarity"][res["eps_grid"].index(0.25)]
    assert f"{mms:.3f}" in text
    assert "network A (seed 0)" in text and "network B (seed 1)" in text  # heatmap axes
    # the tiny run has 3 permutations: no claim of significance, the text says why
    assert "not testable at 3 permutations" in text and "Both nulls beaten" not in text
    assert "over the 1 pairs" not in text and "the one pair of seeds" in text


def test_csv_tables_match_results(rebuilt):
    run, _, res = rebuilt
    expected = {"similarity", "layers", "matching", "simple_matches", "sparse_prediction", "clusters", "reference",
                "layer_heatmap_cka", "mms_summaries", "calibration"}
    assert {p.stem for p in (run / "tables").glob("*.csv")} == expected
    rows = list(csv.DictReader(open(run / "tables" / "similarity.csv")))
    assert len(rows) == len(res["pairs"]) * len(res["layers"]) * len(res["eps_grid"])
    for row in rows[:40]:
        unit = res["results"][0]["layers"][row["layer"]]
        k = res["eps_grid"].index(float(row["eps"]))
        assert float(row["similarity"]) == pytest.approx(unit["subspace"]["similarity"][k], abs=1e-5)
        assert float(row["untrained_null"]) == pytest.approx(unit["untrained"]["curve"]["similarity"][k], abs=1e-5)
    rows = list(csv.DictReader(open(run / "tables" / "matching.csv")))
    for row in rows:
        unit = res["results"][0]["layers"][row["layer"]]
        b = BipartiteMatch.from_dict(unit["alignment"]["bipartite"])
        assert float(row["bipartite_mean"]) == pytest.approx(b.mean, rel=1e-5)
        assert float(row["bipartite_shuffled_mean"]) == pytest.approx(
            PermutationResult.from_dict(unit["shuffled"]["statistics"]["bipartite_match"]).null_mean, rel=1e-5, abs=1e-9)
    heat = np.loadtxt(run / "tables" / "layer_heatmap_cka.csv", delimiter=",", skiprows=1, usecols=range(1, 6))
    np.testing.assert_allclose(heat, res["heatmap"]["matrix"], rtol=1e-5)
    rows = list(csv.DictReader(open(run / "tables" / "mms_summaries.csv")))
    assert len(rows) == 3 * len(res["layers"])
    for row in rows:
        unit = res["results"][0]["layers"][row["layer"]]
        if row["trained"]:
            assert float(row["trained"]) == pytest.approx(unit["subspace"][row["statistic"]], rel=1e-5)
        sh = PermutationResult.from_dict(unit["shuffled"]["statistics"][row["statistic"]])
        assert float(row["shuffled_p"]) == pytest.approx(sh.p_value, rel=1e-5)


def test_rebuild_is_idempotent(rebuilt):
    run, page, _ = rebuilt
    first = open(page, encoding="utf-8").read()
    build_report(run)
    assert open(page, encoding="utf-8").read().count("<svg") == first.count("<svg")


def test_missing_or_foreign_results(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.json"):
        build_report(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not a repmatch reproduce results file"):
        build_report(tmp_path)


def test_results_of_an_older_format_are_refused_not_misread(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"format": "repmatch-reproduce-1", "results": []}))
    with pytest.raises(ValueError, match="written by another version of repmatch: rerun `repmatch reproduce`"):
        build_report(tmp_path)
