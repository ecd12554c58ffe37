"""Files, Hugging Face datasets and DataFrames → the ``samples`` table.

What ingest guarantees:

* **All or nothing.** The input is staged into a temporary table and validated inside one transaction; any
  problem raises a :class:`CurateError` and the workspace stays exactly as it was.
* **Streaming.** DuckDB's own readers scan CSV/TSV/JSONL/Parquet in bounded memory (spilling to
  ``<workspace>/tmp``), on every thread; UTF-8 checking and hashing read the file in 4 MiB chunks, in a thread
  beside DuckDB's read, and what they find comes before anything else the ingest would say.
* **Column mapping.** ``text`` / ``label`` / ``id`` / ``source`` are found by name when obvious
  (:data:`TEXT_NAMES` …) or given explicitly; all other columns are kept as columns of ``samples``
  (CSV columns get the narrowest type every value fits: integer, float, boolean or text; float NaN is a
  missing value). A column named like one the tool writes (``label_quality``, ``x`` …, see
  :func:`curate_core.pipeline.tool_columns`) is kept as ``input_<name>``.
* **Policy.** Empty or missing texts are skipped and counted (``strict=True`` refuses them); missing labels
  (empty, ``nan``, ``None``, ``null``) are kept as unlabelled; duplicate ids, in the file or against rows
  already in the workspace, are refused; labels are always text (``1`` and ``"1"`` are the same label).
* **Ids.** Without an id column, ids are ``<source name>-<row number>`` (the file name or ``source_name``,
  1-based row, zero padded): stable for the same file.
* **Tokens.** ``n_tokens`` counts words separated by spaces, tabs and line breaks; it is the unit of token
  budgets in recipes (model tokenizers give roughly 1.3× as many for English).
"""

from __future__ import annotations

import codecs
import hashlib
import json
import threading
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from .errors import CurateError, choices
from . import inputs
from .inputs import FileReader
from .pipeline import tool_columns
from .store import CORE_COLUMNS, Store, quote_ident

#: memory DuckDB needs per extra (non-core) column of a file while it reads and appends it — its buffers per
#: column and thread: 20,000 columns of 100 rows ran out of the default 2 GB limit, 10,000 columns × 1,000 rows
#: fit (1.3 GB peak). A file with more columns than the memory limit allows is refused by name before anything
#: is written. (Ingest is linear in columns: 2,000 columns × 100 rows take 0.3 GB and ~1 s.)
COLUMN_MEMORY = 200 << 10

TEXT_NAMES = ("text", "sentence", "content", "body", "document", "review", "message", "prompt", "utterance",
              "question", "tweet", "sms", "comment")
LABEL_NAMES = ("label", "labels", "category", "intent", "class", "target", "sentiment", "topic", "y")
ID_NAMES = ("id", "_id", "uid", "guid", "sample_id", "idx")
SOURCE_NAMES = ("source", "domain", "dataset", "origin", "subset")
NULL_LABELS = ("", "nan", "NaN", "NAN", "None", "none", "null", "NULL", "NA", "N/A")

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
           ".parquet": "parquet", ".pq": "parquet"}
TEXT_FORMATS = ("csv", "tsv", "jsonl", "json")


