"""Resources: named things a score reads from a workspace (``embeddings``, ``probe`` …), each loaded by the
module of the stage that makes it.

A stage module registers a loader with :func:`resource`; :class:`~curate_core.scores.base.ScoreContext` calls
:func:`load` on first use. The registry lives here, below both, so stages never import the score plugins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .errors import CurateError


@dataclass(frozen=True)
class Resource:
    name: str
    load: Callable[[Any], Any]  # store -> value (raise CurateError when unavailable)
    stage: str | None = None  # the stage that produces it: its run key is part of a reader's inputs


_RESOURCES: dict[str, Resource] = {}

#: resources every workspace has (read from `samples` by the score context itself), produced by no stage
SAMPLE_RESOURCES = ("texts", "row_ids", "ids", "labels", "classes", "label_codes")


def resource(name: str, stage: str | None = None) -> Callable:
    """Register a loader ``fn(store) -> value`` for a context resource (e.g. ``probe`` outputs)."""

    def deco(fn: Callable[[Any], Any]) -> Callable:
        _RESOURCES[name] = Resource(name, fn, stage)
        return fn

    return deco


def get(name: str) -> Resource:
    if name not in _RESOURCES:
        raise CurateError(f"unknown resource `{name}`")
    return _RESOURCES[name]


def stage_of(name: str) -> str | None:
    """The stage whose output a resource is (None for the samples' own columns)."""
    return None if name in SAMPLE_RESOURCES or name not in _RESOURCES else _RESOURCES[name].stage
