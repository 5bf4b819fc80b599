"""The probe's identity: its server credentials and its Ed25519 key, both private to the agent.

``register`` creates the key pair (once), sends the public key to the server with the probe's
token, and stores the credentials the server confirmed. Both files are written atomically with
mode 0600, so neither a power cut nor another local user can see a half-written or foreign file.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import stat
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.connection_errors import describe
from collector.errors import CollectorError, ConfigError
from probes.signing import load_private_key_pem, new_private_key, private_key_pem, public_key_text

REGISTER_PATH = "/api/v1/register"


@dataclass(frozen=True, slots=True)
class Credentials:
    server_url: str
    probe_id: str
    token: str
    hamlet: str
    isp: str
    access: str

    def __repr__(self) -> str:  # never print the token
        return f"Credentials(server_url={self.server_url!r}, probe_id={self.probe_id!r}, token=***)"


class RegistrationError(CollectorError):
    """The server refused the registration; the message says why and what to do."""


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, mode 0600 (temp file, fsync, rename, fsync dir)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own per call: two writers of the same file must not share a temp file.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_private(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{path} does not exist: register the probe first"
            " (hamletnet-probe register --server URL --token TOKEN)"
        ) from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path} is readable by others (mode {oct(mode & 0o777)}): chmod 600 it")
    return path.read_bytes()


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    if path.exists():
        return load_private_key_pem(_read_private(path))
    key = new_private_key()
    write_private(path, private_key_pem(key))
    return key


def load_key(path: Path) -> Ed25519PrivateKey:
    return load_private_key_pem(_read_private(path))


def load_credentials(path: Path) -> Credentials:
    try:
        data = json.loads(_read_private(path))
        return Credentials(**data)
    except (json.JSONDecodeError, TypeError) as exc:
        raise ConfigError(f"{path} is damaged ({exc}); register the probe again") from exc


async def register(
    server_url: str,
    token: str,
    state_dir: Path,
    *,
    ssl_context: ssl.SSLContext | bool = True,
    timeout_s: float = 30.0,
) -> Credentials:
    """Send this probe's public key to the server and store the confirmed credentials."""
    server_url = server_url.rstrip("/")
    key = load_or_create_key(state_dir / "probe.key")
    body = {"public_key": public_key_text(key)}
    headers = {"Authorization": f"Bearer {token}"}
    url = server_url + REGISTER_PATH
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http,
            http.post(url, json=body, headers=headers, ssl=ssl_context) as resp,
        ):
            reply: dict[str, Any] = await resp.json(content_type=None)
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
        raise RegistrationError(f"cannot register with {server_url}: {describe(exc, url)}") from exc
    if status != 200:
        detail = reply.get("detail", reply) if isinstance(reply, dict) else reply
        raise RegistrationError(f"the server refused the registration ({status}): {detail}")
    creds = Credentials(
        server_url=server_url,
        probe_id=reply["probe_id"],
        token=token,
        hamlet=reply["hamlet"],
        isp=reply["isp"],
        access=reply["access"],
    )
    write_private(state_dir / "credentials.json", json.dumps(asdict(creds)).encode())
    return creds
