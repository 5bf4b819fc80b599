"""``hamletnet-server demo``: the whole path on one machine, with nothing to install but Python.

It starts the real server on embedded SQLite with its own measurement target (``/target/``),
loads the example hamlets from ``config/hiep-luc.yaml`` and registers the example probes through
the admin API. Each probe posts, signed with its own key, through the real ingest API:

- an illustrative month (``server/demo_history.py``, "dữ liệu minh họa": engine and target
  ``demo-history``) built so the compliance page shows every verdict kind, with declared speeds,
  hand-entered figures and a survey through the admin API as ``demo``; the server is marked
  ``demo`` so its pages say the data is illustrative;
- real tests over loopback against the server's own target: a short bandwidth test (the http
  engine), TCP-connect latency, IPv6 readiness, and the machine's own heartbeat.

Then it prints the overview and compliance pages to open.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import json
import os
import secrets
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from probes import heartbeat
from probes.latency.tcp_connect import measure_tcp_connect
from probes.models import (
    BandwidthResult,
    Ipv6Result,
    ResultBase,
    Status,
    ValidationLimits,
    parse_result,
)
from probes.signing import (
    load_private_key_pem,
    new_private_key,
    private_key_pem,
    public_key_text,
    sign,
)
from server import __version__, demo_history
from server.app import create_app
from server.compliance.stats import Period
from server.connection import GuardedAppRunner
from server.errors import ConfigError
from server.settings import ExampleProbe, Settings, load_settings

CONFIG_NAME = "hiep-luc.yaml"
CYCLE_S = 60.0
#: A bandwidth test fills loopback (and a CPU) for a few seconds per probe: every 5th round.
BANDWIDTH_EVERY = 5
#: Short and light: the demo shows the engine working, it does not measure this machine.
BANDWIDTH_OPTIONS: dict[str, Any] = {
    "duration_s": 1.0,
    "warmup_max_s": 0.5,
    "streams": 2,
    "slot_wait_s": 10.0,
}
#: Results per request (the server takes up to limits.max_batch_items, 1,000 by default).
BATCH = 500
#: What the demo's probes keep, as a Pi keeps its credentials: token and key per example probe,
#: so a re-run with the same --data-dir reuses them instead of registering every probe again.
PROBES_FILE = "demo-probes.json"


def find_config(name: str = CONFIG_NAME) -> Path:
    """``config/NAME`` in the working directory or in the source tree this package came from."""
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent):
        candidate = base / "config" / name
        if candidate.is_file():
            return candidate
    raise ConfigError(f"cannot find config/{name}: run the demo from the hamletnet checkout")


@contextlib.contextmanager
def _data_dir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="hamletnet-demo-") as tmp:
        yield Path(tmp)


def _spec_key(spec: ExampleProbe) -> str:
    return demo_history.story_key(spec.hamlet, spec.isp, spec.access.value)


def _load_kept(path: Path) -> dict[str, dict[str, str]]:
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is unreadable ({exc}): delete it to register anew") from exc
    return kept if isinstance(kept, dict) else {}


def _save_kept(path: Path, kept: dict[str, dict[str, str]]) -> None:
    # Tokens and private keys: readable by the owner only, like the probe's own state directory.
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(kept, out, indent=1)
    os.replace(path.with_suffix(".tmp"), path)


async def _known(http: aiohttp.ClientSession, base: str, admin: str, probe_id: str) -> bool:
    async with http.get(
        f"{base}/api/v1/admin/probes/{probe_id}", headers={"Authorization": f"Bearer {admin}"}
    ) as resp:
        if resp.status == 404:
            return False
        resp.raise_for_status()
        return True


async def _register(
    http: aiohttp.ClientSession, base: str, admin: str, settings: Settings, kept_path: Path
) -> tuple[list[dict[str, Any]], int]:
    """The example probes, each registered once per data directory; returns (probes, reused)."""
    kept = _load_kept(kept_path)
    probes, reused = [], 0
    for spec in settings.example_probes:
        previous = kept.get(_spec_key(spec))
        if previous and await _known(http, base, admin, previous["probe_id"]):
            key = load_private_key_pem(previous["key_pem"].encode())
            probes.append({**previous, "key": key, "story": _spec_key(spec)})
            reused += 1
            continue
        async with http.post(
            f"{base}/api/v1/admin/probes",
            json=spec.model_dump(mode="json"),
            headers={"Authorization": f"Bearer {admin}"},
        ) as resp:
            resp.raise_for_status()
            created = await resp.json()
        # What 'hamletnet-probe register' does on a Pi: make a key pair, send the public half.
        key = new_private_key()
        async with http.post(
            f"{base}/api/v1/register",
            json={"public_key": public_key_text(key)},
            headers={"Authorization": f"Bearer {created['token']}"},
        ) as resp:
            resp.raise_for_status()
        probe = {"probe_id": created["probe_id"], "token": created["token"]}
        kept[_spec_key(spec)] = {**probe, "key_pem": private_key_pem(key).decode()}
        _save_kept(kept_path, kept)
        probes.append({**probe, "key": key, "story": _spec_key(spec)})
    return probes, reused


async def _post(
    http: aiohttp.ClientSession, base: str, probe: dict[str, Any], items: list[dict[str, Any]]
) -> Counter[str]:
    """Post signed results in batches the server takes; returns the counts of its replies."""
    counts: Counter[str] = Counter()
    for start in range(0, len(items), BATCH):
        async with http.post(
            f"{base}/api/v1/results",
            json={"results": items[start : start + BATCH]},
            headers={"Authorization": f"Bearer {probe['token']}"},
        ) as resp:
            resp.raise_for_status()
            reply = await resp.json()
        counts.update({k: reply[k] for k in ("accepted", "duplicate", "rejected")})
    return counts


def _signed(results: Sequence[ResultBase], key: Ed25519PrivateKey) -> list[dict[str, Any]]:
    return [sign(r, key).model_dump(mode="json") for r in results]


async def _seed_history(
    http: aiohttp.ClientSession, base: str, admin: str, probes: list[dict[str, Any]]
) -> tuple[Period, Counter[str], int]:
    """The illustrative month of each probe that has a story: its declared speeds through the
    admin API (as ``demo``, only when they changed), its results signed with its own key through
    the ingest API. Returns the month, the ingest counts and the lines declared."""
    now = datetime.now(UTC)
    month = demo_history.history_month(now)
    # The agent signs what it measured, however old; how old the server takes is its own bound.
    limits = ValidationLimits(now, max_age=timedelta(days=demo_history.MAX_AGE_DAYS))
    counts: Counter[str] = Counter()
    declared = 0
    for probe in probes:
        story = demo_history.STORIES.get(probe["story"])
        if story is None:
            continue
        if story.declared:
            declared += await _declare(http, base, admin, probe["probe_id"], story.declared)
        payloads = demo_history.bandwidth_payloads(story, probe["probe_id"], month)
        results = [parse_result(p, limits) for p in payloads]
        counts += await _post(http, base, probe, _signed(results, probe["key"]))
    return month, counts, declared


async def _declare(
    http: aiohttp.ClientSession, base: str, admin: str, probe_id: str, line: dict[str, Any]
) -> int:
    """PATCH the declared line unless it is already so (each change is kept in its history)."""
    url, headers = f"{base}/api/v1/admin/probes/{probe_id}", {"Authorization": f"Bearer {admin}"}
    async with http.get(url, headers=headers) as resp:
        resp.raise_for_status()
        current = await resp.json()
    if all(current.get(k) == v for k, v in line.items()):
        return 0
    async with http.patch(url, json={**line, "actor": demo_history.ACTOR}, headers=headers) as resp:
        resp.raise_for_status()
    return 1


async def _enter_once(
    http: aiohttp.ClientSession, base: str, admin: str, path: str, entries: list[dict[str, Any]]
) -> int:
    """POST each entry to an admin list (hand entries, surveys) unless one like it is there."""
    url, headers = f"{base}/api/v1/admin/{path}", {"Authorization": f"Bearer {admin}"}
    async with http.get(url, headers=headers) as resp:
        resp.raise_for_status()
        present = await resp.json()
    added = 0
    for entry in entries:
        fields = {k: v for k, v in entry.items() if k != "actor"}
        if any(all(row.get(k) == v for k, v in fields.items()) for row in present):
            continue
        async with http.post(url, json=entry, headers=headers) as resp:
            resp.raise_for_status()
        added += 1
    return added


def loopback_ipv6_options(port: int) -> dict[str, Any]:
    """Every IPv6 check aimed at this machine: the server's own target on loopback, no DNS
    server but loopback's, no Router Solicitation. Over loopback most checks fail and the
    verdict is honestly "not ready"; a probe in a hamlet runs them against the real target."""
    here4, here6 = f"http://127.0.0.1:{port}/target", f"http://[::1]:{port}/target"
    return {
        "dual_stack_url": f"http://localhost:{port}/target/latency",
        "ipv4_only_url": f"{here4}/latency",
        "ipv6_only_url": f"{here6}/latency",
        "large_response_url": f"{here6}/download?bytes=2000",
        "ipv6_only_dns_name": "localhost",
        "resolver": ["127.0.0.1"],
        "icmpv6_targets": ["::1"],
        "router_discovery": False,
        "check_timeout_s": 2.0,
        "slow_s": 1.0,
    }


def _ipv6_available() -> bool:
    """The IPv6 test asks DNS directly (dnspython, the [probe] extra); the demo's [server]
    venv may not have it."""
    return importlib.util.find_spec("dns") is not None


async def _bandwidth(base: str, probes: list[dict[str, Any]]) -> list[BandwidthResult]:
    """One short test per probe against the server's own target, one after another (the
    target's slot keeps them apart, as on a real target)."""
    from probes import bandwidth

    return [
        await bandwidth.measure(p["probe_id"], f"{base}/target", "http", BANDWIDTH_OPTIONS)
        for p in probes
    ]


