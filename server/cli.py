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
from server.errors import ConfigError, ServerError
from server.registry import Registry
from server.settings import Settings, load_settings

log = logging.getLogger("hamletnet.server")


def _settings(args: argparse.Namespace) -> Settings:
    config = getattr(args, "config", None)
    return load_settings(Path(config) if config else None)


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
    # Not from probes.registry: that table reaches every engine, and the [server] extra has
    # only what the server and the target need (no dnspython).
    from probes.latency.address import split_host_port
    from server.target.app import create_target_app

    _configure_logging("INFO")
    try:
        host, port = split_host_port(args.listen)
    except ValueError as exc:
        raise ConfigError(f"--listen: {exc}") from None
    log.info("hamletnet measurement target %s on %s", __version__, args.listen)
    app = create_target_app()
    _serve(lambda: web.run_app(app, host=host, port=port, access_log=None,
                               print=lambda msg: log.info("%s", msg)), host, port)  # fmt: skip
    return 0


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
