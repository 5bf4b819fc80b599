"""The registry's compliance data on a real SQLite file: declared lines with their history,
hand-entered figures, surveys, the upgrade of a file from the previous version, a full disk."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from probes.models import Access
from server.errors import NotFound, StorageUnavailable, Unprocessable
from server.registry import HandEntryRecord, Registry, SurveyRecord, hash_token
from server.settings import load_settings
from tests.server.test_hostile import _fill, small_disk  # noqa: F401 (a fixture)

SETTINGS = load_settings(
    None,
    communes=[{"code": "hiep-luc", "name": "Xã Hiệp Lực"}, {"code": "xa-b", "name": "Xã B"}],
    hamlets=[
        {"code": "thon-a", "name": "Thôn Đồng Tâm", "commune": "hiep-luc", "population": 700,
         "adults": 500, "lat": 22.43, "lon": 105.98, "isps": ["VNPT", "Viettel"]},
        {"code": "thon-b", "name": "Thôn Nà Mò", "commune": "xa-b"},
    ],
)  # fmt: skip
NOW = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)

#: The tables of the previous version, copied from ``git show HEAD~8:server/registry.py``.
OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS hamlets (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    population INTEGER,
    households INTEGER
);
CREATE TABLE IF NOT EXISTS probes (
    probe_id TEXT PRIMARY KEY,
    hamlet TEXT NOT NULL REFERENCES hamlets(code),
    isp TEXT NOT NULL,
    access TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    public_key TEXT,
    created_at TEXT NOT NULL,
    disabled_at TEXT,
    last_seen_at TEXT
);
"""


async def _registry(path: Path) -> Registry:
    registry = Registry(path)
    await registry.open()
    await registry.sync_hamlets(SETTINGS.hamlets, SETTINGS.communes)
    return registry


async def test_a_registry_file_of_the_previous_version_opens_and_keeps_its_probes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "registry.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(OLD_SCHEMA)
    old.execute("INSERT INTO hamlets VALUES ('thon-a', 'Thôn Đồng Tâm', 700, 180)")
    old.execute(
        "INSERT INTO probes(probe_id, hamlet, isp, access, token_sha256, created_at)"
        " VALUES ('p1', 'thon-a', 'VNPT', 'fiber', ?, '2026-05-01T00:00:00+00:00')",
        (hash_token("hn_old-token"),),
    )
    old.commit()
    old.close()

    registry = await _registry(path)
    try:
        record = await registry.authenticate("hn_old-token")
        assert record is not None and record.probe_id == "p1"
        assert record.declared_down_mbps is None and record.plan_name is None
        changed = await registry.set_line("p1", declared_down_mbps=1000.0, actor="Cán bộ A")
        assert changed.declared_down_mbps == 1000.0 and changed.declared_by == "Cán bộ A"
        assert changed.data_budget_bytes is None  # a column the old file lacked
        budgeted = await registry.set_line("p1", data_budget_bytes=10**10, actor="Cán bộ A")
        assert budgeted.data_budget_bytes == 10**10 and budgeted.declared_down_mbps == 1000.0
        hamlet = {h.code: h for h in await registry.hamlets()}["thon-a"]
        assert (hamlet.commune, hamlet.adults, hamlet.isps) == (
            "hiep-luc",
            500,
            ("VNPT", "Viettel"),
        )
        assert hamlet.households is None  # the configuration now says nothing about it
    finally:
        await registry.close()
    # Opened a second time, the file is already up to date: nothing to add, nothing lost.
    again = await _registry(path)
    try:
        assert (await again.get("p1")).declared_down_mbps == 1000.0
    finally:
        await again.close()


