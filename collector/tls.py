"""TLS for the agent's connections to the server: certificate verification on by default."""

from __future__ import annotations

import ssl
from pathlib import Path


def client_ssl(verify: bool = True, ca_bundle: Path | None = None) -> ssl.SSLContext | bool:
    """What aiohttp's ``ssl=`` takes: a verifying context (system CAs, or ``ca_bundle`` when
    given), or ``False`` when verification was switched off in the configuration."""
    if not verify:
        return False
    return ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
