"""Cellular: mmcli's JSON parsed field by field, and the snapshot's failure cases. A modem cannot
run here, so the documents in fixtures/mmcli are hand-written in mmcli 1.20's format but one
(fixtures/README.md says which stands for what), and a stand-in ``mmcli`` replays them (and, like
ModemManager, reads "--" signal values until ``--signal-setup`` was given)."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probes.cellular import (
    ModemStatus,
    SignalReading,
    mm_float,
    mm_text,
    modem_id,
    parse_modem,
    parse_modem_list,
    parse_options,
    parse_signal,
    snapshot,
)
from probes.models import CellularResult
from tests.probes.stamping import as_result

FIXTURES = Path(__file__).parent / "fixtures" / "mmcli"


def doc(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def test_modem_list() -> None:
    assert parse_modem_list(doc("list-one.json")) == ["/org/freedesktop/ModemManager1/Modem/0"]
    assert parse_modem_list(doc("list-none.json")) == []
    assert parse_modem_list({}) == []
    assert modem_id("/org/freedesktop/ModemManager1/Modem/0") == "0"


def test_lte_modem() -> None:
    assert parse_modem(doc("modem-lte.json")) == ModemStatus(
        state="connected", technology="lte", operator="Viettel", registration_state="home",
        signal_quality_pct=67.0, signal_quality_recent=True,
    )  # fmt: skip


def test_5g_nsa_modem_reports_both_technologies() -> None:
    # This document's signal quality is {"recent": "no", "value": "83"}: not a current value.
    assert parse_modem(doc("modem-5g-nsa.json")) == ModemStatus(
        state="connected", technology="lte,5gnr", operator="MobiFone",
        registration_state="roaming", signal_quality_pct=None, signal_quality_recent=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("recent", "value", "pct", "flag"),
    [
        ("yes", "67", 67.0, True),
        ("no", "67", None, False),  # ModemManager's last reading is older than 60 s
        ("no", "0", None, False),
        ("--", "67", 67.0, None),  # no flag at all (not what mmcli prints): trust the value
        ("yes", "--", None, True),
    ],
)
def test_signal_quality_that_is_not_recent_is_not_reported(
    recent: str, value: str, pct: float | None, flag: bool | None
) -> None:
    modem = doc("modem-lte.json")
    modem["modem"]["generic"]["signal-quality"] = {"recent": recent, "value": value}
    status = parse_modem(modem)
    assert (status.signal_quality_pct, status.signal_quality_recent) == (pct, flag)


def test_searching_modem_has_no_operator_or_technology() -> None:
    assert parse_modem(doc("modem-searching.json")) == ModemStatus(
        state="searching", technology=None, operator=None, registration_state="searching",
        signal_quality_pct=0.0, signal_quality_recent=True,
    )  # fmt: skip


def test_lte_signal() -> None:
    assert parse_signal(doc("signal-lte.json")) == SignalReading("lte", -95.0, -11.0, 13.4, 10)


def test_5g_nsa_signal_prefers_the_nr_leg() -> None:
    assert parse_signal(doc("signal-5g-nsa.json")) == SignalReading("5g", -88.0, -10.5, 21.0, 5)


def test_signal_before_setup_is_all_unknown() -> None:
    assert parse_signal(doc("signal-unset.json")) == SignalReading(None, None, None, None, 0)


@given(st.one_of(st.text(max_size=12), st.none(), st.integers(), st.floats()))
def test_mm_values_never_raise(value: Any) -> None:
    text = mm_text(value)
    assert text is None or (text and text != "--")
    number = mm_float(value, (-200.0, 0.0))
    assert number is None or -200.0 <= number <= 0.0


def test_out_of_range_signal_is_dropped() -> None:
    weird = {"modem": {"signal": {"lte": {"rsrp": "-1000.00", "rsrq": "-11.00", "snr": "--"}}}}
    assert parse_signal(weird) == SignalReading("lte", None, -11.0, None, None)


# -- the snapshot, through a stand-in mmcli -------------------------------------------------------

FAKE_MMCLI = """\
#!{python}
import pathlib, sys
fixtures, state = pathlib.Path({fixtures!r}), pathlib.Path({state!r})
args = sys.argv[1:]
if args == ["-L", "-J"]:
    print((fixtures / {listing!r}).read_text())
elif args == ["-m", "0", "-J"]:
    print((fixtures / {modem!r}).read_text())
elif args == ["-m", "0", "--signal-get", "-J"]:
    name = {signal!r} if state.exists() else "signal-unset.json"
    print((fixtures / name).read_text())
elif args == ["-m", "0", "--signal-setup=1"]:
    state.write_text("on")
    print("successfully setup signal quality information polling")
else:
    sys.exit("error: couldn't find modem " + " ".join(args))
"""


def fake_mmcli(tmp_path: Path, listing: str = "list-one.json", modem: str = "modem-lte.json",
               signal: str = "signal-lte.json") -> str:  # fmt: skip
    path = tmp_path / "mmcli"
    path.write_text(FAKE_MMCLI.format(
        python=sys.executable, fixtures=str(FIXTURES), state=str(tmp_path / "signal-on"),
        listing=listing, modem=modem, signal=signal,
    ))  # fmt: skip
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


async def test_snapshot_switches_signal_sampling_on_and_reads_it(tmp_path: Path) -> None:
    mmcli = fake_mmcli(tmp_path, modem="modem-5g-nsa.json", signal="signal-5g-nsa.json")
    result = as_result(CellularResult, await snapshot(mmcli=mmcli, signal_rate_s=1))
    assert result.status == "ok" and result.engine == "mmcli"
    assert (result.technology, result.operator, result.registration_state) == (
        "lte,5gnr", "MobiFone", "roaming",
    )  # fmt: skip
    assert (result.rsrp_dbm, result.rsrq_db, result.snr_db, result.signal_technology) == (
        -88.0, -10.5, 21.0, "5g",
    )  # fmt: skip
    # mmcli said {"recent": "no", "value": "83"}: withheld, and the result says why.
    assert (result.signal_quality_pct, result.signal_quality_recent) == (None, False)
    assert (tmp_path / "signal-on").exists()


async def test_snapshot_reports_a_recent_signal_quality(tmp_path: Path) -> None:
    result = as_result(CellularResult, await snapshot(mmcli=fake_mmcli(tmp_path), signal_rate_s=1))
    assert (result.signal_quality_pct, result.signal_quality_recent) == (67.0, True)


async def test_no_modem_is_a_failed_result(tmp_path: Path) -> None:
    result = as_result(
        CellularResult, await snapshot(mmcli=fake_mmcli(tmp_path, listing="list-none.json"))
    )
    assert (result.status, result.failure_kind) == ("failed", "no_device")
    assert result.rsrp_dbm is None


async def test_unknown_modem_is_a_failed_result(tmp_path: Path) -> None:
    result = as_result(CellularResult, await snapshot(modem="7", mmcli=fake_mmcli(tmp_path)))
    assert (result.status, result.failure_kind) == ("failed", "no_device")
    assert "couldn't find modem" in (result.error or "")


async def test_missing_mmcli_is_tool_missing(tmp_path: Path) -> None:
    result = as_result(CellularResult, await snapshot(mmcli=str(tmp_path / "no-such-mmcli")))
    assert (result.status, result.failure_kind) == ("failed", "tool_missing")


def test_options() -> None:
    assert parse_options({"signal_rate_s": 5}).signal_rate_s == 5
    with pytest.raises(ValueError, match="cellular options: modem"):
        parse_options({"modem": 0})
