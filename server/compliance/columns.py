"""A line's samples as numpy columns, the form the compliance statistics read
(``rules.line_month_stats``), and the packed bytes of those columns the sample cache keeps.

One array per field of ``rules.Sample``: ``measured_at`` in µs since the epoch, the three speeds
as doubles (NaN where the result has none: a stored speed is never NaN, models refuse it), then
one signed byte each for the status, the four tri-state flags (-1 None, 0 False, 1 True), the
access, the skip reason of a deferred or skipped result and what the probe saw of the
household's cross-traffic (each 0 for None). Packed, the columns follow one another after a
count, in the machine's byte order, so reading a cached probe-month is one ``numpy.frombuffer``
per column, no object per sample. Samples become columns here (``columns_of``) and only here.
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from probes.models import Access, CrossTraffic, SkipReason, Status

if TYPE_CHECKING:
    from server.compliance.rules import Sample

Micros = npt.NDArray[np.int64]
Speeds = npt.NDArray[np.float64]
Codes = npt.NDArray[np.int8]
Mask = npt.NDArray[np.bool_]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

STATUSES: tuple[Status, ...] = tuple(Status)
ACCESSES: tuple[Access | None, ...] = (None, *Access)
SKIP_REASONS: tuple[SkipReason | None, ...] = (None, *SkipReason)
CROSS_TRAFFIC: tuple[CrossTraffic | None, ...] = (None, *CrossTraffic)
#: Tri-state flags as one signed byte each.
FLAG: dict[bool | None, int] = {None: -1, False: 0, True: 1}
FLAG_BACK: tuple[bool | None, ...] = (False, True, None)  # indexed by the byte: 0, 1, -1
#: The status byte of a result whose status is ok.
OK = STATUSES.index(Status.OK)
#: The cross-traffic byte of a result whose probe could not see the household's traffic.
CROSS_TRAFFIC_UNKNOWN = CROSS_TRAFFIC.index(CrossTraffic.UNKNOWN)

#: The columns, in the order they are packed, with their array type codes.
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
    ("skip_reason", "b"),
    ("cross_traffic", "b"),
)
_DTYPES: dict[str, np.dtype[Any]] = {
    "q": np.dtype(np.int64),
    "d": np.dtype(np.float64),
    "b": np.dtype(np.int8),
}
_HEADER = struct.Struct("<I")

#: The packing format: any change to the columns, the enums' members or the machine's byte order
#: gives another number, so a cache row packed otherwise is never read (it is rebuilt).
PACK_VERSION = zlib.crc32(
    repr(
        (
            3,
            _COLUMNS,
            [s.value for s in STATUSES],
            [a and a.value for a in ACCESSES],
            [r and r.value for r in SKIP_REASONS],
            [x and x.value for x in CROSS_TRAFFIC],
        )
    ).encode()
    + sys.byteorder.encode()
)


def micros(at: datetime) -> int:
    """``at`` (aware) in whole µs since the epoch, as ``measured_at_us`` holds it."""
    return (at - EPOCH) // _MICROSECOND


def at_micros(us: int) -> datetime:
    return EPOCH + _MICROSECOND * us


@dataclass(frozen=True, slots=True, eq=False)
class SampleColumns:
    """Samples as columns, all of one length, in the samples' order."""

    measured_at_us: Micros
    download_mbps: Speeds
    upload_mbps: Speeds
    link_speed_mbps: Speeds
    status: Codes
    cpu_limited: Codes
    host_limited: Codes
    ran_alone: Codes
    clock_synced: Codes
    access: Codes
    skip_reason: Codes
    cross_traffic: Codes

    def __len__(self) -> int:
        return len(self.measured_at_us)

    def arrays(self) -> tuple[npt.NDArray[Any], ...]:
        return tuple(getattr(self, name) for name, _ in _COLUMNS)

    def take(self, which: Mask) -> SampleColumns:
        """The samples where ``which`` is true, in order."""
        return SampleColumns(*(column[which] for column in self.arrays()))

    def take_order(self, order: npt.NDArray[np.intp]) -> SampleColumns:
        """The samples in ``order`` (indices)."""
        return SampleColumns(*(column[order] for column in self.arrays()))

    def inside(self, start: datetime, end: datetime) -> Mask:
        """Which samples have ``start <= measured_at < end``."""
        at = self.measured_at_us
        return (at >= micros(start)) & (at < micros(end))

    def between(self, start: datetime, end: datetime) -> SampleColumns:
        """The samples with ``start <= measured_at < end``: these columns themselves when every
        sample is (columns are never changed in place), else a copy."""
        which = self.inside(start, end)
        return self if which.all() else self.take(which)

    @staticmethod
    def concatenate(parts: Sequence[SampleColumns]) -> SampleColumns:
        if len(parts) == 1:
            return parts[0]
        return SampleColumns(
            *(np.concatenate(c) for c in zip(*(p.arrays() for p in parts), strict=True))
        )


