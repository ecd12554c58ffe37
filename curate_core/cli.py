"""Command line: ``python -m curate_core <command> …``.

Commands register themselves with :func:`command`, all in this module: the CLI imports the core, never the
other way round (a stage's `run` flags are declared as data on the stage, see ``curate_core.stage.Option``).
Errors print ``error: <message>`` and ``hint: <hint>`` on stderr and exit 2; unexpected
errors exit 1 with the path of the logged traceback — never a traceback on screen.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, NoReturn

from . import pipeline
from .demo import DEMO_WORKSPACE, build_demo
from .dsir import has_target, kl_reduction
from .errors import CurateError, environment_error, log_exception
from .evaluate import HELD_OUT, evaluate
from .execution import DEVICES, EXECUTORS, ProgressEvent, make_executor
from .export import FORMATS, export
from .ingest import summary_json
from .mixsearch import METRICS, suggest
from .scoring import describe_scores, export_scores
from .search import MODES, parse_where, search
from .search import save as save_search
from .select import live_counts, load_recipe, select
from .workspace import Workspace

_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str, args: Callable[[argparse.ArgumentParser], None]) -> Callable:
    """Register ``fn(namespace) -> exit code`` as a CLI command; *args* adds its arguments to a parser."""

    def deco(fn: Callable[[argparse.Namespace], int]) -> Callable:
        _COMMANDS[name] = (help, args, fn)
        return fn

    return deco


def open_workspace(path: str, create: bool = False):
    return Workspace(path, create=create)


def open_workspace_after_runs(path: str, poll: float = 1.0):
    """Open a workspace for `run`; if another `curate_core run` process holds it, wait until that run ends
    (it finishes on its own: e.g. a run whose shell was killed but whose Python process was not), then open.
    Any other holder (the app, a notebook) is reported at once, as everywhere else."""
    announced = False
    while True:
        try:
            return open_workspace(path)
        except CurateError as e:
            pid = getattr(e, "pid", None)
            if not pid or getattr(e, "holder", None) != "run":  # a `curate run` process (see store.holder)
                raise
            if not announced:
                print(f"waiting: another pipeline run (process {pid}) is using {path}; "
                      "this run starts when it ends (Ctrl-C to stop waiting)", file=sys.stderr, flush=True)
                announced = True
            time.sleep(poll)


# --------------------------------------------------------------------------------------- progress
def _singular(unit: str) -> str:
    """tqdm's unit is per item ("row/s"): "epochs" → "epoch"."""
    return unit[:-1] if unit.endswith("s") else unit


class TqdmProgress:
    """One tqdm bar per stage on stderr (done/total, rate and ETA)."""

    def __init__(self) -> None:
        self.bars: dict[str, object] = {}

    def __call__(self, ev) -> None:
        from tqdm import tqdm

        bar = self.bars.get(ev.stage)
        if bar is None or bar.total != ev.total:
            if bar is not None:
                bar.close()
            bar = self.bars[ev.stage] = tqdm(total=ev.total, desc=ev.stage, unit=_singular(ev.unit), file=sys.stderr,
                                             dynamic_ncols=True, leave=True)
        bar.n = ev.done
        if ev.message:
            bar.set_postfix_str(ev.message, refresh=False)
        bar.refresh()
        if ev.done >= ev.total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def parse_params(items: list[str] | None) -> dict[str, dict]:
    """``stage.key=value`` items → {stage: {key: value}} (values parsed as JSON when they parse)."""
    out: dict[str, dict] = {}
    for item in items or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise CurateError(f"Bad --param {item!r}", "write it as stage.key=value, e.g. --param embed.batch_size=64")
        k, v = item.split("=", 1)
        st, key = k.split(".", 1)
        try:
            val = json.loads(v)
        except json.JSONDecodeError:
            val = v
        out.setdefault(st, {})[key] = val
    return out


