"""``hamletnet-server demo``: the whole path on one machine, with nothing to install but Python.

It starts the real server on embedded SQLite, loads the example hamlets from
``config/hiep-luc.yaml``, registers the example probes through the admin API, and has each probe
take real measurements over loopback (TCP-connect RTT to the server, the machine's own
heartbeat) and post them through the real ingest API. Then it prints the URL to open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from probes import heartbeat
from probes.latency.tcp_connect import measure_tcp_connect
from probes.signing import (
    load_private_key_pem,
    new_private_key,
    private_key_pem,
    public_key_text,
    sign,
)
from server import __version__
from server.app import create_app
from server.connection import GuardedAppRunner
from server.errors import ConfigError
from server.settings import ExampleProbe, Settings, load_settings

CONFIG_NAME = "hiep-luc.yaml"
CYCLE_S = 60.0
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
    return f"{spec.hamlet}/{spec.isp}/{spec.access.value}"


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
            probes.append({**previous, "key": load_private_key_pem(previous["key_pem"].encode())})
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
        probes.append({**probe, "key": key})
    return probes, reused


async def _cycle(
    http: aiohttp.ClientSession, base: str, port: int, probes: list[dict[str, Any]]
) -> tuple[int, int]:
    """One measurement cycle per probe; returns (accepted, rejected)."""
    accepted = rejected = 0
    for probe in probes:
        pid = probe["probe_id"]
        results = [
            await measure_tcp_connect(pid, "127.0.0.1", port, count=10, interval_s=0.05),
            heartbeat.snapshot(pid, agent_version=__version__),
        ]
        body = {"results": [sign(r, probe["key"]).model_dump(mode="json") for r in results]}
        async with http.post(
            f"{base}/api/v1/results",
            json=body,
            headers={"Authorization": f"Bearer {probe['token']}"},
        ) as resp:
            resp.raise_for_status()
            reply = await resp.json()
        accepted += reply["accepted"]
        rejected += reply["rejected"]
    return accepted, rejected


async def run_demo(port: int = 8080, once: bool = False, data_dir: Path | None = None) -> int:
    admin = secrets.token_urlsafe(24)
    with _data_dir(data_dir) as directory:
        settings = load_settings(
            find_config(), data_dir=str(directory), admin_token=admin, listen_port=port
        )
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
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                probes, reused = await _register(
                    http, base, admin, settings, directory / PROBES_FILE
                )
                fresh = len(probes) - reused
                print(
                    f"registered {fresh} example probes in {len(settings.hamlets)} hamlets"
                    + (f", reused {reused} from {directory / PROBES_FILE}" if reused else "")
                )
                accepted, rejected = await _cycle(http, base, actual, probes)
                print(
                    f"measured over loopback and posted: {accepted} accepted, {rejected} rejected"
                )
                print(f"open {base}/  (API: {base}/api/v1/openapi.json)")
                if once:
                    async with http.get(f"{base}/") as resp:
                        page = await resp.text()
                    print(f"page: {resp.status}, {len(page)} characters")
                    return 0 if rejected == 0 and accepted > 0 else 1
                print(f"a new cycle every {CYCLE_S:.0f} s; Ctrl-C to stop")
                while True:
                    await asyncio.sleep(CYCLE_S)
                    await _cycle(http, base, actual, probes)
        finally:
            await runner.cleanup()
