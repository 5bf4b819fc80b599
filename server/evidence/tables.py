"""The export's results as tables for people: ``results.csv`` (one row per result, every scalar
field of every measurement kind as a column) and ``results.xlsx`` (one sheet per kind, its own
fields). Written row by row as the results stream, so a year of results never sits in memory.

Reading copies only: the evidence is ``results.jsonl`` (lists such as per-interval samples and
the probes' signatures are there, not here). The same results give the same bytes: the XLSX
document properties are fixed (its created date is the export's), and XlsxWriter stamps the
parts of the zip with a fixed 1980 date.
"""

from __future__ import annotations

import csv
import enum
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import xlsxwriter
from xlsxwriter.worksheet import Worksheet

from probes.models import Kind, Result
from server.compliance.stats import vietnam_time
from server.storage.scan import scalar_fields

#: The kinds an export holds: measurements. Heartbeats say a probe is alive; the registry's
#: last-seen time (in context.json) carries that.
MEASUREMENT_KINDS: tuple[Kind, ...] = (
    Kind.BANDWIDTH, Kind.LATENCY, Kind.DNS, Kind.IPV6, Kind.CELLULAR,
)  # fmt: skip
_FIRST = ("result_id", "probe_id", "kind", "measured_at", "measured_at_vietnam", "status",
          "failure_kind", "error", "engine", "target", "duration_ms")  # fmt: skip
#: Left out of the tables: the signature (it proves the JSON line, not a table row) and the
#: schema version (the JSON lines carry both).
_LEFT_OUT = frozenset({"signature", "schema_version"})
#: Excel's rows per sheet (https://support.microsoft.com/office/excel-specifications-and-limits).
XLSX_MAX_ROWS = 1_048_576
#: Integers beyond 2**53 lose digits as Excel numbers: written as text.
_EXACT_INT = 2**53


def columns(kinds: Sequence[Kind]) -> list[str]:
    """The columns for results of ``kinds``: the envelope first, then the kinds' other scalar
    fields in name order."""
    rest = sorted(
        {name for kind in kinds for name in scalar_fields(kind)} - set(_FIRST) - _LEFT_OUT
    )
    return list(_FIRST) + rest


def cells(result: Result) -> dict[str, Any]:
    """A result's values by column name; a column the result does not have is absent (None).

    Read from the model's ``__dict__`` (its fields), not with ``getattr``: asking a pydantic
    model for a field it lacks goes through its ``__getattr__`` and an exception, which for the
    CSV's columns of every kind cost more than writing the row."""
    values: dict[str, Any] = {}
    for name, value in result.__dict__.items():
        if isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, uuid.UUID):
            value = str(value)
        values[name] = value
    values["measured_at"] = result.measured_at.astimezone(UTC).isoformat()
    values["measured_at_vietnam"] = vietnam_time(result.measured_at).strftime("%Y-%m-%d %H:%M:%S")
    return values


def _csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class TableWriter:
    """Writes ``results.csv`` and/or ``results.xlsx`` in ``directory`` one result at a time."""

    def __init__(
        self, directory: Path, *, csv_file: bool, xlsx_file: bool, created_at: datetime
    ) -> None:
        self._csv_columns = columns(MEASUREMENT_KINDS)
        self._kind_columns = {kind: columns([kind]) for kind in MEASUREMENT_KINDS}
        # Column numbers by name: a row is filled from the few values a result has, not by
        # asking each of the ~100 columns for a value most results lack.
        self._csv_index = {name: i for i, name in enumerate(self._csv_columns)}
        self._kind_index = {
            kind: {name: i for i, name in enumerate(names)}
            for kind, names in self._kind_columns.items()
        }
        self._csv: TextIO | None = None
        self._csv_writer: Any = None
        if csv_file:
            # UTF-8 with a byte order mark: Excel opens it with the diacritics intact.
            self._csv = (directory / "results.csv").open("w", encoding="utf-8-sig", newline="")
            self._csv_writer = csv.writer(self._csv, lineterminator="\r\n")
            self._csv_writer.writerow(self._csv_columns)
        self._book: xlsxwriter.Workbook | None = None
        self._sheets: dict[Kind, tuple[Worksheet, int, int]] = {}
        if xlsx_file:
            self._book = xlsxwriter.Workbook(
                str(directory / "results.xlsx"),
                {"constant_memory": True, "tmpdir": str(directory), "strings_to_numbers": False,
                 "strings_to_formulas": False, "strings_to_urls": False},
            )  # fmt: skip
            self._book.set_properties(
                {
                    "title": "hamletnet: kết quả đo",
                    "author": "hamletnet-server",
                    "comments": "Reading copy of results.jsonl (the signed evidence).",
                    "created": created_at.astimezone(UTC).replace(tzinfo=None),
                }
            )
            self._header = self._book.add_format({"bold": True})
            for kind in MEASUREMENT_KINDS:
                self._new_sheet(kind, kind.value, 0)

    def _new_sheet(self, kind: Kind, name: str, part: int) -> None:
        assert self._book is not None
        sheet = self._book.add_worksheet(name)
        for col, title in enumerate(self._kind_columns[kind]):
            sheet.write_string(0, col, title, self._header)
        self._sheets[kind] = (sheet, 1, part)

    def add(self, result: Result) -> None:
        values = cells(result)
        if self._csv_writer is not None:
            line = [""] * len(self._csv_columns)
            for name, value in values.items():
                at = self._csv_index.get(name)
                if at is not None:
                    line[at] = _csv_text(value)
            self._csv_writer.writerow(line)
        if self._book is not None:
            kind = Kind(result.kind)
            sheet, row, part = self._sheets[kind]
            if row >= XLSX_MAX_ROWS:
                self._new_sheet(kind, f"{kind.value} ({part + 2})", part + 1)
                sheet, row, part = self._sheets[kind]
            # XlsxWriter keeps a row's cells until the next row begins and writes them in column
            # order, so the order they are given in does not change the file.
            index = self._kind_index[kind]
            for name, value in values.items():
                col = index.get(name)
                if col is not None:
                    _write(sheet, row, col, value)
            self._sheets[kind] = (sheet, row + 1, part)

    def close(self) -> None:
        if self._csv is not None:
            self._csv.close()
            self._csv = None
        if self._book is not None:
            book, self._book = self._book, None
            book.close()

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _write(sheet: Worksheet, row: int, col: int, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool):
        sheet.write_boolean(row, col, value)
    elif (isinstance(value, int) and abs(value) < _EXACT_INT) or isinstance(value, float):
        sheet.write_number(row, col, value)
    else:
        sheet.write_string(row, col, str(value))
