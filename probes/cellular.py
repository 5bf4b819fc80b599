"""Cellular: a ModemManager snapshot of the probe's modem, read with ``mmcli -J``.

Three documents: ``mmcli -L -J`` (the modem list), ``mmcli -m N -J`` (state, access technologies,
operator, registration, signal quality %) and ``mmcli -m N --signal-get -J`` (RSRP, RSRQ, SNR).
mmcli's JSON nests its dotted keys (``modem.signal.lte.rsrp`` -> ``{"modem": {"signal": {"lte":
{"rsrp": ...}}}}``) and gives every value as a string, ``"--"`` meaning "not known". The extended
signal values stay ``"--"`` until sampling is switched on with ``--signal-setup=SECONDS``, so a
snapshot that finds it off switches it on (the modem keeps the rate) and waits for a sample.

On 5G NSA the modem reports both an LTE anchor and an NR leg; the NR values are taken when the
modem reports them (``signal_technology`` says which), since NR carries the 5G traffic that
QCVN 126 judges. ModemManager keeps the last signal quality % after the modem stops refreshing it
and only clears its "recent" flag (``SIGNAL_QUALITY_RECENT_TIMEOUT_SEC``, 60 s, in ModemManager's
``mm-iface-modem.c``); such a value is history, not the signal now, so it is withheld. Parsers are
pure functions fed mmcli documents (tests/probes/fixtures/mmcli, whose README says what each
stands for).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from probes.models import FailureKind
from probes.options import validate_options
from probes.spec import Failure, Measurement, ProbeSpec

ENGINE = "mmcli"
#: Seconds between the modem's signal samples once we switch sampling on.
DEFAULT_SIGNAL_RATE_S = 10
#: One mmcli call; ModemManager answers from its D-Bus cache, so this is generous.
MMCLI_TIMEOUT_S = 10.0

# The model's bounds; a modem reporting beyond them is reporting garbage, kept out as None.
_BOUNDS = {"rsrp": (-200.0, 0.0), "rsrq": (-50.0, 10.0), "snr": (-50.0, 60.0)}


class CellularOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    signal_rate_s: int = Field(default=DEFAULT_SIGNAL_RATE_S, ge=1, le=3600)
    mmcli: str = Field(default="mmcli", min_length=1, description="path of the mmcli program")


def parse_options(options: Mapping[str, Any]) -> CellularOptions:
    return validate_options(CellularOptions, options, "cellular")


class MmcliError(Exception):
    """mmcli ran but failed (ModemManager not running, modem gone); the text is mmcli's."""


@dataclass(frozen=True, slots=True)
class ModemStatus:
    state: str | None
    technology: str | None  # access technologies as ModemManager names them, joined by ","
    operator: str | None
    registration_state: str | None
    signal_quality_pct: float | None  # None when unknown or not recent
    signal_quality_recent: bool | None  # mmcli's "recent" flag; None when it gave none


@dataclass(frozen=True, slots=True)
class SignalReading:
    technology: str | None  # "5g" or "lte": the section the values came from
    rsrp_dbm: float | None
    rsrq_db: float | None
    snr_db: float | None
    refresh_rate_s: int | None  # 0 or None: sampling is off


def mm_text(value: Any) -> str | None:
    """An mmcli value: ``"--"`` (and empty) means unknown."""
    if not isinstance(value, str) or value.strip() in ("", "--"):
        return None
    return value.strip()


def mm_float(value: Any, bounds: tuple[float, float] | None = None) -> float | None:
    text = mm_text(value)
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    if number != number or (bounds and not bounds[0] <= number <= bounds[1]):
        return None
    return number


def _section(doc: Mapping[str, Any], *keys: str) -> Mapping[str, Any]:
    for key in keys:
        value = doc.get(key) if isinstance(doc, Mapping) else None
        if not isinstance(value, Mapping):
            return {}
        doc = value
    return doc


def parse_modem_list(doc: Mapping[str, Any]) -> list[str]:
    """Modem object paths from ``mmcli -L -J``."""
    paths = doc.get("modem-list")
    return [p for p in paths if isinstance(p, str) and p] if isinstance(paths, list) else []


def modem_id(path: str) -> str:
    """``/org/freedesktop/ModemManager1/Modem/0`` -> ``0`` (what ``mmcli -m`` takes)."""
    return path.rstrip("/").rsplit("/", 1)[-1]


