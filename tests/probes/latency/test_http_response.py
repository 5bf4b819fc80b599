"""HTTP/1.1 response framing: complete exactly at the end, whatever the segment boundaries."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probes.latency.http_response import HttpFramingError, response_end
from probes.latency.http_rtt import HttpTarget, parse_url

bodies = st.binary(max_size=300)


def _content_length(body: bytes, status: int = 200) -> bytes:
    return f"HTTP/1.1 {status} OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def _chunked(body: bytes, sizes: list[int]) -> bytes:
    out, pos = b"", 0
    for size in sizes:
        piece = body[pos : pos + size]
        if not piece:
            break
        out += f"{len(piece):x};ext=1\r\n".encode() + piece + b"\r\n"
        pos += len(piece)
    if pos < len(body):
        out += f"{len(body) - pos:X}\r\n".encode() + body[pos:] + b"\r\n"
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    return head + out + b"0\r\nX-Trailer: y\r\n\r\n"


@given(bodies, st.lists(st.integers(1, 50), max_size=8), st.binary(max_size=40))
def test_every_framing_ends_exactly_at_its_last_byte(
    body: bytes, sizes: list[int], following: bytes
) -> None:
    for response in (_content_length(body), _chunked(body, sizes)):
        for cut in range(len(response)):
            assert response_end(response[:cut]) is None
        framed = response_end(response + following)  # a next response may follow at once
        assert framed is not None and framed[1] == len(response) and framed[0].status == 200


@pytest.mark.parametrize("status", [204, 304, 100])
def test_responses_without_body(status: int) -> None:
    head = f"HTTP/1.1 {status} X\r\nServer: t\r\n\r\n".encode()
    framed = response_end(head + b"next")
    assert framed is not None and framed[1] == len(head)


def test_connection_close_is_seen() -> None:
    framed = response_end(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert framed is not None and not framed[0].keep_alive


@pytest.mark.parametrize(
    ("response", "why"),
    [
        (b"HTTP/1.1 200 OK\r\n\r\nbody until close", "neither Content-Length"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "small body size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n", "malformed header"),
    ],
)
def test_unusable_responses_say_why(response: bytes, why: str) -> None:
    with pytest.raises(HttpFramingError, match=why):
        response_end(response)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        response_end(data)
    except HttpFramingError:
        pass


def test_url_parsing() -> None:
    assert parse_url("https://speedtest.vn") == HttpTarget(True, "speedtest.vn", 443, "/")
    assert parse_url("http://[2001:db8::1]:8080/a?b=1") == HttpTarget(
        False, "2001:db8::1", 8080, "/a?b=1"
    )
    for bad in ("ftp://x/", "198.18.0.1:80", "http://x:99999/"):
        with pytest.raises(ValueError, match="target"):
            parse_url(bad)
