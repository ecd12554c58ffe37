"""Benchmark: how long a person waits for each page of the app, in a real browser, and for the Select page's
live count.

On the demo workspace (built with ``python -m curate_core demo --workspace DIR`` when missing; the bench works on
a copy of its database, so the draft recipe it writes never touches the original), ``streamlit run app.py``
serves the app as tests/browser.py does and Debian's chromium (Playwright, never ``playwright install``) opens:

- a tour: the Overview by its URL in a new tab (opening the app), then each other page (Map, Label issues,
  Review queue, Duplicates & outliers, Select, Export) by its sidebar link, as a person clicks through, and back
  to the Overview by its sidebar link (its render within the open app, like every other page's). The first
  tour is *cold* (every page's first visit after the server started: nothing cached, its modules not imported),
  then ``--tours`` *warm* ones (medians printed); the Overview's figure is opening the app in a new tab (JS
  bundle and all). Each figure comes with the server's part: from the action to the page's last
  ``script_finished`` (Python's clock), the rest being the browser drawing;
- each page's URL opened in a new tab on the warm server (a bookmark or a reload: a new session, and the
  browser parses Streamlit's and Plotly's JavaScript again);
- the Select page's filter slider: ArrowRight / ArrowLeft on a ``label_quality`` range slider, and the time from
  the key press to the "Selected rows" metric showing another number (the slider's own debounce included).

"Rendered and settled" means all of: no script run is going, the server went idle after the browser's last rerun
request, and a run finished since the action (read from the websocket's protobuf frames: ``rerun_script``,
``session_status_changed``, ``script_finished``),
the page's main element is in the DOM (its chart / table / metric: see
PAGES), no element is stale (``data-stale``), Streamlit's status widget is gone, and the DOM has not changed for
QUIET_MS. The time reported is the last DOM change before that quiet spell, from the navigation start, the click
or the key press, all on the page's own clock (``performance.now()``), so polling adds nothing to it.

Then, at 1M rows with synthetic scores (the workspace bench/select.py builds: 10 score columns, 50 clusters, 50
labels; its 5-filter + mixture recipe as the draft), the Select page's full script run after a slider move, with
Streamlit's AppTest (the page's Python: core counts + drawing; no browser), median of N.

    python bench/pages.py [--workspace DIR] [--tours 3] [--tabs 1] [--slider 15] [--rows-1m 1000000]
                          [--select-workspace DIR] [--skip-1m] [--skip-browser] [--shots DIR]

Prints ``page NAME: first render X s (cold), Y s (warm) [server x s, y s]; in a new tab Z s``, a ``new tab:``
line comparing the Overview's new-tab load with a bare Streamlit page's (BARE_SCRIPT, served beside the app),
``select slider -> count: X ms (median of N)`` and ``select rerun at 1M rows: X ms (median of N)`` lines, with the
machine's load before and after (this machine is shared: compare runs at similar load). Goals (issue 18): first
render <= 2 s on a warm server, slider -> count <= 500 ms, 1M Select rerun <= 200 ms.

Headless chromium here draws WebGL (the Map, the data map) in software (SwiftShader, --disable-gpu), so the
browser's share of a wait is larger than on a machine with a GPU.
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository, not bench/

import argparse  # noqa: E402
import contextlib  # noqa: E402
import importlib.util  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Iterator  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
QUIET_MS = 400  # no DOM change for this long (after the last script run finished): the page is settled
TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Page:
    name: str
    path: str  # URL path under the app ("" for the Overview)
    main: str  # a JS expression, true once the page's main element is drawn


def _plots(n: int) -> str:
    """At least *n* Plotly charts drawn (their drag layer exists once Plotly has laid the figure out)."""
    return f"document.querySelectorAll('.js-plotly-plot .nsewdrag').length >= {n}"


def _grids(n: int) -> str:
    """At least *n* dataframes with their canvas (glide-data-grid draws into it)."""
    return f"document.querySelectorAll('[data-testid=\"stDataFrame\"] canvas').length >= {n}"


def _metric(label: str) -> str:
    return ("[...document.querySelectorAll('[data-testid=\"stMetric\"]')]"
            f".some(m => m.innerText.includes({label!r}))")


def _text(t: str) -> str:
    return f"document.body.innerText.includes({t!r})"


PAGES = [
    Page("Overview", "", f"{_metric('Rows')} && {_plots(1)} && {_grids(2)}"),  # labels chart, stages + sources
    Page("Map", "Map", f"{_plots(1)} && {_grids(1)}"),  # the map and the cluster table
    Page("Label issues", "Label_issues", f"{_text('Suspects')} && {_plots(4)} && {_grids(1)}"),
    Page("Review queue", "Review_queue", "document.querySelector('[data-testid=\"stProgress\"]') && "
                                         f"{_text('Nearest neighbours')} && {_grids(1)}"),
    Page("Duplicates & outliers", "Duplicates_and_outliers", f"{_text('Exact duplicates')} && {_plots(1)}"),
    Page("Select", "Select", f"{_metric('Selected rows')} && {_text('Filter on')}"),
    Page("Export", "Export", f"{_metric('Rows to export')} && {_text('Prepare the download')}"),
]

OVERVIEW_AGAIN = "Overview (sidebar, last in the tour)"

#: the baseline for opening a page in a new tab: a bare Streamlit script drawing the element kinds the Overview
#: draws (a metric, a Plotly chart, two tables) from a few rows, served with the same config in the same run —
#: what any Streamlit page costs this browser (its JavaScript, the websocket, Plotly's bundle), not this app
BARE_SCRIPT = """
import pandas as pd
import plotly.express as px
import streamlit as st

