"""Ingest: every format, column mapping, and every bad input of issue 3 (clear error, workspace unchanged)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate_core import CurateError, Workspace

from .conftest import write_csv


def snapshot(ws: Workspace) -> tuple:
    """Everything an ingest may change: rows, columns, ingest log, a content hash."""
    s = ws.store
    return (
        s.count(),
        tuple(s.sample_columns()),
        s.count("ingests"),
        tuple(map(tuple, s.query_df("SELECT id, text, label, source FROM samples ORDER BY row_id").itertuples(index=False))),
    )


@pytest.fixture
def seeded(ws: Workspace, small_csv: Path) -> Workspace:
    ws.ingest(small_csv)
    return ws


def refuse(ws: Workspace, src, match: str, **kw) -> CurateError:
    before = snapshot(ws)
    with pytest.raises(CurateError, match=match) as ei:
        ws.ingest(src, **kw)
    assert snapshot(ws) == before, "a failed ingest changed the workspace"
    return ei.value


# ---------------------------------------------------------------------------------------- formats
def test_csv_autodetects_and_keeps_other_columns(ws, tmp_path):
    p = write_csv(tmp_path / "a.csv", [{"sentence": "hello there", "intent": "greet", "score": 0.5, "n": 3, "flag": "true"},
                                       {"sentence": "bye now", "intent": "leave", "score": 1.5, "n": 4, "flag": "false"}])
    s = ws.ingest(p)
    assert s.mapping == {"text": "sentence", "label": "intent", "id": None, "source": None}
    assert s.rows_added == 2 and s.generated_ids
    cols = dict(ws.store.sample_columns())
    assert cols["score"] == "DOUBLE" and cols["n"] == "BIGINT" and cols["flag"] == "BOOLEAN"
    df = ws.samples(["id", "text", "label", "source", "n_tokens"])
    assert df["id"].tolist() == ["a-000001", "a-000002"]
    assert df["source"].tolist() == ["a", "a"]
    assert df["n_tokens"].tolist() == [2, 2]


def test_tsv_jsonl_json_parquet_dataframe(ws, tmp_path):
    rows = [{"id": f"x{i}", "text": f"text, with comma {i}", "label": "a" if i % 2 else "b"} for i in range(6)]
    df = pd.DataFrame(rows)
    df.iloc[:2].to_csv(tmp_path / "p.tsv", sep="\t", index=False)
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[2:3]))
    (tmp_path / "p.json").write_text(json.dumps(rows[3:4]))
    pq.write_table(pa.Table.from_pandas(df.iloc[4:5]), tmp_path / "p.parquet")
    for name in ("p.tsv", "p.jsonl", "p.json", "p.parquet"):
        ws.ingest(tmp_path / name)
    ws.ingest(df.iloc[5:6], source_name="frame")
    out = ws.samples(["id", "text", "label", "source"])
    assert out["id"].tolist() == [r["id"] for r in rows]
    assert out["text"].tolist() == [r["text"] for r in rows]
    assert out["source"].tolist() == ["p", "p", "p", "p", "p", "frame"]


def test_hf_dataset_saved_on_disk(ws, tmp_path):
    import datasets  # in requirements.txt: a missing package fails this test
    d = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"content": ["a b", "c d", "e f"], "category": [0, 1, 0]}),
        "test": datasets.Dataset.from_dict({"content": ["g"], "category": [1]}),
    })
    d.save_to_disk(str(tmp_path / "hf"))
    s = ws.ingest(tmp_path / "hf")
    assert s.rows_added == 3 and s.mapping["text"] == "content" and s.mapping["label"] == "category"
    assert ws.samples(["label"])["label"].tolist() == ["0", "1", "0"]
    ws.ingest(tmp_path / "hf", split="test", source_name="hf-test")
    assert ws.store.count() == 4
    refuse(ws, tmp_path / "hf", "No split", split="validation")


def test_several_files_told_apart_by_source(ws, tmp_path):
    a = write_csv(tmp_path / "outlet_a.csv", [{"text": "one"}, {"text": "two"}])
    b = write_csv(tmp_path / "outlet_b.csv", [{"text": "one"}, {"text": "three"}])
    ws.ingest(a)
    ws.ingest(b)
    assert ws.info()["sources"] == ["outlet_a", "outlet_b"]
    assert ws.samples(["id"])["id"].tolist() == ["outlet_a-000001", "outlet_a-000002", "outlet_b-000001", "outlet_b-000002"]


def test_source_column_mapping(ws, tmp_path):
    p = write_csv(tmp_path / "m.csv", [{"text": "x", "domain": "web"}, {"text": "y", "domain": "books"}])
    ws.ingest(p)
    assert ws.samples(["source"])["source"].tolist() == ["web", "books"]


def test_mixed_label_types_read_as_text(ws, tmp_path):
    # first 30k labels look numeric, the last one is not: must not break type sniffing
    rows = [{"text": f"t{i}", "label": i % 3} for i in range(30_000)] + [{"text": "last", "label": "foo"}]
    ws.ingest(write_csv(tmp_path / "mixed.csv", rows))
    labels = ws.samples(["label"])["label"]
    assert labels.iloc[-1] == "foo" and labels.iloc[0] == "0"
    frame = pd.DataFrame({"text": ["a", "b", "c"], "label": [1, "x", 2.5]})
    ws.ingest(frame, source_name="frame")
    assert ws.samples(["label"]).iloc[-3:]["label"].tolist() == ["1", "x", "2.5"]


def test_nan_labels_kept_unlabelled(ws, tmp_path):
    p = tmp_path / "nan.csv"
    p.write_text("text,label\nalpha,a\nbeta,\ngamma,nan\ndelta,None\n")
    s = ws.ingest(p)
    assert s.rows_added == 4 and s.unlabelled == 3
    assert ws.samples(["label"])["label"].isna().tolist() == [False, True, True, True]


def test_ten_megabyte_text_accepted(ws, tmp_path):
    big = "word " * 2_000_000  # 10 MB
    p = write_csv(tmp_path / "big.csv", [{"text": big, "label": "x"}, {"text": "small", "label": "y"}])
    s = ws.ingest(p)
    assert s.rows_added == 2
    assert ws.store.query_df("SELECT max(length(text)) AS n FROM samples")["n"][0] == len(big)


def test_a_record_too_long_for_the_parallel_reader_is_read_again_whole(ws, tmp_path):
    """A record above the parallel line limit, past the rows DuckDB sniffs: the ingest reads the file again with
    the high limit (one thread) and keeps every row in order; nothing of the first attempt stays."""
    from curate_core.inputs import CSV_LINE_PARALLEL

    big = "w " * (CSV_LINE_PARALLEL // 2 + 1000)
    rows = [{"text": f"t{i}", "label": "a"} for i in range(30_000)] + [{"text": big, "label": "b"}, {"text": "end", "label": "c"}]
    s = ws.ingest(write_csv(tmp_path / "late.csv", rows))
    assert s.rows_added == 30_002 and ws.store.count() == 30_002
    got = ws.store.query_df("SELECT row_id, length(text) AS n, label FROM samples ORDER BY row_id")
    assert got["row_id"].tolist() == list(range(30_002))
    assert got["n"].iloc[-2] == len(big) and got["label"].tolist()[-3:] == ["a", "b", "c"]


def test_encoding_option_decodes(ws, tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes("text,label\ncafé au lait,drink\nrésumé,doc\n".encode("latin-1"))
    ws.ingest(p, encoding="latin-1")
    assert ws.samples(["text"])["text"].tolist() == ["café au lait", "résumé"]


# ------------------------------------------------------------------------------------- bad inputs
def test_missing_file(seeded, tmp_path):
    refuse(seeded, tmp_path / "nope.csv", "File not found")


def test_unknown_format(seeded, tmp_path):
    p = tmp_path / "data.xlsx"
    p.write_bytes(b"PK\x03\x04")
    e = refuse(seeded, p, "Unknown file format")
    assert ".csv" in e.hint and ".parquet" in e.hint


def test_empty_file_and_header_only(seeded, tmp_path):
    (tmp_path / "empty.csv").write_text("")
    refuse(seeded, tmp_path / "empty.csv", "empty")
    (tmp_path / "header.csv").write_text("text,label\n")
    refuse(seeded, tmp_path / "header.csv", "no rows")


def test_no_text_column_lists_columns(seeded, tmp_path):
    p = write_csv(tmp_path / "notext.csv", [{"foo": "x", "bar": "y"}])
    e = refuse(seeded, p, "no text column")
    assert "`foo`" in e.hint and "`bar`" in e.hint


def test_mapped_column_missing(seeded, tmp_path, small_csv):
    e = refuse(seeded, small_csv, "No column 'body'", text="body")
    assert "`text`" in e.hint and "`label`" in e.hint
    refuse(seeded, small_csv, "No column 'cat'", label="cat")


def test_empty_texts_skipped_or_refused(ws, tmp_path):
    p = tmp_path / "e.csv"
    p.write_text('text,label\nfine,a\n,b\n"   ",c\nok,d\n')
    refuse(ws, p, r"2 rows have an empty text \(rows 2, 3\)", strict=True)
    s = ws.ingest(p)
    assert s.rows_added == 2 and s.skipped_empty_text == 2
    assert any("skipped 2" in line for line in s.lines())
    assert ws.samples(["text"])["text"].tolist() == ["fine", "ok"]
    assert ws.store.query_df("SELECT max(row_id) AS m FROM samples")["m"][0] == 1  # row ids stay contiguous


def test_nan_texts_in_dataframe_skipped(ws):
    s = ws.ingest(pd.DataFrame({"text": ["a", None, np.nan, "b"], "label": ["x", "y", "z", "w"]}))
    assert s.rows_added == 2 and s.skipped_empty_text == 2


def test_duplicate_ids_refused_listing_some(ws, tmp_path):
    p = write_csv(tmp_path / "d.csv", [{"id": "a", "text": "1"}, {"id": "b", "text": "2"}, {"id": "a", "text": "3"},
                                       {"id": "c", "text": "4"}, {"id": "c", "text": "5"}])
    e = refuse(ws, p, "2 ids occur more than once")
    assert "`a` ×2" in e.message and "`c` ×2" in e.message


def test_ids_already_in_workspace_refused(seeded, small_csv):
    e = refuse(seeded, small_csv, "40 ids are already in the workspace")
    assert "`r000`" in e.message


def test_non_utf8_refused_with_line_number(seeded, tmp_path):
    p = tmp_path / "bad.csv"
    p.write_bytes(b"text,label\nhello,a\nfine,b\ncaf\xe9,c\n")
    e = refuse(seeded, p, "line 4")
    assert "--encoding" in e.hint


def test_non_utf8_deep_in_a_big_file_is_named_by_its_line(seeded, tmp_path):
    """The encoding check runs beside DuckDB's read: a bad byte that DuckDB meets first is still reported as the
    check words it (file, byte, line, --encoding), and nothing is added."""
    lines = [b"id,text,label"] + [b"r%d,hello world %d,x" % (i, i) for i in range(200_000)]
    lines[150_001] = b"q1,caf\xe9 au lait,y"
    p = tmp_path / "deep.csv"
    p.write_bytes(b"\n".join(lines) + b"\n")
    e = refuse(seeded, p, "not valid utf-8: undecodable byte 0xe9 on line 150002")
    assert "--encoding" in e.hint


def test_non_utf8_is_said_before_a_mapping_problem(seeded, tmp_path):
    p = tmp_path / "both.csv"
    p.write_bytes(b"foo,bar\ncaf\xe9,x\n")
    refuse(seeded, p, "not valid utf-8: undecodable byte 0xe9 on line 2")


def test_bad_json_lines(seeded, tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "ok"}\n{"text": broken\n')
    refuse(seeded, p, "Could not read")


def test_unknown_encoding(seeded, small_csv):
    refuse(seeded, small_csv, "Unknown encoding", encoding="klingon-8")


def test_same_column_for_two_roles(seeded, small_csv):
    refuse(seeded, small_csv, "two roles", text="text", label="text")


def test_column_type_conflict_across_files_keeps_both_as_text(ws, tmp_path):
    ws.ingest(write_csv(tmp_path / "a.csv", [{"text": "x", "extra": 1}]))
    ws.ingest(write_csv(tmp_path / "b.csv", [{"text": "y", "extra": "word"}]))
    assert dict(ws.store.sample_columns())["extra"] == "VARCHAR"
    assert ws.samples(["extra"])["extra"].tolist() == ["1", "word"]


def test_reserved_column_names_renamed(ws, tmp_path):
    p = write_csv(tmp_path / "r.csv", [{"text": "x", "intent": "a", "label": "old", "row_id": 7}])
    s = ws.ingest(p, label="intent")
    assert "input_label" in s.extra_columns and "input_row_id" in s.extra_columns
    assert ws.samples(["label", "input_label"]).iloc[0].tolist() == ["a", "old"]


# --------------------------------------------------------------------------- review fixes (wrong answers)
def test_float_labels_with_gaps_read_as_whole_numbers(ws):
    """pandas stores int labels with missing values as float64: 1.0 must be the label "1", not "1.0"."""
    ws.ingest(pd.DataFrame({"text": ["a", "b", "c"], "label": [0.0, 1.0, np.nan]}))
    assert ws.samples(["label"])["label"].tolist()[:2] == ["0", "1"]
    assert ws.samples(["label"])["label"].isna().tolist()[2]


def test_float_nan_is_missing_not_a_number(ws, tmp_path):
    pq.write_table(pa.table({"text": ["a", "b", "c", "d"], "score": [0.1, float("nan"), 0.9, None]}),
                   tmp_path / "n.parquet")
    ws.ingest(tmp_path / "n.parquet")
    (tmp_path / "n2.csv").write_text("text,val\nx,0.5\ny,nan\n")
    ws.ingest(tmp_path / "n2.csv")
    df = ws.samples(["score", "val"])
    assert df["score"].isna().tolist() == [False, True, False, True, True, True]
    assert df["val"].isna().tolist() == [True, True, True, True, False, True]


def test_categorical_column_becomes_text(ws):
    ws.ingest(pd.DataFrame({"text": ["a", "b"], "grp": pd.Categorical(["g1", "g2"])}))
    assert dict(ws.store.sample_columns())["grp"] == "VARCHAR"


def test_file_columns_named_like_tool_columns_are_kept_aside(ws):
    s = ws.ingest(pd.DataFrame({"text": ["a", "b"], "label_quality": [1.0, 0.5], "x": [1, 2]}))
    assert {"input_label_quality", "input_x"} <= set(s.extra_columns)
    assert "label_quality" not in dict(ws.store.sample_columns())


def test_generated_ids_do_not_clash_across_files_with_a_source_column(ws, tmp_path):
    for name in ("part1", "part2"):
        ws.ingest(write_csv(tmp_path / f"{name}.csv", [{"text": f"{name} a", "domain": "web"},
                                                       {"text": f"{name} b", "domain": "news"}]))
    assert ws.samples(["id", "source"]).values.tolist() == [
        ["part1-000001", "web"], ["part1-000002", "news"], ["part2-000001", "web"], ["part2-000002", "news"]]


def test_second_csv_keeps_a_typed_column_when_its_values_fit(ws, tmp_path):
    ws.ingest(write_csv(tmp_path / "a.csv", [{"text": "x", "n": 1}, {"text": "y", "n": 2}]))
    ws.ingest(write_csv(tmp_path / "b.csv", [{"text": "z", "n": 3}]))
    assert dict(ws.store.sample_columns())["n"] == "BIGINT"
    ws.ingest(write_csv(tmp_path / "c.csv", [{"text": "w", "n": "many"}]))
    assert dict(ws.store.sample_columns())["n"] == "VARCHAR"
    assert ws.samples(["n"])["n"].tolist() == ["1", "2", "3", "many"]


def test_typed_columns_of_a_later_csv_are_judged_each_on_its_own(ws, tmp_path):
    """One scan checks every typed column; each keeps its type or becomes text by its own values."""
    ws.ingest(write_csv(tmp_path / "a.csv", [{"text": "x", "n": 1, "f": 0.5, "m": 7}]))
    ws.ingest(write_csv(tmp_path / "b.csv", [{"text": "y", "n": 2, "f": "half", "m": 1.5}]))
    cols = dict(ws.store.sample_columns())
    assert (cols["n"], cols["f"], cols["m"]) == ("BIGINT", "VARCHAR", "VARCHAR")
    assert ws.samples(["n", "f", "m"]).values.tolist() == [[1, "0.5", "7"], [2, "half", "1.5"]]


def test_row_ids_follow_file_order_across_parallel_row_groups(ws, tmp_path):
    """300k rows span several DuckDB row groups read in parallel: row_id and generated ids still follow the file."""
    n = 300_000
    pd.DataFrame({"text": [f"t{i} w" for i in range(n)], "label": ["a", "b", "c"] * (n // 3)}).to_csv(
        tmp_path / "big.csv", index=False)
    ws.ingest(pd.DataFrame({"text": ["first"], "label": ["a"]}))  # row ids of the big file start at 1
    ws.ingest(tmp_path / "big.csv")
    with ws.store.cursor() as cur:
        bad = cur.execute("""SELECT count(*) FILTER (WHERE text <> printf('t%d w', row_id - 1)),
                                    count(*) FILTER (WHERE id <> printf('big-%06d', row_id)),
                                    count(*) FILTER (WHERE n_tokens <> 2), count(*)
                             FROM samples WHERE source = 'big'""").fetchall()[0]
    assert bad == (0, 0, 0, n)


def test_row_ids_follow_the_input_with_many_labels(ws):
    """The label's missing-value check must not reorder rows (DuckDB turns a long IN list into a hash join that
    loses insertion order): a 400k-row frame with 50 labels in random order keeps its order."""
    import numpy as np

    n = 400_000
    rng = np.random.default_rng(0)
    labels = [f"label_{x:02d}" for x in rng.integers(0, 50, n)]
    ws.ingest(pd.DataFrame({"id": [f"r{i:07d}" for i in range(n)], "text": [f"t{i}" for i in range(n)],
                            "label": labels}))
    got = ws.store.query_df("SELECT id, label FROM samples ORDER BY row_id")
    assert (got["id"].to_numpy() == np.array([f"r{i:07d}" for i in range(n)])).all()
    assert (got["label"].to_numpy() == np.array(labels)).all()


def test_token_counts_match_a_plain_split_on_irregular_whitespace(ws, tmp_path):
    """n_tokens = words between spaces, tabs and line breaks, whatever the spacing; texts of whitespace only
    (a form feed included) are empty and skipped."""
    import re

    texts = ["a b c", " a b", "a  b", "a b ", "a\tb", "a\nb  c", "a\r\nb", "x", "日本 語 テキスト", "a\u00a0b",
             "a\fb", "\f x", "  ", "\f", "\f \f", "end"]
    p = tmp_path / "w.jsonl"
    p.write_text("".join(json.dumps({"text": t, "label": "l"}) + "\n" for t in texts), encoding="utf-8")
    s = ws.ingest(p)
    kept = [t for t in texts if re.search(r"[^\t\n\f\r ]", t)]
    assert s.skipped_empty_text == len(texts) - len(kept) == 3
    got = ws.samples(["text", "n_tokens"])
    assert got["text"].tolist() == kept
    assert got["n_tokens"].tolist() == [len([w for w in re.split(r"[ \t\n\r]+", t) if w]) for t in kept]


def test_many_new_columns_and_a_column_turning_to_text_are_one_rebuild(ws, tmp_path):
    """More than RETYPE_REBUILD changes take the rebuild path: new columns appended (NULL for earlier rows), an
    earlier BIGINT column whose new values are words becomes text with its old values kept, row order kept."""
    from curate_core.inputs import RETYPE_REBUILD

    ws.ingest(write_csv(tmp_path / "a.csv", [{"text": "x", "n": 1}, {"text": "y", "n": 2}]))
    k = RETYPE_REBUILD + 3
    ws.ingest(write_csv(tmp_path / "b.csv", [{"text": "z", "n": "many", **{f"m{j}": j for j in range(k)}},
                                             {"text": "w", "n": "few", **{f"m{j}": 0.5 for j in range(k)}}]))
    cols = dict(ws.store.sample_columns())
    assert cols["n"] == "VARCHAR" and all(cols[f"m{j}"] == "DOUBLE" for j in range(k))
    got = ws.store.rows(["row_id", "text", "n", "m0", f"m{k - 1}"])
    assert got["text"].tolist() == ["x", "y", "z", "w"] and got["n"].tolist() == ["1", "2", "many", "few"]
    assert got["m0"].isna().tolist() == [True, True, False, False] and got[f"m{k - 1}"].tolist()[2:] == [k - 1, 0.5]


def test_texts_are_stored_uncompressed_also_after_a_rebuild(ws, tmp_path):
    """The texts skip compression (store.TEXT_TYPE: compressing them slowed the ingest and every scan of them): a
    new workspace declares it, and the rebuild that many new columns take keeps it (a table made by a query
    would get the default storage back)."""
    from curate_core.inputs import RETYPE_REBUILD

    def storage() -> set[str]:
        with ws.store.cursor() as cur:
            cur.execute("CHECKPOINT")
            return {r[0] for r in cur.execute(
                "SELECT DISTINCT compression FROM pragma_storage_info('samples') "
                "WHERE column_name = 'text' AND segment_type = 'VARCHAR'").fetchall()}

    texts = [f"the same few words again {i % 7}" for i in range(3000)]  # what FSST would compress
    ws.ingest(write_csv(tmp_path / "a.csv", [{"text": t, "label": "a"} for t in texts]))
    assert storage() == {"Uncompressed"}
    k = RETYPE_REBUILD + 3
    ws.ingest(write_csv(tmp_path / "b.csv", [{"text": t, **{f"m{j}": j for j in range(k)}} for t in texts[:50]]))
    assert storage() == {"Uncompressed"}
    assert ws.samples(["text"])["text"].tolist() == texts + texts[:50]


def test_utf8_check_skips_decoding_ascii_chunks_but_not_a_character_split_across_them(tmp_path):
    """ASCII chunks are only hashed; a multi-byte character cut by the 4 MiB chunk boundary is still decoded
    whole, a broken one is found on its line (also when only ASCII follows it), and the hash is the file's."""
    import xxhash

    from curate_core.errors import CurateError
    from curate_core.ingest import check_utf8

    ascii_chunk = b"a,b\n" + b"x,y\n" * 1048575  # exactly 4 MiB: the fast path
    cut = b"x,y\n" * 1048575 + b"abc"  # the next chunk's last byte starts a 3-byte character
    ok = tmp_path / "ok.csv"
    ok.write_bytes(ascii_chunk + cut + "\u20ac,z\n".encode() + b"x,y\n" * 1000)
    assert check_utf8(ok) == xxhash.xxh3_128(ok.read_bytes()).hexdigest()
    for broken in (b"\xe2\x82,z\n", b"\xe2,z\n"):  # the rest of the character missing; after it, ASCII only
        bad = tmp_path / "bad.csv"
        bad.write_bytes(ascii_chunk + cut + broken + b"x,y\n" * 1000)
        with pytest.raises(CurateError, match="on line 2097152"):
            check_utf8(bad)


