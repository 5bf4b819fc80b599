"""``hamletnet-probe``: the agent on the Raspberry Pi.

register   store the server's credentials and this probe's signing key
run        the long-running agent (systemd runs this)
measure    run one test now and print its result as one JSON object (no upload)
status     next runs, spool depth and held results, last upload, last errors and task restarts
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import pwd
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from collector import __version__
from collector.config import ProbeConfig, load_config
from collector.errors import CollectorError
from collector.identity import load_credentials, load_key, register
from collector.spool import AsyncSpool
from collector.tls import client_ssl
from probes import heartbeat
from probes.envelope import stamp
from probes.models import MODEL_BY_KIND, Kind
from probes.registry import PROBES
from probes.spec import ProbeSpec, Stopwatch

DEFAULT_CONFIG = Path("/etc/hamletnet/probe.yaml")


def _config(args: argparse.Namespace) -> ProbeConfig:
    given = getattr(args, "config", None)
    path = Path(given) if given else None
    if path is None and DEFAULT_CONFIG.is_file():
        path = DEFAULT_CONFIG
    overrides: dict[str, Any] = {}
    if getattr(args, "state_dir", None):
        overrides["state_dir"] = str(args.state_dir)
    return load_config(path, **overrides)


def cmd_register(args: argparse.Namespace) -> int:
    config = _config(args)
    ssl_context = client_ssl(config.tls.verify, config.tls.ca_bundle)
    creds = asyncio.run(
        register(args.server, args.token, config.state_dir, ssl_context=ssl_context)
    )
    print(f"registered as {creds.probe_id} (hamlet {creds.hamlet}, {creds.isp}, {creds.access})")
    print(f"credentials and key in {config.state_dir} (mode 0600)")
    return 0


async def _run(config: ProbeConfig) -> int:
    try:
        from collector.agent import Agent
    except ModuleNotFoundError as exc:  # e.g. in the demo's venv, which has the [server] extra
        raise CollectorError(
            f"the agent needs the Python module {exc.name!r}, which is not installed:"
            " install it with the [probe] extra: pip install 'hamletnet[probe]'"
        ) from exc

    creds = load_credentials(config.credentials_path)
    key = load_key(config.key_path)
    ssl_context = client_ssl(config.tls.verify, config.tls.ca_bundle)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    spool = AsyncSpool(config.spool_path, max_bytes=config.spool.max_bytes,
                       max_age=config.spool.max_age)  # fmt: skip
    await spool.open()
    try:
        async with aiohttp.ClientSession() as http:
            agent = Agent(config, creds, key, spool, http, ssl_context=ssl_context)
            await agent.run(stop)
    finally:
        await spool.close()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = _config(args)
    logging.basicConfig(
        level=config.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return asyncio.run(_run(config))


async def _measure_once(kind: Kind, args: argparse.Namespace) -> Any:
    probe_id = args.probe_id
    if kind is Kind.HEARTBEAT:
        return heartbeat.snapshot(probe_id, agent_version=__version__)
    entry = PROBES.get(kind)
    if entry is None:
        raise CollectorError(f"this agent cannot measure {kind.value} yet")
    if entry.needs_targets and not args.target:
        raise CollectorError(f"measure {kind.value} needs --target")
    options: dict[str, Any] = {}
    for item in args.option or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise CollectorError(f"--option {item!r} must be NAME=VALUE")
        try:
            options[name] = yaml.safe_load(value)  # 3 -> int, 1.5 -> float, true -> bool
        except yaml.YAMLError:  # not YAML but a plain value, e.g. "[2001:db8::53]:53"
            options[name] = value
    spec = ProbeSpec(
        probe_id=probe_id,
        targets=[args.target] if args.target else [],
        timeout_s=args.timeout,
        engine=args.engine,
        options=options,
    )
    watch = Stopwatch()
    async with asyncio.timeout(args.timeout):
        measured = await entry.run(spec)
    span = watch.span()
    results = [stamp(MODEL_BY_KIND[kind], probe_id, m, span) for m in measured]
    if len(results) != 1:  # prints one object: dns gives one per resolver, name and type
        raise CollectorError(
            f"measure {kind.value} gave {len(results)} results and prints one: narrow it down"
            " (dns: --option qtypes=A --option resolvers=IP)"
        )
    return results[0]


def cmd_measure(args: argparse.Namespace) -> int:
    try:
        result = asyncio.run(_measure_once(Kind(args.kind), args))
    except (ValueError, ModuleNotFoundError) as exc:  # a bad target or option; a missing extra
        raise CollectorError(str(exc)) from exc
    print(result.model_dump_json())
    return 0 if result.status == "ok" else 1


def _ago(iso: str | None) -> str:
    if not iso:
        return "never"
    seconds = (datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds()
    if seconds < 0:
        return f"in {_span(-seconds)}"
    return f"{_span(seconds)} ago"


def _span(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _owner(path: Path) -> str:
    """Who owns ``path`` or its nearest existing parent: the user the agent runs as."""
    for candidate in (path, *path.parents):
        try:
            return pwd.getpwuid(candidate.stat().st_uid).pw_name
        except (OSError, KeyError):
            continue
    return "hamletnet"


def cmd_status(args: argparse.Namespace) -> int:
    config = _config(args)
    try:
        status = json.loads(config.status_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        print(f"no status yet at {config.status_path}: is the agent running?")
        return 1
    except PermissionError:
        # The state directory is the agent's alone (mode 0700): it holds the signing key.
        owner = _owner(config.state_dir)
        raise CollectorError(
            f"cannot read {config.status_path}: it belongs to the user {owner!r}."
            f" Run 'sudo -u {owner} hamletnet-probe status' or 'sudo hamletnet-probe status'"
        ) from None
    print(f"probe {status['probe_id']} → {status['server_url']} (agent {status['agent_version']})")
    print(f"status written {_ago(status['written_at'])}, agent up {_span(status['uptime_s'])}")
    print("next runs:")
    for kind, when in sorted(status["next_runs"].items()):
        print(f"  {kind:<10} {_ago(when) if when else 'paused'}")
    spool = status["spool"]
    if "error" in spool:
        print(f"spool: ERROR {spool['error']}")
    else:
        oldest = f", oldest {_span(spool['oldest_age_s'])} old" if spool["oldest_age_s"] else ""
        print(
            f"spool: {spool['depth']} waiting ({spool['bytes']} bytes{oldest}),"
            f" {spool['evicted']} evicted, {spool['rejected']} rejected by the server,"
            # Measured before NTP synchronised the wall clock: re-stamped, signed and queued
            # once it has (probes/clock.py). Absent from an older agent's status.json.
            f" {spool.get('held', 0)} held until the clock is synchronised"
        )
    upload = status["upload"]
    print(
        f"last upload: {_ago(upload['last_success_at'])};"
        f" {upload['acknowledged']} delivered, {upload['quarantined']} rejected"
    )
    if upload["last_error"]:
        print(f"  last upload problem: {upload['last_error']}")
    errors = status["last_errors"]
    print("last errors: " + ("none" if not errors else ""))
    for kind, message in sorted(errors.items()):
        print(f"  {kind}: {message}")
    # How often each background task or scheduled test ended with an exception and was restarted.
    restarts = status.get("task_restarts") or {}
    counted = ", ".join(f"{name} {count}" for name, count in sorted(restarts.items()))
    print(f"task restarts: {counted or 'none'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    # --config and --state-dir before or after the command alike; SUPPRESS as default, or a
    # command's parser would reset a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        help=f"YAML configuration (default {DEFAULT_CONFIG} if present)",
    )
    common.add_argument(
        "--state-dir", type=Path, default=argparse.SUPPRESS, help="override state_dir"
    )
    parser = argparse.ArgumentParser(
        prog="hamletnet-probe", description=__doc__, parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"hamletnet-probe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    reg = sub.add_parser(
        "register", help="store credentials and create the signing key", parents=[common]
    )
    reg.add_argument(
        "--server", required=True, help="server URL, e.g. https://hamletnet.example.vn"
    )
    reg.add_argument(
        "--token", required=True, help="the token 'hamletnet-server probe add' printed"
    )
    reg.set_defaults(func=cmd_register)

    run = sub.add_parser("run", help="run the agent until SIGTERM", parents=[common])
    run.set_defaults(func=cmd_run)

    measure = sub.add_parser(
        "measure", help="run one test now and print its result", parents=[common]
    )
    measure.add_argument("kind", choices=[Kind.HEARTBEAT.value, *(k.value for k in PROBES)])
    measure.add_argument(
        "--target",
        help="what to measure against (latency: HOST for icmp, HOST:PORT for tcp, URL for http;"
        " dns: a name; cellular: optional modem index)",
    )
    measure.add_argument("--probe-id", default="local", help="probe id to put in the result")
    measure.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    measure.add_argument(
        "--engine",
        help="engine of the kind (default: latency follows the target: HOST:PORT tcp, URL http,"
        " host icmp; other kinds their own default)",
    )
    measure.add_argument(
        "--option", action="append", metavar="NAME=VALUE", help="engine setting (repeatable)"
    )
    measure.add_argument("--json", action="store_true", help="print one JSON object (the default)")
    measure.set_defaults(func=cmd_measure)

    status = sub.add_parser(
        "status", help="what the agent is doing, in plain words", parents=[common]
    )
    status.set_defaults(func=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CollectorError as exc:
        print(f"hamletnet-probe: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