@dataclass
class Mapping:
    """Which input column plays which role (None = not present)."""

    text: str
    label: str | None = None
    id: str | None = None
    source: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class IngestSummary:
    path: str
    format: str
    source: str
    mapping: dict
    rows_read: int
    rows_added: int
    skipped_empty_text: int
    unlabelled: int
    extra_columns: dict[str, str] = field(default_factory=dict)
    generated_ids: bool = False
    #: new label → the existing label it equals as a number ("0" from a float column, "0.0" typed in a CSV)
    look_alike_labels: dict[str, str] = field(default_factory=dict)
    #: the text column's type when it is not text (a list, a struct, a number): stored as its text form
    text_type: str | None = None

    def lines(self) -> list[str]:
        out = [f"added {self.rows_added:,} rows from {self.path} ({self.format}, source `{self.source}`)"]
        if self.skipped_empty_text:
            out.append(f"skipped {self.skipped_empty_text:,} rows with an empty text")
        if self.unlabelled:
            out.append(f"{self.unlabelled:,} rows have no label (kept as unlabelled)")
        if self.generated_ids:
            out.append("no id column: generated ids <source>-<row number>")
        if self.extra_columns:
            out.append("other columns kept: " + ", ".join(f"{k} ({v.lower()})" for k, v in self.extra_columns.items()))
        if self.text_type:
            out.append(f"warning: the text column `{self.mapping.get('text')}` holds {self.text_type.lower()} values, "
                       "not text: each is stored as its text form (a list as [a, b]); join or "
                       "pick the parts before ingesting if that is not what the texts should be")
        if self.look_alike_labels:
            pairs = ", ".join(f"{new!r} ~ {old!r}" for new, old in list(self.look_alike_labels.items())[:6])
            out.append(f"warning: {len(self.look_alike_labels):,} new label(s) are the same number as a label already "
                       f"in the workspace, written differently: {pairs} — they are kept apart; relabel one to the "
                       "other if they mean the same class")
        return out


@dataclass
class Input:
    """An opened input: how to read it, its columns and provenance."""

    reader: FileReader
    format: str
    columns: list[tuple[str, str]]
    name: str  # default source name
    path: str
    #: the content hash, and for text files the encoding check (still running when opened ``background=True``)
    digest: Future

    @property
    def sha256(self) -> str:
        """The content hash; raises the encoding check's CurateError (waits for the check when it still runs)."""
        return self.digest.result()


def _done(value: str) -> Future:
    fut: Future = Future()
    fut.set_result(value)
    return fut


def _in_background(fn: Callable[..., str], *args: Any) -> Future:
    """Run *fn* in a thread of its own: hashing and decoding a file overlap DuckDB reading it (DuckDB lets go
    of the GIL while a query runs), instead of coming before it."""
    fut: Future = Future()

    def run() -> None:
        try:
            fut.set_result(fn(*args))
        except BaseException as e:  # noqa: BLE001 - handed to whoever waits for the result
            fut.set_exception(e)

    threading.Thread(target=run, name="curate-file-check", daemon=True).start()
    return fut


# ----------------------------------------------------------------------------------------- opening
def detect_format(path: Path, fmt: str | None = None) -> str:
    if fmt:
        fmt = fmt.lower().lstrip(".")
        allowed = sorted(set(FORMATS.values()) | {"hf"})
        if fmt not in allowed:
            raise CurateError(f"Unknown format {fmt!r}", f"use one of {choices(allowed)}")
        return fmt
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "state.json").exists() or (path / "dataset_dict.json").exists():
            return "hf"
        raise CurateError(f"{path} is a directory but not a saved Hugging Face dataset",
                          "give a file, or a folder written by `datasets.Dataset.save_to_disk`")
    suffix = path.suffix.lower()
    if suffix == ".gz":
        raise CurateError(f"Compressed input {path.name} is not supported", "decompress it first (gunzip)")
    if suffix not in FORMATS:
        raise CurateError(f"Unknown file format {suffix or '(no extension)'!r} for {path.name}",
                          f"supported: {choices(sorted(FORMATS))} or a saved Hugging Face dataset folder; "
                          "or pass --format")
    return FORMATS[suffix]


def _hasher():
    """A fast content hash for fingerprints (xxh3-128; sha256 where xxhash is missing)."""
    try:
        import xxhash

        return xxhash.xxh3_128()
    except ImportError:  # pragma: no cover - xxhash is in requirements.txt
        return hashlib.sha256()


