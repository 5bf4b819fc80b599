"""The demo's illustrative history ("dữ liệu minh họa"): a month of made-up bandwidth results per
example probe, built so the compliance page shows every verdict kind, plus the hand-entered
figures, survey and declared speeds that go with them.

Pure and deterministic: the same probe, month and seed give the same results with the same
``result_id``s, so seeding twice stores nothing twice (the ingest API answers ``duplicate``).
Every seeded result names ``demo-history`` as its engine and target, so nobody can take it for a
measurement. ``server/demo.py`` signs the results with each probe's own key and posts them.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from server.compliance.stats import Period, is_peak_hour, month_of, vietnam_time

#: Engine and target of every seeded result: made up here, measured nowhere.
DEMO_ENGINE = "demo-history"
DEMO_TARGET = "demo-history"
#: Who the demo's admin-API entries are recorded as.
ACTOR = "demo"
SOURCE_DOCUMENT = "Dữ liệu minh họa của bản demo hamletnet — không phải số liệu thật"
#: The seed of the made-up noise; change it for another (equally illustrative) month.
SEED = 2026
#: The ``result_id`` namespace of seeded results (uuid5 of probe id and time).
NAMESPACE = uuid.UUID("9f0c1d2e-5a6b-4c7d-8e9f-0a1b2c3d4e5f")
#: The history fills the last complete month, up to 62 days before now (a 31-day month after a
#: 31-day month); the demo's server accepts results this old (the spool's default is 30 days).
MAX_AGE_DAYS = 64


@dataclass(frozen=True, slots=True)
class Band:
    """Download or upload speeds drawn around ``centre`` and kept within [low, high], so the
    verdict a story is built for does not depend on the draw."""

    centre: float
    spread: float
    low: float
    high: float

    def draw(self, rng: random.Random) -> float:
        return round(min(self.high, max(self.low, rng.gauss(self.centre, self.spread))), 1)


@dataclass(frozen=True, slots=True)
class Story:
    """One example probe's illustrative month, and the verdict it is built to get."""

    verdict: str
    why: str
    samples: int
    download: Band
    upload: Band
    peak_download: Band | None = None
    link_speed_mbps: float | None = 2500.0
    declared_down_mbps: float | None = None
    declared_up_mbps: float | None = None
    declared_min_down_mbps: float | None = None
    plan_name: str | None = None

    @property
    def declared(self) -> dict[str, Any]:
        """The PATCH body of the line's declared speeds (empty when none is declared)."""
        if self.declared_down_mbps is None:
            return {}
        return {
            "declared_down_mbps": self.declared_down_mbps,
            "declared_up_mbps": self.declared_up_mbps,
            "declared_min_down_mbps": self.declared_min_down_mbps,
            "plan_name": self.plan_name,
        }


_GIGABIT_UP = Band(900.0, 20.0, 850.0, 950.0)

#: By example probe (``hamlet/isp/access`` of config/hiep-luc.yaml). Fixed-gigabit rule: mean
#: ≥ 941 Mb/s, ≥ 95 % of peak-hour samples ≥ 300 Mb/s, ≥ 300 samples, a port above 1 GbE.
STORIES: Mapping[str, Story] = {
    "thon-dong-tam/VNPT/fiber": Story(
        "met", "mean ≥ 945 Mb/s, peak hours as fast, 306 samples", 306,
        Band(965.0, 12.0, 945.0, 990.0), _GIGABIT_UP,
        declared_down_mbps=1000.0, declared_up_mbps=1000.0, declared_min_down_mbps=300.0,
        plan_name="Gói cáp quang 1 Gb/s (minh họa)",
    ),
    "thon-na-mo/Viettel/fiber": Story(
        "fail", "mean about 890 Mb/s, below 941", 306,
        Band(890.0, 15.0, 860.0, 920.0), _GIGABIT_UP,
        declared_down_mbps=1000.0, declared_up_mbps=1000.0, plan_name="Gói 1 Gb/s (minh họa)",
    ),
    "thon-ban-chang/FPT/fiber": Story(
        "fail", "fast off-peak, about 220 Mb/s at peak hours: below the 300 Mb/s floor", 306,
        Band(1160.0, 15.0, 1130.0, 1190.0), _GIGABIT_UP,
        peak_download=Band(220.0, 20.0, 180.0, 260.0),
    ),
    "thon-khuoi-nam/Viettel/4g": Story(
        "met", "4G: every sample ≥ 40 Mb/s", 306,
        Band(56.0, 4.0, 48.0, 65.0), Band(18.0, 3.0, 12.0, 25.0), link_speed_mbps=None,
    ),
    "thon-na-pai/VNPT/fiber": Story(
        "insufficient_data", "as fast as the first, but 299 samples: one short of 300", 299,
        Band(965.0, 12.0, 945.0, 990.0), _GIGABIT_UP,
    ),
    "thon-coc-lung/Viettel/fiber": Story(
        "not_verifiable", "a 1 GbE port: it cannot carry more than about 941 Mb/s", 306,
        Band(934.0, 3.0, 925.0, 940.0), _GIGABIT_UP, link_speed_mbps=1000.0,
    ),
}  # fmt: skip