# --------------------------------------------------------------------------------------- commands
def _ingest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="CSV, TSV, JSONL, JSON, Parquet file or a saved Hugging Face dataset folder")
    p.add_argument("--workspace", "-w", required=True, help="workspace directory (created if missing)")
    p.add_argument("--text", help="column holding the text (default: auto-detect text/sentence/content/…)")
    p.add_argument("--label", help="column holding the label (default: auto-detect label/category/intent/…)")
    p.add_argument("--id", help="column holding a unique id (default: auto-detect id; else generated)")
    p.add_argument("--source", help="column holding the source/domain of each row")
    p.add_argument("--source-name", help="source name for every row (default: the file name)")
    p.add_argument("--format", dest="fmt", help="force the format: csv, tsv, jsonl, json, parquet, hf")
    p.add_argument("--encoding", help="text encoding of the file if not UTF-8 (e.g. latin-1)")
    p.add_argument("--split", help="split of a saved Hugging Face DatasetDict")
    p.add_argument("--strict", action="store_true", help="refuse the file if any text is empty")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


@command("ingest", "add a file to a workspace", _ingest_args)
def _ingest_cmd(a: argparse.Namespace) -> int:
    new = not Path(a.workspace).expanduser().exists()
    try:
        with open_workspace(a.workspace, create=True) as ws:
            s = ws.ingest(a.file, text=a.text, label=a.label, id=a.id, source=a.source, source_name=a.source_name,
                          fmt=a.fmt, encoding=a.encoding, strict=a.strict, split=a.split)
            total = ws.store.count()
    except BaseException:
        if new:  # a failed first ingest leaves no empty workspace behind (it would pose as a real one)
            shutil.rmtree(Path(a.workspace).expanduser(), ignore_errors=True)
        raise
    print(summary_json(s) if a.json else
          "\n".join([*_said(s.lines()), f"workspace {a.workspace} now has {total:,} rows"]))
    _warn(s.lines())
    return 0


def _said(lines: list[str]) -> list[str]:
    """A report's lines for stdout: all but its ``warning: …`` lines (see :func:`_warn`)."""
    return [x for x in lines if not x.startswith("warning: ")]


def _warn(lines: list[str]) -> None:
    """A report's ``warning: …`` lines, on stderr — also with --json, where a pipe must not hide them."""
    for x in lines:
        if x.startswith("warning: "):
            print(x, file=sys.stderr)


def _ws_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", "-w", required=True, help="workspace directory")


def _info_args(p: argparse.ArgumentParser) -> None:
    _ws_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")


@command("check", "is a workspace sound? read every table, check the file, list stale tables and old checkpoints",
         _info_args)
def _check_cmd(a: argparse.Namespace) -> int:
    from .check import check_workspace, report_lines

    r = check_workspace(a.workspace)
    print(json.dumps(r, default=str) if a.json else "\n".join(report_lines(r)))
    return 0 if r["ok"] else 2


@command("info", "describe a workspace: rows, columns, labels, sources, stage status", _info_args)
def _info_cmd(a: argparse.Namespace) -> int:
    with open_workspace(a.workspace) as ws:
        info = ws.info()
    if a.json:
        print(json.dumps(info, default=str))
        return 0
    print(f"workspace  {info['workspace']}")
    print(f"rows       {info['rows']:,} ({info['labelled_rows']:,} labelled, {info['tokens']:,} tokens)")
    print(f"labels     {info['labels']}")
    print(f"sources    {', '.join(f'{k} ({v:,})' for k, v in info['source_counts'].items()) or '-'}")
    print(f"columns    {', '.join(info['columns'])}")
    print("stages     " + ", ".join(f"{k}: {v}" for k, v in info["stages"].items()))
    if info["decisions"]:
        print(f"decisions  {info['decisions']:,} rows")
    return 0


def _run_args(p: argparse.ArgumentParser) -> None:
    _ws_arg(p)
    p.add_argument("--stages", help="comma-separated stages to run (default: all); required stages run too")
    p.add_argument("--param", action="append", metavar="STAGE.KEY=VALUE", help="stage parameter (repeatable)")
    p.add_argument("--force", action="store_true", help="recompute the named stages even if a run is reusable")
    p.add_argument("--engine", default="local", choices=list(EXECUTORS),
                   help="where the stages' batches and tasks run (default: local, in this process)")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="with --engine ray: `local` (a Ray inside this process; default), `auto` (the cluster "
                        "this machine belongs to) or host:port of a Ray head")
    p.add_argument("--ray-num-cpus", type=int, metavar="N",
                   help="with --engine ray: CPUs of the in-process Ray, or the most a run uses on a cluster")
    p.add_argument("--device", default="auto", choices=list(DEVICES),
                   help="where the embedding model computes (default: auto = a CUDA GPU when there is one)")
    p.add_argument("--json", action="store_true", help="print the per-stage results as JSON")
    for st in pipeline.registry().values():  # each stage's convenience flags, declared on the stage
        for o in st.options:
            p.add_argument(o.flag, dest=o.dest, help=o.help, metavar=o.metavar, choices=list(o.choices) or None)


