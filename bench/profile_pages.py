"""Where each page's Python time goes: cProfile inside the Streamlit script run (AppTest), first run and rerun.

The page runs in AppTest's script thread, where a profiler started here would see nothing; so the script AppTest
runs is a small wrapper (written beside app.py for the run) that enables this process's profiler around ``exec``
of the real page file. Every ``st.cache_*`` is cleared before the first run (a cold server); the reruns are the
same session again (warm, no widget changed, or ``--move`` a range slider). Prints the wall time of each run and
the functions with the most cumulative time (cProfile's overhead inflates code made of many small calls, such as
Plotly's validators: confirm with a sampling profiler, e.g. ``py-spy record -f raw``, before trusting a ranking).

    python bench/profile_pages.py --workspace DIR [--page Map ...] [--top 25] [--reruns 1] [--move LABEL] [--out DIR]

``--out DIR`` keeps one .prof file per page and run (snakeviz / pstats read them).
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository, not bench/

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import pstats  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FILES = {"Overview": "app.py", "Map": "pages/1_Map.py", "Label issues": "pages/2_Label_issues.py",
         "Review queue": "pages/2_Review_queue.py", "Duplicates & outliers": "pages/3_Duplicates_and_outliers.py",
         "Select": "pages/4_Select.py", "Export": "pages/5_Export.py"}
HOOK = "_curate_bench_profile"  # a module in sys.modules holding the profiler the wrapper enables

WRAPPER = """
import sys
_p = sys.modules[{hook!r}].profiler
_p.enable()
try:
    exec(compile(open({path!r}, encoding="utf-8").read(), {path!r}, "exec"),
         {{"__name__": "__main__", "__file__": {path!r}}})
finally:
    _p.disable()
"""


def report(prof: cProfile.Profile, top: int) -> str:
    s = io.StringIO()
    st = pstats.Stats(prof, stream=s)
    st.sort_stats("cumulative").print_stats(top)
    return s.getvalue()


def profile_page(name: str, a: argparse.Namespace, hook: types.ModuleType) -> None:
    """First run (cold caches) and *a.reruns* reruns of one page, each under its own profiler."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from curate_ui import state
    from curate_core.store import output_tables, register_output_table
    if "clusters" not in output_tables():
        register_output_table("clusters", "cluster")

    path = str(REPO / FILES[name])
    st.cache_data.clear()
    state.close_all()
    st.cache_resource.clear()
    # the wrapper sits beside app.py, so the pages' links to other pages resolve as in the app
    wrapper = REPO / f".profile_wrapper_{os.getpid()}.py"
    wrapper.write_text(WRAPPER.format(hook=HOOK, path=path), encoding="utf-8")
    try:
        at = AppTest.from_file(str(wrapper), default_timeout=600)
        for i in range(1 + a.reruns):
            if i and a.move:
                slider = next((s for s in at.slider if s.label == a.move), None)
                if slider is None:
                    raise SystemExit(f"no slider {a.move!r} on {name}: {[s.label for s in at.slider]}")
                lo, hi = slider.value
                slider.set_value((min(lo + (hi - lo) / 100, hi), hi))
            hook.profiler = cProfile.Profile()
            t0 = time.perf_counter()
            at.run()
            took = time.perf_counter() - t0
            what = "first run" if i == 0 else f"rerun {i}"
            print(f"\n==== {name}: {what} {took * 1000:.0f} ms (AppTest)"
                  + (f"  EXCEPTION {at.exception[0].message}" if at.exception else ""))
            print(report(hook.profiler, a.top))
            if a.out:
                hook.profiler.dump_stats(str(a.out / f"{FILES[name].replace('/', '_')}-{i}.prof"))
    finally:
        wrapper.unlink()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--page", action="append", choices=list(FILES), help="(repeatable) default: every page")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--reruns", type=int, default=1)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--move", metavar="LABEL", help="before each rerun, move this range slider's lower end one "
                                                   "step up (a slider move instead of a plain rerun)")
    a = ap.parse_args()
    os.environ["CURATE_WORKSPACE"] = str(a.workspace.resolve())
    from curate_ui import state
    from curate_core.store import output_tables, register_output_table
    if "clusters" not in output_tables():
        register_output_table("clusters", "cluster")

    hook = types.ModuleType(HOOK)
    sys.modules[HOOK] = hook
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
    print(f"load: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    try:
        for name in a.page or list(FILES):
            profile_page(name, a, hook)
    finally:
        state.close_all()  # close the workspace cleanly even when a page failed


if __name__ == "__main__":
    main()
