"""`Workspace`: the Python face of the tool. Everything the app and the CLI do goes through these methods."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from . import ingest as _ingest
from . import pipeline
from .errors import CurateError
from .execution import Executor, make_executor
from .scoring import score_columns
from .store import Store


class Workspace:
    """A workspace directory and its DuckDB database.

    >>> ws = Workspace("my_ws")                      # created if missing
    >>> ws.ingest("train.csv", label="intent")
    >>> ws.run(["textstats"])
    >>> ws.info()["rows"]
    """

    def __init__(self, path: str | Path, create: bool = True, checkpoints: Any = None,
                 holder: tuple[str, str] | None = None) -> None:
        """*checkpoints*: where runs in progress keep their parts (default ``<path>/checkpoints``): a path, a
        pyarrow filesystem URI, or a ``(pyarrow FileSystem, path)`` pair. *holder*: (kind, words) of who opens it,
        for the error another process gets while it is open (see :func:`curate_core.store.holder`)."""
        pipeline.registry()  # stage modules register their output tables (the Store's whitelist)
        self.store = Store(path, create=create, checkpoints=checkpoints, holder=holder)
        self.path = self.store.path

    # ---------------------------------------------------------------------------------- lifecycle
    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workspace({str(self.path)!r})"

    # ------------------------------------------------------------------------------------- data
    def ingest(self, src: Any, **kwargs: Any) -> _ingest.IngestSummary:
        """Add a file / HF dataset folder / DataFrame. See :func:`curate_core.ingest.ingest` for options."""
        return _ingest.ingest(self.store, src, **kwargs)

    def preview(self, src: Any, **kwargs: Any):
        return _ingest.preview(self.store, src, **kwargs)

    def samples(self, columns: Sequence[str] = ("row_id", "id", "text", "label", "source"),
                row_ids: Sequence[int] | None = None, limit: int | None = None) -> pd.DataFrame:
        return self.store.sample_frame(columns, row_ids, limit)

    # --------------------------------------------------------------------------------- pipeline
    def run(self, stages: Iterable[str] | None = None, params: dict[str, dict] | None = None,
            progress: pipeline.ProgressFn | None = None, force: bool = False, engine: str | Executor = "local",
            device: str = "auto", engine_options: dict | None = None) -> list[dict]:
        """Run stages (all when None), reusing finished runs, on the executor *engine* names (see
        :func:`curate_core.pipeline.run` and :data:`curate_core.execution.EXECUTORS`) or on an executor already
        made, model stages on *device* (``auto``, ``cpu``, ``cuda``). *engine_options* go to the executor, e.g.
        ``{"address": "auto", "num_cpus": 8}`` for Ray. Neither changes a result: they are in no run key."""
        executor = engine if not isinstance(engine, str) else make_executor(engine, device=device,
                                                                              **(engine_options or {}))
        return pipeline.run(self.store, stages, params, progress, force, executor)

    def status(self) -> dict[str, str]:
        return pipeline.stage_status(self.store)

    def info(self) -> dict:
        """What `info --json` prints: rows, columns, labels, sources, stages (+ counts for the overview)."""
        ov = overview(self.store)
        return {
            "workspace": str(self.path),
            "rows": ov["rows"],
            "columns": [c for c, _ in self.store.sample_columns()],
            "labels": ov["labels"],
            "labelled_rows": ov["labelled"],
            "sources": list(ov["source_counts"]),
            "tokens": ov["tokens"],
            "stages": self.status() if ov["rows"] else {s: "missing" for s in pipeline.registry()},
            "label_counts": ov["label_counts"],
            "source_counts": ov["source_counts"],
            "scores": score_columns(self.store),
            "decisions": int(len(self.store.current_decisions())),
            "selections": self.store.selection_names(),
            **self._label_info(),
            **self._window_info(),
        }

    def _window_info(self) -> dict:
        """Texts longer than the embedding model's window (from the latest finished embed run)."""
        import json

        run = self.store.latest_runs(["done"]).get("embed")
        s = json.loads(run["summary"]) if run and run.get("summary") else {}
        keys = ("long_texts", "beyond_max", "max_windows", "window_tokens")
        return {"long_texts": {k: s[k] for k in keys}} if "long_texts" in s else {}

    def _label_info(self) -> dict:
        """The probe's feature choice (per-feature out-of-fold accuracy) and each label flag's rate."""
        from .labelissues import LABEL_SCORES, flag_report

        probe = self.store.get_summary("probe")
        if not probe:
            return {}
        keep = ("features", "labelled", "probs", "dynamics", "threshold_samples", "set_aside", "skipped")
        summaries = {n: self.store.get_summary(f"score:{n}") or {} for n in LABEL_SCORES}
        return {"probe": {k: probe[k] for k in keep if k in probe}, "label_flags": flag_report(summaries)}

    # -------------------------------------------------------------------------------- decisions
    def decide(self, row_ids: Sequence[int], action: str, value: str | None = None, reason: str = "") -> int:
        """Append a decision (exclude / relabel / keep) for rows; returns its batch number (for undo)."""
        if action == "relabel":
            labels = set(label_counts(self.store))
            if value not in labels:
                raise CurateError(f"Unknown label {value!r} for relabel",
                                  "relabel to one of the labels in the workspace")
        return self.store.decide(row_ids, action, value, reason)

    def relabel_each(self, row_ids: Sequence[int], labels: Sequence[str], reason: str = "") -> int:
        """Relabel each row to its own label in one decision batch (one undo reverts it all)."""
        known = set(label_counts(self.store))
        unknown = sorted(set(map(str, labels)) - known)
        if unknown:
            raise CurateError(f"Unknown label(s) {unknown[:5]} for relabel", "relabel to labels in the workspace")
        return self.store.decide(row_ids, "relabel", list(labels), reason)

    def undo(self) -> int | None:
        """Undo the latest decision batch; returns the batch undone (None if nothing to undo)."""
        return self.store.undo()

    def undo_described(self) -> str:
        """Undo the latest decision batch and say what it was, in a sentence a page can show ("Undid the exclude
        of 3 rows (label issues page)."), so a person knows what came back."""
        batch = self.store.undo()
        if batch is None:
            return "Nothing to undo."
        s = _batch_summary(self.store, batch)
        if s is None:
            return f"Undid decision batch {batch}."
        rows = f"{s['rows']:,} row{'s' if s['rows'] != 1 else ''}"
        what = {"exclude": f"exclude of {rows}", "keep": f"keep of {rows}",
                "relabel": f"relabel of {rows}" + (f" to `{s['label']}`" if s["label"] is not None
                                                    else f" to {s['labels']:,} labels")}.get(s["action"],
                                                                                              f"{s['action']} of {rows}")
        return f"Undid the {what}" + (f" ({s['reason']})" if s["reason"] else "") + "."

    def decisions(self) -> pd.DataFrame:
        return self.store.current_decisions()

    # ------------------------------------------------------------------------------- selections
    def save_selection(self, name: str, row_ids: Sequence[int]) -> int:
        return self.store.save_selection(name, row_ids)

    def selection(self, name: str) -> np.ndarray:
        return self.store.selection(name)

    def selections(self) -> dict[str, int]:
        return self.store.selection_names()

    # ------------------------------------------------------------------------------ select & export
    def select(self, recipe: Any):
        """The rows a recipe selects (dict, JSON text, path, saved name): see :func:`curate_core.select.select`."""
        from .select import load_recipe, select

        return select(self.store, load_recipe(recipe, self.store))

    def live_counts(self, recipe: Any, group_by: str | None = None):
        """Counts per step and group for a recipe draft (fast; for sliders): :func:`curate_core.select.live_counts`."""
        from .select import live_counts, load_recipe

        return live_counts(self.store, load_recipe(recipe, self.store), group_by=group_by)

    def export(self, recipe: Any, out: str | Path, fmt: str = "parquet", with_scores: bool = False,
               with_weights: bool = False, force: bool = False):
        """Write the selection + recipe.json + manifest.json to folder *out*: :func:`curate_core.export.export`."""
        from .export import export

        return export(self.store, recipe, out, fmt, with_scores, with_weights, force)


