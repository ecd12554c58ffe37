"""Bad command lines and bad parameters: unknown commands, stages and options, parameters of the wrong type or
range, a score parameter that would have deleted scores, an eval file that shares no label. Each is refused
before anything runs (exit 2, ``error:`` first, a hint), and the workspace is as it was."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from curate_core import Workspace

from .helpers import ALL, assert_refused, cli, cli_process, fingerprint

CASES = {  # command line (after the workspace is filled in), words the error must say
    "no workspace there": (["info", "--workspace", "{tmp}/nowhere"], "No workspace"),
    "unknown stage": (["run", "--workspace", "{ws}", "--stages", "bogus"], "Unknown stage"),
    "param without a stage": (["run", "--workspace", "{ws}", "--param", "oops"], "Bad --param"),
    "param of an unknown stage": (["run", "--workspace", "{ws}", "--param", "nosuch.k=1"],
                                  "Parameters given for unknown stage `nosuch`"),
    "batch size 0": (["run", "--workspace", "{ws}", "--stages", "embed", "--param", "embed.batch_size=0"],
                     "embed.batch_size must be"),
    "max windows 0": (["run", "--workspace", "{ws}", "--stages", "embed", "--param", "embed.max_windows=0"],
                      "max_windows must be"),
    "epochs not a number": (["run", "--workspace", "{ws}", "--stages", "probe", "--param", "probe.epochs=abc"],
                            "probe.epochs must be a whole number"),
    "ray options without ray": (["run", "--workspace", "{ws}", "--ray-num-cpus", "2"], "are for the Ray engine"),
    "unknown command": (["bogus"], "invalid choice: 'bogus'"),
    "unknown engine": (["run", "--workspace", "{ws}", "--engine", "nope"], "invalid choice: 'nope'"),
    "missing --recipe": (["select", "--workspace", "{ws}"], "the following arguments are required: --recipe"),
    "k not a number": (["search", "--workspace", "{ws}", "--query", "x", "--k", "abc"], "invalid int value: 'abc'"),
    "k below 1": (["search", "--workspace", "{ws}", "--query", "x", "--k", "-5"], "--k must be at least 1"),
    "empty query": (["search", "--workspace", "{ws}", "--query", " "], "The keyword query is empty"),
    "search: unknown id": (["search", "--workspace", "{ws}", "--like", "no-such-id"], "no-such-id"),
    "held-out of 1": (["evaluate", "--workspace", "{ws}", "--recipe", ALL, "--held-out", "1"],
                      "--held-out must be between 0 and 1"),
    "csv-safe with parquet": (["export", "--workspace", "{ws}", "--recipe", ALL, "--out", "{tmp}/o", "--csv-safe"],
                              "--csv-safe is for --format csv"),
    "scores without --out": (["scores", "--workspace", "{ws}"], "scores needs --workspace DIR --out FILE"),
    "mixture save empty": (["mixture", "suggest", "--workspace", "{ws}", "--recipe", ALL, "--group-by", "source",
                            "--save", " "], "--save needs a recipe name"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_a_bad_command_line_is_refused_before_anything_runs(built, tmp_path, case):
    args, words = CASES[case]
    before = fingerprint(built)
    r = cli(*[a.format(ws=built, tmp=tmp_path) for a in args])
    assert_refused(r, words)
    assert fingerprint(built) == before and not (tmp_path / "o").exists()


def test_the_cli_refuses_in_a_process_of_its_own_too(built):
    """The same contract from the outside (what a shell sees): exit 2, `error:` first, no traceback."""
    before = fingerprint(built)
    for args in (["run", "--workspace", built, "--stages", "bogus"], ["nope"],
                 ["select", "--workspace", built, "--recipe", built / "missing.json"]):
        assert_refused(cli_process(*args))
    assert fingerprint(built) == before


def test_a_bad_score_parameter_refuses_the_run_and_keeps_every_score(built):
    """Issue 17: `{"aum": {"percentile": 500}}` used to print "scores: done" with the aum columns gone, and the sticky
    parameter kept the loss. Now the run is refused (exit 2, `error:` + hint) before anything is replaced."""
    with Workspace(built) as ws:
        before = ws.store.read_table("scores")
    whole = fingerprint(built)
    for bad in ({"aum": {"percentile": 500}}, {"aum": {"cutoff": "low"}}, {"confidence": {"percentile": 0}},
                {"label_quality": {"filter_by": "nope"}}, {"aum": {"percentile": 90, "typo": 1}}):
        r = cli("run", "--workspace", built, "--stages", "scores", "--param", "scores.params=" + json.dumps(bad))
        assert r.rc == 2, (bad, r.out, r.err)
        assert r.err.startswith("error: ") and "Bad parameters for the score" in r.err, r.err
        assert "nothing was changed" in r.err
        assert "this is a bug" not in r.err
        with Workspace(built) as ws:
            pd.testing.assert_frame_equal(ws.store.read_table("scores"), before)
    assert fingerprint(built) == whole
    with Workspace(built) as ws:  # the refused parameter is not sticky: a plain run changes nothing
        res = ws.run(["scores"])
        # refused before it started, so the finished run is simply reused (no stage ran at all)
        assert all(r["status"] == "reused" for r in res), res
        pd.testing.assert_frame_equal(ws.store.read_table("scores"), before)


def test_an_eval_file_that_shares_no_label_is_refused_not_scored_zero(built, tmp_path):
    """Issue 17: `evaluate` with an eval file whose labels share none with the workspace reported 0.0000."""
    ev = tmp_path / "eval.csv"
    pd.DataFrame({"text": ["card charged 3 times please", "flight to city 4 now"], "label": ["x", "y"]}).to_csv(
        ev, index=False)
    before = fingerprint(built)
    r = cli_process("evaluate", "--workspace", built, "--recipe", ALL, "--eval", ev)
    assert_refused(r, "shares no label with the workspace", "--eval-label")
    assert fingerprint(built) == before