@command("run", "run pipeline stages (resumable; finished runs are reused)", _run_args)
def _run_cmd(a: argparse.Namespace) -> int:
    params = parse_params(a.param)
    for st in pipeline.registry().values():
        given = st.params_from_options({o.dest: getattr(a, o.dest) for o in st.options})
        if given:
            params.setdefault(st.name, {}).update(given)
    stages = a.stages.split(",") if a.stages else None
    options = {k: v for k, v in (("address", a.ray_address), ("num_cpus", a.ray_num_cpus)) if v is not None}
    if options and a.engine != "ray":
        raise CurateError("--ray-address and --ray-num-cpus are for the Ray engine", "add --engine ray")
    bars = TqdmProgress()
    with open_workspace_after_runs(a.workspace) as ws:
        try:
            results = ws.run(stages, params=params, progress=bars, force=a.force, engine=a.engine,
                             device=a.device, engine_options=options)
        finally:
            bars.close()
    if a.json:
        print(json.dumps(results, default=str))
    else:
        for r in results:
            extra = f" in {r['summary'].get('seconds', 0):.1f} s" if r["status"] == "done" else ""
            print(f"{r['stage']}: {r['status']}{extra}")
    return 0


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", "-w", default=str(DEMO_WORKSPACE), help="where to build it (default: %(default)s)")
    p.add_argument("--stages", help="stages to run (default: all)")
    p.add_argument("--quick", action="store_true",
                   help="only add the data and its shipped vectors (seconds): the app runs the other stages in the "
                        "background when it opens the workspace")


@command("demo", "build the demo workspace (BANKING77 with 10 % seeded label flips) if it is missing", _demo_args)
def _demo_cmd(a: argparse.Namespace) -> int:
    bars = TqdmProgress()
    try:
        path = build_demo(a.workspace, stages=a.stages.split(",") if a.stages else None, progress=bars,
                          quick=a.quick)
    finally:
        bars.close()
    if a.quick:
        print(f"demo workspace ready: {path} (the app finishes its pipeline in the background when it opens it)")
    else:
        print(f"demo workspace ready: {path}")
    return 0


def _scores_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", "-w", help="workspace directory (with --out)")
    p.add_argument("--out", help="output file (.parquet or .csv): id + every score column")
    p.add_argument("--list", action="store_true", help="describe every score: columns, kind, requirements, parameters")
    p.add_argument("--json", action="store_true", help="with --list: one JSON list")


@command("scores", "write id + every score column to a file, or list the scores (--list)", _scores_args)
def _scores_cmd(a: argparse.Namespace) -> int:
    if a.list:
        listed = describe_scores()
        if a.json:
            print(json.dumps(listed))
            return 0
        for s in listed:
            cols = ", ".join(f"{c['name']} {c['type']}" for c in s["columns"])
            needs = ", ".join(s["requires"] + [f"score {u} (if there)" for u in s["uses"]]) or "-"
            print(f"{s['name']:20s} {s['kind']:6s} {s['title']}\n{'':27s}columns: {cols}\n{'':27s}needs: {needs}; "
                  f"parameters: {json.dumps(s['params'])}")
        return 0
    if not (a.workspace and a.out):
        raise CurateError("scores needs --workspace DIR --out FILE (or --list)",
                          "e.g. python -m curate_core scores --workspace ws --out scores.parquet")
    with open_workspace(a.workspace) as ws:
        n = export_scores(ws.store, a.out)
    print(f"wrote {n:,} rows to {a.out}")
    return 0