def check_utf8(path: Path, encoding: str | None = None, out: Path | None = None) -> str:
    """Hash *path*, check it decodes (UTF-8 unless *encoding*), and optionally write a UTF-8 copy to *out*.

    Raises a CurateError naming the line of the first undecodable byte (lines are only counted then).
    """
    enc = encoding or "utf-8"
    try:
        decoder = codecs.getincrementaldecoder(enc)(errors="strict")
    except LookupError:
        raise CurateError(f"Unknown encoding {encoding!r}", "use a Python codec name such as latin-1, cp1252, utf-16") from None
    h = _hasher()
    offset = 0
    ascii_ok = codecs.lookup(enc).name in ("utf-8", "ascii", "iso8859-1", "cp1252", "iso8859-15")
    sink = open(out, "w", encoding="utf-8", newline="") if out is not None else None
    try:
        with open(path, "rb") as f:
            while True:
                chunk = f.read(1 << 22)
                final = not chunk
                if chunk and ascii_ok and sink is None and chunk.isascii() and not decoder.getstate()[0]:
                    h.update(chunk)  # ASCII is valid in an ASCII-compatible codec: no need to build the str
                    offset += len(chunk)
                    continue
                try:
                    text = decoder.decode(chunk, final=final)
                except UnicodeDecodeError as e:
                    at = offset + max(0, e.start - len(e.object) + len(chunk))  # e.object may hold buffered bytes
                    raise CurateError(
                        f"{path.name} is not valid {enc}: undecodable byte 0x{e.object[e.start:e.start + 1].hex()} "
                        f"on line {_line_at(path, at)}",
                        "give the file's real encoding, e.g. latin-1 or cp1252 (--encoding on the command line, the "
                        "Encoding field in the app)",
                    ) from None
                if sink is not None and text:
                    sink.write(text)
                if final:
                    break
                h.update(chunk)
                offset += len(chunk)
    finally:
        if sink is not None:
            sink.close()
    return h.hexdigest()


def _line_at(path: Path, offset: int) -> int:
    """1-based line number of byte *offset* in *path*."""
    lines, done = 1, 0
    with open(path, "rb") as f:
        while done < offset:
            chunk = f.read(min(1 << 22, offset - done))
            if not chunk:
                break
            lines += chunk.count(b"\n")
            done += len(chunk)
    return lines


def _hash_paths(paths: list[Path]) -> str:
    h = _hasher()
    for p in sorted(paths):
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def open_input(store: Store, src: Any, fmt: str | None = None, encoding: str | None = None,
               split: str | None = None, background: bool = False) -> Input:
    """Open a path (CSV, TSV, JSONL, JSON, Parquet, saved HF dataset) or a pandas DataFrame for reading.

    The file is hashed and its encoding checked before this returns — or, with *background*, in a thread
    while the caller reads it (``Input.sha256`` waits for it and raises what it found). A file that must be
    transcoded first is always checked before.
    """
    if isinstance(src, pd.DataFrame):
        return _open_frame(store, src)
    if not isinstance(src, (str, Path)):
        raise CurateError(f"Cannot ingest a {type(src).__name__}", "give a file path or a pandas DataFrame")
    path = Path(src).expanduser()
    if not path.exists():
        raise CurateError(f"File not found: {path}", "check the path (relative paths start at the current folder)")
    fmt = detect_format(path, fmt)
    if fmt == "hf":
        return _open_hf(store, path, split)
    if path.is_dir():
        raise CurateError(f"{path} is a directory", "give a file")
    if path.stat().st_size == 0:
        raise CurateError(f"{path.name} is empty (0 bytes)", "check that the export finished writing the file")
    read_path = path
    if fmt in TEXT_FORMATS and encoding and _codec(encoding) != "utf-8":
        read_path = store.path / "tmp" / f"transcoded-{path.stem}.{fmt}"
        digest = _done(check_utf8(path, encoding, out=read_path))
    else:
        check, args = (check_utf8, (path, encoding)) if fmt in TEXT_FORMATS else (_hash_paths, ([path],))
        digest = _in_background(check, *args) if background else _done(check(*args))
    if fmt in ("csv", "tsv"):
        reader = inputs.csv_reader(read_path, "," if fmt == "csv" else "\t")
    elif fmt in ("jsonl", "json"):
        reader = inputs.jsonl_reader(read_path, array=(fmt == "json" and _first_char(read_path) == "["))
    else:
        reader = inputs.parquet_reader(read_path)
    try:
        reader, columns = inputs.describe(store, reader)
    except CurateError:
        raise
    except Exception as e:  # DuckDB parse errors: show the first line of DuckDB's explanation
        if isinstance(digest.exception(), CurateError):  # the encoding check explains it better
            raise digest.exception() from None
        raise CurateError(f"Could not read {path.name} as {fmt}: {_first_line(e)}",
                          "check the file format (or pass --format)") from None
    return Input(reader, fmt, columns, path.stem, str(path), digest)


