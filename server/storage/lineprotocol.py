"""Turns a stored result into one InfluxDB line-protocol point, and a queried row back into it.

Pure functions over plain data; ``influx.InfluxStore`` does the I/O. Each field's InfluxDB type
follows from the model's annotation, never from the value at hand, so a float-typed field is a
float in every point and a shard never sees a field type conflict.

The line is built here rather than with influxdb-client's ``Point``: ``Point`` cost 54 µs a
result against 34 µs for the same bytes built directly (bench/ingest.py profile), at the spine
of ingest. The escaping rules are InfluxDB's line-protocol reference ("Special characters");
``tests/server/storage/test_lineprotocol.py`` proves them by writing arbitrary results to a real
influxd and reading them back, and checks the bytes against ``Point`` for arbitrary input.
"""

from __future__ import annotations

import enum
import functools
import json
import types
import typing
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from probes.models import (
    MODEL_BY_KIND,
    RESULT_ADAPTER,
    Access,
    Kind,
    ResultBase,
    unbounded_limits,
)
from server.storage.base import ProbeIdentity, StoredResult

#: Tag keys, in the order a reader meets them; every other model field is a field.
TAG_KEYS = ("probe", "hamlet", "isp", "access", "engine", "target")

# Model fields that are not InfluxDB fields: the measurement (kind), the tags, the timestamp.
_NOT_FIELDS = frozenset({"kind", "probe_id", "measured_at", "engine", "target"})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# Characters a tag value cannot carry through InfluxDB 1.x line protocol: the client escapes
# them as ``\n``/``\r``/``\t`` but InfluxDB 1.x unescapes only ``\,``, ``\ `` and ``\=`` in tags.
_TAG_FORBIDDEN = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab"}
# A backslash right before these (or at the end) escapes the separator the client adds after it.
_TAG_BACKSLASH_BEFORE = (" ", ",", "=")


class FieldType(enum.Enum):
    """How one model field is stored as an InfluxDB field."""

    FLOAT = "float"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    STRING = "string"
    JSON = "json"  # a list or dict, stored as its JSON text


def datetime_to_ns(value: datetime) -> int:
    """Nanoseconds since the Unix epoch, exact (datetimes carry microseconds)."""
    if value.tzinfo is None:
        raise ValueError(f"datetime {value.isoformat()} has no timezone; pass an aware UTC time")
    return (value - _EPOCH) // _MICROSECOND * 1000


def ns_to_datetime(value: int) -> datetime:
    """The UTC datetime ``value`` nanoseconds after the epoch (sub-microsecond digits dropped)."""
    return _EPOCH + timedelta(microseconds=value // 1000)


@functools.cache
def field_types(model: type[ResultBase]) -> dict[str, FieldType]:
    """The InfluxDB type of every field ``model`` stores as a field, read from its annotations."""
    return {
        name: _field_type(info.annotation, f"{model.__name__}.{name}")
        for name, info in model.model_fields.items()
        if name not in _NOT_FIELDS
    }


def _field_type(annotation: Any, where: str) -> FieldType:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _field_type(typing.get_args(annotation)[0], where)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"{where}: a union of several types has no single InfluxDB type")
        return _field_type(options[0], where)
    if origin is typing.Literal:
        values = typing.get_args(annotation)
        if all(isinstance(v, str) for v in values):
            return FieldType.STRING
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return FieldType.INTEGER
        raise TypeError(f"{where}: Literal{list(values)} mixes types")
    if origin in (list, dict):
        return FieldType.JSON
    if annotation is bool:  # before int: bool is a subclass of int
        return FieldType.BOOLEAN
    if annotation is int:
        return FieldType.INTEGER
    if annotation is float:
        return FieldType.FLOAT
    if isinstance(annotation, type) and issubclass(annotation, str | uuid.UUID | enum.Enum):
        return FieldType.STRING
    raise TypeError(f"{where}: no InfluxDB field type for {annotation!r}; add it to lineprotocol")


def check_tag_value(key: str, value: str) -> None:
    """Raise ``ValueError`` if ``value`` would not come back unchanged from an InfluxDB 1.x tag.

    Line protocol has no escape for a newline, carriage return or tab in a tag value, and a
    backslash right before a space, comma, equals sign or the end of the value escapes the
    separator instead (InfluxDB 1.x ``models/points.go``). Such values are refused rather than
    silently changed: hamlet and ISP come from the registry, the target from the probe.
    """
    for char, name in _TAG_FORBIDDEN.items():
        if char in value:
            raise ValueError(
                f"tag {key}={value!r} contains {name}, which InfluxDB tags cannot carry;"
                f" remove it from the {key}"
            )
    if value.endswith("\\") or any(f"\\{c}" in value for c in _TAG_BACKSLASH_BEFORE):
        raise ValueError(
            f"tag {key}={value!r} has a backslash at the end or before a space, comma or '=',"
            f" which InfluxDB line protocol cannot carry; remove the backslash from the {key}"
        )


