"""The storage tests' ``store``: each adapter in turn (``adapters.py``)."""

from tests.server.storage.adapters import store

__all__ = ["store"]