async def test_declared_line_changes_record_who_and_when(tmp_path: Path) -> None:
    registry = await _registry(tmp_path / "registry.sqlite3")
    try:
        probe, _ = await registry.add_probe(hamlet="thon-a", isp="VNPT", access=Access.FIBER)
        before = datetime.now(UTC)
        record = await registry.set_line(
            probe.probe_id, declared_down_mbps=1000, declared_up_mbps=1000,
            declared_min_down_mbps=300, plan_name="Home Giga", actor="Nguyễn Văn A",
        )  # fmt: skip
        assert record.line.declared_min_down_mbps == 300 and record.line.plan_name == "Home Giga"
        assert record.declared_by == "Nguyễn Văn A"
        assert record.declared_at is not None and record.declared_at >= before
        # Left out: kept; None: cleared.
        record = await registry.set_line(probe.probe_id, plan_name=None, actor="Trần Thị B")
        assert record.declared_down_mbps == 1000 and record.plan_name is None
        # No change: nothing recorded.
        await registry.set_line(probe.probe_id, declared_up_mbps=1000, actor="C")
        changes = await registry.line_changes(probe.probe_id)
        assert [c.changed_by for c in changes] == ["Nguyễn Văn A", "Trần Thị B"]
        assert changes[1].old["plan_name"] == "Home Giga" and changes[1].new["plan_name"] is None
        assert changes[0].old["declared_down_mbps"] is None
    finally:
        await registry.close()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"declared_down_mbps": 0}, "declared_down_mbps: 0 must be a positive number of Mb/s"),
        ({"declared_up_mbps": -5.0}, "declared_up_mbps: -5 must be a positive number"),
        ({"declared_min_down_mbps": float("nan")}, "declared_min_down_mbps: nan must be"),
        (
            {"declared_down_mbps": 100, "declared_min_down_mbps": 300},
            "declared_min_down_mbps: 300 is above declared_down_mbps 100",
        ),
        ({"plan_name": ""}, "plan_name: '' must be 1-256 characters"),
        ({"declared_down_mbps": 100, "actor": " "}, "actor: ' ' must be 1-256 characters"),
    ],
)
async def test_bad_declared_lines_are_refused_by_key(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    registry = await _registry(tmp_path / "registry.sqlite3")
    try:
        probe, _ = await registry.add_probe(hamlet="thon-a", isp="VNPT", access=Access.FIBER)
        args = {"actor": "A", **change}
        with pytest.raises(Unprocessable) as caught:
            await registry.set_line(probe.probe_id, **args)  # type: ignore[arg-type]
        assert message in caught.value.detail
        assert await registry.line_changes() == []
        # The minimum is checked against the download speed already declared, too.
        await registry.set_line(probe.probe_id, declared_down_mbps=200, actor="A")
        with pytest.raises(Unprocessable, match="declared_min_down_mbps: 250 is above"):
            await registry.set_line(probe.probe_id, declared_min_down_mbps=250, actor="A")
        with pytest.raises(NotFound, match="no probe 'nope'"):
            await registry.set_line("nope", declared_down_mbps=1, actor="A")
    finally:
        await registry.close()


def _entry(**fields: object) -> HandEntryRecord:
    base: dict[str, object] = {
        "indicator_id": "digital-signature-2026", "commune": "hiep-luc", "hamlet": None,
        "value": 42.5, "achieved": None, "as_of": date(2026, 10, 31),
        "source_document": "Báo cáo số 12/BC-UBND", "entered_by": "Cán bộ VH-XH",
        "entered_at": NOW,
    }  # fmt: skip
    base.update(fields)
    return HandEntryRecord(**base)  # type: ignore[arg-type]


async def test_hand_entries_and_surveys_are_kept_with_who_and_when(tmp_path: Path) -> None:
    registry = await _registry(tmp_path / "registry.sqlite3")
    try:
        await registry.add_hand_entry(_entry())
        await registry.add_hand_entry(_entry(indicator_id="ai-use", value=None, achieved=True))
        await registry.add_hand_entry(_entry(hamlet="thon-a", value=50.0))
        entries = await registry.hand_entries(indicator_id="digital-signature-2026")
        assert [(e.hamlet, e.value) for e in entries] == [(None, 42.5), ("thon-a", 50.0)]
        assert entries[0] == _entry()
        rule = entries[0].to_rule()
        assert (rule.entered_by, rule.entered_at, rule.source_document) == (
            "Cán bộ VH-XH", NOW, "Báo cáo số 12/BC-UBND",
        )  # fmt: skip
        assert (await registry.hand_entries(indicator_id="ai-use"))[0].achieved is True

        survey = SurveyRecord(
            hamlet="thon-b", service="5g", present=False, surveyed_at=date(2026, 10, 2),
            surveyed_by="Tổ công nghệ số", source_document="Biên bản khảo sát",
            entered_at=NOW, entered_by="Cán bộ VH-XH",
        )  # fmt: skip
        await registry.add_survey(survey)
        assert await registry.surveys(hamlet="thon-b") == [survey]
        assert survey.to_rule().surveyed_by == "Tổ công nghệ số"
    finally:
        await registry.close()


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"commune": "nowhere"}, NotFound, "commune 'nowhere' is not configured; known: hiep-luc"),
        ({"hamlet": "thon-z"}, NotFound, "hamlet 'thon-z' is not configured; known: thon-a"),
        ({"hamlet": "thon-b"}, Unprocessable, "hamlet 'thon-b' is in commune 'xa-b'"),
        ({"value": None}, Unprocessable, "value: give a value"),
        ({"source_document": ""}, Unprocessable, "source_document: '' must be 1-256"),
        ({"entered_by": "a\nb"}, Unprocessable, "entered_by: 'a\\nb' must be 1-256"),
    ],
)
async def test_bad_hand_entries_are_refused_by_key(
    tmp_path: Path, fields: dict[str, object], error: type[Exception], message: str
) -> None:
    registry = await _registry(tmp_path / "registry.sqlite3")
    try:
        with pytest.raises(error) as caught:
            await registry.add_hand_entry(_entry(**fields))
        assert message in str(caught.value)
        assert await registry.hand_entries() == []
    finally:
        await registry.close()


@pytest.mark.lab
async def test_close_on_a_full_disk_logs_and_closes(
    small_disk: Path,  # noqa: F811 (the fixture)
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = await _registry(small_disk / "registry.sqlite3")
    probes = [
        (await registry.add_probe(hamlet="thon-a", isp=f"ISP {n}", access=Access.FIBER))[0]
        for n in range(20)
    ]
    _fill(small_disk / "filler")
    for probe in probes:
        registry.touch(probe.probe_id)
    with pytest.raises(StorageUnavailable):
        await registry.flush_last_seen()  # the disk is full indeed
    await registry.close()
    assert "last-seen time(s) not saved on close" in caplog.text
    await registry.close()  # closed indeed: nothing left to do
