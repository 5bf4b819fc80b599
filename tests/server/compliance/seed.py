"""Seeds the "Done when" data set (``dataset.py``) into a running server the way real probes
would: probes registered through the admin API, results signed and posted to the ingest API;
declared speeds and the hand-entered figure through the server's registry."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from probes.models import ValidationLimits, parse_result
from probes.signing import sign
from server.appkeys import REGISTRY
from server.compliance.stats import VIETNAM, Period
from server.registry import HandEntryRecord
from tests.server.compliance import dataset
from tests.server.conftest import add_probe, auth

BATCH = 500
#: The agent signs what it measured, however old; the default 30-day bound is the server's.
LIMITS = ValidationLimits(datetime.now(UTC), max_age=timedelta(days=3650))

#: The settings the seeded server needs: the commune, its hamlets, and results as old as a
#: month ago accepted (the default spool retention is 30 days).
SETTINGS: dict[str, Any] = {
    "communes": [dataset.COMMUNE],
    "hamlets": [
        {"code": code, "name": name, "population": pop, "adults": adults,
         "isps": ["VNPT", "Viettel", "FPT"]}
        for code, name, pop, adults in dataset.HAMLETS
    ],
    "limits": {"max_result_age_days": 3650, "auth_failure_burst": 0},
}  # fmt: skip


def _payload(probe_id: str, sample: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "bandwidth",
        "result_id": str(uuid.uuid4()),
        "probe_id": probe_id,
        "measured_at": sample["measured_at"].isoformat(),
        "engine": "http",
        "target": "http://127.0.0.1:8080",
        "family": "ipv4",
        "streams": 3,
        "download_mbps": sample["download_mbps"],
        "upload_mbps": sample["upload_mbps"],
        "link_speed_mbps": sample["link_speed_mbps"],
    }


async def post_samples(
    client: TestClient, probe: dict[str, Any], samples: Iterable[dict[str, Any]]
) -> None:
    """Post ``samples`` (``dataset`` samples) as bandwidth results of ``probe`` (``add_probe``'s
    reply), signed with its key, ``BATCH`` at a time; every one must be accepted."""
    pid = probe["probe_id"]
    items = [
        sign(parse_result(_payload(pid, s), LIMITS), probe["key"]).model_dump(mode="json")
        for s in samples
    ]
    for start in range(0, len(items), BATCH):
        resp = await client.post(
            "/api/v1/results",
            json={"results": items[start : start + BATCH]},
            headers=auth(probe["token"]),
        )
        reply = await resp.json()
        assert resp.status == 200 and reply["rejected"] == 0, reply


async def seed(client: TestClient, month: Period) -> dict[str, str]:
    """Post the data set for ``month``; returns probe id by hamlet."""
    app = client.app
    assert app is not None
    registry = app[REGISTRY]
    probes: dict[str, str] = {}
    for spec in dataset.PROBES:
        probe = await add_probe(client, hamlet=spec.hamlet, isp=spec.isp, access=spec.access)
        pid = probe["probe_id"]
        probes[spec.hamlet] = pid
        if spec.declared_down_mbps is not None:
            await registry.set_line(
                pid, declared_down_mbps=spec.declared_down_mbps, actor="can-bo-vhxh"
            )
        await post_samples(client, probe, spec.samples(month))
    h = dataset.HAND_ENTRY
    local = month.start.astimezone(VIETNAM)
    await registry.add_hand_entry(
        HandEntryRecord(
            indicator_id=h.indicator_id,
            commune=dataset.COMMUNE["code"],
            hamlet=h.hamlet,
            value=h.value,
            achieved=None,
            as_of=date(local.year, local.month, h.day),
            source_document=h.source_document,
            entered_by=h.entered_by,
            entered_at=datetime.now(UTC),
        )
    )
    return probes