st.set_page_config(page_title="bare", layout="wide")
st.title("A bare Streamlit page")
st.metric("Rows", 10003)
df = pd.DataFrame({"label": [f"label {i}" for i in range(77)], "n": range(77)})
st.plotly_chart(px.bar(df, x="label", y="n"))
st.dataframe(df)
st.dataframe(df)
"""
BARE = Page("bare Streamlit page", "", f"{_metric('Rows')} && {_plots(1)} && {_grids(2)}")

#: recorded in the page: the last DOM change (MutationObserver), key presses, and a watched element's text
INIT_JS = """
(() => {
  window.__last = performance.now();
  window.__keyAt = null; window.__watch = null; window.__watchWas = null; window.__changedAt = null;
  const watch = () => {
    if (window.__watch === null || window.__changedAt !== null) return;
    const t = window.__watch();
    if (t !== null && t !== window.__watchWas) window.__changedAt = performance.now();
  };
  const start = () => new MutationObserver(() => { window.__last = performance.now(); watch(); })
      .observe(document.documentElement, {subtree: true, childList: true, attributes: true, characterData: true});
  if (document.documentElement) start(); else document.addEventListener('DOMContentLoaded', start);
  window.addEventListener('keydown', () => { window.__keyAt = performance.now(); }, true);
  window.addEventListener('click', () => { window.__clickAt = performance.now(); }, true);
})();
"""

STATE_JS = """(main) => ({
  now: performance.now(), last: window.__last, main: !!eval(main),
  stale: document.querySelectorAll('[data-stale="true"]').length,
  running: document.querySelectorAll('[data-testid="stStatusWidget"]').length,
  exception: document.querySelectorAll('[data-testid="stException"]').length,
  changedAt: window.__changedAt, keyAt: window.__keyAt, clickAt: window.__clickAt,
})"""


#: loaded by the server through PYTHONPATH (a sitecustomize of its own): logs each script run's wall time, so the
#: bench can say how much of a wait was the page's Python and how much the browser drawing it
SITECUSTOMIZE = """
import os, time
_log = os.environ.get("CURATE_BENCH_RUNLOG")
if _log:
    from streamlit.runtime.scriptrunner import script_runner as _sr
    _init = _sr.ScriptRunner.__init__

    def _timed_init(self, *args, **kwargs):
        _init(self, *args, **kwargs)
        started = []

        def on_event(sender, event=None, **_):
            name = getattr(event, "name", str(event))
            if name == "SCRIPT_STARTED":
                started[:] = [time.perf_counter()]
            elif name.startswith("SCRIPT_STOPPED") and started:
                with open(_log, "a") as f:
                    f.write(f"{time.time():.3f} {time.perf_counter() - started.pop():.4f} {name}\\n")

        self.on_event.connect(on_event, weak=False)

    _sr.ScriptRunner.__init__ = _timed_init
