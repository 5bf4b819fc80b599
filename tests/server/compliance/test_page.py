"""The office's compliance page: the pure renderer, then the real page in headless Debian
``chromium`` against a real server seeded through the signed ingest API."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.compliance.page import render_page, vn_number
from server.compliance.report_json import report_to_json
from server.compliance_api import default_period
from tests.server.compliance.seed import seed
from tests.server.compliance.test_api_compliance import seeded_settings
from tests.server.compliance.test_engine import _report
from tests.server.conftest import GuardedTestServer

CHROMIUM = shutil.which("chromium")
#: Headless chromium on a loaded 2-core machine: generous, it is a hang guard, not a timing test.
BROWSER_TIMEOUT_S = 180
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_vietnamese_number_format() -> None:
    assert vn_number(1234.5) == "1.234,5"
    assert vn_number(0.95, 2) == "0,95"
    assert vn_number(1234567.0, 0) == "1.234.567"
    assert vn_number(None) == "—"


def test_page_shows_verdicts_in_vietnamese_and_gigabit_speeds_in_gbps() -> None:
    from server.compliance.plan import load_plan
    from tests.server.compliance.test_engine import PLAN_FILE

    html = render_page(report_to_json(_report(load_plan(PLAN_FILE))))
    for words in ("Đạt", "Không đạt", "Chưa đủ mẫu", "Không kiểm chứng được", "Xã Hiệp Lực"):
        assert words in html
    assert "0,95 Gb/s" in html  # the meeting line's 950 Mb/s mean, against a Gb/s target
    assert "Quý IV/2026" in html and 'href="/docs/methodology"' in html


async def _chromium(*args: str, profile: Path) -> bytes:
    assert CHROMIUM is not None
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        f"--user-data-dir={profile}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), BROWSER_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out


@pytest.fixture
async def seeded(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    client = await aiohttp_client(GuardedTestServer(create_app(seeded_settings(tmp_path / "d"))))
    await seed(client, default_period(datetime.now(UTC)))
    return client


@pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (scripts/test.sh installs it)"
)
async def test_page_in_headless_chromium(seeded: TestClient, tmp_path: Path) -> None:
    month = default_period(datetime.now(UTC)).label
    url = str(seeded.make_url(f"/compliance?period={month}"))
    dom = (await _chromium("--dump-dom", url, profile=tmp_path / "p1")).decode("utf-8")
    assert "Xã Hiệp Lực" in dom and "Mức độ đạt chỉ tiêu kế hoạch hạ tầng số" in dom
    for words in ("Đạt", "Không đạt", "Chưa đủ mẫu", "Không kiểm chứng được"):
        assert words in dom
    # A known hamlet's verdict, from its row: Thôn Bản Chương meets the gigabit target (I.1.2).
    row = dom.split('data-hamlet="dat"', 1)[1].split("</tr>", 1)[0]
    cells = row.split("<td>")[1:]
    assert "Thôn Bản Chương" in cells[0]
    assert ">Đạt<" in cells[2]  # columns: hamlet, I.1.1, I.1.2
    gbe = dom.split('data-hamlet="gbe"', 1)[1].split("</tr>", 1)[0].split("<td>")[1:]
    assert "Không kiểm chứng được" in gbe[2]

    shot = tmp_path / "compliance.png"
    await _chromium(f"--screenshot={shot}", "--window-size=1280,2000", url, profile=tmp_path / "p2")
    data = await asyncio.to_thread(shot.read_bytes)
    assert len(data) > 10_000 and data.startswith(PNG_MAGIC)