@command("stages", "list the pipeline stages", lambda p: None)
def _stages_cmd(a: argparse.Namespace) -> int:
    for name, st in pipeline.registry().items():
        req = f" (needs {', '.join(st.requires)})" if st.requires else ""
        print(f"{name:12s} {st.title}{req}; parameters: {json.dumps(st.defaults)}")
    return 0


# ------------------------------------------------------------------------------ select, export, evaluate
def _recipe_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", "-r", required=True,
                   help="recipe .json file, or the name of a recipe saved in the workspace (e.g. __draft__)")


def _export_args(p: argparse.ArgumentParser) -> None:
    _ws_arg(p)
    _recipe_arg(p)
    p.add_argument("--out", "-o", required=True, help="folder to write data file, recipe.json and manifest.json to")
    p.add_argument("--format", default="parquet", choices=list(FORMATS), help="data file format (default: parquet)")
    p.add_argument("--with-scores", action="store_true", help="add every score / stage-output column")
    p.add_argument("--with-weights", action="store_true", help="add the soft weight column (target / achieved share)")
    p.add_argument("--force", action="store_true", help="replace files already in the folder")
    p.add_argument("--csv-safe", action="store_true",
                   help="CSV: put ' before cells a spreadsheet would run as formulas (= + - @ …); changes those cells")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")


@command("export", "write a recipe's selection: data file + recipe.json + manifest.json", _export_args)
def _export_cmd(a: argparse.Namespace) -> int:
    line = " ".join(shlex.quote(x) for x in ["python", "-m", "curate_core", *sys.argv[1:]])
    with open_workspace(a.workspace) as ws:
        if a.csv_safe and a.format != "csv":
            raise CurateError("--csv-safe is for --format csv", "drop it, or add --format csv")
        res = export(ws, load_recipe(a.recipe, ws.store), a.out, a.format, a.with_scores, a.with_weights, a.force,
                     command_line=line, csv_safe=a.csv_safe)
    print(json.dumps(res.manifest, default=str) if a.json else "\n".join(_said(res.lines())))
    _warn(res.lines())
    return 0


def _select_args(p: argparse.ArgumentParser) -> None:
    _ws_arg(p)
    _recipe_arg(p)
    p.add_argument("--save-selection", metavar="NAME", help="save the selected rows as a named selection")
    p.add_argument("--json", action="store_true", help="print counts per step and group as JSON")


@command("select", "show what a recipe selects: counts per step and per group (nothing is written)", _select_args)
def _select_cmd(a: argparse.Namespace) -> int:
    with open_workspace(a.workspace) as ws:
        recipe = load_recipe(a.recipe, ws.store)
        fit = None
        if a.save_selection is not None or has_target(ws.store):  # the KL figure needs the selected rows
            sel = select(ws, recipe)
            if a.save_selection is not None:
                ws.save_selection(a.save_selection, sel.row_ids)
            c = sel.counts
            fit = kl_reduction(ws.store, sel.row_ids, sel.repeats, seed=recipe.seed)
        else:
            c = live_counts(ws, recipe, cached=False)
    if a.json:
        extra = {} if fit is None else {"kl_reduction": fit["kl_reduction"], "kl": fit}
        print(json.dumps({**c.to_json(), **extra}, default=str))
        return 0
    rows_est = "≈" if c.tokens_estimated and c.unit == "tokens" else ""
    approx = "≈" if c.tokens_estimated and c.unit == "rows" else ""
    print(f"selected  {rows_est}{c.rows_selected:,} of {c.rows_total:,} rows ({approx}{c.tokens_selected:,} tokens); "
          f"{c.rows_pool:,} pass the filters")
    for s in c.steps:
        print(f"  {s.name}: removes {s.removes_alone:,} alone, {s.removes_only:,} only by it")
    if c.group_by:
        print(f"by {c.group_by}: " + ", ".join(f"{g['group']} {g['rows_before']:,}→{g['rows_selected']:,}"
                                              for g in c.groups.head(30).to_dict("records")))
    if fit is not None:
        print(f"DSIR target {fit['target']}: KL reduction {fit['kl_reduction']:+.4f} nats (KL to the target: "
              f"selection {fit['kl_selected']:.4f}, a random selection of its size {fit['kl_random']:.4f})")
    for w in c.warnings:
        print(f"warning: {w}")
    if a.save_selection is not None:
        print(f"saved selection {a.save_selection!r}")
    return 0