def story_key(hamlet: str, isp: str, access: str) -> str:
    return f"{hamlet}/{isp}/{access}"


def history_month(now: datetime) -> Period:
    """The month the history fills: the last complete Vietnam-time month, which is also the
    period the compliance page shows by default."""
    return month_of(month_of(now).start - timedelta(microseconds=1))


def result_id(probe_id: str, at: datetime) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{probe_id}/{at.isoformat()}")


def bandwidth_payloads(
    story: Story, probe_id: str, month: Period, seed: int = SEED
) -> list[dict[str, Any]]:
    """The story's results for ``month`` as the JSON a probe sends (unsigned), evenly spread
    over the month (to the second), so about a sixth fall in the peak hours."""
    rng = random.Random(f"{seed}/{probe_id}/{month.label}")
    step = (month.end - month.start) / story.samples
    payloads = []
    for i in range(story.samples):
        at = (month.start + step * i + step / 2).replace(microsecond=0)
        peak = story.peak_download is not None and is_peak_hour(at)
        down = (story.peak_download if peak else story.download) or story.download
        payloads.append(
            {
                "kind": "bandwidth",
                "result_id": str(result_id(probe_id, at)),
                "probe_id": probe_id,
                "measured_at": at.isoformat(),
                "duration_ms": 25_000.0,
                "engine": DEMO_ENGINE,
                "target": DEMO_TARGET,
                "family": "ipv4",
                "streams": 3,
                "download_mbps": down.draw(rng),
                "upload_mbps": story.upload.draw(rng),
                "link_speed_mbps": story.link_speed_mbps,
                "cpu_limited": False,
                "host_limited": False,
                "ran_alone": True,
            }
        )
    return payloads


def _day(month: Period, day: int) -> str:
    return vietnam_time(month.start).date().replace(day=day).isoformat()


def hand_entries(month: Period) -> list[dict[str, Any]]:
    """Figures the office would enter by hand (POST /api/v1/admin/hand-entries), dated in
    ``month``: digital signatures for one hamlet (met) and the commune (below 70 %), and a
    stand-in for the national IPv6 usage figure."""
    common = {"source_document": SOURCE_DOCUMENT, "actor": ACTOR, "as_of": _day(month, 15)}
    return [
        {"indicator_id": "digital-signature-2026", "hamlet": "thon-dong-tam", "value": 74.0,
         **common},
        {"indicator_id": "digital-signature-2026", "value": 63.0, **common},
        {"indicator_id": "ipv6-usage-2030", "value": 60.0, **common},
    ]  # fmt: skip


def surveys(month: Period) -> list[dict[str, Any]]:
    """A field survey (POST /api/v1/admin/surveys): 5G seen in one hamlet, not in another."""
    common = {
        "surveyed_at": _day(month, 10),
        "surveyed_by": ACTOR,
        "source_document": SOURCE_DOCUMENT,
        "actor": ACTOR,
    }
    return [
        {"hamlet": "thon-dong-tam", "service": "5g", "present": True, **common},
        {"hamlet": "thon-khuoi-nam", "service": "5g", "present": False, **common},
    ]