async def _others(pid: str, port: int, ipv6: bool) -> list[ResultBase]:
    results: list[ResultBase] = [
        await measure_tcp_connect(pid, "127.0.0.1", port, count=10, interval_s=0.05)
    ]
    if ipv6:
        from probes.ipv6.readiness import measure_ipv6

        results.append(await measure_ipv6(pid, "localhost", loopback_ipv6_options(port)))
    results.append(heartbeat.snapshot(pid, agent_version=__version__))
    return results


async def _cycle(
    http: aiohttp.ClientSession,
    base: str,
    port: int,
    probes: list[dict[str, Any]],
    *,
    with_bandwidth: bool,
) -> Counter[str]:
    """One round of real tests over loopback, posted by each probe; prints what they found."""
    ipv6 = _ipv6_available()
    speeds = await _bandwidth(base, probes) if with_bandwidth else []
    others = await asyncio.gather(*(_others(p["probe_id"], port, ipv6) for p in probes))
    counts: Counter[str] = Counter()
    for index, probe in enumerate(probes):
        mine = ([speeds[index]] if speeds else []) + others[index]
        counts += await _post(http, base, probe, _signed(mine, probe["key"]))
    if speeds:
        ok = [r for r in speeds if r.status is Status.OK]
        figures = ", ".join(f"{r.download_mbps or 0:.0f}/{r.upload_mbps or 0:.0f}" for r in ok)
        print(
            f"bandwidth over loopback: {len(ok)} ok of {len(speeds)} (http engine,"
            f" {BANDWIDTH_OPTIONS['duration_s']} s per direction; Mb/s down/up: {figures or '-'})"
        )
    if ipv6:
        tests = [r for rs in others for r in rs if isinstance(r, Ipv6Result)]
        ready = sum(r.ipv6_ready is True for r in tests)
        print(
            f"ipv6 readiness over loopback: ready on {ready} of {len(tests)} (no router, no"
            " global address on loopback: 'not ready' is the honest answer here)"
        )
    else:
        print(
            "ipv6 readiness: not run, it needs dnspython (the [probe] extra):"
            " .venv/bin/pip install dnspython"
        )
    return counts


