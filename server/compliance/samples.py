"""Turns scanned rows (``ResultStore.scan``) into the plain samples the rules take, and packs a
month of samples into the compact bytes the sample cache keeps (``storage.month_cache``).

Pure functions: the engine scans the store with the field lists below and hands each row here.
A flag the result does not carry stays ``None`` (the rules keep such a sample rather than
exclude it on a guess); only the stored status and the registry's access are read as enums.
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from array import array
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
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


# -- Packed samples (the sample cache) ------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STATUSES: tuple[Status, ...] = tuple(Status)
_ACCESSES: tuple[Access | None, ...] = (None, *Access)
#: Tri-state flags as one signed byte each: None, False, True.
_FLAG = {None: -1, False: 0, True: 1}
_FLAG_BACK: tuple[bool | None, ...] = (False, True, None)  # indexed by the byte: 0, 1, -1
#: The columns, in the order they are packed: ``measured_at`` in µs since the epoch, the three
#: speeds as doubles (NaN for None: a stored speed is never NaN, models refuse it), then one
#: signed byte each for status, the four flags and access.
_COLUMNS = (
    ("measured_at_us", "q"),
    ("download_mbps", "d"),
    ("upload_mbps", "d"),
    ("link_speed_mbps", "d"),
    ("status", "b"),
    ("cpu_limited", "b"),
    ("host_limited", "b"),
    ("ran_alone", "b"),
    ("clock_synced", "b"),
    ("access", "b"),
)
_HEADER = struct.Struct("<I")

#: The packing format: any change to the columns, the enums' members or the machine's byte order
#: gives another number, so a cache row packed otherwise is never read (it is rebuilt).
PACK_VERSION = zlib.crc32(
    repr((2, _COLUMNS, [s.value for s in _STATUSES], [a and a.value for a in _ACCESSES])).encode()
    + sys.byteorder.encode()
)


def pack_samples(samples: Sequence[Sample]) -> bytes:
    """``samples`` as compact bytes, every field the rules read kept exactly (``unpack_samples``
    gives back equal samples, in the same order)."""
    at, down, up, link = array("q"), array("d"), array("d"), array("d")
    status, cpu, host, alone, clock, access = (array("b") for _ in range(6))
    columns: list[array[Any]] = [at, down, up, link, status, cpu, host, alone, clock, access]
    assert [c.typecode for c in columns] == [code for _, code in _COLUMNS]
    for s in samples:
        at.append((s.measured_at - _EPOCH) // _MICROSECOND)
        down.append(_speed(s.download_mbps))
        up.append(_speed(s.upload_mbps))
        link.append(_speed(s.link_speed_mbps))
        status.append(_STATUSES.index(s.status))
        cpu.append(_FLAG[s.cpu_limited])
        host.append(_FLAG[s.host_limited])
        alone.append(_FLAG[s.ran_alone])
        clock.append(_FLAG[s.clock_synced])
        access.append(_ACCESSES.index(s.access))
    return _HEADER.pack(len(samples)) + b"".join(c.tobytes() for c in columns)


def unpack_samples(packed: bytes) -> list[Sample]:
    """The samples ``pack_samples`` packed. Raises ``ValueError`` for bytes of another length."""
    (n,) = _HEADER.unpack_from(packed)
    columns: list[array[Any]] = []
    offset = _HEADER.size
    for _, code in _COLUMNS:
        column = array(code)
        size = n * column.itemsize
        column.frombytes(packed[offset : offset + size])
        if len(column) != n:
            raise ValueError(f"packed samples hold fewer bytes than their {n} samples need")
        columns.append(column)
        offset += size
    if offset != len(packed):
        raise ValueError(f"packed samples hold {len(packed) - offset} bytes more than {n} samples")
    at, down, up, link, status, cpu, host, alone, clock, access = columns
    us = timedelta(microseconds=1)
    return [
        Sample(
            _EPOCH + us * t,
            None if d != d else d,
            None if u != u else u,
            _STATUSES[st],
            _FLAG_BACK[c],
            _FLAG_BACK[h],
            _FLAG_BACK[a],
            _FLAG_BACK[k],
            None if sp != sp else sp,
            _ACCESSES[ac],
        )
        for t, d, u, sp, st, c, h, a, k, ac in zip(
            at, down, up, link, status, cpu, host, alone, clock, access, strict=True
        )
    ]


_MICROSECOND = timedelta(microseconds=1)


def _speed(value: float | None) -> float:
    if value is None:
        return math.nan
    if math.isnan(value):
        raise ValueError("a speed of NaN cannot be packed: it would read back as missing")
    return value
