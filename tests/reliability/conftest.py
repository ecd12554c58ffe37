"""Workspaces of the reliability suite: built once per session (ingested, and run through every stage on the
fast pipeline), handed to each case as its own copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from curate_core import Workspace

from .helpers import FAST_RUN, frame


@pytest.fixture(scope="session")
def templates(tmp_path_factory) -> dict[str, Path]:
    """``ingested``: the suite's dataset, no stage run; ``built``: the same after every stage (TF-IDF + PCA)."""
    root = tmp_path_factory.mktemp("reliability")
    ingested, built = root / "ingested", root / "built"
    with Workspace(ingested) as ws:
        ws.ingest(frame())
    shutil.copytree(ingested, built)
    with Workspace(built) as ws:
        ws.run(params=FAST_RUN)
        assert set(ws.status().values()) == {"done"}
    return {"ingested": ingested, "built": built}


@pytest.fixture
def built(templates, tmp_path) -> Path:
    """A copy of the fully run workspace, this case's own (it may damage or change it)."""
    return Path(shutil.copytree(templates["built"], tmp_path / "ws"))


@pytest.fixture
def ingested(templates, tmp_path) -> Path:
    """A copy of the ingested workspace with no stage run yet."""
    return Path(shutil.copytree(templates["ingested"], tmp_path / "ws"))
