"""TLS to the server: certificates are verified by default, and a configured CA bundle is used.

The real app serves HTTPS on loopback with a certificate made for the test; the agent's own
registration code connects to it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from collector.identity import RegistrationError, register
from collector.tls import client_ssl
from server.app import create_app
from tests.server.conftest import ADMIN_TOKEN, make_settings


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hamletnet test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
async def https_server(tmp_path: Path) -> AsyncIterator[tuple[str, Path, str]]:
    """(url, CA file, a probe token) of the real app served over TLS on loopback."""
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    runner = web.AppRunner(create_app(make_settings(tmp_path / "data")))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    url = f"https://127.0.0.1:{runner.addresses[0][1]}"
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{url}/api/v1/admin/probes",
            json={"hamlet": "thon-a", "isp": "VNPT", "access": "fiber"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            ssl=client_ssl(True, cert),
        ) as resp,
    ):
        token = (await resp.json())["token"]
    yield url, cert, token
    await runner.cleanup()


async def test_an_unknown_certificate_is_refused_by_default(
    https_server: tuple[str, Path, str], tmp_path: Path
) -> None:
    url, _, token = https_server
    with pytest.raises(RegistrationError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify"):
        await register(url, token, tmp_path / "state", ssl_context=client_ssl())
    assert not (tmp_path / "state" / "credentials.json").exists()


async def test_the_configured_ca_bundle_is_trusted(
    https_server: tuple[str, Path, str], tmp_path: Path
) -> None:
    url, ca, token = https_server
    creds = await register(url, token, tmp_path / "state", ssl_context=client_ssl(True, ca))
    assert creds.probe_id == "thon-a-vnpt-fiber"
    assert (tmp_path / "state" / "credentials.json").stat().st_mode & 0o777 == 0o600
