"""The demo's report in a real browser (headless Chromium): a screenshot, every figure decoded, no
script error. The page is probed through a copy with a small script appended; the report itself has
no script and opens offline."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.browser

PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.type)), true);
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  const out = document.createElement('pre');
  out.id = 'probe';
  const top = el => el ? el.getBoundingClientRect().top + window.scrollY : -1;
  const summary = document.getElementById('summary');
  out.textContent = JSON.stringify({images: imgs.length, broken: broken, errors: window.__errors,
    firstHeading: (document.querySelector('h2') || {}).textContent || '',
    summaryTop: top(summary), summaryHeight: summary ? summary.getBoundingClientRect().height : 0,
    firstSectionTop: top(document.querySelector('section')), viewport: window.innerHeight});
  document.body.appendChild(out);
});
</script>"""

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=10000"]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium not installed (setup.sh installs Debian's 'chromium' when run as root)")


def test_demo_report_renders_in_chromium(quick_demo, tmp_path):
    import json

    chrome = _chromium()
    page = (quick_demo / "report.html").read_text()
    n_figures = page.count("<img ")
    assert n_figures > 0
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", PROBE + "</body>"))
    profile = tmp_path / "profile"
    dom = subprocess.run([chrome, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", probed.as_uri()],
                         capture_output=True, text=True, timeout=180)
    m = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert m, f"the probe did not run: {dom.stderr[-1500:]}"
    result = json.loads(m.group(1).replace("&quot;", '"'))
    assert result["images"] == n_figures
    assert result["broken"] == [], f"figures that did not load: {result['broken']}"
    assert result["errors"] == []
    # the reader sees what was found first: the summary is the first heading, above every
    # analysis section, and it starts on the first screen
    assert result["firstHeading"] == "Summary"
    assert 0 <= result["summaryTop"] < result["firstSectionTop"]
    assert result["summaryTop"] < result["viewport"] and result["summaryHeight"] > 0
    shot = tmp_path / "report.png"
    subprocess.run([chrome, *FLAGS, f"--user-data-dir={profile}", "--window-size=1280,2000",
                    f"--screenshot={shot}", (quick_demo / "report.html").as_uri()],
                   capture_output=True, timeout=180)
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