def _search_args(p: argparse.ArgumentParser) -> None:
    _ws_arg(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--query", "-q", help="words (keyword), a pattern (regex) or a sentence (semantic)")
    what.add_argument("--like", metavar="ID", help="rows most similar to the row with this id (\"more like this\")")
    p.add_argument("--mode", default="keyword", choices=list(MODES),
                   help="keyword: every word, case-insensitive, BM25-ranked (default); regex: RE2 pattern; "
                        "semantic: meaning, via the workspace's embedder")
    p.add_argument("--k", type=int, default=50, help="rows to show (semantic/--like: rows to match; default 50)")
    p.add_argument("--where", nargs=3, action="append", metavar=("COLUMN", "OP", "VALUE"),
                   help="only rows passing this filter, as in recipes (e.g. --where aum '<' 0); repeatable")
    p.add_argument("--json", action="store_true", help='{"mode", "query", "like", "count", "rows": [...]}')
    p.add_argument("--save-selection", metavar="NAME",
                   help="save the matches as a selection (recipes' selections.only / except)")


@command("search", "find rows by keyword, regex or meaning, or rows like a given one", _search_args)
def _search_cmd(a: argparse.Namespace) -> int:
    with open_workspace(a.workspace) as ws:
        res = search(ws.store, a.query, mode=a.mode, like=a.like, k=a.k, where=parse_where(a.where))
        saved = save_search(ws.store, res, a.save_selection) if a.save_selection is not None else None
    if a.json:
        print(json.dumps({**res.to_json(), **({"saved": a.save_selection} if saved is not None else {})},
                         default=str, ensure_ascii=False))
        return 0
    what = f"like {a.like}" if a.like else f"{res.mode} {a.query!r}"
    shown = f", showing {len(res.rows):,}" if len(res.rows) < res.count else ""
    print(f"{res.count:,} rows match {what}{shown}")
    for r in res.rows.itertuples():
        text = " ".join(str(r.text).split())
        print(f"  {r.score:8.3f}  {r.id}  [{r.label}]  {text[:90] + '…' if len(text) > 90 else text}")
    if saved is not None:
        print(f"saved selection {a.save_selection!r} ({saved:,} rows)")
    return 0


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    _ws_arg(p)
    _recipe_arg(p)
    p.add_argument("--eval", dest="eval_file", help="labelled eval file (any ingestible format); default: a held-out split")
    p.add_argument("--eval-text", help="text column of the eval file (default: auto-detect)")
    p.add_argument("--eval-label", help="label column of the eval file (default: auto-detect)")
    p.add_argument("--held-out", type=float, default=HELD_OUT, help="held-out fraction without --eval (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out split")
    p.add_argument("--json", action="store_true", help="print one JSON object")


@command("evaluate", "train the same probe on all rows and on a recipe's selection; compare on held-out data",
         _evaluate_args)
def _evaluate_cmd(a: argparse.Namespace) -> int:
    if not 0 < a.held_out < 1:
        raise CurateError(f"--held-out must be between 0 and 1; got {a.held_out}",
                          "the share of labelled rows kept apart for scoring, e.g. --held-out 0.2")
    with open_workspace(a.workspace) as ws:
        out = evaluate(ws, load_recipe(a.recipe, ws.store), a.eval_file, text=a.eval_text, label=a.eval_label,
                       held_out=a.held_out, seed=a.seed)
    print(json.dumps(out.as_dict()) if a.json else "\n".join(out.lines()))
    return 0


def _mixture_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["suggest"], help="suggest: search the group weights the data prefers")
    _ws_arg(p)
    _recipe_arg(p)
    p.add_argument("--group-by", required=True, metavar="COLUMN", help="the groups to weigh (e.g. source)")
    ev = p.add_mutually_exclusive_group()
    ev.add_argument("--eval", dest="eval_file", help="labelled eval file (any ingestible format)")
    ev.add_argument("--eval-selection", metavar="NAME", help="a saved selection as the eval set (never trained on)")
    ev.add_argument("--holdout", "--held-out", dest="held_out", type=float, default=HELD_OUT,
                    help="held-out fraction without --eval (default 0.2)")
    p.add_argument("--eval-text", help="text column of the eval file (default: auto-detect)")
    p.add_argument("--eval-label", help="label column of the eval file (default: auto-detect)")
    p.add_argument("--trials", type=int, default=48, help="random mixtures to train on (default 48)")
    p.add_argument("--budget", type=int, help="rows each trial draws (default: the recipe's budget, else half the pool)")
    p.add_argument("--metric", default="accuracy", choices=list(METRICS), help="what to maximise (default accuracy)")
    p.add_argument("--seed", type=int, default=0, help="seed of the trials, the candidates and the held-out split")
    p.add_argument("--engine", default="local", choices=sorted(EXECUTORS), help="where the trials train")
    p.add_argument("--save", metavar="NAME", help="save the recipe with the suggested weights under this name")
    p.add_argument("--json", action="store_true", help="print one JSON object")


