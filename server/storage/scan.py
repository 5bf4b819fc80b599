"""The rules both adapters follow to answer ``ResultStore.scan`` alike: which fields a scan can
carry and in which Python type, the order of rows, and how rows are cut into pages.

Pure functions over plain data; the adapters do the I/O. A field's type comes from the result
model's annotation (``lineprotocol.field_types``), never from the value at hand, so a whole float
that InfluxDB's JSON gives as ``40`` is ``40.0`` here as it is from SQLite.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from probes.models import MODEL_BY_KIND, Kind
from server.storage.base import ScanRow
from server.storage.lineprotocol import FieldType, field_types

#: The InfluxDB tags a scan carries as fields: plain strings, like the other scalar fields.
_TAG_FIELDS = {"engine": FieldType.STRING, "target": FieldType.STRING}


@functools.cache
def scalar_fields(kind: Kind) -> Mapping[str, FieldType]:
    """Every field a scan of ``kind`` can carry: the model's fields but its lists and dicts and
    what a ``ScanRow`` holds apart (kind, probe, ``measured_at``)."""
    stored = field_types(MODEL_BY_KIND[Kind(kind)])
    scalar = {name: kind_ for name, kind_ in stored.items() if kind_ is not FieldType.JSON}
    return dict(sorted((scalar | _TAG_FIELDS).items()))


@functools.cache
def _known_anywhere() -> frozenset[str]:
    return frozenset(name for kind in Kind for name in scalar_fields(kind))


def scan_fields(kind: Kind, fields: Sequence[str] | None) -> dict[str, FieldType]:
    """The fields a scan of ``kind`` carries, with their types, in the order asked for.

    None asks for all of the kind's scalar fields. A field of another kind is carried as None
    (one list of fields serves scans of several kinds); a name no kind has as a scalar field, or
    a list or dict field, is a ``ValueError`` naming it.
    """
    own = scalar_fields(kind)
    if fields is None:
        return dict(own)
    if isinstance(fields, str):
        raise ValueError(f"fields must be a list of field names, not the string {fields!r}")
    wanted: dict[str, FieldType] = {}
    for name in fields:
        if name not in _known_anywhere():
            raise ValueError(
                f"field {name!r} is not a scalar field of any result kind; a scan carries"
                f" e.g. {', '.join(list(scalar_fields(Kind.BANDWIDTH))[:6])}"
            )
        # Of another kind: no result of this one has it, so it stays None.
        wanted[name] = own.get(name, FieldType.STRING)
    return wanted


def probe_filter(probes: Sequence[str] | None) -> list[str] | None:
    """The probes a scan keeps, sorted and once each (None: every probe)."""
    if probes is None:
        return None
    if isinstance(probes, str):
        raise ValueError(f"probes must be a list of probe ids, not the string {probes!r}")
    return sorted(set(probes))


def check_page_size(page_size: int) -> None:
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        raise ValueError(f"page_size must be a whole number of at least 1, got {page_size!r}")


def scan_value(field_type: FieldType, value: Any) -> Any:
    """``value`` as a ``ScanRow`` carries it: the model's Python type, None for missing."""
    if value is None:
        return None
    match field_type:
        case FieldType.FLOAT:
            return float(value)
        case FieldType.INTEGER:
            return int(value)
        case FieldType.BOOLEAN:
            return bool(value)
        case FieldType.STRING:
            return str(value)
    raise ValueError(f"a scan carries no {field_type.value} field")


def retype(values: dict[str, Any], names: Sequence[str], field_type: FieldType) -> dict[str, Any]:
    """``values`` with the fields ``names`` (all of ``field_type``) put back in their type: the
    adapters' fast path, for the few fields their database gives in another type (InfluxDB's
    JSON gives whole floats as integers; SQLite's json_extract a lone boolean as 0 or 1)."""
    for name in names:
        value = values[name]
        if value is not None:
            values[name] = scan_value(field_type, value)
    return values


async def repage(
    batches: AsyncIterator[list[ScanRow]], page_size: int
) -> AsyncIterator[list[ScanRow]]:
    """Rows of ``batches`` (each already in order, one after the other) in pages of exactly
    ``page_size`` rows but the last; no empty page."""
    pending: list[ScanRow] = []
    async for batch in batches:
        pending.extend(batch)
        while len(pending) >= page_size:
            yield pending[:page_size]
            del pending[:page_size]
    if pending:
        yield pending