def _codec(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise CurateError(f"Unknown encoding {encoding!r}", "use a Python codec name such as latin-1, cp1252, utf-16") from None


def _first_char(path: Path) -> str:
    with open(path, encoding="utf-8") as f:
        while ch := f.read(1):
            if not ch.isspace():
                return ch
    return ""


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _open_frame(store: Store, df: pd.DataFrame, name: str = "dataframe") -> Input:
    if df.empty and len(df.columns) == 0:
        raise CurateError("The DataFrame is empty (no columns)")
    df = df.copy()
    df.columns = [str(c) for c in df.columns]
    for c in df.columns:  # mixed-type object columns cannot go to Arrow: read them as text
        if df[c].dtype == object:
            kinds = {type(v) for v in df[c].dropna().head(100_000)}
            if len(kinds) > 1:
                df[c] = df[c].map(lambda v: v if v is None or (isinstance(v, float) and v != v) else str(v))
    sha = hashlib.sha256(pd.util.hash_pandas_object(df.astype(str), index=False).values.tobytes()).hexdigest()
    reader = inputs.object_reader(df)
    return Input(reader, "dataframe", inputs.describe(store, reader)[1], name, f"<{name}>", _done(sha))


def _open_hf(store: Store, path: Path, split: str | None) -> Input:
    try:
        import datasets  # heavy import: only on this path
    except ImportError:  # pragma: no cover - datasets is in requirements
        raise CurateError("Reading a Hugging Face dataset needs the `datasets` package", "pip install datasets") from None
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:
        raise CurateError(f"Could not load the Hugging Face dataset in {path}: {_first_line(e)}") from None
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds.keys())
        if split is None:
            if len(splits) != 1 and "train" not in splits:
                raise CurateError(f"{path.name} has several splits", f"choose one with --split: {choices(splits)}")
            split = "train" if "train" in splits else splits[0]
        if split not in ds:
            raise CurateError(f"No split {split!r} in {path.name}", f"splits: {choices(splits)}")
        ds = ds[split]
    table = ds.data.table if hasattr(ds.data, "table") else ds.data
    if ds._indices is not None:  # a filtered/shuffled view: materialise the rows it points at
        table = ds.flatten_indices().data.table
    if table.num_rows == 0:
        raise CurateError(f"The dataset in {path} has no rows")
    files = [Path(f["filename"]) for f in ds.cache_files] if ds.cache_files else []
    sha = _hash_paths(files) if files else hashlib.sha256(str(table.schema).encode()).hexdigest()
    reader = inputs.object_reader(table)
    return Input(reader, "hf", inputs.describe(store, reader)[1], path.name, str(path), _done(sha))


# ----------------------------------------------------------------------------------------- mapping
def detect_mapping(columns: list[str], text: str | None = None, label: str | None = None, id: str | None = None,
                   source: str | None = None) -> Mapping:
    """Explicit names win; otherwise the first well-known name present (case-insensitive)."""
    lower = {c.lower(): c for c in reversed(columns)}

    def pick(given: str | None, names: tuple[str, ...], role: str, flag: str) -> str | None:
        if given is not None:
            if given not in columns:
                raise CurateError(
                    f"No column {given!r} for {role}" + (" (given with " + flag + ")" if flag else ""),
                    f"columns in the file: {choices(columns)}",
                )
            return given
        for n in names:
            if n in lower:
                return lower[n]
        return None

    t = pick(text, TEXT_NAMES, "the text", "--text")
    if t is None:
        raise CurateError(
            "Found no text column",
            f"columns in the file: {choices(columns)}; choose one with --text COLUMN",
        )
    m = Mapping(
        text=t,
        label=pick(label, LABEL_NAMES, "the label", "--label"),
        id=pick(id, ID_NAMES, "the id", "--id"),
        source=pick(source, SOURCE_NAMES, "the source", "--source"),
    )
    roles = [v for v in (m.text, m.label, m.id, m.source) if v is not None]
    if len(set(roles)) != len(roles):
        raise CurateError(f"One column is mapped to two roles: {m.as_dict()}", "map each role to its own column")
    return m


