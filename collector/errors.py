"""The collector's exceptions: one root, one branch per job.

Every message names the offending path or value and says what to do about it. Third-party
exceptions (sqlite3, aiohttp, OSError) are translated into these at the one module that meets them.
"""

from __future__ import annotations


class CollectorError(Exception):
    """Root of every error the collector raises on purpose."""


class ConfigError(CollectorError):
    """The probe's configuration is missing, malformed or inconsistent."""


class SpoolError(CollectorError):
    """The local spool cannot be opened, read or written."""


class SpoolFullError(SpoolError):
    """The spool's disk is full (SQLITE_FULL, ENOSPC): nothing more fits until space is freed."""


class UploadError(CollectorError):
    """Results could not be delivered to the server (network, TLS, or an unusable reply)."""
