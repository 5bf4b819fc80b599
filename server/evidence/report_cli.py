"""``hamletnet-server report --quarter 2026-Q4 [--commune C] --out DIR``: the quarterly report for
the provincial Department of Science and Technology, as PDF, XLSX and ``report.json``, sealed
like an export (``manifest.json`` signed in minisign format; the PDF signed on its own).

The I/O edge only: it evaluates this quarter and the previous one with the compliance engine
(``engine.evaluate``), builds the content (``server.evidence.quarterly``) and the files
(``quarterly_files``), writes them into a temporary directory beside ``--out`` and renames it
into place at the end, so a failure leaves nothing behind. Heavy imports wait until the command
runs, to keep ``--help`` fast.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from server.cli_common import add_command, load_cli_settings, opened_store_and_registry
from server.errors import ConfigError

if TYPE_CHECKING:
    from server.compliance.engine import ComplianceReport, HandFigure
    from server.compliance.plan import Plan
    from server.compliance.stats import Period
    from server.settings import Settings

REPORT_JSON = "report.json"
REPORT_XLSX = "report.xlsx"
REPORT_PDF = "report.pdf"
SERVER_KEY = "server.pub"
#: ``parameters.kind`` in the manifest: what the sealed directory holds.
KIND = "quarterly-report"


class ReportInputError(ConfigError):
    """A quarter, commune or output directory the report cannot use; the message names it."""


def add_report_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], config: argparse.ArgumentParser
) -> None:
    """The ``report`` sub-command, for ``server.cli.build_parser``."""
    report = add_command(
        sub,
        config,
        "report",
        help="the quarterly report for the Department of Science and Technology (PDF, XLSX)",
        func=cmd_report,
    )
    report.add_argument("--quarter", required=True, help="the quarter, e.g. 2026-Q4")
    report.add_argument("--commune", help="one commune's code (default: every commune)")
    report.add_argument("--out", required=True, type=Path, help="new or empty output directory")


def cmd_report(args: argparse.Namespace) -> int:
    settings = load_cli_settings(args)
    quarter = parse_quarter(args.quarter)
    out = check_out_dir(args.out)
    written = asyncio.run(make_report(settings, quarter, args.commune, out, datetime.now(UTC)))
    print(f"quarterly report {quarter.label} written to {out}")
    print(f"manifest.json sha256: {written.manifest_sha256}")
    for name in written.files:
        print(f"  {name}")
    return 0


def parse_quarter(text: str) -> Period:
    """``2026-Q4``; anything else (a month, a year, a range, garbage) is refused, naming it."""
    from server.compliance.stats import PeriodError, parse_period

    try:
        period = parse_period(text)
    except PeriodError as exc:
        raise ReportInputError(f"--quarter: {exc.detail}") from None
    if period.kind != "quarter":
        raise ReportInputError(f"--quarter {text!r} is a {period.kind}; give a quarter: 2026-Q4")
    return period


def check_out_dir(out: Path) -> Path:
    """``--out`` must be new or an empty directory, in a directory that exists."""
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise ReportInputError(f"--out {out} exists and is not a directory")
        if any(out.iterdir()):
            raise ReportInputError(f"--out {out} is not empty; give a new or empty directory")
    elif not out.parent.is_dir():
        raise ReportInputError(f"--out {out}: the directory {out.parent} does not exist")
    return out


def previous_quarter(quarter: Period) -> Period:
    from server.compliance.stats import quarter_of

    return quarter_of(quarter.start - timedelta(microseconds=1))


@dataclass(frozen=True)
class Written:
    directory: Path
    manifest_sha256: str
    files: tuple[str, ...]


async def _evaluate(
    settings: Settings, plan: Plan, quarter: Period, commune: str | None, now: datetime
) -> tuple[ComplianceReport, ComplianceReport, list[HandFigure]]:
    """Both quarters from the engine: this one as things stand ``now``, the previous one as
    they stood at its end (so "became overdue" compares the two standings)."""
    from server.compliance.engine import HandFigure, UnknownFilter, evaluate

    before = previous_quarter(quarter)
    async with opened_store_and_registry(settings) as (store, registry):
        try:
            current = await evaluate(
                store, registry, settings, plan, quarter, now=now, commune=commune
            )
            previous = await evaluate(
                store, registry, settings, plan, before, now=min(now, before.end), commune=commune
            )
        except UnknownFilter as exc:
            raise ReportInputError(f"--commune: {exc.detail}") from None
        hand = [
            HandFigure(e.indicator_id, e.commune, e.hamlet, e.to_rule())
            for e in await registry.hand_entries(commune=commune)
        ]
    return current, previous, hand


async def make_report(
    settings: Settings, quarter: Period, commune: str | None, out: Path, now: datetime
) -> Written:
    """Evaluate, write, seal and move into ``out`` (new or empty); nothing is left on failure."""
    from server.compliance.plan import load_plan

    if quarter.start >= now:
        raise ReportInputError(f"--quarter {quarter.label} has not begun; nothing to report yet")
    known = [c.code for c in settings.communes]
    if commune is not None and commune not in known:
        raise ReportInputError(
            f"--commune: unknown commune {commune!r}; known: {', '.join(sorted(known)) or 'none'}"
        )
    plan = load_plan(settings.plan_path)
    current, previous, hand = await _evaluate(settings, plan, quarter, commune, now)
    return await asyncio.to_thread(
        _write, settings, plan, current, previous, hand, commune, out, now
    )


def _write(
    settings: Settings,
    plan: Plan,
    current: ComplianceReport,
    previous: ComplianceReport,
    hand: list[HandFigure],
    commune: str | None,
    out: Path,
    now: datetime,
) -> Written:
    from server import __version__
    from server.compliance.report_json import report_to_json
    from server.evidence import manifest, minisign, quarterly, quarterly_files
    from server.evidence.pdf import render_pdf

    content = quarterly.build_report(current, previous, plan.indicators, hand)
    try:
        key = minisign.load_or_create_key(settings.data_dir)
        chain = manifest.read_chain_head(settings.data_dir)
    except (minisign.MinisignError, manifest.ManifestError) as exc:
        raise ConfigError(str(exc)) from None
    parameters = {
        "kind": KIND,
        "quarter": current.period.label,
        "previous_quarter": previous.period.label,
        "commune": commune,
        "plan": plan.plan.id,
        "generated_at": now.astimezone(UTC).isoformat(),
    }
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        data = {
            "quarterly": quarterly.report_json(content),
            "compliance": {
                "current": report_to_json(current),
                "previous": report_to_json(previous),
            },
        }
        (staging / REPORT_JSON).write_bytes(quarterly_files.json_bytes(data))
        quarterly_files.write_xlsx(content, staging / REPORT_XLSX)
        (staging / SERVER_KEY).write_text(key.public.file_text(), encoding="utf-8")
        sealed = manifest.seal(staging, key, parameters, __version__, now, chain)
        digest = hashlib.sha256(sealed).hexdigest()
        render_pdf(
            title=quarterly_files.pdf_title(content),
            subtitle=quarterly_files.pdf_subtitle(content),
            sections=quarterly_files.pdf_sections(content),
            footer=f"manifest.json SHA-256: {digest}",
            created_at=now,
            path=staging / REPORT_PDF,
        )
        manifest.seal_pdf(staging / REPORT_PDF, key, sealed, now)
        # mkdtemp makes it 0700; the report holds no secret and is meant to be handed on.
        os.chmod(staging, 0o755)  # noqa: S103
        # rename(2) replaces an empty directory, so an empty --out is taken over in one step.
        try:
            os.replace(staging, out)
        except OSError as exc:
            raise ReportInputError(
                f"--out {out} cannot be replaced ({exc.strerror}): was something written into"
                " it meanwhile? Give a new or empty directory"
            ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    manifest.advance_chain(settings.data_dir, sealed, str(out))
    return Written(out, digest, tuple(sorted(p.name for p in out.iterdir())))
