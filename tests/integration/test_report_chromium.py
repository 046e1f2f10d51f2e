"""The HTML backtest report as a browser shows it: headless Debian Chromium, no network, no Ray.

Two runs of Chromium on a rendered report: ``--dump-dom`` after a probe script (added to a copy
of the report; the report itself has no scripts) has written what the browser saw into
``<body data-*>`` (each image decoded with a natural size and laid out with a width, the tables
and their rows, resources fetched), and ``--screenshot`` to check the page is drawn (not blank).
``make chromium`` (a prerequisite of ``make test``) installs Chromium; without it this skips.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from app.evaluation.report import render_report
from tests.unit.evaluation.test_report import ACTION_NAMES, synthetic_backtest

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian chromium not installed at /usr/bin/chromium: run `make chromium` "
           "(apt-get install chromium) to render the report in a browser")

PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images].map(i => ({id: i.id, complete: i.complete,
    w: i.naturalWidth, h: i.naturalHeight, shown: Math.round(i.getBoundingClientRect().width)}));
  const rows = sel => document.querySelectorAll(sel).length;
  const b = document.body.dataset;
  b.images = JSON.stringify(imgs);
  b.sections = JSON.stringify([...document.querySelectorAll("section")].map(s => s.id));
  b.headlineRows = rows("#headline-table tbody tr");
  b.metricsRows = rows("#metrics-table tbody tr");
  b.metricsCols = rows("#metrics-table thead th");
  b.resources = JSON.stringify(performance.getEntriesByType("resource").map(r => r.name));
  b.ready = "1";
});
</script>"""


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp)
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
           "--host-resolver-rules=MAP * ~NOTFOUND",  # a stray URL could not load anything
           f"--user-data-dir={profile}", "--window-size=1200,2400", *args]
    env = os.environ | {"HOME": str(tmp), "XDG_CONFIG_HOME": str(tmp), "XDG_CACHE_HOME": str(tmp)}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, check=False)


class _Body(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.data = {k[5:]: v or "" for k, v in attrs if k.startswith("data-")}


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    data = synthetic_backtest(n_symbols=5, n_bars=250)
    return render_report(tmp / "report.html", title="Chromium smoke", records=data["records"],
                         summary=data["summary"], close_usd=data["close_usd"],
                         index_close=data["index_close"], meta={"run": "test", "split": "test"},
                         greedy=True, action_names=ACTION_NAMES)


def test_browser_displays_every_plot_and_the_tables(report, tmp_path):
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
                      encoding="utf-8")
    run = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probed.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    parser = _Body()
    parser.feed(run.stdout)
    body = parser.data
    assert body.get("ready") == "1", f"probe did not run; stderr: {run.stderr[-2000:]}"
    images = json.loads(body["images"])
    ids = {i["id"] for i in images}
    assert {"fig-equity", "fig-drawdowns", "fig-returns", "fig-actions"} <= ids
    assert sum(i.startswith("fig-price-") for i in ids) == 3
    for img in images:  # decoded by the browser and laid out on the page
        assert img["complete"] and img["w"] > 0 and img["h"] > 0 and img["shown"] > 300, img
    assert json.loads(body["sections"]) == ["headline", "caveats", "equity", "drawdowns", "prices",
                                            "returns", "actions", "metrics"]
    assert int(body["headline-rows"]) == 6  # agent / buy & hold / index x PORTFOLIO / ALL
    assert int(body["metrics-rows"]) == 6 + 3 * 5 and int(body["metrics-cols"]) > 20
    assert json.loads(body["resources"]) == [], "the report fetched something"


def test_screenshot_is_not_blank(report, tmp_path):
    from PIL import Image  # Pillow comes with matplotlib

    shot = tmp_path / "shot.png"
    run = _chromium(tmp_path, f"--screenshot={shot}", report.as_uri())
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int32)
    assert pixels.shape[:2] == (2400, 1200)
    colours = len(np.unique((pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]))
    assert colours > 200, f"only {colours} colours: a blank page?"
    ink = np.mean(np.abs(pixels - pixels[0, 0]).sum(axis=2) > 60)  # differs from the background
    assert ink > 0.03, f"only {ink:.1%} of the page is drawn"
