"""``hamletnet-server export`` (write an evidence export) and ``export verify`` (check one,
offline). Heavy modules are imported when a command runs, so ``--help`` stays fast."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import date
from pathlib import Path

from server.cli_common import add_command, load_cli_settings, opened_store_and_registry

#: Windows longer than this show their progress on stderr.
_PROGRESS_AFTER_DAYS = 31


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-30") from None


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], config: argparse.ArgumentParser
) -> None:
    export = add_command(
        sub,
        config,
        "export",
        help="write a signed evidence export of a hamlet's results (docs/evidence.md)",
        func=cmd_export,
    )
    export.add_argument("--hamlet", help="hamlet code from the configuration")
    export.add_argument("--isp", help="only this ISP's lines")
    export.add_argument("--from", dest="start", type=_day, help="first day (Vietnam time)")
    export.add_argument("--to", dest="end", type=_day, help="last day, included")
    export.add_argument(
        "--format", default="csv,xlsx,pdf", help="any of csv,xlsx,pdf (default: all three)"
    )
    export.add_argument("--out", type=Path, help="new or empty directory to write")
    esub = export.add_subparsers(dest="export_cmd")
    verify = esub.add_parser(
        "verify", help="check an export offline: hashes, signatures, summary", parents=[config]
    )
    verify.add_argument("directory", type=Path)
    verify.add_argument("--key", help="the server's public key (RW...) from the office page")
    verify.add_argument("--previous", type=Path, help="the previous export's manifest.json")


def cmd_export(args: argparse.Namespace) -> int:
    if args.export_cmd == "verify":
        return _verify(args)
    missing = [
        flag
        for flag, value in (("--hamlet", args.hamlet), ("--from", args.start),
                            ("--to", args.end), ("--out", args.out))
        if value is None
    ]  # fmt: skip
    if missing:
        print(f"hamletnet-server export: {', '.join(missing)} required", file=sys.stderr)
        return 2
    return asyncio.run(_export(args))


async def _export(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from server.compliance.plan import load_plan
    from server.evidence.export import ExportInputError, run_export

    settings = load_cli_settings(args)
    long_window = (args.end - args.start).days >= _PROGRESS_AFTER_DAYS
    shown = [-1]

    def progress(done: float, results: int) -> None:
        tenth = int(done * 10)
        if long_window and tenth > shown[0]:
            shown[0] = tenth
            print(f"export: {done:.0%} of the window, {results} results", file=sys.stderr)

    try:
        async with opened_store_and_registry(settings) as (store, registry):
            outcome = await run_export(
                store, registry, settings, load_plan(settings.plan_path), out_dir=args.out,
                now=datetime.now(UTC), hamlet=args.hamlet, isp=args.isp, start=args.start,
                end=args.end, formats=args.format, progress=progress,
            )  # fmt: skip
    except ExportInputError as exc:
        print(f"hamletnet-server export: {exc.detail}", file=sys.stderr)
        return 2
    print(f"{outcome.directory}: {outcome.results} results, {len(outcome.files)} files")
    print(f"manifest.json SHA-256: {outcome.manifest_sha256}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from server.evidence import minisign
    from server.evidence.verify import REPORT_KIND, verify_export

    directory: Path = args.directory
    if not directory.is_dir():
        print(f"hamletnet-server export verify: {directory} is not a directory", file=sys.stderr)
        return 2
    previous = None
    if args.previous is not None:
        try:
            previous = args.previous.read_bytes()
        except OSError as exc:
            print(f"hamletnet-server export verify: --previous: {exc}", file=sys.stderr)
            return 2
    try:
        report = verify_export(directory, args.key, previous)
    except minisign.MinisignError as exc:
        print(f"hamletnet-server export verify: --key: {exc}", file=sys.stderr)
        return 2
    for failure in report.failures:
        print(f"FAIL {failure}")
    for note in report.notes:
        print(f"note: {note}")
    if not report.ok:
        print(f"{directory}: {len(report.failures)} failure(s)")
        return 1
    kind = (report.kind or "").replace("-", " ")
    if report.kind == REPORT_KIND:
        print(
            f"{directory}: OK: {kind}: {report.files_checked} files, {report.pdfs_verified} PDF(s)"
        )
        return 0
    print(
        f"{directory}: OK: {kind}: {report.files_checked} files, {report.results_verified}"
        f" results with valid probe signatures ({report.results_legacy_v1} in the legacy form),"
        f" {report.pdfs_verified} PDF(s),"
        f" summary {'recomputed and equal' if report.summary_recomputed else 'not present'}"
    )
    return 0