def demo_settings(data_dir: Path, *, admin_token: str, port: int) -> Settings:
    """config/hiep-luc.yaml as the demo runs it: its own target on, the pages marked
    illustrative, and results as old as the illustrative month accepted."""
    settings = load_settings(
        find_config(),
        environment=False,  # HAMLETNET_* belong to an office server, not to the demo
        data_dir=str(data_dir),
        admin_token=admin_token,
        listen_port=port,
        serve_target=True,
        demo=True,
    )
    oldest = max(settings.limits.max_result_age_days, demo_history.MAX_AGE_DAYS)
    limits = settings.limits.model_copy(update={"max_result_age_days": oldest})
    return settings.model_copy(update={"limits": limits})


async def run_demo(port: int = 8080, once: bool = False, data_dir: Path | None = None) -> int:
    admin = secrets.token_urlsafe(24)
    with _data_dir(data_dir) as directory:
        settings = demo_settings(directory, admin_token=admin, port=port)
        runner = GuardedAppRunner(create_app(settings), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", port)
            try:
                await site.start()
            except OSError:
                print(f"port {port} is busy; using a free one instead")
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
            actual = runner.addresses[-1][1]
            base = f"http://127.0.0.1:{actual}"
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
                probes, reused = await _register(
                    http, base, admin, settings, directory / PROBES_FILE
                )
                fresh = len(probes) - reused
                print(
                    f"registered {fresh} example probes in {len(settings.hamlets)} hamlets"
                    + (f", reused {reused} from {directory / PROBES_FILE}" if reused else "")
                )
                month, seeded, declared = await _seed_history(http, base, admin, probes)
                print(
                    f"illustrative history (dữ liệu minh họa) for {month.label}:"
                    f" {seeded['accepted']} accepted, {seeded['duplicate']} duplicate,"
                    f" {seeded['rejected']} rejected; declared speeds set on {declared} lines"
                )
                hands = await _enter_once(
                    http, base, admin, "hand-entries", demo_history.hand_entries(month)
                )
                found = await _enter_once(http, base, admin, "surveys", demo_history.surveys(month))
                print(f"hand entries: {hands} new, surveys: {found} new (entered by 'demo')")
                posted = await _cycle(http, base, actual, probes, with_bandwidth=True)
                print(
                    f"measured over loopback and posted: {posted['accepted']} accepted,"
                    f" {posted['rejected']} rejected"
                )
                print(f"overview: {base}/")
                print(f"compliance: {base}/compliance?period={month.label}")
                print(f"API: {base}/api/v1/openapi.json")
                if once:
                    for path in ("/", f"/compliance?period={month.label}"):
                        async with http.get(f"{base}{path}") as resp:
                            page = await resp.text()
                        print(
                            f"page {path.partition('?')[0]}: {resp.status}, {len(page)} characters"
                        )
                    good = seeded["rejected"] == 0 and posted["rejected"] == 0
                    return 0 if good and posted["accepted"] > 0 else 1
                print(
                    f"a new round every {CYCLE_S:.0f} s (bandwidth every"
                    f" {BANDWIDTH_EVERY} rounds); Ctrl-C to stop"
                )
                for round_ in itertools.count(1):
                    await asyncio.sleep(CYCLE_S)
                    await _cycle(
                        http, base, actual, probes, with_bandwidth=round_ % BANDWIDTH_EVERY == 0
                    )
        finally:
            await runner.cleanup()
    return 0
