"""report.html in a real browser: headless Chromium renders it, every figure has a size, nothing is broken.

Needs Debian's ``chromium`` package (``apt-get install -y chromium``); skipped only when it is missing.
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

# Appended to a copy of the page: measures what the browser actually laid out and writes it into the DOM.
_PROBE = """
<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.type)), true);
window.addEventListener('load', () => {
  const svgs = [...document.querySelectorAll('figure > svg')].map(s => {
    const r = s.getBoundingClientRect();
    return {w: r.width, h: r.height, shapes: s.querySelectorAll('path, use, rect, image').length};
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
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def page(tiny_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("browser")
    (run / "results.json").write_text((tiny_run[0] / "results.json").read_text())
    return build_report(run)


def test_chromium_renders_every_figure(page, tmp_path):
    text = open(page, encoding="utf-8").read()
    probe = os.path.join(os.path.dirname(page), "report-probe.html")
    with open(probe, "w", encoding="utf-8") as fh:
        fh.write(text.replace("</body>", _PROBE + "</body>"))
    proc = _chromium("--virtual-time-budget=5000", "--dump-dom", f"file://{probe}", tmp_path=tmp_path)
    m = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"no probe output; chromium rc={proc.returncode} stderr={proc.stderr[-2000:]}"
    import html

    info = json.loads(html.unescape(m.group(1)))
    assert info["errors"] == []
    assert info["h2"] == list(SECTIONS)
    assert len(info["svgs"]) == text.count("<figure") >= 8
    for i, s in enumerate(info["svgs"]):
        assert s["w"] > 200 and s["h"] > 150, f"figure {i + 1} rendered at {s['w']}x{s['h']}"
        assert s["shapes"] > 10, f"figure {i + 1} has no drawing"
    assert all(img["ok"] for img in info["imgs"]), info["imgs"]  # no broken images
    assert info["tables"] >= 8
    assert info["width"] <= 1400  # nothing overflows the page sideways


def test_chromium_screenshot(page, tmp_path):
    shot = tmp_path / "report.png"
    proc = _chromium(f"--screenshot={shot}", "--window-size=1200,2400", "--hide-scrollbars",
                     f"file://{page}", tmp_path=tmp_path)
    assert shot.exists() and shot.stat().st_size > 50_000, proc.stderr[-2000:]
    keep = os.environ.get("REPMATCH_SCREENSHOT")
    if keep:  # for a human to look at
        shutil.copy(shot, keep)
