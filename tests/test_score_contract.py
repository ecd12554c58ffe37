"""The plugin contract, for every registered score (a new plugin is covered the day it is registered).

On one tiny synthetic dataset — texts with repeats, URLs and shouting, labels with flips and unlabelled rows,
clustered embeddings, a synthetic probe — every score must: run (not be skipped), return one value per row of
a numeric (or, for categorical scores, string) dtype, keep its NaN policy, give the same values twice, declare
a known direction, and put its extra columns and summary in the result.
"""

from __future__ import annotations

import numpy as np
import pytest

from curate_core.scores import DIRECTIONS, ScoreContext, compute_all, registry

from . import labeldata

N, UNLABELLED = 120, 12


@pytest.fixture(scope="module")
def results():
    probe, codes, _ = labeldata.synthetic_probe(n=N, rate=0.2, unlabelled=UNLABELLED, seed=3)
    labels = [probe.classes[c] if c >= 0 else None for c in codes]
    rng = np.random.default_rng(0)
    words = ["card", "payment", "refund", "flight", "hotel", "rain", "snow", "balance", "transfer", "atm"]
    texts = [" ".join(rng.choice(words, 6)) + f" {i}" for i in range(N)]
    texts[5] = texts[4] = "exactly the same text"
    texts[7] = "SEE HTTP://EXAMPLE.COM NOW!!! " * 3
    emb = rng.normal(size=(N, 16)).astype(np.float32)
    emb[9] = emb[8] + 1e-4
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)

    def run():
        ctx = ScoreContext.from_arrays(texts, labels, emb, probe=probe)
        ctx.params = {"dsir": {"target": texts[:20]}}  # a target, so the DSIR score runs too
        return compute_all(ctx)

    return run(), run(), codes


def test_every_registered_score_runs(results):
    (cols, summaries, skipped), _, _ = results
    assert registry(), "no score plugins registered"
    assert not skipped, skipped
    assert set(registry()) <= set(cols) and set(registry()) == set(summaries)


@pytest.mark.parametrize("name", sorted(registry()))
def test_score_contract(results, name):
    (cols, summaries, _), (cols2, _, _), codes = results
    sc = registry()[name]
    assert sc.title and isinstance(sc.version, str) and sc.direction in DIRECTIONS
    v = np.asarray(cols[name])
    assert v.shape == (N,)
    if v.dtype == object:  # categorical scores (e.g. a language code): strings or missing
        assert all(x is None or isinstance(x, str) for x in v)
        assert [x for x in v] == [x for x in np.asarray(cols2[name])]
    else:
        assert v.dtype.kind in "fiub", v.dtype
        nan = np.isnan(v.astype(float))
        if sc.nan_policy == "unlabelled":
            assert np.array_equal(nan, codes < 0), "NaN exactly where the label is missing"
        elif sc.nan_policy == "never":
            assert not nan.any()
        assert np.array_equal(v, np.asarray(cols2[name]), equal_nan=v.dtype.kind == "f")  # deterministic
    assert summaries[name]["title"] == sc.title and summaries[name]["direction"] == sc.direction


def test_flag_columns_are_boolean_and_counted(results):
    (cols, summaries, _), _, _ = results
    for name, s in summaries.items():
        col = s.get("flag_column")
        if col:
            assert cols[col].dtype == bool and cols[col].shape == (N,), (name, col)
            assert s["flagged"] == int(cols[col].sum()), name


def test_every_column_the_tool_writes_is_reserved_at_ingest(results):
    """A file column with the name of a tool column is kept aside (input_<name>); the list must stay complete."""
    import pyarrow as pa

    from curate_core.pipeline import tool_columns
    from curate_core.textstats import text_stats

    TOOL_COLUMNS = tool_columns()  # derived from what stages and scores declare
    (cols, _, _), _, _ = results
    stats = text_stats(pa.table({"row_id": [0], "text": ["a b"]}))
    written = set(cols) | set(stats.column_names) | {"x", "y", "cluster", "cluster_prob"}
    assert written - {"row_id"} <= TOOL_COLUMNS, sorted(written - {"row_id"} - TOOL_COLUMNS)


_KIND_OF_TYPE = {"DOUBLE": "f", "FLOAT": "f", "BIGINT": "i", "INTEGER": "i", "BOOLEAN": "b", "VARCHAR": "O"}


@pytest.mark.parametrize("name", sorted(registry()))
def test_score_returns_exactly_its_declared_columns_and_types(results, name):
    """What a score declares is what it writes: every column list elsewhere is derived from the declaration."""
    (cols, _, _), _, _ = results
    sc = registry()[name]
    assert sc.columns[0].name == name and sc.kind in ("row", "group", "global")
    for c in sc.columns:
        v = np.asarray(cols[c.name])
        assert v.dtype.kind == _KIND_OF_TYPE[c.type] or (c.type == "DOUBLE" and v.dtype.kind in "iu"), (c, v.dtype)
    flags = [c for c in sc.columns if c.flag]
    assert all(c.type == "BOOLEAN" for c in flags) and len(flags) <= 1
