"""Realistic stored results of every kind, for the storage tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from probes.models import RESULT_ADAPTER, Access, Kind, unbounded_limits
from server.storage.base import ProbeIdentity, StoredResult

#: A fixed recent instant (microseconds included) that every example time is relative to.
NOW = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=123456)

IDENTITY = ProbeIdentity(probe_id="probe-01", hamlet="thon-a", isp="VNPT", access=Access.FIBER)

_PAYLOADS: dict[Kind, dict[str, Any]] = {
    Kind.BANDWIDTH: {
        "engine": "http",
        "target": "http://speedtest.vnpt.vn:8080/",
        "family": "ipv4",
        "streams": 4,
        "duration_ms": 21034.5,
        "download_mbps": 92.4,
        "upload_mbps": 40.0,  # whole: must still come back a float
        "download_bytes": 231_000_000,
        "upload_bytes": 100_000_000,
        "download_duration_ms": 10000.0,
        "upload_duration_ms": 10000.0,
        "download_samples_mbps": [88.1, 93.7, 95.0, 92.25],
        "upload_samples_mbps": [39.5, 40.5, 40.0],
        "sample_interval_ms": 250.0,
        "idle_latency_ms": 4.2,
        "loaded_latency_down_ms": 38.9,
        "cpu_percent": 31.5,
        "cpu_limited": False,
        "host_limited": False,
        "ran_alone": True,
        "link_speed_mbps": 1000.0,
        "line_rate_mbps": 100.0,
        "mss_bytes": 1448,
        "retrans_bytes": 0,
        "min_rtt_ms": 3.9,
    },
    Kind.LATENCY: {
        "engine": "icmp",
        "target": "8.8.8.8",
        "method": "icmp",
        "family": "ipv4",
        "sent": 10,
        "received": 9,
        "loss_pct": 10.0,
        "rtt_min_ms": 21.3,
        "rtt_median_ms": 23.05,
        "rtt_mean_ms": 24.1,
        "rtt_max_ms": 31.0,
        "jitter_ms": 1.7,
        "rtts_ms": [21.3, 22.0, 23.05, 23.1, 24.0, 24.4, 25.0, 22.9, 31.0],
    },
    Kind.DNS: {
        "engine": "dnspython",
        "target": "203.162.4.191",
        "resolver": "203.162.4.191",
        "qname": "vnexpress.net",
        "qtype": "AAAA",
        "rcode": "NOERROR",
        "resolve_ms": 12.0,
        "answers": 2,
    },
    Kind.IPV6: {
        "engine": "ipv6-check",
        "global_address": True,
        "default_route": True,
        "ra_seen": True,
        "aaaa_resolves": True,
        "icmpv6_echo": False,
        "http_over_ipv6": False,
        "dual_stack_family": "ipv4",
        "score_transition": 6,
        "score_strict": 3,
        "ipv6_ready": False,
        "ipv6_only_ready": False,
        "reasons": {
            "icmpv6_echo": "không có phản hồi ICMPv6 từ 2001:4860:4860::8888",
            "http_over_ipv6": 'timeout after 5 s to "ipv6.google.com"',
        },
    },
    Kind.CELLULAR: {
        "engine": "mmcli",
        "technology": "lte",
        "operator": "Viettel",
        "registration_state": "home",
        "rsrp_dbm": -97.0,
        "rsrq_db": -11.5,
        "snr_db": 7.25,
        "signal_quality_pct": 62.0,
    },
    Kind.HEARTBEAT: {
        "engine": "agent",
        "agent_version": "0.1.0",
        "uptime_s": 86400.0,
        "load1": 0.42,
        "cpu_temp_c": 51.6,
        "disk_free_bytes": 12_884_901_888,
        "spool_depth": 3,
        "spool_oldest_age_s": 900.5,
        "evicted_count": 0,
        "last_errors": {"bandwidth": "ConnectionResetError: [Errno 104] Connection reset"},
    },
}


def make(
    kind: Kind,
    *,
    identity: ProbeIdentity = IDENTITY,
    measured_at: datetime | None = None,
    **fields: Any,
) -> StoredResult:
    """A realistic result of ``kind`` for ``identity``; ``fields`` override the example's."""
    payload: dict[str, Any] = {
        "kind": kind.value,
        "result_id": str(uuid.uuid4()),
        "probe_id": identity.probe_id,
        "measured_at": measured_at or NOW,
        **_PAYLOADS[kind],
        **fields,
    }
    result = RESULT_ADAPTER.validate_python(payload, context={"limits": unbounded_limits()})
    return StoredResult(identity=identity, result=result)


def failed(kind: Kind = Kind.BANDWIDTH, **fields: Any) -> StoredResult:
    """A failed test (ten minutes before ``NOW``): no numbers, a failure kind and the reason."""
    defaults: dict[str, Any] = {
        "measured_at": NOW - timedelta(minutes=10),
        "status": "failed",
        "failure_kind": "timeout",
        "error": "không kết nối được máy chủ đo: timed out after 30 s",
        "duration_ms": 30000.0,
        "engine": "http",
        "target": "http://speedtest.vnpt.vn:8080/",
    }
    return make_bare(kind, **(defaults | fields))


def make_bare(
    kind: Kind,
    *,
    identity: ProbeIdentity = IDENTITY,
    measured_at: datetime | None = None,
    **fields: Any,
) -> StoredResult:
    """A result of ``kind`` with only the fields given (plus id, probe and time)."""
    payload: dict[str, Any] = {
        "kind": kind.value,
        "result_id": str(uuid.uuid4()),
        "probe_id": identity.probe_id,
        "measured_at": measured_at or NOW,
        **fields,
    }
    result = RESULT_ADAPTER.validate_python(payload, context={"limits": unbounded_limits()})
    return StoredResult(identity=identity, result=result)


def every_kind() -> list[StoredResult]:
    """One realistic example of each kind, a second apart, and a failed result."""
    return [make(kind, measured_at=NOW + timedelta(seconds=i)) for i, kind in enumerate(Kind)] + [
        failed()
    ]