def preview(store: Store, src: Any, fmt: str | None = None, encoding: str | None = None, n: int = 20,
            split: str | None = None) -> tuple[Input, Mapping | None, pd.DataFrame]:
    """For the app's column-mapping form: the opened input, the auto-detected mapping (None if no text
    column was recognised) and the first *n* rows."""
    inp = open_input(store, src, fmt, encoding, split)
    names = [c for c, _ in inp.columns]
    try:
        mapping = detect_mapping(names)
    except CurateError:
        mapping = None
    return inp, mapping, inputs.preview(store, inp.reader, n)


# ------------------------------------------------------------------------------------------ ingest
def ingest(store: Store, src: Any, *, text: str | None = None, label: str | None = None, id: str | None = None,
           source: str | None = None, source_name: str | None = None, fmt: str | None = None,
           encoding: str | None = None, strict: bool = False, split: str | None = None,
           progress: Callable[[str, int, int], None] | None = None) -> IngestSummary:
    """Add one file (or DataFrame / HF dataset) to the workspace; see the module doc for the policy."""
    if progress:
        progress("ingest: reading", 0, 3)
    inp = open_input(store, src, fmt, encoding, split, background=True)
    try:
        roles = {"text": text, "label": label, "id": id, "source": source}
        return _add(store, inp, roles, source_name, strict, progress)
    except Exception as e:
        found = inp.digest.exception()  # what the file check found comes first (not UTF-8, with its line)
        if found is not None and found is not e:
            raise found from None
        raise


