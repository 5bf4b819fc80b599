"""``hamletnet-server``: run the ingest server, manage probes, or run the demo."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from probes.models import Access
from server import __version__
from server.cli_common import load_cli_settings, opened_registry, opened_store_and_registry
from server.errors import ConfigError, ServerError
from server.evidence import export_cli
from server.evidence.report_cli import add_report_parser
from server.registry import Registry
from server.settings import Settings

log = logging.getLogger("hamletnet.server")
#: Columns of a hand-entry CSV file (the same as ``server.admin.CSV_COLUMNS``, which the CLI
#: imports only when it runs an import, to keep --help fast).
_CSV_COLUMNS = (
    "indicator_id", "commune", "hamlet", "value", "achieved", "as_of", "source_document",
)  # fmt: skip


def _settings(args: argparse.Namespace) -> Settings:
    return load_cli_settings(args)


def _serve(serve: Callable[[], None], host: str, port: int) -> None:
    """Run ``serve``; a port that is taken becomes one clear line instead of a traceback."""
    try:
        serve()
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise ConfigError(
            f"{host} port {port} is already in use (another hamletnet-server?):"
            " stop that program or choose another port"
        ) from None


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def cmd_run(args: argparse.Namespace) -> int:
    from server.app import create_app
    from server.connection import run_app

    settings = _settings(args)
    _configure_logging(settings.log_level)
    store = "InfluxDB " + settings.influxdb.url if settings.influxdb else "SQLite (embedded)"
    log.info("hamletnet-server %s storing results in %s", __version__, store)
    app = create_app(settings)
    _serve(
        lambda: run_app(
            app,
            host=settings.listen_host,
            port=settings.listen_port,
            print=lambda msg: log.info("%s", msg),
            access_log_format='%a "%r" %s %b %Tfs',
        ),
        settings.listen_host,
        settings.listen_port,
    )
    return 0


async def _with_registry(settings: Settings, args: argparse.Namespace) -> int:
    registry = Registry(settings.data_dir / "registry.sqlite3")
    await registry.open()
    try:
        await registry.sync_hamlets(settings.hamlets, settings.communes)
        if args.probe_cmd == "add":
            record, token = await registry.add_probe(
                hamlet=args.hamlet, isp=args.isp, access=Access(args.access), probe_id=args.id
            )
            print(f"probe:  {record.probe_id}")
            print(f"hamlet: {record.hamlet}   isp: {record.isp}   access: {record.access.value}")
            print(f"token:  {token}")
            print("This token is shown once; only its hash is kept. Give it to the probe with:")
            print(f"  hamletnet-probe register --server URL --token {token}")
        elif args.probe_cmd == "list":
            for p in await registry.probes():
                seen = p.last_seen_at.isoformat() if p.last_seen_at else "never"
                state = "enabled" if p.enabled else "disabled"
                print(f"{p.probe_id}\t{p.hamlet}\t{p.isp}\t{p.access.value}\t{state}\t{seen}")
        elif args.probe_cmd in ("disable", "enable"):
            record = await registry.set_disabled(args.probe_id, args.probe_cmd == "disable")
            print(f"{record.probe_id}: {'enabled' if record.enabled else 'disabled'}")
        elif args.probe_cmd == "set":
            await _set_line(registry, args)
        return 0
    finally:
        await registry.close()


async def _set_line(registry: Registry, args: argparse.Namespace) -> None:
    """``probe set``: what the operator declares for the probe's line, with who (``--actor``)."""
    given = {
        key: value
        for key, value in (
            ("declared_down_mbps", args.declared_down),
            ("declared_up_mbps", args.declared_up),
            ("declared_min_down_mbps", args.declared_min_down),
            ("plan_name", args.plan),
            ("data_budget_bytes", args.data_budget),
        )
        if value is not None
    }
    if given.get("data_budget_bytes") == "none":
        given["data_budget_bytes"] = None
    if not given:
        raise ConfigError(
            "probe set: nothing to set; give --declared-down, --declared-up,"
            " --declared-min-down, --plan or --data-budget"
        )
    record = await registry.set_line(args.probe_id, **given, actor=args.actor)
    print(f"probe:  {record.probe_id}")
    for key in ("declared_down_mbps", "declared_up_mbps", "declared_min_down_mbps"):
        value = getattr(record, key)
        print(f"{key}: {'-' if value is None else format(value, 'g')}")
    print(f"plan_name: {record.plan_name or '-'}")
    print(f"data_budget_bytes: {record.data_budget_bytes or '-'}")
    when = record.declared_at.isoformat() if record.declared_at else "-"
    print(f"declared_by: {record.declared_by}   declared_at: {when}")


