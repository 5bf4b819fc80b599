"""Compliance with the commune's digital-infrastructure plan: the plan as data (``plan``), the one
set of statistics and Vietnam-time helpers (``stats``) and the pure rules (``rules``).

Nothing here reads a store, a socket or the clock; the engine around it does (docs/methodology.md).
"""