def _add(store: Store, inp: Input, roles: dict[str, str | None], source_name: str | None, strict: bool,
         progress: Callable[[str, int, int], None] | None) -> IngestSummary:
    """The ingest of an opened input, in one transaction (*roles*: the columns the caller named)."""
    names = [c for c, _ in inp.columns]
    if not names:
        raise CurateError(f"{Path(inp.path).name} has no columns")
    mapping = detect_mapping(names, **roles)
    src_name = source_name or inp.name
    types = dict(inp.columns)

    def as_text(col: str) -> str:
        q = quote_ident(col)
        t = types.get(col, "")
        if t == "JSON":
            return f"({q} ->> '$')"
        if t in ("DOUBLE", "FLOAT", "REAL") or t.startswith("DECIMAL"):
            # whole numbers without ".0": pandas stores int labels with gaps as floats, and 1.0 must equal "1"
            return (f"CASE WHEN {q} = trunc({q}) AND abs({q}) < 1e15 THEN CAST(CAST({q} AS BIGINT) AS VARCHAR) "
                    f"ELSE CAST({q} AS VARCHAR) END")
        return f"CAST({q} AS VARCHAR)"

    select = [(as_text(mapping.text), "text")]
    label_expr = "CAST(NULL AS VARCHAR)"
    if mapping.label:
        lab = as_text(mapping.label)
        # an OR chain, not `IN (…)`: DuckDB rewrites a long IN list into a hash join, which loses the insertion
        # order the row ids are numbered by (duckdb/duckdb#24398; seen from ~300k rows on 2 threads)
        nulls = " OR ".join(f"trim({lab}) = '" + v.replace("'", "''") + "'" for v in NULL_LABELS)
        label_expr = f"CASE WHEN {nulls} THEN NULL ELSE {lab} END"
    select.append((label_expr, "label"))
    select.append((as_text(mapping.id) if mapping.id else "CAST(NULL AS VARCHAR)", "id"))
    # the one `?` of the source expression comes before the table function's own parameters
    select.append((f"coalesce({as_text(mapping.source)}, ?)" if mapping.source else "CAST(? AS VARCHAR)", "source"))

    used = {mapping.text, mapping.label, mapping.id, mapping.source}
    n_extra = len([c for c in names if c not in used])
    limit_text, limit = inputs.memory_limit(store)
    if n_extra > limit // COLUMN_MEMORY:  # refused before anything is written
        raise CurateError(f"The file has {n_extra:,} columns besides the text, label, id and source; within DuckDB's "
                          f"memory limit of {limit_text} one file can bring at most {limit // COLUMN_MEMORY:,}",
                          "raise the limit (CURATE_MEMORY_LIMIT=8GB), or keep the columns you need, e.g. duckdb -c "
                          "\"COPY (SELECT text, label, col_a, col_b FROM 'file.csv') TO 'slim.csv'\" — or pack the "
                          "rest into one JSON column")
    # DuckDB's names are case-insensitive: `Cluster` or `N_CHARS` would clash with the tool's own columns
    reserved = {c.lower() for c in (*tool_columns(), *CORE_COLUMNS)}
    extras: dict[str, str] = {}  # output name -> input column
    lowered: set[str] = set()  # the output names so far, lower case (a set per column was quadratic)
    for col in names:
        if col in used:
            continue
        taken = col.lower() in reserved or col.startswith("_")
        out = f"input_{col.lstrip('_')}" if taken else col
        while out.lower() in lowered or out.lower() in reserved:
            out += "_"
        extras[out] = col
        lowered.add(out.lower())
        expr = quote_ident(col)
        if types.get(col) == "JSON":
            expr = f"CAST({expr} AS VARCHAR)"
        select.append((expr, out))
    csv_like = inp.format in ("csv", "tsv")

    if progress:
        progress("ingest: reading", 1, 3)
    reading = inp.reader  # its long-line twin (CSV) once a record turns out longer than it reads in parallel

    def fits(typed: dict[str, str]) -> set[str]:  # CSV text going into columns an earlier file typed
        text = {o: t for o, t in typed.items() if csv_like and types.get(extras[o]) == "VARCHAR"}
        return inputs.staged_fits(cur, text)

    while True:
        reader = reading.with_leading(src_name)
        try:
            with store.write_lock, store.transaction() as cur:
                first = inputs.next_row_id(cur)
                rows_read = inputs.stage_input(cur, reader, select)
                if rows_read == 0:
                    raise CurateError(f"{Path(inp.path).name} has a header but no rows",
                                      "is it the file you meant? A file with data has one row per text under the "
                                      "header")
                wanted = {o: _duck_type(types.get(c, "VARCHAR")) for o, c in extras.items()}
                if csv_like:  # CSV cells are text: give new columns the narrowest type all their values fit
                    existing = dict(store.sample_columns(cur))
                    wanted.update(inputs.infer_types(
                        cur, [o for o, t in wanted.items() if o not in existing and t == "VARCHAR"]))
                extra_types = inputs.prepare_columns(store, cur, wanted, fits=fits)
                inputs.insert_staged(cur, first, extra_types, id_prefix=src_name)
                p = inputs.new_rows_problems(cur, first, ids_generated=not mapping.id)
                _check_problems(p, strict, mapping)
                if progress:
                    progress("ingest: checking", 2, 3)
                if p["n_empty"]:
                    inputs.drop_empty(cur, first)
                alike = _look_alike_labels(cur, first)
                added = inputs.record_ingest(cur, {
                    "path": inp.path, "sha256": inp.sha256, "format": inp.format,
                    "mapping": {**mapping.as_dict(), "source_name": src_name}, "skipped": p["n_empty"],
                }, first)
            break
        except CurateError:
            raise
        except Exception as e:
            if reading.long_lines is not None and inputs.line_too_long(e):  # rolled back: read it all again
                reading = reading.long_lines
                continue
            if "Out of Memory" in str(e):
                raise CurateError(f"DuckDB ran out of its memory limit ({limit_text}) reading {Path(inp.path).name} "
                                  f"({len(names):,} columns); nothing was added",
                                  "raise the limit (CURATE_MEMORY_LIMIT=8GB) or ingest fewer columns") from None
            raise CurateError(f"Could not read {Path(inp.path).name} as {inp.format}: {_first_line(e)}",
                              "check the file (quoting, one JSON object per line …) or pass --format") from None
    if progress:
        progress("ingest: done", 3, 3)
    return IngestSummary(
        path=inp.path, format=inp.format, source=src_name, mapping=mapping.as_dict(), rows_read=rows_read,
        rows_added=added, skipped_empty_text=p["n_empty"], unlabelled=p["unlabelled"],
        extra_columns=extra_types, generated_ids=not mapping.id, look_alike_labels=alike,
        text_type=_odd_text_type(types.get(mapping.text, "")),
    )