def columns_of(samples: Iterable[Sample]) -> SampleColumns:
    """``samples`` as columns. Raises ``ValueError`` for a NaN speed (it would read as missing)."""
    listed = list(samples)
    return SampleColumns(
        np.array([micros(s.measured_at) for s in listed], dtype=np.int64),
        np.array([_speed(s.download_mbps) for s in listed], dtype=np.float64),
        np.array([_speed(s.upload_mbps) for s in listed], dtype=np.float64),
        np.array([_speed(s.link_speed_mbps) for s in listed], dtype=np.float64),
        np.array([STATUSES.index(s.status) for s in listed], dtype=np.int8),
        np.array([FLAG[s.cpu_limited] for s in listed], dtype=np.int8),
        np.array([FLAG[s.host_limited] for s in listed], dtype=np.int8),
        np.array([FLAG[s.ran_alone] for s in listed], dtype=np.int8),
        np.array([FLAG[s.clock_synced] for s in listed], dtype=np.int8),
        np.array([ACCESSES.index(s.access) for s in listed], dtype=np.int8),
        np.array([SKIP_REASONS.index(s.skip_reason) for s in listed], dtype=np.int8),
        np.array([CROSS_TRAFFIC.index(s.cross_traffic) for s in listed], dtype=np.int8),
    )


def as_columns(samples: Sequence[Sample] | SampleColumns) -> SampleColumns:
    """Columns as they are; samples converted once (``columns_of``)."""
    return samples if isinstance(samples, SampleColumns) else columns_of(samples)


def _speed(value: float | None) -> float:
    if value is None:
        return math.nan
    if math.isnan(value):
        raise ValueError("a speed of NaN cannot be held: it would read back as missing")
    return value


def pack(columns: SampleColumns) -> bytes:
    """The columns as bytes (``unpack`` gives them back)."""
    return _HEADER.pack(len(columns)) + b"".join(c.tobytes() for c in columns.arrays())


def unpack(packed: bytes) -> SampleColumns:
    """The columns ``pack`` packed, read in place (read-only arrays over ``packed``). Raises
    ``ValueError`` for bytes of another length."""
    (n,) = _HEADER.unpack_from(packed)
    arrays: list[npt.NDArray[Any]] = []
    offset = _HEADER.size
    for _, code in _COLUMNS:
        dtype = _DTYPES[code]
        if offset + n * dtype.itemsize > len(packed):
            raise ValueError(f"packed samples hold fewer bytes than their {n} samples need")
        arrays.append(np.frombuffer(packed, dtype=dtype, count=n, offset=offset))
        offset += n * dtype.itemsize
    if offset != len(packed):
        raise ValueError(f"packed samples hold {len(packed) - offset} bytes more than {n} samples")
    return SampleColumns(*arrays)


def merge_packed(held: bytes, added: bytes) -> bytes | None:
    """``held`` packed samples with the ``added`` ones put in time order, packed; None when an
    added sample's ``measured_at`` is already held (or twice among the added): that sample may
    already be in the row (a rebuild that saw it), and counting it twice would hide a lost one,
    so the caller drops the row for a rebuild. Distinct times also keep the store's order
    (``measured_at``, then result id) without the ids."""
    old, new = unpack(held), unpack(added)
    if (
        len(np.unique(new.measured_at_us)) != len(new)
        or np.isin(new.measured_at_us, old.measured_at_us).any()
    ):
        return None
    both = SampleColumns.concatenate([old, new])
    return pack(both.take_order(np.argsort(both.measured_at_us, kind="stable")))
