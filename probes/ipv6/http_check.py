"""One HTTP GET per check, over the family the check asks for, recording which family and peer
the connection really used. HTTP/1.0 keeps the client small (no chunked bodies, the server
closes); the response-head parser is pure."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from probes.ipv6.params import MAX_BODY_BYTES, MAX_HEAD_BYTES
from probes.ipv6.scoring import Outcome
from probes.models import Family

#: What went wrong: the name (DNS), the connection, the time limit, or the HTTP exchange.
FailureStage = Literal["dns", "connect", "timeout", "http"]


@dataclass(frozen=True, slots=True)
class Fetch:
    url: str
    outcome: Outcome
    family: Family | None = None  # family of the connection that answered
    peer: str | None = None  # its remote address
    status: int | None = None
    body_bytes: int | None = None
    elapsed_ms: float | None = None
    stage: FailureStage | None = None
    error: str | None = None


def split_url(url: str) -> tuple[str, str, int, str, bool]:
    """(host, Host header, port, path, tls) of an http(s) URL; ValueError names the URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
    tls = parts.scheme == "https"
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname, parts.netloc, parts.port or (443 if tls else 80), path, tls


def parse_response_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status code and headers (names lower-cased) of an HTTP/1.x response head."""
    lines = head.decode("iso-8859-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise ValueError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(code), headers


def _family(sock: socket.socket | None) -> Family | None:
    if sock is None:
        return None
    return {socket.AF_INET: Family.IPV4, socket.AF_INET6: Family.IPV6}.get(sock.family)


async def fetch(
    url: str,
    *,
    family: socket.AddressFamily = socket.AF_UNSPEC,
    timeout_s: float,
    slow_s: float,
    happy_eyeballs_delay_s: float,
    min_body_bytes: int = 0,
) -> Fetch:
    """GET ``url``; names resolve through the system resolver (as a browser's would). With
    ``AF_UNSPEC`` the connection races the families by Happy Eyeballs (RFC 8305: interleaved
    addresses in the resolver's RFC 6724 order, next attempt after ``happy_eyeballs_delay_s``).
    Completed but slower than ``slow_s`` is SLOW; cut at ``timeout_s`` is TIMEOUT, as
    test-ipv6.com classifies them."""
    host, host_header, port, path, tls = split_url(url)
    started = time.perf_counter_ns()
    stage: FailureStage = "dns"
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            stage = "connect"
            reader, writer = await asyncio.open_connection(
                host,
                port,
                family=family,
                happy_eyeballs_delay=happy_eyeballs_delay_s,
                interleave=1,
                ssl=ssl.create_default_context() if tls else None,
                server_hostname=host if tls else None,
                limit=MAX_HEAD_BYTES,
            )
            sock = writer.get_extra_info("socket")
            peer = writer.get_extra_info("peername")
            stage = "http"
            writer.write(
                f"GET {path} HTTP/1.0\r\nHost: {host_header}\r\n"
                "User-Agent: hamletnet-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status, headers = parse_response_head(head)
            length = headers.get("content-length")
            if length is not None and length.isdigit():
                body = await reader.readexactly(min(int(length), MAX_BODY_BYTES))
            else:
                body = await reader.read(MAX_BODY_BYTES)
    except TimeoutError:
        return Fetch(
            url,
            Outcome.TIMEOUT,
            elapsed_ms=_ms(started),
            stage="timeout",
            error=f"no complete answer in {timeout_s:g} s (at {stage})",
        )
    except socket.gaierror as exc:
        return Fetch(
            url,
            Outcome.BAD,
            elapsed_ms=_ms(started),
            stage="dns",
            error=f"no {_family_word(family)}address for {host}: {exc.strerror}",
        )
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        return Fetch(
            url,
            Outcome.BAD,
            elapsed_ms=_ms(started),
            stage=stage,
            error=f"{stage} failed: {_describe(exc)}",
        )
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
    elapsed = _ms(started)
    used, peer_address = _family(sock), str(peer[0]) if peer else None
    if len(body) < min_body_bytes:
        short = f"the response had {len(body)} bytes, fewer than {min_body_bytes}"
        return Fetch(
            url, Outcome.BAD, used, peer_address, status, len(body), elapsed, "http", short
        )
    outcome = Outcome.SLOW if elapsed > slow_s * 1000 else Outcome.OK
    return Fetch(url, outcome, used, peer_address, status, len(body), elapsed)


def _ms(started_ns: int) -> float:
    return (time.perf_counter_ns() - started_ns) / 1e6


def _family_word(family: socket.AddressFamily) -> str:
    return {socket.AF_INET: "IPv4 ", socket.AF_INET6: "IPv6 "}.get(family, "")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


async def resolve(
    host: str, family: socket.AddressFamily, timeout_s: float
) -> tuple[list[str], str | None]:
    """Addresses of ``host`` in ``family`` from the system resolver, and why there are none."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            infos = await loop.getaddrinfo(host, None, family=family, type=socket.SOCK_STREAM)
    except TimeoutError:
        return [], f"resolving {host} took more than {timeout_s:g} s"
    except socket.gaierror as exc:
        return [], f"no {_family_word(family)}address for {host}: {exc.strerror}"
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses, None
