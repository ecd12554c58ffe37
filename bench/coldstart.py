"""A newcomer's first command, timed phase by phase on a fresh clone.

    python bench/coldstart.py [--keep] [--warm-cache]

Clones this repository (its committed HEAD) into a temporary folder and runs the README's first command there,
split at ``&&`` into its phases — make the venv, pip install, ``curate_core demo --quick``, ``streamlit run
app.py`` — with a fresh cache folder (``XDG_CACHE_HOME``: pip's cache and numba's compiled kernels start empty,
as on a new machine; ``--warm-cache`` keeps the user's). Then Chromium opens the app and the bench notes when
the Overview is on screen ("the demo is served") and when the background pipeline the app starts has finished
(the Overview says "Pipeline is up to date"). Prints one line per phase and

    cold start: demo served after X s (goal <= 180 s); pipeline finished in the background after Y s more

plus the machine's load, since every phase is sensitive to it.
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def readme_command() -> list[str]:
    """The README's first command, split into its ``&&`` phases."""
    block = re.search(r"```bash\n(.+?)\n```", (REPO / "README.md").read_text(encoding="utf-8"), re.S)
    return [p.strip() for p in block.group(1).strip().split("&&")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    ap.add_argument("--warm-cache", action="store_true", help="use the user's pip and numba caches")
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="coldstart-"))
    clone = root / "clone"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("NUMBA_CACHE_DIR", None)
    if not a.warm_cache:
        env["XDG_CACHE_HOME"] = str(root / "cache")
    print(f"load: {os.getloadavg()[0]:.2f} (1-min average), {os.cpu_count()} cpus", flush=True)
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    *setup, serve = readme_command()
    t0 = time.monotonic()
    for cmd in setup:
        t = time.monotonic()
        r = subprocess.run(cmd, shell=True, cwd=clone, env=env, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"`{cmd}` failed ({r.returncode}):\n{r.stderr[-2000:]}")
        print(f"phase `{cmd[:70]}`: {time.monotonic() - t:.1f} s", flush=True)
    port = free_port()
    t = time.monotonic()
    server = subprocess.Popen(f"{serve} --server.headless true --server.port {port} --browser.gatherUsageStats false",
                              shell=True, cwd=clone, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.3)
            if server.poll() is not None:
                raise SystemExit("streamlit exited")
        print(f"phase `{serve}` until it answers: {time.monotonic() - t:.1f} s", flush=True)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(str(root / "chromium"), executable_path=CHROMIUM, headless=True,
                                                       args=FLAGS, viewport={"width": 1400, "height": 1000})
            page = ctx.new_page()
            t = time.monotonic()
            page.goto(url, timeout=120_000)
            page.get_by_text("Pipeline", exact=True).first.wait_for(timeout=120_000)
            served = time.monotonic() - t0
            print(f"phase first page (Overview with the pipeline's progress): {time.monotonic() - t:.1f} s", flush=True)
            t = time.monotonic()
            page.get_by_text("Pipeline is up to date").first.wait_for(timeout=900_000)
            finished = time.monotonic() - t
            page.screenshot(path=str(root / "overview.png"), full_page=True)
            ctx.close()
        print(f"cold start: demo served after {served:.0f} s (goal <= 180 s); pipeline finished in the background "
              f"after {finished:.0f} s more; load {os.getloadavg()[0]:.2f}")
    finally:
        os.killpg(server.pid, 15)
        server.wait(30)
        if a.keep:
            print(f"kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
