"""Published compliance rows (``server.compliance.publish``) in each store's own shape: InfluxDB
line protocol and InfluxQL for the ``compliance`` measurement, SQL for SQLite's ``compliance``
table. Pure functions; ``influx.InfluxStore`` and ``sqlite.SqliteStore`` do the I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.storage.lineprotocol import check_tag_value, datetime_to_ns, ns_to_datetime

#: The InfluxDB measurement (and SQLite table) the rows go to.
MEASUREMENT = "compliance"
#: Tag keys of a row; a level leaves out the ones it has no value for.
TAG_KEYS = ("commune", "hamlet", "indicator", "isp", "level", "period", "probe")

FieldValue = float | int | str | bool


@dataclass(frozen=True, slots=True)
class ComplianceRow:
    """One point: ``at`` is the month's first instant in UTC, ``tags`` say what it is about."""

    at: datetime
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]


_ESCAPE_KEY = str.maketrans({",": "\\,", " ": "\\ ", "=": "\\="})
_ESCAPE_STRING = str.maketrans({'"': '\\"', "\\": "\\\\"})


def _field(value: FieldValue) -> str:
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return '"' + value.translate(_ESCAPE_STRING) + '"'


def row_to_line(row: ComplianceRow) -> str:
    """One point of the ``compliance`` measurement; the same row always gives the same line, so
    a re-run overwrites rather than adds (same series, same timestamp). Integer fields stay
    integers and floats floats (``samples`` is always an int), so a shard never sees a type
    conflict. Raises ``ValueError`` for a tag value line protocol cannot carry."""
    unknown = set(row.tags) - set(TAG_KEYS)
    if unknown:
        raise ValueError(f"compliance row has unknown tag(s) {sorted(unknown)}; use {TAG_KEYS}")
    series = [MEASUREMENT]
    for key in sorted(row.tags):
        value = row.tags[key]
        if value:
            check_tag_value(key, value)
            series.append(f"{key}={value.translate(_ESCAPE_KEY)}")
    fields = ",".join(
        f"{name.translate(_ESCAPE_KEY)}={_field(value)}"
        for name, value in sorted(row.fields.items())
    )
    return f"{','.join(series)} {fields} {datetime_to_ns(row.at)}"


def delete_statement(measurement: str, start: datetime, end: datetime) -> str:
    """InfluxQL that deletes the measurement's points with ``start <= time < end``."""
    return (
        f'DELETE FROM "{measurement}"'  # noqa: S608 (plain measurement name, integer times)
        f" WHERE time >= {datetime_to_ns(start)} AND time < {datetime_to_ns(end)}"
    )


def select_statement(measurement: str, start: datetime, end: datetime) -> str:
    return (
        f'SELECT * FROM "{measurement}"'  # noqa: S608 (plain measurement name, integer times)
        f" WHERE time >= {datetime_to_ns(start)} AND time < {datetime_to_ns(end)}"
    )


def influx_row(time_ns: int, columns: Mapping[str, Any]) -> ComplianceRow:
    """A row read back from InfluxDB: tag columns to tags, the rest (not null) to fields."""
    tags = {k: str(v) for k, v in columns.items() if k in TAG_KEYS and v not in (None, "")}
    fields = {k: v for k, v in columns.items() if k not in TAG_KEYS and v is not None}
    return ComplianceRow(ns_to_datetime(time_ns), tags, fields)


def sort_key(row: ComplianceRow) -> tuple[datetime, tuple[tuple[str, str], ...]]:
    return row.at, tuple(sorted(row.tags.items()))


# -- SQLite -------------------------------------------------------------------------------------

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS compliance (
    at_ns   INTEGER NOT NULL,
    tags    TEXT NOT NULL,  -- JSON object, keys sorted: what the row is about
    fields  TEXT NOT NULL,  -- JSON object
    PRIMARY KEY (at_ns, tags)
);
"""
SQLITE_DELETE = "DELETE FROM compliance WHERE at_ns >= ? AND at_ns < ?"
SQLITE_INSERT = "INSERT OR REPLACE INTO compliance (at_ns, tags, fields) VALUES (?, ?, ?)"
SQLITE_SELECT = (
    "SELECT at_ns, tags, fields FROM compliance WHERE at_ns >= ? AND at_ns < ? ORDER BY at_ns, tags"
)


def sqlite_values(row: ComplianceRow) -> tuple[int, str, str]:
    return (
        datetime_to_ns(row.at),
        json.dumps(dict(row.tags), sort_keys=True, ensure_ascii=False),
        json.dumps(dict(row.fields), sort_keys=True, ensure_ascii=False),
    )


def sqlite_row(at_ns: int, tags: str, fields: str) -> ComplianceRow:
    return ComplianceRow(ns_to_datetime(at_ns), json.loads(tags), json.loads(fields))
