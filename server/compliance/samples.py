"""Turns scanned rows (``ResultStore.scan``) into the plain samples the rules take.

Pure functions: the engine scans the store with the field lists below and hands each row here.
A flag the result does not carry stays ``None`` (the rules keep such a sample rather than
exclude it on a guess); only the stored status and the registry's access are read as enums.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from probes.models import Access, Status
from server.compliance.rules import Ipv6Sample, Sample
from server.storage.base import ScanRow

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


def _number(value: Any) -> float | None:
    return None if value is None else float(value)
