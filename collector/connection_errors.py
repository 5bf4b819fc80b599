"""Network failures in plain words: host, port and reason, never an exception's repr.

aiohttp's exceptions print their whole connection key (``ClientConnectorError(ConnectionKey(...,
ssl=<ssl.SSLContext object at 0x…>))``); whoever reads ``hamletnet-probe status`` or a failed
``register`` needs "cannot connect to 10.0.0.5 port 443: Connection refused". The agent turns
them into words here and nowhere else.
"""

from __future__ import annotations

import json
import os
import socket
from urllib.parse import urlsplit

import aiohttp


def _where(url: str) -> tuple[str, int | None]:
    try:
        split = urlsplit(url)
        port = split.port or {"https": 443, "http": 80}.get(split.scheme)
    except ValueError:
        return url, None
    return split.hostname or url, port


def _reason(error: BaseException | None) -> str:
    """An OSError's own words ("Connection refused"); asyncio's "Connect call failed (...)"
    message is replaced by the errno's text."""
    if isinstance(error, OSError) and error.errno:
        if isinstance(error, socket.gaierror):
            return error.strerror or str(error)
        return os.strerror(error.errno)
    return str(error) or type(error).__name__


def describe(exc: BaseException, url: str) -> str:
    """What went wrong talking to ``url``, for a person: host, port and the reason."""
    host, port = _where(url)
    at = f"{host} port {port}" if port else host
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return (
            f"the certificate of {at} is not trusted ({exc.certificate_error}):"
            " give its CA as tls.ca_bundle"
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, socket.gaierror):
            return f"cannot resolve {exc.host}: {_reason(exc.os_error)}"
        return f"cannot connect to {exc.host} port {exc.port}: {_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f"{at} closed the connection before answering"
    if isinstance(exc, TimeoutError):  # aiohttp's timeouts are TimeoutErrors too
        return f"no answer from {at} in time"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"{url!r} is not a valid URL"
    if isinstance(exc, json.JSONDecodeError | aiohttp.ContentTypeError):
        return f"{at} answered with something that is not JSON: is {url} a hamletnet server?"
    if isinstance(exc, OSError):
        return f"cannot talk to {at}: {_reason(exc)}"
    return f"cannot talk to {at}: {type(exc).__name__}: {exc}"