async def _import_hand_entries(settings: Settings, path: Path, raw: bytes, actor: str) -> int:
    from server.admin import import_hand_entry_csv
    from server.compliance.plan import load_plan

    plan = load_plan(settings.plan_path)
    async with opened_registry(settings) as registry:
        reply = await import_hand_entry_csv(registry, plan, raw, actor)
    for row in reply.rows:
        if row.outcome == "rejected":
            print(f"{path}:{row.line}: rejected: {row.reason}")
    print(f"{reply.accepted} accepted, {reply.rejected} rejected")
    return 0 if reply.rejected == 0 else 1


def cmd_hand_entry(args: argparse.Namespace) -> int:
    settings = _settings(args)
    path = Path(args.file)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return asyncio.run(_import_hand_entries(settings, path, raw, args.actor))


def cmd_probe(args: argparse.Namespace) -> int:
    return asyncio.run(_with_registry(_settings(args), args))


async def _publish_compliance(settings: Settings, period_text: str | None) -> int:
    from datetime import UTC, datetime

    from server.compliance.plan import load_plan
    from server.compliance.publish import publish
    from server.compliance.stats import month_of, parse_period

    now = datetime.now(UTC)
    period = parse_period(period_text) if period_text else month_of(now)
    async with opened_store_and_registry(settings) as (store, registry):
        months = await publish(
            store, registry, settings, load_plan(settings.plan_path), period, now=now
        )
    for label, count in months.items():
        print(f"{label}: {count} compliance rows published")
    return 0


def cmd_compliance(args: argparse.Namespace) -> int:
    """Publish the compliance engine's verdicts to the result store, where Grafana reads them
    (the server also does so every hour; ``server/publish_api.py``)."""
    return asyncio.run(_publish_compliance(_settings(args), args.period))


def cmd_demo(args: argparse.Namespace) -> int:
    from server.demo import run_demo

    return asyncio.run(run_demo(port=args.port, once=args.once, data_dir=args.data_dir))


def cmd_target(args: argparse.Namespace) -> int:
    """The bandwidth measurement target alone (``server/target``), without storage or registry."""
    # Not from probes.registry: that table reaches every engine, and the [server] extra has
    # only what the server and the target need (no dnspython).
    from probes.latency.address import split_host_port
    from server.target.app import create_target_app

    _configure_logging("INFO")
    try:
        host, port = split_host_port(args.listen)
    except ValueError as exc:
        raise ConfigError(f"--listen: {exc}") from None
    capacity = _settings(args).target  # only target.* matters here
    log.info("hamletnet measurement target %s on %s", __version__, args.listen)
    app = create_target_app(max_tests=capacity.max_concurrent_tests,
                            max_aggregate_mbps=capacity.max_aggregate_mbps)  # fmt: skip
    _serve(lambda: web.run_app(app, host=host, port=port, access_log=None,
                               print=lambda msg: log.info("%s", msg)), host, port)  # fmt: skip
    return 0


def _data_budget(text: str) -> int | str:
    """``--data-budget``: whole bytes, or ``none``."""
    if text.lower() == "none":
        return "none"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of bytes (e.g. 10000000000) or 'none'"
        ) from None


def _config_option() -> argparse.ArgumentParser:
    """``--config``, accepted before the command, after it, and after ``probe add`` alike.

    SUPPRESS as default: a sub-command's parser would otherwise reset a value given earlier.
    """
    holder = argparse.ArgumentParser(add_help=False)
    holder.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        help="YAML settings file of the server (HAMLETNET_* variables override it)",
    )
    return holder


