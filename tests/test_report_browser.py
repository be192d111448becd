"""report.html in a real browser: headless Chromium lays out the page of a 3-layer and of a 19-layer run,
and the geometry of every figure is measured there: nothing shrunk or broken, tick labels legible and
apart, legends off the data; full-page screenshots are taken of both.

Needs Debian's ``chromium`` package (``apt-get install -y chromium``); skipped only when it is missing.
Set ``REPMATCH_SCREENSHOT=DIR`` to keep the screenshots.
"""

import json
import os
import re
import shutil
import subprocess

import pytest

pytest.importorskip("matplotlib")

from repmatch.report.build import SECTIONS, build_report  # noqa: E402

CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium", shutil.which("chromium-browser"),
                             shutil.which("google-chrome")) if p and os.path.exists(p)), None)
# Outside CI a missing browser skips this file; in CI (.ci/run installs chromium) it is a failure.
if CHROMIUM is None and os.environ.get("CI"):
    raise RuntimeError("CI=true but headless Chromium is not installed (apt-get install -y chromium)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install -y chromium)")

#: Smallest rendered height (CSS px) of a tick label: a 7-pt label at scale 1 is about 7-9 px tall.
MIN_LABEL_PX = 5.0
#: Figures may be scaled down by the page at most this much (1 = drawn at their natural size).
MIN_SCALE = 0.95

# Appended to a copy of the page: measures what the browser actually laid out and writes it into the DOM.
_PROBE = """
<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.type)), true);
const box = el => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
window.addEventListener('load', () => {
  const svgs = [...document.querySelectorAll('figure > svg')].map(s => {
    const r = s.getBoundingClientRect();
    const natural = parseFloat(s.getAttribute('width')) * 4 / 3;  // pt -> CSS px
    const axes = [...s.querySelectorAll('g[id^="axes_"]')].map(ax => {
      const bg = ax.querySelector(':scope > g[id^="patch_"]');
      return {rect: bg ? box(bg) : null,
              x: [...ax.querySelectorAll('g[id^="xtick_"] > g[id^="text_"]')].map(box),
              y: [...ax.querySelectorAll('g[id^="ytick_"] > g[id^="text_"]')].map(box)};
    });
    return {w: r.width, h: r.height, scale: r.width / natural, shapes: s.querySelectorAll('path, use, rect, image').length,
            axes, legends: [...s.querySelectorAll('g[id^="legend_"]')].map(box)};
  });
  const imgs = [...document.images].map(i => ({src: i.src, ok: i.complete && i.naturalWidth > 0}));
  const out = {svgs, imgs, errors: window.__errors, h2: [...document.querySelectorAll('h2')].map(h => h.textContent),
               tables: document.querySelectorAll('table').length, width: document.body.scrollWidth,
               height: document.body.scrollHeight};
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def _chromium(*args, tmp_path):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def page3(tiny_run, tmp_path_factory):
    """A 3-layer run: the tiny run's networks, compared at three of their layers."""
    from conftest import TINY_REPRODUCE
    from repmatch.reproduce import reproduce

    run = tmp_path_factory.mktemp("browser3") / "run"
    shutil.copytree(tiny_run[0] / "nets", run / "nets")
    res = reproduce(out=str(run), report=False, **{**TINY_REPRODUCE, "layers": ("features.1", "features.6",
                                                                                 "classifier.1")})
    assert len(res["layers"]) == 3
    return build_report(run)


@pytest.fixture(scope="module")
def page19(tmp_path_factory):
    """A 19-layer run: resnet20 (19 ReLUs) at width 0.25, trained one epoch on 100 digits, 24 test images."""
    pytest.importorskip("torch")
    from repmatch.reproduce import reproduce

    run = tmp_path_factory.mktemp("browser19") / "run"
    res = reproduce("resnet20", "digits", (0, 1), out=str(run), report=False, epochs=1, width=0.25, n_train=100,
                    n_test=24, images="test", permutations=2, sample_rows=200, n_boot=5, n_rotations=2,
                    alphas=(0.0, 1e-2), n_clusters=2, simple_max_units=16, mi_max_units=8, progress=False)
    assert len(res["layers"]) == 19
    return build_report(run)