"""


class RunLog:
    """The server's script runs (wall seconds each), from the log SITECUSTOMIZE writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen = 0

    def mark(self) -> None:
        """Forget the runs so far: :meth:`since` counts from here."""
        self.seen = len(self._lines())

    def since(self) -> float:
        """Wall seconds of the script runs since :meth:`mark` (their sum)."""
        return sum(float(line.split()[1]) for line in self._lines()[self.seen:])

    def _lines(self) -> list[str]:
        return self.path.read_text().splitlines() if self.path.exists() else []


def load() -> str:
    a, b, c = os.getloadavg()
    return f"{a:.2f} {b:.2f} {c:.2f} (1/5/15 min), cpus {os.cpu_count()}"


# ------------------------------------------------------------------------------------------- browser
class Runs:
    """The session's script runs, from the websocket's protobuf frames: whether a run is going (the server's
    ``session_status_changed``), whether the server has gone idle since the browser last asked for a rerun
    (rapid requests are merged into fewer runs, so requests and runs cannot be matched one to one), and how many
    runs finished (``script_finished``)."""

    def __init__(self) -> None:
        self.running = False
        self.finished = 0
        self._events = 0  # frames seen, in the order Playwright reports them
        self._asked = 0  # the frame number of the last rerun_script sent
        self._stopped = 0  # the frame number of the last "script is not running"

    @property
    def idle(self) -> bool:
        return not self.running and self._stopped > self._asked

    def attach(self, page: Any) -> None:
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        def sent(payload: Any) -> None:
            if isinstance(payload, (bytes, bytearray)):
                msg = BackMsg()
                msg.ParseFromString(bytes(payload))
                if msg.WhichOneof("type") == "rerun_script":
                    self._events += 1
                    self._asked = self._events

        def received(payload: Any) -> None:
            if isinstance(payload, (bytes, bytearray)):
                msg = ForwardMsg()
                msg.ParseFromString(bytes(payload))
                kind = msg.WhichOneof("type")
                if kind == "script_finished":
                    self.finished += 1
                elif kind == "session_status_changed":
                    self._events += 1
                    self.running = msg.session_status_changed.script_is_running
                    if not self.running:
                        self._stopped = self._events

        def on_ws(ws: Any) -> None:
            if "_stcore/stream" in ws.url:
                ws.on("framesent", sent)
                ws.on("framereceived", received)

        page.on("websocket", on_ws)


def wait_settled(page: Any, runs: Runs, main: str, since: int, timeout: float = TIMEOUT_S) -> dict:
    """Poll until the page is settled (see the module docstring); returns the page's last state.

    *since*: the number of finished runs before the action, so a run that finished earlier does not count."""
    deadline = time.monotonic() + timeout
    while True:
        s = page.evaluate(STATE_JS, main)
        if s["exception"]:
            raise RuntimeError("the page shows a Python exception")
        done = runs.idle and runs.finished > since
        drawn = s["main"] and s["last"] is not None and not s["stale"] and not s["running"]
        if done and drawn and s["now"] - s["last"] >= QUIET_MS:
            return s
        if time.monotonic() > deadline:
            raise TimeoutError(f"not settled after {timeout:.0f} s: {s}, running {runs.running}, "
                               f"idle {runs.idle}, finished {runs.finished}")
        page.wait_for_timeout(50)


def visit(ctx: Any, url: str, p: Page, shots: Path | None, tag: str) -> float:
    """Open *p* by its URL in a new tab (a fresh session, as a bookmark or a reload); seconds from the
    navigation start to settled."""
    page = ctx.new_page()
    runs = Runs()
    runs.attach(page)
    try:
        page.goto(f"{url}/{p.path}", wait_until="commit")
        s = wait_settled(page, runs, p.main, since=0)
        if shots is not None:
            page.screenshot(path=str(shots / f"{tag}-{p.path or 'Overview'}.png"), full_page=True)
        return s["last"] / 1000.0  # performance.now() counts from this document's navigation start
    finally:
        page.close()