@command("mixture", "mixture suggest: train the probe on many mixtures, fit weights → metric, suggest the best",
         _mixture_args)
def _mixture_cmd(a: argparse.Namespace) -> int:
    if a.save is not None and not a.save.strip():
        raise CurateError("--save needs a recipe name", "e.g. --save searched (then --recipe searched)")
    progress = None if a.json else TqdmProgress()
    with open_workspace(a.workspace) as ws:
        recipe = load_recipe(a.recipe, ws.store)
        executor = make_executor(a.engine, device="cpu")
        res = suggest(ws, recipe, a.group_by, eval_file=a.eval_file, eval_selection=a.eval_selection,
                      held_out=a.held_out, trials=a.trials, budget=a.budget, seed=a.seed, metric=a.metric,
                      executor=executor, text=a.eval_text, label=a.eval_label,
                      progress=None if progress is None else
                      lambda d, t, m="", resumed=0, unit="trainings": progress(
                          ProgressEvent("mixture search", d, t, 0.0, m, resumed, unit)))
        if a.save is not None:
            ws.store.save_recipe(a.save, res.recipe(recipe, a.save).to_json())
    if a.json:
        print(json.dumps({**res.as_dict(), **({"saved": a.save} if a.save else {})}, default=str))
    else:
        print("\n".join(res.lines()))
        if a.save:
            print(f"saved recipe {a.save!r} (use it with --recipe {a.save})")
    return 0


# --------------------------------------------------------------------------------------------- main
class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line ends like every other refusal: ``error: …`` first, a hint, exit 2
    (argparse's own put two lines of usage before "prog: error: …")."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        self.exit(2, f"error: {message}\nhint: `{self.prog} --help` lists what it takes\n")


def build_parser() -> argparse.ArgumentParser:
    prog = "curate" if Path(sys.argv[0]).name == "curate" else "python -m curate_core"  # the same program, either way
    parser = _Parser(prog=prog, description="Look at a text dataset and curate it.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_, add_args, fn) in _COMMANDS.items():
        sp = sub.add_parser(name, help=help_.replace("%", "%%"), description=help_)  # argparse %-formats help, not description
        add_args(sp)
        sp.set_defaults(_fn=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_fn", None):
        parser.print_help()
        return 2
    try:
        return int(args._fn(args) or 0)
    except CurateError as e:
        print(f"error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` & co.: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("error: interrupted (finished batches are kept; run the same command again to resume)", file=sys.stderr)
        return 130
    except Exception as e:  # a full disk, a damaged file …: say so; anything else is a bug: log it, one line
        ws = getattr(args, "workspace", None)
        env = environment_error(e, ws)
        if env is not None:
            print(f"error: {env.message}", file=sys.stderr)
            print(f"hint: {env.hint}", file=sys.stderr)
            return 2
        log_dir = Path(ws) / "logs" if ws and Path(ws).is_dir() else Path(tempfile.gettempdir()) / "curate-logs"
        path = log_exception(log_dir, e)
        print(f"error: unexpected {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
        print(f"hint: this is a bug; the full traceback is in {path}", file=sys.stderr)
        return 1