def _overlap(a, b, pad=0.0):
    return not (a[2] <= b[0] + pad or b[2] <= a[0] + pad or a[3] <= b[1] + pad or b[3] <= a[1] + pad)


def _probe(page, tmp_path):
    text = open(page, encoding="utf-8").read()
    probe = os.path.join(os.path.dirname(page), "report-probe.html")
    with open(probe, "w", encoding="utf-8") as fh:
        fh.write(text.replace("</body>", _PROBE + "</body>"))
    proc = _chromium("--virtual-time-budget=10000", "--window-size=1200,900", "--dump-dom", f"file://{probe}",
                     tmp_path=tmp_path)
    m = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"no probe output; chromium rc={proc.returncode} stderr={proc.stderr[-2000:]}"
    import html

    return text, json.loads(html.unescape(m.group(1)))


@pytest.mark.parametrize("which", ["page3", "page19"])
def test_every_figure_is_legible_at_any_depth(which, request, tmp_path):
    page = request.getfixturevalue(which)
    text, info = _probe(page, tmp_path)
    assert info["errors"] == []
    assert info["h2"] == list(SECTIONS)
    assert len(info["svgs"]) == text.count("<figure") >= 10
    assert all(img["ok"] for img in info["imgs"]), info["imgs"]  # no broken images
    assert info["tables"] >= 10
    assert info["width"] <= 1200  # nothing overflows the page sideways
    n_labels = sum(len(a["x"]) + len(a["y"]) for s in info["svgs"] for a in s["axes"])
    assert n_labels > 100 and sum(len(s["legends"]) for s in info["svgs"]) >= 8  # the checks below saw them
    for i, s in enumerate(info["svgs"]):
        where = f"{which} figure {i + 1}"
        assert s["w"] > 200 and s["h"] > 150, f"{where} rendered at {s['w']}x{s['h']}"
        assert s["shapes"] > 10, f"{where} has no drawing"
        assert s["scale"] >= MIN_SCALE, f"{where} shrunk to {s['scale']:.2f} of its size by the page"
        plot_areas = [a["rect"] for a in s["axes"] if a["rect"]]
        for leg in s["legends"]:
            for r in plot_areas:
                assert not _overlap(leg, r, pad=0.5), f"{where}: a legend covers a plot"
        for a in s["axes"]:
            for side, key in (("x", 0), ("y", 1)):
                labels = sorted(a[side], key=lambda b: b[key])
                for b in labels:
                    assert b[3] - b[1] >= MIN_LABEL_PX, f"{where}: {side} tick label {b[3] - b[1]:.1f} px tall"
                for b1, b2 in zip(labels, labels[1:]):
                    assert not _overlap(b1, b2), f"{where}: {side} tick labels overlap"


@pytest.mark.parametrize("which", ["page3", "page19"])
def test_chromium_screenshot(which, request, tmp_path):
    page = request.getfixturevalue(which)
    _, info = _probe(page, tmp_path)
    height = int(info["height"]) + 20
    shot = tmp_path / f"report-{which}.png"
    proc = _chromium(f"--screenshot={shot}", f"--window-size=1200,{height}", "--hide-scrollbars",
                     f"file://{page}", tmp_path=tmp_path)
    assert shot.exists() and shot.stat().st_size > 100_000, proc.stderr[-2000:]
    from PIL import Image

    im = Image.open(shot).convert("L")
    assert im.size == (1200, height)
    # the page is drawn to its end: the last tenth still holds dark pixels (text), not a blank canvas
    tail = im.crop((0, int(0.9 * height), 1200, height))
    assert tail.getextrema()[0] < 100
    keep = os.environ.get("REPMATCH_SCREENSHOT")
    if keep:  # for a human to look at
        os.makedirs(keep, exist_ok=True)
        shutil.copy(shot, os.path.join(keep, shot.name))
