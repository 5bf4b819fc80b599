"""What the one-shot ``hamletnet-server`` commands (``server.cli``, ``export``, ``report``)
share: a sub-command that takes ``--config`` like every other, the settings it names, and the
data directory's probe registry and result store, opened around the command and closed after.

Heavy modules are imported when a command runs, so ``--help`` stays fast."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.registry import Registry
    from server.settings import Settings
    from server.storage import ResultStore

REGISTRY_FILE = "registry.sqlite3"


def add_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    config: argparse.ArgumentParser,
    name: str,
    *,
    help: str,
    func: Callable[[argparse.Namespace], int],
) -> argparse.ArgumentParser:
    """The sub-command ``name``, taking ``--config`` (the ``config`` parent) and run by
    ``func``; the caller adds its own arguments."""
    command = sub.add_parser(name, help=help, parents=[config])
    command.set_defaults(func=func)
    return command


def load_cli_settings(args: argparse.Namespace) -> Settings:
    """The settings of ``--config`` (none given: the defaults and ``HAMLETNET_*`` variables)."""
    from server.settings import load_settings

    config = getattr(args, "config", None)
    return load_settings(Path(config) if config else None)


@asynccontextmanager
async def opened_registry(settings: Settings) -> AsyncIterator[Registry]:
    """The data directory's probe registry, its communes and hamlets synced with ``settings``."""
    from server.registry import Registry

    registry = Registry(settings.data_dir / REGISTRY_FILE)
    await registry.open()
    try:
        await registry.sync_hamlets(settings.hamlets, settings.communes)
        yield registry
    finally:
        await registry.close()


@asynccontextmanager
async def opened_store_and_registry(
    settings: Settings,
) -> AsyncIterator[tuple[ResultStore, Registry]]:
    """The configured result store, started, and the registry (``opened_registry``)."""
    from server.app import make_store

    store = make_store(settings)
    async with opened_registry(settings) as registry:
        try:
            await store.start()
            yield store, registry
        finally:
            await store.close()