def result_to_line(item: StoredResult, measurement: str, time_ns: int | None = None) -> str:
    """One line of InfluxDB line protocol (nanosecond timestamps) for ``item``.

    ``time_ns`` is the point's timestamp: ``measured_at`` (the default) plus the sub-microsecond
    offset that keeps it apart from other results of the same microsecond (``ledger``); it must
    fall within the microsecond of ``measured_at``, which reading back restores. The same item at
    the same time always gives the same line: a re-sent result becomes the same point, which is
    what keeps a retried write from storing a second copy. Raises ``ValueError`` for a tag value
    line protocol cannot carry (``check_tag_value``) or an identity that contradicts the result.
    """
    result, identity = item.result, item.identity
    if identity.probe_id != result.probe_id:
        raise ValueError(
            f"result {result.result_id} names probe {result.probe_id!r} but is stored for"
            f" probe {identity.probe_id!r}; only the probe's own results can be stored"
        )
    tags = {
        "probe": identity.probe_id,
        "hamlet": identity.hamlet,
        "isp": identity.isp,
        "access": Access(identity.access).value,
        "engine": result.engine,
        "target": result.target,
    }
    series = [measurement.translate(_ESCAPE_MEASUREMENT)]
    for key in sorted(tags):  # InfluxDB's canonical order: tags sorted by key
        tag = tags[key]
        if tag:  # InfluxDB refuses empty tag values; absent reads back as empty/None
            check_tag_value(key, tag)
            series.append(f"{key}={tag.translate(_ESCAPE_KEY)}")
    values = result.model_dump(mode="json")
    fields = []
    for name, kind in sorted(field_types(type(result)).items()):
        value = values[name]
        if value is not None:
            fields.append(f"{name.translate(_ESCAPE_KEY)}={_field_text(kind, value)}")
    measured_ns = datetime_to_ns(result.measured_at)
    if time_ns is None:
        time_ns = measured_ns
    elif not measured_ns <= time_ns < measured_ns + 1000:
        raise ValueError(
            f"time {time_ns} ns is outside the microsecond of measured_at {measured_ns} ns"
        )
    return f"{','.join(series)} {','.join(fields)} {time_ns}"


# Line protocol escapes: commas and spaces in measurements; commas, '=' and spaces in tag keys,
# tag values and field keys (a backslash elsewhere is taken literally); double quotes and
# backslashes inside string field values. Newlines, tabs and carriage returns never reach a tag
# (``check_tag_value`` refuses them); measurement and field names are plain identifiers.
_ESCAPE_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ "})
_ESCAPE_KEY = str.maketrans({",": "\\,", " ": "\\ ", "=": "\\="})
_ESCAPE_STRING = str.maketrans({'"': '\\"', "\\": "\\\\"})


def _field_text(kind: FieldType, value: Any) -> str:
    """A field value as line protocol writes it: floats without a trailing '.0' (InfluxDB reads
    any number without 'i' as a float), integers with 'i', strings quoted and escaped."""
    match kind:
        case FieldType.FLOAT:
            text = repr(float(value))
            return text[:-2] if text.endswith(".0") else text
        case FieldType.INTEGER:
            return f"{int(value)}i"
        case FieldType.BOOLEAN:
            return "true" if value else "false"
        case FieldType.STRING:
            return '"' + str(value).translate(_ESCAPE_STRING) + '"'
        case FieldType.JSON:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            return '"' + text.translate(_ESCAPE_STRING) + '"'
    raise AssertionError(kind)


def row_to_result(
    kind: Kind | str,
    tags: Mapping[str, Any],
    fields: Mapping[str, Any],
    time_ns: int,
) -> StoredResult:
    """Rebuild the stored result from one InfluxQL row: the inverse of ``result_to_line``.

    ``tags`` holds the tag columns, ``fields`` the field columns (absent or null means the field
    was not set; columns the model does not know are ignored). Raises ``ValueError`` (a pydantic
    ``ValidationError``) if the row does not make a valid result.
    """
    kind = Kind(kind)
    types_ = field_types(MODEL_BY_KIND[kind])
    data: dict[str, Any] = {}
    for name, value in fields.items():
        if value is None or name not in types_:
            continue
        data[name] = json.loads(value) if types_[name] is FieldType.JSON else value
    probe, access = _required_tag(tags, "probe"), _required_tag(tags, "access")
    data.update(
        kind=kind.value,
        probe_id=probe,
        measured_at=ns_to_datetime(time_ns),
        engine=_required_tag(tags, "engine"),
    )
    if tags.get("target"):
        data["target"] = tags["target"]
    # Lax mode: InfluxDB's JSON gives whole floats as integers, UUIDs and enums as strings.
    result = RESULT_ADAPTER.validate_python(data, context={"limits": unbounded_limits()})
    identity = ProbeIdentity(
        probe_id=probe,
        hamlet=tags.get("hamlet") or "",
        isp=tags.get("isp") or "",
        access=Access(access),
    )
    return StoredResult(identity=identity, result=result)


def _required_tag(tags: Mapping[str, Any], key: str) -> str:
    value = tags.get(key)
    if not value:
        raise ValueError(f"the row has no {key!r} tag, so it was not written by hamletnet")
    return str(value)