def test_column_types_are_judged_by_every_value_the_last_one_too(ws, tmp_path):
    """Types are inferred by searching for a value that does not fit: a misfit in the last of 5,000 rows still
    makes the column wider (integers → DOUBLE, numbers → text, booleans → text), empty cells are skipped, and
    a column of empty cells stays text."""
    n = 5000
    rows = [{"text": f"t{i}", "i": i, "i_then_x": i, "d_then_w": i + 0.5, "b_then_n": "true" if i % 2 else "false",
             "gaps": "" if i % 3 else i, "empty": ""} for i in range(n)]
    rows[-1].update(i_then_x=2.5, d_then_w="word", b_then_n="7")
    ws.ingest(write_csv(tmp_path / "t.csv", rows))
    cols = dict(ws.store.sample_columns())
    assert [cols[c] for c in ("i", "i_then_x", "d_then_w", "b_then_n", "gaps", "empty")] == \
        ["BIGINT", "DOUBLE", "VARCHAR", "VARCHAR", "BIGINT", "VARCHAR"]
    got = ws.samples(["i_then_x", "d_then_w", "gaps"])
    assert got["i_then_x"].tolist()[-2:] == [n - 2, 2.5] and got["d_then_w"].tolist()[-1] == "word"
    assert got["gaps"].isna().sum() == n - len(range(0, n, 3))
