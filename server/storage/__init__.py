"""Where results are kept: the ``ResultStore`` interface and its InfluxDB and SQLite adapters."""

from server.storage.base import (
    ItemWrite,
    ProbeIdentity,
    Refused,
    ResultStore,
    ScanRow,
    StoredResult,
    WriteOutcome,
)
from server.storage.influx import InfluxStore
from server.storage.sqlite import SqliteStore

__all__ = [
    "InfluxStore",
    "ItemWrite",
    "ProbeIdentity",
    "Refused",
    "ResultStore",
    "ScanRow",
    "SqliteStore",
    "StoredResult",
    "WriteOutcome",
]
