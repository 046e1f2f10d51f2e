"""The dashboard in a real headless browser: Debian Chromium driven by Playwright (no Ray).

Pages load with no console errors, the charts draw (non-blank canvases), navigation and the
symbol picker work, the explorer steps with the keyboard, the trader view shows a paper
account's state, and nothing is shown without the key.
Screenshots go to ``out/test-artifacts/dashboard/`` (``$RAYTRADE_TEST_ARTIFACTS`` overrides).
Skips without /usr/bin/chromium (``make chromium``) or the ``playwright`` package (dev extra).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests

from app.ui.dashboard import create_app
from app.ui.dashboard_auth import ApiKeyVerifier
from tests.unit.ui import dashboard_fixture as fx
from tests.unit.ui.server import served

CHROMIUM = Path("/usr/bin/chromium")
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[dev]')")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed at /usr/bin/chromium: "
                                                              "run `make chromium`")
ARTIFACTS = Path(os.environ.get("RAYTRADE_TEST_ARTIFACTS", "out/test-artifacts")) / "dashboard"

#: non-blank pixels over every chart canvas on the page (a drawn chart has thousands)
INK = """() => [...document.querySelectorAll('.chart canvas')].reduce((sum, c) => {
  if (!c.width || !c.height) return sum;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
  return sum + n; }, 0)"""


def test_dashboard_in_chromium(tmp_path):
    src = fx.build(tmp_path, mlflow=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with served(create_app(src, ApiKeyVerifier.from_key(fx.KEY))) as base, playwright_api.sync_playwright() as p:
        assert requests.get(base + "/api/runs", timeout=10).status_code == 401
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"])
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))

        def wait_ready() -> None:
            page.wait_for_selector("body[data-ready='1']", timeout=15_000)

        # no key: refused, with the sign-in form
        response = page.goto(base + "/explorer")
        assert response is not None and response.status == 401 and page.locator("input[name=key]").count() == 1
        page.screenshot(path=str(ARTIFACTS / "login.png"))
        errors.clear()  # the 401 itself is logged by the browser as a failed resource
        page.fill("input[name=key]", fx.KEY)
        page.click("button[type=submit]")
        page.wait_for_url(base + "/")
        wait_ready()
        rows = page.locator("tr.run")
        assert rows.count() == 3  # a run with a run directory, a sweep and its trial (indented under it)
        texts = rows.all_inner_texts()
        assert texts[texts.index(next(t for t in texts if "sweep" in t)) + 1].strip().startswith("↳ other-run")
        page.screenshot(path=str(ARTIFACTS / "runs.png"), full_page=True)

        page.click(f"a.run-link:text('{fx.RUN}')")
        wait_ready()
        assert page.locator(".chart.curve").count() == 2 and page.evaluate(INK) > 2000
        assert page.locator("#backtests a.bt").count() == 1
        assert page.evaluate("[...document.querySelectorAll('.study img')].map(i => i.naturalWidth)") == [64]
        page.screenshot(path=str(ARTIFACTS / "run.png"), full_page=True)

        page.click("#nav-runs")
        wait_ready()
        for name in (fx.RUN, "other-run"):
            page.locator("tr.run", has_text=name).locator("input[type=checkbox]").check()
        page.click("#compare-btn")
        wait_ready()
        assert page.evaluate(INK) > 2000
        assert page.locator("#params tbody tr").count() == 1  # algorithm.lr differs
        assert page.locator("#metrics tbody tr").count() >= 2
        page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)

        page.click("#nav-backtest")
        wait_ready()
        first = page.evaluate("document.body.dataset.symbol")
        assert first in fx.SYMBOLS and page.evaluate(INK) > 5000
        assert page.evaluate("document.querySelectorAll('#price canvas').length") > 0
        page.locator("#price").click()
        for _ in range(3):
            page.keyboard.press("ArrowRight")
        assert page.evaluate("document.body.dataset.cursor") == "3"
        assert page.inner_text("#details").startswith("decision 4/120")
        page.keyboard.press("Shift+ArrowRight")  # the next trade: the first buy fills after decision 3 (0-based 2)
        assert int(page.evaluate("document.body.dataset.cursor")) > 3
        page.screenshot(path=str(ARTIFACTS / "explorer.png"), full_page=True)

        page.fill("#symbol-filter", "CC")  # the picker: filter by name ...
        page.wait_for_selector("body[data-symbol='CCC'][data-ready='1']", timeout=15_000)
        assert page.locator("#symbol option").count() == 1 and "CCC" in page.inner_text("#title")
        assert "symbol=CCC" in page.url
        page.fill("#symbol-filter", "")
        page.fill("#min", "1000")  # ... and by a metric
        assert page.inner_text("#count") == "0 of 3 symbols"

        page.click("#nav-trader")  # the live trader's state (a paper account whose kill switch tripped)
        wait_ready()
        assert page.inner_text("#kill").startswith("KILL SWITCH tripped")
        assert page.locator("#orders tbody tr").count() == 2 and page.locator("#positions tbody tr").count() == 2
        assert page.evaluate(INK) > 1000
        page.screenshot(path=str(ARTIFACTS / "trader.png"), full_page=True)
        browser.close()
    assert not errors, errors