def build_parser() -> argparse.ArgumentParser:
    config = _config_option()
    parser = argparse.ArgumentParser(prog="hamletnet-server", description=__doc__, parents=[config])
    parser.add_argument("--version", action="version", version=f"hamletnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the ingest server", parents=[config])
    run.set_defaults(func=cmd_run)

    probe = sub.add_parser(
        "probe", help="register, list, disable probes (on the local registry)", parents=[config]
    )
    psub = probe.add_subparsers(dest="probe_cmd", required=True)
    add = psub.add_parser("add", help="register a probe and print its token once", parents=[config])
    add.add_argument("--hamlet", required=True, help="hamlet code from the configuration")
    add.add_argument("--isp", required=True, help="operator of the measured line")
    add.add_argument("--access", required=True, choices=[a.value for a in Access])
    add.add_argument("--id", help="probe id (default: HAMLET-ISP-ACCESS)")
    psub.add_parser("list", help="list probes with last-seen", parents=[config])
    for name in ("disable", "enable"):
        p = psub.add_parser(name, help=f"{name} a probe", parents=[config])
        p.add_argument("probe_id")
    line = psub.add_parser(
        "set",
        help="set the line speeds the operator declares for a probe (recorded with who and when)",
        parents=[config],
    )
    line.add_argument("probe_id")
    line.add_argument("--declared-down", type=float, metavar="MBPS", help="declared download")
    line.add_argument("--declared-up", type=float, metavar="MBPS", help="declared upload")
    line.add_argument(
        "--declared-min-down", type=float, metavar="MBPS", help="declared minimum download"
    )
    line.add_argument("--plan", metavar="NAME", help="the operator's name for the plan")
    line.add_argument(
        "--data-budget",
        type=_data_budget,
        metavar="BYTES",
        help="monthly data budget for bandwidth tests on a metered line ('none' clears it)",
    )
    line.add_argument("--actor", required=True, help="who makes the change (recorded)")
    probe.set_defaults(func=cmd_probe)

    hand = sub.add_parser(
        "hand-entry", help="figures the office reports by hand (e.g. digital signatures)",
        parents=[config],
    )  # fmt: skip
    hsub = hand.add_subparsers(dest="hand_cmd", required=True)
    imp = hsub.add_parser(
        "import",
        help="import a CSV file (UTF-8; columns " + ",".join(_CSV_COLUMNS) + ")",
        parents=[config],
    )
    imp.add_argument("file", help="CSV file, as Excel's 'CSV UTF-8' saves it")
    imp.add_argument("--actor", required=True, help="who enters the figures (recorded)")
    hand.set_defaults(func=cmd_hand_entry)

    comp = sub.add_parser("compliance", help="compliance verdicts for Grafana", parents=[config])
    csub = comp.add_subparsers(dest="compliance_cmd", required=True)
    pub = csub.add_parser(
        "publish", help="write a period's verdicts to the result store (replaces them)",
        parents=[config],
    )  # fmt: skip
    pub.add_argument("--period", help="2026-11, 2026-Q4, 2026 or FROM..TO (default: this month)")
    comp.set_defaults(func=cmd_compliance)

    demo = sub.add_parser("demo", help="run a demo on embedded SQLite with example probes")
    demo.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (0: any free)")
    demo.add_argument("--data-dir", type=Path, help="keep the demo's data here (default: temp)")
    demo.add_argument("--once", action="store_true", help="feed results, print, and exit")
    demo.set_defaults(func=cmd_demo)

    target = sub.add_parser("target", help="run only the bandwidth measurement target")
    target.add_argument("--listen", default="0.0.0.0:8081", help="ADDR:PORT or [IPv6]:PORT")
    target.set_defaults(func=cmd_target)

    add_report_parser(sub, config)
    export_cli.add_parser(sub, config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"hamletnet-server: {exc.detail}", file=sys.stderr)
        return 2
    except ServerError as exc:
        print(f"hamletnet-server: {exc.detail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