def tour(ctx: Any, url: str, shots: Path | None, tag: str, log: RunLog) -> dict[str, tuple[float, float]]:
    """Open the Overview in a new tab, then click each other page's sidebar link in turn (what a person does).

    Per page: (seconds from the navigation start (the Overview) or the click (every other page) to settled,
    seconds the server spent running the page's script for it); the rest of the wait is the browser: loading,
    drawing the charts and tables."""
    page = ctx.new_page()
    runs = Runs()
    runs.attach(page)
    out = {}
    try:
        for p in PAGES:
            since = runs.finished
            log.mark()
            if not p.path:
                page.goto(url, wait_until="commit")
            else:
                page.get_by_test_id("stSidebarUserContent").get_by_role("link", name=p.name, exact=True).click()
            s = wait_settled(page, runs, p.main, since=since)
            out[p.name] = ((s["last"] - (s["clickAt"] if p.path else 0.0)) / 1000.0, log.since())
            if shots is not None:
                page.screenshot(path=str(shots / f"{tag}-{p.path or 'Overview'}.png"), full_page=True)
        # back to the Overview by its sidebar link: its render within the open app, as every other page's figure
        # is, where the figure above is opening the app itself in a new tab
        since = runs.finished
        log.mark()
        page.get_by_test_id("stSidebarUserContent").get_by_role("link", name="Overview", exact=True).click()
        s = wait_settled(page, runs, PAGES[0].main, since=since)
        out[OVERVIEW_AGAIN] = ((s["last"] - s["clickAt"]) / 1000.0, log.since())
        return out
    finally:
        page.close()


def slider_round_trips(ctx: Any, url: str, n: int, shots: Path | None,
                       log: RunLog) -> tuple[list[float], list[float]]:
    """Milliseconds from a key press on the label_quality slider to the "Selected rows" metric changing, and
    the milliseconds the server ran the page's script for each step."""
    select = next(p for p in PAGES if p.name == "Select")
    page = ctx.new_page()
    runs = Runs()
    runs.attach(page)
    try:
        page.goto(f"{url}/Select", wait_until="commit")
        wait_settled(page, runs, select.main, since=0)
        ms = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Filter on").first
        ms.click()
        page.keyboard.type("label_quality")
        page.keyboard.press("Enter")
        page.keyboard.press("Escape")
        thumb = page.locator('[data-testid="stSlider"]').filter(has_text="label_quality") \
            .locator('input[type="range"]').first  # the lower end's thumb (react-aria: a hidden range input)
        thumb.wait_for(state="attached", timeout=60_000)
        wait_settled(page, runs, select.main, since=runs.finished - 1)
        thumb.focus()
        for _ in range(5):  # start a few steps in, so ArrowLeft has somewhere to go
            page.keyboard.press("ArrowRight")
        page.wait_for_timeout(1500)
        wait_settled(page, runs, select.main, since=runs.finished - 1)
        value = ("() => { const m = [...document.querySelectorAll('[data-testid=\"stMetric\"]')]"
                 ".find(m => m.innerText.includes('Selected rows'));"
                 " return m ? m.querySelector('[data-testid=\"stMetricValue\"]').innerText : null; }")
        out, server = [], []
        for i in range(n):
            page.evaluate(f"() => {{ window.__watch = {value}; window.__watchWas = window.__watch();"
                          " window.__changedAt = null; }")
            before = runs.finished
            log.mark()
            thumb.focus()
            page.keyboard.press("ArrowRight" if i % 2 == 0 else "ArrowLeft")
            deadline = time.monotonic() + TIMEOUT_S
            while True:
                s = page.evaluate(STATE_JS, select.main)
                if s["changedAt"] is not None:
                    out.append(s["changedAt"] - s["keyAt"])
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("the count did not change after a slider step")
                page.wait_for_timeout(20)
            wait_settled(page, runs, select.main, since=before)
            server.append(1000 * log.since())
        if shots is not None:
            page.screenshot(path=str(shots / "slider-Select.png"), full_page=True)
        return out, server
    finally:
        page.close()


