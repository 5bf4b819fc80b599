"""``hamletnet-server``: run the ingest server, manage probes, or run the demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from aiohttp import web

from probes.models import Access
from server import __version__
from server.errors import ConfigError, ServerError
from server.registry import Registry
from server.settings import Settings, load_settings

log = logging.getLogger("hamletnet.server")


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(Path(args.config) if args.config else None)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def cmd_run(args: argparse.Namespace) -> int:
    from server.app import create_app

    settings = _settings(args)
    _configure_logging(settings.log_level)
    store = "InfluxDB " + settings.influxdb.url if settings.influxdb else "SQLite (embedded)"
    log.info("hamletnet-server %s storing results in %s", __version__, store)
    web.run_app(
        create_app(settings),
        host=settings.listen_host,
        port=settings.listen_port,
        print=lambda msg: log.info("%s", msg),
        access_log_format='%a "%r" %s %b %Tfs',
    )
    return 0


async def _with_registry(settings: Settings, args: argparse.Namespace) -> int:
    registry = Registry(settings.data_dir / "registry.sqlite3")
    await registry.open()
    try:
        await registry.sync_hamlets(settings.hamlets)
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
        return 0
    finally:
        await registry.close()


def cmd_probe(args: argparse.Namespace) -> int:
    return asyncio.run(_with_registry(_settings(args), args))


def cmd_demo(args: argparse.Namespace) -> int:
    from server.demo import run_demo

    return asyncio.run(run_demo(port=args.port, once=args.once, data_dir=args.data_dir))


def cmd_target(args: argparse.Namespace) -> int:
    """The bandwidth measurement target alone (``server/target``), without storage or registry."""
    from probes.registry import split_host_port
    from server.target.app import create_target_app

    _configure_logging("INFO")
    try:
        host, port = split_host_port(args.listen)
    except ValueError as exc:
        raise ConfigError(f"--listen: {exc}") from None
    log.info("hamletnet measurement target %s on %s", __version__, args.listen)
    web.run_app(create_target_app(), host=host, port=port, access_log=None,
                print=lambda msg: log.info("%s", msg))  # fmt: skip
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hamletnet-server", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hamletnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the ingest server")
    run.add_argument("--config", help="YAML settings file (HAMLETNET_* variables override it)")
    run.set_defaults(func=cmd_run)

    probe = sub.add_parser("probe", help="register, list, disable probes (on the local registry)")
    probe.add_argument("--config", help="YAML settings file of the server")
    psub = probe.add_subparsers(dest="probe_cmd", required=True)
    add = psub.add_parser("add", help="register a probe and print its token once")
    add.add_argument("--hamlet", required=True, help="hamlet code from the configuration")
    add.add_argument("--isp", required=True, help="operator of the measured line")
    add.add_argument("--access", required=True, choices=[a.value for a in Access])
    add.add_argument("--id", help="probe id (default: HAMLET-ISP-ACCESS)")
    psub.add_parser("list", help="list probes with last-seen")
    for name in ("disable", "enable"):
        p = psub.add_parser(name, help=f"{name} a probe")
        p.add_argument("probe_id")
    probe.set_defaults(func=cmd_probe)

    demo = sub.add_parser("demo", help="run a demo on embedded SQLite with example probes")
    demo.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (0: any free)")
    demo.add_argument("--data-dir", type=Path, help="keep the demo's data here (default: temp)")
    demo.add_argument("--once", action="store_true", help="feed results, print, and exit")
    demo.set_defaults(func=cmd_demo)

    target = sub.add_parser("target", help="run only the bandwidth measurement target")
    target.add_argument("--listen", default="0.0.0.0:8081", help="ADDR:PORT or [IPv6]:PORT")
    target.set_defaults(func=cmd_target)
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
