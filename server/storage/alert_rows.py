"""Alert history (``server.alerts.message.annotation``) in each store's own shape: InfluxDB line
protocol and InfluxQL for the ``alerts`` measurement, SQL for SQLite's ``alerts`` table. Pure
functions; ``influx.InfluxStore`` and ``sqlite.SqliteStore`` do the I/O.

The shape is what the Grafana dashboards' annotation query reads (grafana/build.py
``alerts_annotation``): tags ``rule``, ``state``, ``probe``, ``hamlet``; fields ``title``, ``text``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.storage.lineprotocol import check_tag_value, datetime_to_ns, ns_to_datetime

#: The InfluxDB measurement (and SQLite table) the history goes to.
MEASUREMENT = "alerts"
TAG_KEYS = ("hamlet", "probe", "rule", "state")
FIELD_KEYS = ("text", "title")


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One phase change of one alert: when, what it is about (tags), and its words (fields)."""

    at: datetime
    tags: Mapping[str, str]
    fields: Mapping[str, str]


_ESCAPE_KEY = str.maketrans({",": "\\,", " ": "\\ ", "=": "\\="})
_ESCAPE_STRING = str.maketrans({'"': '\\"', "\\": "\\\\"})


def _check(row: AlertRow) -> None:
    unknown = (set(row.tags) - set(TAG_KEYS)) | (set(row.fields) - set(FIELD_KEYS))
    if unknown:
        raise ValueError(
            f"alert row has unknown key(s) {sorted(unknown)}; tags {TAG_KEYS}, fields {FIELD_KEYS}"
        )


def row_to_line(row: AlertRow) -> str:
    """One point of the ``alerts`` measurement. Raises ``ValueError`` for an unknown key or a
    tag value line protocol cannot carry."""
    _check(row)
    series = [MEASUREMENT]
    for key in sorted(row.tags):
        value = row.tags[key]
        if value:
            check_tag_value(key, value)
            series.append(f"{key}={value.translate(_ESCAPE_KEY)}")
    fields = ",".join(
        f'{name}="{value.translate(_ESCAPE_STRING)}"' for name, value in sorted(row.fields.items())
    )
    return f"{','.join(series)} {fields} {datetime_to_ns(row.at)}"


def select_statement(start: datetime, end: datetime) -> str:
    return (
        f'SELECT * FROM "{MEASUREMENT}"'  # noqa: S608 (constant name, integer times)
        f" WHERE time >= {datetime_to_ns(start)} AND time < {datetime_to_ns(end)}"
    )


def influx_row(time_ns: int, columns: Mapping[str, Any]) -> AlertRow:
    """A row read back from InfluxDB: tag columns to tags, the rest (not null) to fields."""
    tags = {k: str(v) for k, v in columns.items() if k in TAG_KEYS and v not in (None, "")}
    fields = {k: str(v) for k, v in columns.items() if k in FIELD_KEYS and v is not None}
    return AlertRow(ns_to_datetime(time_ns), tags, fields)


def sort_key(row: AlertRow) -> tuple[datetime, tuple[tuple[str, str], ...]]:
    return row.at, tuple(sorted(row.tags.items()))


# -- SQLite -------------------------------------------------------------------------------------

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    at_ns   INTEGER NOT NULL,
    tags    TEXT NOT NULL,  -- JSON object, keys sorted: rule, state, probe, hamlet
    fields  TEXT NOT NULL,  -- JSON object: title, text
    PRIMARY KEY (at_ns, tags)
);
"""
SQLITE_INSERT = "INSERT OR REPLACE INTO alerts (at_ns, tags, fields) VALUES (?, ?, ?)"
SQLITE_SELECT = (
    "SELECT at_ns, tags, fields FROM alerts WHERE at_ns >= ? AND at_ns < ? ORDER BY at_ns, tags"
)


def sqlite_values(row: AlertRow) -> tuple[int, str, str]:
    _check(row)
    return (
        datetime_to_ns(row.at),
        json.dumps(dict(row.tags), sort_keys=True, ensure_ascii=False),
        json.dumps(dict(row.fields), sort_keys=True, ensure_ascii=False),
    )


def sqlite_row(at_ns: int, tags: str, fields: str) -> AlertRow:
    return AlertRow(ns_to_datetime(at_ns), json.loads(tags), json.loads(fields))