def browser_bench(ws: Path, tours: int, tabs_per_page: int, slider: int, shots: Path | None) -> None:
    from tests.browser import CHROMIUM, streamlit_app

    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing: apt-get install -y chromium (never `playwright install`)")
    tmp = Path(tempfile.mkdtemp(prefix="curate-pages-"))
    (tmp / "site").mkdir()
    (tmp / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    runlog = RunLog(tmp / "runs.log")
    server_env = {"PYTHONPATH": os.pathsep.join(p for p in (str(tmp / "site"), os.environ.get("PYTHONPATH")) if p),
                  "CURATE_BENCH_RUNLOG": str(runlog.path)}
    try:
        with _environ(server_env):  # only the server process loads the run-log hook
            server = streamlit_app(ws, log=tmp / "server.log")
            url = server.__enter__()
        (tmp / "bare.py").write_text(BARE_SCRIPT)
        bare = streamlit_app(ws, log=tmp / "bare.log", script=tmp / "bare.py")
        try:
            bare_url = bare.__enter__()
            _browser_bench(url, runlog, tours, tabs_per_page, slider, shots, bare_url)
        finally:
            bare.__exit__(None, None, None)
            server.__exit__(None, None, None)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block (a child process started in it inherits them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _browser_bench(url: str, runlog: RunLog, tours: int, tabs_per_page: int, slider: int,
                   shots: Path | None, bare_url: str) -> None:
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, FLAGS

    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(tempfile.mkdtemp(prefix="chromium-"), executable_path=CHROMIUM,
                                                    headless=True, args=FLAGS,
                                                    viewport={"width": 1400, "height": 1100})
        ctx.add_init_script(INIT_JS)
        try:
            cold = tour(ctx, url, shots, "cold", runlog)
            warm = [tour(ctx, url, shots if i == 0 else None, "warm", runlog) for i in range(tours)]
            tabs = {p.name: [visit(ctx, url, p, shots, f"tab{i + 1}") for i in range(tabs_per_page)]
                    for p in PAGES} if tabs_per_page else {}
            print("(cold: first visit after the server started; warm: median of later tours; [server: seconds the "
                  "page's script ran for it, cold, warm]; Overview = opening the app in a new tab)", flush=True)
            for p in [*PAGES, Page(OVERVIEW_AGAIN, "", "")]:
                w = statistics.median(t[p.name][0] for t in warm)
                ws_ = statistics.median(t[p.name][1] for t in warm)
                tab = (f"; in a new tab {statistics.median(tabs[p.name]):.2f} s (median of {len(tabs[p.name])})"
                       if tabs and p.name in tabs else "")
                print(f"page {p.name}: first render {cold[p.name][0]:.2f} s (cold), {w:.2f} s (warm) "
                      f"[server {cold[p.name][1]:.2f} s, {ws_:.2f} s]{tab}", flush=True)
            if tabs:  # the same new-tab load of a bare page, alternated with the Overview's so noise hits both
                pairs = [(visit(ctx, url, PAGES[0], None, "pair"), visit(ctx, bare_url, BARE, None, "bare"))
                         for _ in range(max(3, tabs_per_page))]
                ours, base = statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs)
                print(f"new tab: ours {ours:.2f} s (the Overview), baseline {base:.2f} s (a bare Streamlit page: "
                      f"a metric, a Plotly chart, two tables), ratio {ours / base:.2f} (median of {len(pairs)} "
                      "alternated loads)", flush=True)
            if slider:
                rt, server = slider_round_trips(ctx, url, slider, shots, runlog)
                print(f"select slider -> count: {statistics.median(rt):.0f} ms (median of {len(rt)}; "
                      f"min {min(rt):.0f}, max {max(rt):.0f}) [server {statistics.median(server):.0f} ms]",
                      flush=True)
        finally:
            ctx.close()


# ------------------------------------------------------------------------------------------- 1M Select
def _bench_select() -> Any:
    """bench/select.py as a module (its file name would shadow the stdlib's `select` on sys.path)."""
    spec = importlib.util.spec_from_file_location("bench_select", REPO / "bench" / "select.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def select_rerun_1m(path: Path | None, rows: int, repeats: int) -> None:
    """The Select page's whole script run after a slider move at *rows* rows (AppTest: the page's Python)."""
    from streamlit.testing.v1 import AppTest

    from curate_core import Workspace
    from curate_core.recipes.model import DRAFT
    from curate_core.store import output_tables, register_output_table

    bs = _bench_select()
    keep = path or Path(tempfile.mkdtemp(prefix="curate-pages-1m-")) / "ws"
    if not (keep / "curate.duckdb").exists():
        bs.build(keep, rows).close()
    # the page writes the draft recipe: it runs on a copy, so a kept workspace stays as built
    tmp = Path(tempfile.mkdtemp(prefix="curate-pages-1m-run-")) / "ws"
    tmp.mkdir()
    shutil.copy2(keep / "curate.duckdb", tmp / "curate.duckdb")
    ws = Workspace(tmp)
    if "clusters" not in output_tables():
        register_output_table("clusters", "cluster")
    ws.store.save_recipe(DRAFT, bs.recipe(0))
    n = ws.store.count()
    ws.close()
    os.environ["CURATE_WORKSPACE"] = str(tmp)
    try:
        at = AppTest.from_file(str(REPO / "pages" / "4_Select.py"), default_timeout=300)
        t0 = time.perf_counter()
        at.run()
        first = time.perf_counter() - t0
        if at.exception or at.error:
            raise RuntimeError((at.exception or at.error)[0].value)
        slider = next(s for s in at.slider if s.label == "Keep label_quality in")
        lo, hi = slider.value
        t0 = time.perf_counter()
        at.run()
        again = time.perf_counter() - t0
        times = []
        for i in range(repeats):
            step = 0.01 * (1 + i % 5)
            slider = next(s for s in at.slider if s.label == "Keep label_quality in")
            slider.set_value((min(lo + step, hi), hi))
            t0 = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t0)
            if at.exception:
                raise RuntimeError(at.exception[0].message)
        metric = next(m for m in at.metric if m.label == "Selected rows").value
        print(f"select page at {n:,} rows: first run {first * 1000:.0f} ms, rerun without a change "
              f"{again * 1000:.0f} ms", flush=True)
        print(f"select rerun at {n / 1e6:g}M rows: {statistics.median(times) * 1000:.0f} ms (median of {len(times)}; "
              f"min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}; AppTest, last count {metric})", flush=True)
    finally:
        from curate_ui import state

        state.close_all()
        shutil.rmtree(tmp.parent, ignore_errors=True)
        if path is None:
            shutil.rmtree(keep.parent, ignore_errors=True)


# ------------------------------------------------------------------------------------------- main
def demo_copy(src: Path) -> Path:
    """The demo workspace at *src* (built when missing), copied to a temporary folder for this run."""
    from curate_core import Workspace

    if not (src / "curate.duckdb").exists():
        print(f"building the demo workspace at {src} …", flush=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "curate_core", "demo", "--workspace", str(src)], check=True, cwd=REPO)
        print(f"built the demo in {time.perf_counter() - t0:.0f} s", flush=True)
    with Workspace(src, create=False) as w:
        todo = [s for s, v in w.status().items() if v != "done"]
    if todo:
        sys.exit(f"the demo workspace at {src} has stages to run: {', '.join(todo)} "
                 f"(python -m curate_core run --workspace {src})")
    dst = Path(tempfile.mkdtemp(prefix="curate-pages-demo-")) / "demo"
    dst.mkdir()
    shutil.copy2(src / "curate.duckdb", dst / "curate.duckdb")
    return dst


