"""The "Done when" data set of issue 11, written by hand: one commune, seven hamlets, each built
to land on one verdict that was computed by hand (``EXPECTED``). It stands for a month of hourly-ish
bandwidth results as probes send them; the engine test feeds it as plain samples, the API tests
post it through the real ingest API, signed, so both must give the same verdicts.

Samples are every 2 hours from 00:00 Vietnam time on the month's first day, so of each day's 12
the ones at 20:00 and 22:00 are peak-hour (19:00–23:00): 300 samples span 25 days, 50 at peak.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from server.compliance.stats import Period, is_peak_hour

COMMUNE = {"code": "hiep-luc", "name": "Xã Hiệp Lực", "province": "Thái Nguyên"}

#: code, Vietnamese name, population, adults.
HAMLETS = [
    ("dat", "Thôn Bản Chương", 400, 300),
    ("tb-thap", "Thôn Nà Mò", 300, 220),
    ("san", "Thôn Khuổi Cuồng", 200, 150),
    ("thieu", "Thôn Cốc Lùng", 100, 70),
    ("gbe", "Thôn Đồng Tâm", 250, 180),
    ("di-dong", "Thôn Pác Nặm", 150, 100),
    ("tay", "Thôn Tày Ổ", 120, 90),
]


@dataclass(frozen=True)
class ProbeSpec:
    hamlet: str
    isp: str
    access: str
    n: int
    download: float
    upload: float = 500.0
    peak_download: float | None = None
    link_speed_mbps: float | None = 2500.0
    declared_down_mbps: float | None = None

    def samples(self, month: Period) -> Iterator[dict[str, Any]]:
        """measured_at, download_mbps, upload_mbps, link_speed_mbps of each result."""
        for i in range(self.n):
            at: datetime = month.start + timedelta(hours=2 * i)
            peak = is_peak_hour(at)
            down = self.peak_download if peak and self.peak_download is not None else self.download
            yield {
                "measured_at": at,
                "download_mbps": down,
                "upload_mbps": self.upload,
                "link_speed_mbps": self.link_speed_mbps,
            }


PROBES = [
    # Meets: mean 950 ≥ 941, every peak sample ≥ 300, n = 300; no declared speed (QCVN 34: n/a).
    ProbeSpec("dat", "VNPT", "fiber", 300, 950.0),
    # Fails on the mean: 900 < 941. Declared 1000 down: QCVN 34 has 300 < 1000 samples.
    ProbeSpec("tb-thap", "VNPT", "fiber", 300, 900.0, declared_down_mbps=1000.0),
    # Fails on the floor: 250 off-peak at 1100 and 50 peak at 200 → mean 950, 0 % of peak ≥ 300.
    ProbeSpec("san", "Viettel", "fiber", 300, 1100.0, peak_download=200.0),
    # 299 valid samples: insufficient data however fast.
    ProbeSpec("thieu", "VNPT", "fiber", 299, 950.0),
    # A 1 GbE port: 940 Mb/s is all it can carry → not verifiable, never a fail.
    ProbeSpec("gbe", "FPT", "fiber", 300, 940.0, link_speed_mbps=1000.0),
    # 4G: all 300 samples at 50 Mb/s ≥ 40 → mobile-4g met; no fibre line here.
    ProbeSpec("di-dong", "Viettel", "4g", 300, 50.0, upload=20.0, link_speed_mbps=None),
]

#: Hand-entered: 75 % of "tay"'s adults hold a digital signature (target ≥ 70 %), dated in month.


@dataclass(frozen=True)
class HandSpec:
    indicator_id: str
    hamlet: str
    value: float
    source_document: str
    entered_by: str
    day: int


HAND_ENTRY = HandSpec(
    indicator_id="digital-signature-2026",
    hamlet="tay",
    value=75.0,
    source_document="Báo cáo số 12/BC-UBND thôn Tày Ổ",
    entered_by="can-bo-vhxh",
    day=15,
)

#: (hamlet, indicator) → the verdict computed by hand from the comments above.
EXPECTED = {
    ("dat", "fixed-gigabit-2026"): "met",
    ("tb-thap", "fixed-gigabit-2026"): "fail",
    ("san", "fixed-gigabit-2026"): "fail",
    ("thieu", "fixed-gigabit-2026"): "insufficient_data",
    ("gbe", "fixed-gigabit-2026"): "not_verifiable",
    ("di-dong", "fixed-gigabit-2026"): "insufficient_data",
    ("tay", "fixed-gigabit-2026"): "insufficient_data",
    ("tay", "digital-signature-2026"): "met",
    ("dat", "digital-signature-2026"): "insufficient_data",
    ("di-dong", "mobile-broadband-hamlets-2026"): "met",
    ("dat", "fibre-hamlets-2026"): "met",
    ("tay", "fibre-hamlets-2026"): "insufficient_data",
}
#: (probe hamlet, rule) → the line's verdict for the month.
EXPECTED_LINES = {
    ("dat", "qcvn34-declared-speed"): "not_applicable",
    ("tb-thap", "qcvn34-declared-speed"): "insufficient_data",
    ("di-dong", "mobile-4g"): "met",
    ("san", "fixed-gigabit"): "fail",
}
#: The commune's roll-up of fixed-gigabit-2026 (basis users ≈ population): only "dat" meets,
#: 400 of 1,520 people; two hamlets fail outright, so no unknown can rescue it → fail.
EXPECTED_GIGABIT_FIGURE_PCT = 100.0 * 400 / 1520
