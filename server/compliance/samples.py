"""Turns scanned rows (``ResultStore.scan``) into the plain samples the rules take, and packs a
month of samples into the compact bytes the sample cache keeps (``storage.month_cache``; the
format is ``columns.pack``'s).

Pure functions: the engine scans the store with the field lists below and hands each row here.
A flag the result does not carry stays ``None`` (the rules keep such a sample rather than
exclude it on a guess); only the stored status and the registry's access are read as enums.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from probes.models import Access, CrossTraffic, Result, SkipReason, Status
from server.compliance.columns import (
    ACCESSES,
    CROSS_TRAFFIC,
    FLAG_BACK,
    PACK_VERSION,
    SKIP_REASONS,
    STATUSES,
    SampleColumns,
    at_micros,
    columns_of,
    pack,
    unpack,
)
from server.compliance.rules import Ipv6Sample, Sample
from server.storage.base import ScanRow

E = TypeVar("E", SkipReason, CrossTraffic)

__all__ = [
    "IPV6_SAMPLE_FIELDS",
    "PACK_VERSION",
    "SAMPLE_FIELDS",
    "pack_samples",
    "result_sample",
    "samples_of",
    "to_ipv6_sample",
    "to_sample",
    "unpack_samples",
]

#: The fields ``to_sample`` reads: pass them to ``ResultStore.scan(fields=...)``. They serve a
#: scan of any kind (presence counts every kind): a field the kind lacks comes back None.
SAMPLE_FIELDS: tuple[str, ...] = (
    "status",
    "download_mbps",
    "upload_mbps",
    "cpu_limited",
    "host_limited",
    "ran_alone",
    "clock_synced",
    "link_speed_mbps",
    "skip_reason",
    "cross_traffic",
)

#: The fields ``to_ipv6_sample`` reads.
IPV6_SAMPLE_FIELDS: tuple[str, ...] = ("status", "ipv6_ready", "ipv6_only_ready", "clock_synced")


def to_sample(row: ScanRow) -> Sample:
    """The rules' view of one scanned result (bandwidth, or any kind for presence). Raises
    ``ValueError`` for a row scanned without one of ``SAMPLE_FIELDS``: a flag left unread would
    let an invalid sample count."""
    fields = _fields(row, SAMPLE_FIELDS)
    return Sample(
        measured_at=row.measured_at,
        download_mbps=_number(fields.get("download_mbps")),
        upload_mbps=_number(fields.get("upload_mbps")),
        status=_status(fields),
        cpu_limited=fields.get("cpu_limited"),
        host_limited=fields.get("host_limited"),
        ran_alone=fields.get("ran_alone"),
        clock_synced=fields.get("clock_synced"),
        link_speed_mbps=_number(fields.get("link_speed_mbps")),
        access=Access(row.access),
        skip_reason=_enum(SkipReason, fields.get("skip_reason")),
        cross_traffic=_enum(CrossTraffic, fields.get("cross_traffic")),
    )


def result_sample(result: Result, access: Access | str) -> Sample:
    """The rules' view of one result as the probe sent it, equal to ``to_sample`` of the same
    result scanned back from either store (the sample cache appends these at ingest)."""

    def number(name: str) -> float | None:
        return _number(getattr(result, name, None))

    def flag(name: str) -> bool | None:
        value = getattr(result, name, None)
        return value if isinstance(value, bool) else None

    crossed = getattr(result, "cross_traffic", None)
    return Sample(
        measured_at=result.measured_at,
        download_mbps=number("download_mbps"),
        upload_mbps=number("upload_mbps"),
        status=Status(result.status),
        cpu_limited=flag("cpu_limited"),
        host_limited=flag("host_limited"),
        ran_alone=flag("ran_alone"),
        clock_synced=flag("clock_synced"),
        link_speed_mbps=number("link_speed_mbps"),
        access=Access(access),
        skip_reason=_enum(SkipReason, result.skip_reason),
        cross_traffic=_enum(CrossTraffic, crossed),
    )


def to_ipv6_sample(row: ScanRow) -> Ipv6Sample:
    """The rules' view of one scanned IPv6 readiness result (``ValueError`` as ``to_sample``)."""
    fields = _fields(row, IPV6_SAMPLE_FIELDS)
    return Ipv6Sample(
        measured_at=row.measured_at,
        ipv6_ready=fields.get("ipv6_ready"),
        ipv6_only_ready=fields.get("ipv6_only_ready"),
        status=_status(fields),
        clock_synced=fields.get("clock_synced"),
    )


def _fields(row: ScanRow, needed: tuple[str, ...]) -> Mapping[str, Any]:
    missing = [name for name in needed if name not in row.fields]
    if missing:
        raise ValueError(
            f"the row of probe {row.probe_id} at {row.measured_at.isoformat()} was scanned"
            f" without {', '.join(missing)}: scan with fields=SAMPLE_FIELDS/IPV6_SAMPLE_FIELDS"
        )
    return row.fields


def _status(fields: Mapping[str, Any]) -> Status:
    """The stored status (every stored result has one; an older one without it was ok)."""
    value = fields["status"]
    return Status.OK if value is None else Status(value)


def _enum(enum: type[E], value: Any) -> E | None:
    return None if value is None else enum(value)


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


# -- Packed samples (the sample cache) ------------------------------------------------------------


def pack_samples(samples: Sequence[Sample]) -> bytes:
    """``samples`` as compact bytes (``columns.pack``), every field the rules read kept exactly
    (``unpack_samples`` gives back equal samples, in the same order)."""
    return pack(columns_of(samples))


def unpack_samples(packed: bytes) -> list[Sample]:
    """The samples ``pack_samples`` packed. Raises ``ValueError`` for bytes of another length."""
    return samples_of(unpack(packed))


def samples_of(columns: SampleColumns) -> list[Sample]:
    """The samples of ``columns``, one object each (for callers that want objects; the rules read
    the columns)."""
    return [
        Sample(
            at_micros(t),
            None if d != d else d,
            None if u != u else u,
            STATUSES[st],
            FLAG_BACK[c],
            FLAG_BACK[h],
            FLAG_BACK[a],
            FLAG_BACK[k],
            None if sp != sp else sp,
            ACCESSES[ac],
            SKIP_REASONS[sr],
            CROSS_TRAFFIC[ct],
        )
        for t, d, u, sp, st, c, h, a, k, ac, sr, ct in zip(
            *(column.tolist() for column in columns.arrays()), strict=True
        )
    ]