def _odd_text_type(t: str) -> str | None:
    """The input type of a text column when it is not a string (so the stored text is a rendering of it)."""
    t = t.upper()
    if not t or t in ("VARCHAR", "TEXT", "STRING") or t.startswith("ENUM"):
        return None
    return ("LIST" if t.endswith("[]") or t.startswith("LIST") else "STRUCT" if t.startswith(("STRUCT", "MAP"))
            else "JSON" if t == "JSON" else t)


def _look_alike_labels(cur, first: int) -> dict[str, str]:
    """Labels of the rows from *first* on that are not among the earlier rows' labels but equal one of them as a
    number (a CSV's "0.0" and a Parquet float column's 0, "1" and "01"): two classes by accident, said out loud."""
    rows = cur.execute(
        """WITH new AS (SELECT DISTINCT label FROM samples WHERE row_id >= ? AND label IS NOT NULL),
                old AS (SELECT DISTINCT label FROM samples WHERE row_id < ? AND label IS NOT NULL)
           SELECT n.label, min(o.label) FROM new n JOIN old o
             ON TRY_CAST(n.label AS DOUBLE) = TRY_CAST(o.label AS DOUBLE) AND n.label <> o.label
           WHERE n.label NOT IN (SELECT label FROM old) GROUP BY n.label ORDER BY n.label""", [first, first]).fetchall()
    return {str(a): str(b) for a, b in rows}


def _duck_type(t: str) -> str:
    """The column type in ``samples``: JSON and categoricals (pandas → ENUM) become text."""
    return "VARCHAR" if t == "JSON" or t.startswith("ENUM") else t


def _check_problems(p: dict, strict: bool, mapping: Mapping) -> None:
    empty = p["empty_text_rows"]
    if empty and strict:
        raise CurateError(
            f"{p['n_empty']:,} rows have an empty text (rows {_rows(empty)})",
            "drop --strict to skip them, or fill them in",
        )
    if p["null_id_rows"]:
        raise CurateError(
            f"Some rows have no id in column `{mapping.id}` (rows {_rows(p['null_id_rows'])})",
            "fill in the ids, or ingest without --id to generate them",
        )
    if p["dup_ids"]:
        ex = ", ".join(f"`{i}` ×{n}" for i, n in p["dup_ids"])
        raise CurateError(f"{p['n_dup_ids']:,} ids occur more than once in the file, e.g. {ex}",
                          "ids must be unique; fix them or ingest without --id to generate ids")
    if p["clashing_ids"]:
        ex = ", ".join(f"`{i}`" for i in p["clashing_ids"])
        raise CurateError(f"{p['n_clashing_ids']:,} ids are already in the workspace, e.g. {ex}",
                          "this file (or one with the same ids) was added before; use another workspace or other ids")


def _rows(rows: list[int], n: int = 5) -> str:
    s = ", ".join(str(r) for r in rows[:n])
    return s + (", …" if len(rows) > n else "")


def summary_json(s: IngestSummary) -> str:
    return json.dumps(asdict(s), indent=2)
