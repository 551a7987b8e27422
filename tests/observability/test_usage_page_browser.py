"""The usage page in a real browser: Debian's Chromium, driven by Playwright, logs in to the
admin of a running server and the screenshot must show the two models' bars in their colours."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from observability.usage import PALETTE
from tests.fake_provider import FakeProvider
from tests.observability.png import colour_counts
from tests.observability.seed_usage import ADMIN, PASSWORD
from tests.servers import PROJECT, Server
from tests.test_end_to_end import server_env

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium; .ci/run does)"),
    pytest.mark.timeout(180),
]
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (./install.sh)")


@pytest.fixture(scope="module")
def server(fake_server: FakeProvider, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("usage-page")
    env = server_env(fake_server, tmp, "usage_page")
    subprocess.run([sys.executable, "-m", "tests.observability.seed_usage"], cwd=PROJECT, env=env, check=True)
    running = Server("runserver", env, tmp / "server.log", start_timeout=180)  # runserver serves the admin's CSS
    yield running
    running.stop()


def test_the_charts_render_in_chromium(server, tmp_path: Path):
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1000})
            page.goto(f"{server.url}/admin/login/?next=/admin/observability/usagechart/")
            page.fill("#id_username", ADMIN)
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_selector("svg.usage-chart rect.bar")
            shot = tmp_path / "usage.png"
            page.screenshot(path=str(shot), full_page=True)
            chart = page.locator('svg.usage-chart[data-value="cost"]')
            box = chart.bounding_box()
            assert box is not None and box["width"] > 600 and box["height"] > 150
            bars = page.locator('svg.usage-chart[data-value="cost"] rect.bar')
            assert bars.count() == 4
            cost_png = chart.screenshot()
            rows = page.locator("#usage-conversations tbody tr").all_inner_texts()
        finally:
            browser.close()
    counts = colour_counts(cost_png)
    gpt, claude = counts[PALETTE[0].lower()], counts[PALETTE[1].lower()]
    # Drawn, and in proportion: gpt-4o cost $1.10 over two days, Claude $0.35.
    assert gpt > 2000 and claude > 500, counts.most_common(5)
    assert 2 < gpt / claude < 4.5
    assert rows[0].startswith("conv-big") and "$0.9000" in rows[0]
    print(f"screenshot: {shot}")
