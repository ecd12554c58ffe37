"""Declared outputs: the per-row columns and tables stages and scores write, as data.

Every list of tool columns elsewhere (reserved names at ingest, "which stage makes this column" hints, the
columns pages show) is derived from these declarations, never written out by hand.
"""

from __future__ import annotations

from dataclasses import dataclass


#: per-row columns an export adds to the data file (the label before relabels, repeats, soft weights)
EXPORT_ADDED = ("label_original", "repeats", "weight")


@dataclass(frozen=True)
class Column:
    """A per-row column the tool writes: its name, DuckDB type, a title for pages, and whether it is a flag
    (a boolean "this row is flagged" column)."""

    name: str
    type: str = "DOUBLE"
    title: str = ""
    flag: bool = False

    @property
    def integer(self) -> bool:
        return self.type in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT")

    def as_json(self) -> dict:
        return {"name": self.name, "type": self.type, **({"title": self.title} if self.title else {}),
                **({"flag": True} if self.flag else {})}


@dataclass(frozen=True)
class Table:
    """An output table: with *features*, its per-row columns (keyed by ``row_id``) are part of the workspace's
    catalog (filters, colours, exports); without, it is storage only (vectors, per-epoch arrays, caches)."""

    name: str
    columns: tuple[Column, ...] = ()
    features: bool = True


def table(spec: "str | Table") -> Table:
    return spec if isinstance(spec, Table) else Table(spec)
