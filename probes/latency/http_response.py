"""Where an HTTP/1.1 response ends in a byte stream (RFC 9112 §6.3), as pure functions.

The HTTP RTT engine sends GETs one after another on one kept-alive connection and must know when
each response is complete without a library in the timing path. Only framings that keep the
connection usable are accepted: ``Content-Length``, ``chunked``, or a response that has no body by
definition (1xx, 204, 304; this client never sends HEAD). A body delimited by closing the
connection is refused, since the next probe could not reuse it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Bigger heads or bodies mean the target is not the small object an RTT probe needs.
MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024


class HttpFramingError(ValueError):
    """The bytes are not an HTTP/1.1 response this engine can use; the text says why."""


@dataclass(frozen=True, slots=True)
class ResponseHead:
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    length: int  # bytes of status line and headers, including the blank line

    @property
    def keep_alive(self) -> bool:
        return "close" not in self.headers.get("connection", "").lower()


def parse_head(buf: bytes) -> ResponseHead | None:
    """The status line and headers at the start of ``buf``; None while they are incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEAD_BYTES:
            raise HttpFramingError(f"no end of headers in the first {MAX_HEAD_BYTES} bytes")
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HttpFramingError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpFramingError(f"malformed header line: {line[:80]!r}")
        headers[name.lower()] = value.strip()
    return ResponseHead(status=int(parts[1]), headers=headers, length=end + 4)


def response_end(buf: bytes) -> tuple[ResponseHead, int] | None:
    """The head of the response at the start of ``buf`` and the offset just past its end, or None
    while it is incomplete. Raises ``HttpFramingError`` for a response that cannot be framed."""
    head = parse_head(buf)
    if head is None:
        return None
    if head.status < 200 or head.status in (204, 304):
        return head, head.length
    if "chunked" in head.headers.get("transfer-encoding", "").lower():
        end = _chunked_end(buf, head.length)
        return None if end is None else (head, end)
    length = head.headers.get("content-length")
    if length is None:
        raise HttpFramingError(
            "response has neither Content-Length nor chunked encoding, so the connection cannot"
            " be kept alive: point the target at a small static object"
        )
    if not length.isdigit() or int(length) > MAX_BODY_BYTES:
        raise HttpFramingError(f"Content-Length {length!r} is not a small body size")
    end = head.length + int(length)
    return (head, end) if len(buf) >= end else None


def _chunked_end(buf: bytes, pos: int) -> int | None:
    """End of a chunked body starting at ``pos`` (RFC 9112 §7.1), trailers included."""
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size_text = buf[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpFramingError(f"bad chunk size {size_text[:20]!r}") from None
        if size > MAX_BODY_BYTES or eol - pos > 1024:
            raise HttpFramingError("chunk too large for an RTT probe")
        if size == 0:
            # Trailer section: header lines until an empty line.
            pos = eol + 2
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                if eol == pos:
                    return eol + 2
                pos = eol + 2
        pos = eol + 2 + size
        if len(buf) < pos + 2:
            return None
        if buf[pos : pos + 2] != b"\r\n":
            raise HttpFramingError("chunk not followed by CRLF")
        pos += 2


def build_get(host: str, path: str) -> bytes:
    """A minimal keep-alive GET (RFC 9110 §9.3.1)."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: hamletnet-probe\r\n"
        "Accept: */*\r\nConnection: keep-alive\r\n\r\n"
    ).encode("ascii")