def label_counts(store: Store) -> dict[str, int]:
    """Rows per label (most frequent first)."""
    rows = store.query("SELECT label, count(*) AS n FROM samples WHERE label IS NOT NULL GROUP BY label "
                       "ORDER BY n DESC, label").to_pylist()
    return {r["label"]: int(r["n"]) for r in rows}


def overview(store: Store) -> dict:
    """Row count, label/source counts: what `info` and the app's overview show."""
    head = store.query("SELECT count(*) AS rows, count(label) AS labelled, count(DISTINCT label) AS labels, "
                       "coalesce(sum(n_tokens), 0) AS tokens FROM samples").to_pylist()[0]
    sources = store.query("SELECT source, count(*) AS n FROM samples GROUP BY source ORDER BY min(row_id)").to_pylist()
    return {**{k: int(v) for k, v in head.items()}, "label_counts": label_counts(store),
            "source_counts": {r["source"]: int(r["n"]) for r in sources}}


def _batch_summary(store: Store, batch: int) -> dict | None:
    """What one decision batch did, for an "Undid …" message: action, rows, the new labels (relabels), the reason
    it was recorded with; None for a batch that does not exist."""
    with store.cursor() as cur:
        rows = cur.execute("SELECT action, count(*), count(DISTINCT value), min(value), min(reason) FROM decisions "
                           "WHERE batch = ? AND action <> 'undo' GROUP BY action ORDER BY count(*) DESC",
                           [int(batch)]).fetchall()
    if not rows:
        return None
    action, n, n_values, value, reason = rows[0]
    return {"action": action, "rows": int(n), "labels": int(n_values), "label": value if n_values == 1 else None,
            "reason": reason or ""}