def timed(what: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    out = fn()
    print(f"({what}: {time.perf_counter() - t0:.0f} s)", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workspace", type=Path, default=REPO / "workspaces" / "demo",
                    help="the demo workspace (built here when missing; the bench works on a copy)")
    ap.add_argument("--tours", type=int, default=3, help="warm tours (the medians are printed)")
    ap.add_argument("--tabs", type=int, default=1, help="full loads of each page in a new tab (warm server)")
    ap.add_argument("--slider", type=int, default=15, help="slider steps timed on the Select page")
    ap.add_argument("--rows-1m", type=int, default=1_000_000, help="rows of the synthetic Select workspace")
    ap.add_argument("--select-workspace", type=Path, help="reuse/keep the synthetic 1M workspace here")
    ap.add_argument("--repeats", type=int, default=15, help="slider moves timed at 1M rows")
    ap.add_argument("--skip-1m", action="store_true")
    ap.add_argument("--skip-browser", action="store_true")
    ap.add_argument("--shots", type=Path, help="keep a screenshot of every visit in this folder")
    a = ap.parse_args()
    print(f"load: {load()}", flush=True)
    if a.shots:
        a.shots.mkdir(parents=True, exist_ok=True)
    if not a.skip_browser:
        ws = demo_copy(a.workspace.resolve())
        try:
            timed("browser", lambda: browser_bench(ws, a.tours, a.tabs, a.slider, a.shots))
        finally:
            shutil.rmtree(ws.parent, ignore_errors=True)
        print(f"load: {load()}", flush=True)
    if not a.skip_1m:
        timed("1M select", lambda: select_rerun_1m(a.select_workspace, a.rows_1m, a.repeats))
        print(f"load: {load()}", flush=True)


if __name__ == "__main__":
    main()