def parse_modem(doc: Mapping[str, Any]) -> ModemStatus:
    """State, access technologies, operator, registration, signal quality: ``mmcli -m N -J``."""
    generic = _section(doc, "modem", "generic")
    gpp = _section(doc, "modem", "3gpp")
    techs = generic.get("access-technologies")
    names = [t for t in techs if mm_text(t)] if isinstance(techs, list) else []
    quality_doc = _section(generic, "signal-quality")
    recent = {"yes": True, "no": False}.get(mm_text(quality_doc.get("recent")) or "")
    quality = mm_float(quality_doc.get("value"), (0.0, 100.0))
    return ModemStatus(
        state=mm_text(generic.get("state")),
        technology=",".join(names)[:32] or None,
        operator=mm_text(gpp.get("operator-name")),
        registration_state=mm_text(gpp.get("registration-state")),
        signal_quality_pct=None if recent is False else quality,
        signal_quality_recent=recent,
    )


def parse_signal(doc: Mapping[str, Any]) -> SignalReading:
    """RSRP/RSRQ/SNR from ``mmcli -m N --signal-get -J``: the 5G section when it has values, else
    LTE (see the module docstring)."""
    signal = _section(doc, "modem", "signal")
    rate_text = mm_text(_section(signal, "refresh").get("rate"))
    rate = int(rate_text) if rate_text and rate_text.isdigit() else None
    for tech in ("5g", "lte"):
        values = _section(signal, tech)
        reading = {k: mm_float(values.get(k), _BOUNDS[k]) for k in ("rsrp", "rsrq", "snr")}
        if any(v is not None for v in reading.values()):
            return SignalReading(tech, reading["rsrp"], reading["rsrq"], reading["snr"], rate)
    return SignalReading(None, None, None, None, rate)


async def _run(mmcli: str, *args: str) -> bytes:
    """mmcli's standard output; FileNotFoundError when mmcli is not installed."""
    proc = await asyncio.create_subprocess_exec(
        mmcli, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(MMCLI_TIMEOUT_S):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        text = err.decode(errors="replace").strip() or f"exit status {proc.returncode}"
        raise MmcliError(f"mmcli {' '.join(args)}: {text[:500]}")
    return out


async def _mmcli(mmcli: str, *args: str) -> dict[str, Any]:
    """Run ``mmcli ARGS -J`` and decode its JSON document."""
    out = await _run(mmcli, *args, "-J")
    try:
        doc = json.loads(out)
    except json.JSONDecodeError as exc:
        raise MmcliError(f"mmcli {' '.join(args)} printed no JSON: {exc}") from None
    return doc if isinstance(doc, dict) else {}


async def run(spec: ProbeSpec) -> list[Measurement]:
    """Registry entry point: the spec's first target names the modem (default the first)."""
    options = parse_options(spec.options)
    modem = spec.targets[0] if spec.targets else None
    return [await snapshot(modem=modem, mmcli=options.mmcli, signal_rate_s=options.signal_rate_s)]


async def snapshot(
    *,
    modem: str | None = None,
    mmcli: str = "mmcli",
    signal_rate_s: int = DEFAULT_SIGNAL_RATE_S,
) -> Measurement:
    """The modem's state now (``modem``: index or path; default the first modem). Never raises
    for a missing tool or modem: those are failed measurements (``tool_missing``,
    ``no_device``)."""

    def _result(failure: tuple[FailureKind, str] | None = None, **fields: Any) -> Measurement:
        why = Failure(*failure) if failure else None
        return Measurement(engine=ENGINE, target=None, failure=why, fields=fields)

    try:
        if modem is None:
            paths = parse_modem_list(await _mmcli(mmcli, "-L"))
            if not paths:
                return _result((FailureKind.NO_DEVICE, "no modem: 'mmcli -L' lists none"))
            modem = paths[0]
        index = modem_id(modem)
        status = parse_modem(await _mmcli(mmcli, "-m", index))
        signal = parse_signal(await _mmcli(mmcli, "-m", index, "--signal-get"))
        if not signal.refresh_rate_s:
            await _run(mmcli, "-m", index, f"--signal-setup={signal_rate_s}")
            deadline = time.monotonic() + 2 * signal_rate_s + 1
            while signal.technology is None and time.monotonic() < deadline:
                await asyncio.sleep(min(1.0, signal_rate_s))
                signal = parse_signal(await _mmcli(mmcli, "-m", index, "--signal-get"))
    except FileNotFoundError:
        return _result((FailureKind.TOOL_MISSING, f"{mmcli} not found: install modemmanager"))
    except TimeoutError:
        return _result((FailureKind.TIMEOUT, f"mmcli gave no answer in {MMCLI_TIMEOUT_S} s"))
    except MmcliError as exc:
        return _result((FailureKind.NO_DEVICE, f"{exc} (is ModemManager running?)"))
    return _result(
        technology=status.technology,
        operator=status.operator,
        registration_state=status.registration_state,
        signal_quality_pct=status.signal_quality_pct,
        signal_quality_recent=status.signal_quality_recent,
        rsrp_dbm=signal.rsrp_dbm,
        rsrq_db=signal.rsrq_db,
        snr_db=signal.snr_db,
        signal_technology=signal.technology,
    )
