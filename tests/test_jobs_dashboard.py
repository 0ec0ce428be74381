"""The dashboard in headless Chromium (Debian's ``chromium`` driven by Playwright): live
pipeline numbers and previews, and a job submitted from its form running to 100 %."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from service_helpers import FakeService, running_server

from streammat.testing import make_clip

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def _browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no {CHROMIUM} (apt-get install chromium; .ci/run installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    return sync_playwright


def _changes(read, attempts: int = 50, pause: float = 0.2):
    """Whether ``read()`` gives a different value within a bounded number of tries."""
    first = read()
    for _ in range(attempts):
        time.sleep(pause)
        if read() != first:
            return True
    return False


def test_dashboard_shows_pipelines_live_and_runs_a_submitted_job(tmp_path: Path, tiny_home: Path) -> None:
    sync_playwright = _browser()
    make_clip(tmp_path / "in.mp4", frames=10)
    with running_server(tmp_path, service=FakeService()) as srv, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(srv.url + "/")
            card = page.locator('[data-pipeline="cam1"]')
            card.wait_for(timeout=15000)
            fps = card.locator(".fps")
            assert _changes(fps.inner_text), "the pipeline's fps never changed"
            preview = card.locator("img.preview")
            page.wait_for_function("() => document.querySelector('img.preview').naturalWidth > 0", timeout=15000)
            assert page.evaluate("() => document.querySelector('img.preview').naturalWidth") == 320
            assert _changes(preview.screenshot), "the preview image never changed"

            page.fill("#job-input", "in.mp4")
            page.fill("#job-output", "out.mkv")
            page.fill("#job-options", '{"model": "u2netp", "batch_size": 2}')
            page.click("#job-submit")
            page.wait_for_selector('#message:has-text("job 1 queued")', timeout=15000)
            row = page.locator('tr[data-job="1"]')
            row.wait_for(timeout=15000)
            page.wait_for_selector('tr[data-job="1"][data-state="done"]', timeout=60000)
            assert row.locator(".bar").get_attribute("data-progress") == "100"
            assert "100 %" in row.inner_text()
            assert (tmp_path / "out.mkv").exists()

            # a form error is shown as the service's one line
            page.fill("#job-input", "../etc/passwd")
            page.click("#job-submit")
            page.wait_for_selector("#message.bad", timeout=15000)
            assert "'..' is not allowed" in page.inner_text("#message")

            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 0
            if os.environ.get("STREAMMAT_ARTIFACTS"):
                target = Path(os.environ["STREAMMAT_ARTIFACTS"])
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, target / "dashboard.png")
        finally:
            browser.close()
