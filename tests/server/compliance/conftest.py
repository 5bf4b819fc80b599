"""The result store the compliance cache tests run on: each adapter in turn, started for real
(``tests.server.storage.adapters``, shared with the storage contract)."""

from tests.server.storage.adapters import store

__all__ = ["store"]
