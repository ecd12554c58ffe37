"""Real-browser helpers: start `streamlit run app.py` on a free port and drive Debian's chromium with Playwright.

Chromium comes from `apt-get install chromium` (the README's test command does it); Playwright never downloads a
browser here. A missing chromium fails the e2e tests loudly instead of skipping them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from .conftest import REPO

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO / "tests" / "artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_app(workspace: Path, log: Path | None = None, script: str | Path = "app.py") -> Iterator[str]:
    """Serve app.py (or another *script*, with the repository's Streamlit config) on the given workspace; yields
    the base URL once /_stcore/health answers."""
    import urllib.request

    port = free_port()
    out = open(log, "w") if log else subprocess.DEVNULL
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
                               "--server.port", str(port), "--browser.gatherUsageStats", "false"], cwd=REPO,
                              env={**os.environ, "CURATE_WORKSPACE": str(workspace)}, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start (exit code {server.poll()})")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        if log:
            out.close()


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 1100):
    """A Playwright page in Debian's chromium with a fresh profile."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install it with `apt-get install -y chromium` (the README's test "
                    "command does); never `playwright install`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(tempfile.mkdtemp(prefix="chromium-"), executable_path=CHROMIUM,
                                                   headless=True, args=FLAGS, accept_downloads=True,
                                                   viewport={"width": width, "height": height})
        try:
            yield ctx.new_page()
        finally:
            ctx.close()


def settle(page, quiet_checks: int = 3, timeout: float = 120) -> None:
    """Wait until Streamlit has finished running the script (no "running" widget for a few checks)."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < quiet_checks and time.monotonic() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count()
        quiet = quiet + 1 if running == 0 else 0
        page.wait_for_timeout(400)


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def metric(page, label: str) -> str:
    m = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return m.locator('[data-testid="stMetricValue"]').inner_text().strip()


@contextlib.contextmanager
def on_failure_shot(page, name: str = "failure") -> Iterator[None]:
    """Keep a screenshot of the page when a step fails (tests/artifacts/failure.png)."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            shot(page, name)
        raise
