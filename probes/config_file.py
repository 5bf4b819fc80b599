"""Reading a YAML settings file and explaining validation errors by key.

Shared by the probe agent's and the server's configuration (``collector/config.py``,
``server/settings.py``), which keep their own models and error types and translate
``ConfigFileError`` into them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails


class ConfigFileError(ValueError):
    """The file cannot be read, is not YAML, or does not hold a mapping; the message says which."""


def read_mapping(path: Path, path_keys: Iterable[str] = ()) -> dict[str, Any]:
    """The top-level mapping of a YAML file; the values of ``path_keys`` that are relative paths
    are made relative to the file, not to the working directory."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigFileError(f"cannot read configuration file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{path} is not valid YAML: {exc}") from exc
    if loaded is None:
        # An empty file is more often a failed copy or an unfinished edit than a wish for the
        # defaults; "{}" says the latter on purpose.
        raise ConfigFileError(
            f"{path} holds no settings (it is empty or only comments): fill it in from the"
            " example, or write {} in it to run on the defaults on purpose"
        )
    if not isinstance(loaded, dict):
        raise ConfigFileError(f"{path} must hold a mapping of settings at the top level")
    for key in path_keys:
        if isinstance(loaded.get(key), str):
            loaded[key] = str((path.parent / loaded[key]).resolve())
    return loaded


def unknown_environment(
    prefix: str, known: Iterable[str], ignore: Iterable[str] = ()
) -> str | None:
    """A message naming every ``PREFIX*`` environment variable that is no setting, or None.

    pydantic-settings ignores such variables; a misspelt one would silently change nothing.
    """
    fields, skipped = set(known), tuple(p.upper() for p in ignore)
    unknown = sorted(
        name
        for name in os.environ
        if name.upper().startswith(prefix)
        and not name.upper().startswith(skipped)
        and name.upper().removeprefix(prefix).split("__")[0].lower() not in fields
    )
    if not unknown:
        return None
    return (
        f"unknown environment variable(s) {', '.join(unknown)}: no such setting"
        " (check the spelling against the configuration reference)"
    )


def environment_source(loc: Sequence[int | str], prefix: str) -> str | None:
    """The environment variable that set the value at ``loc``, if one did: the variable of the
    key itself (``HAMLETNET_LIMITS__BURST``) or of a section holding it (``HAMLETNET_LIMITS``)."""
    present = {name.upper(): name for name in os.environ}
    for depth in range(len(loc), 0, -1):
        candidate = prefix + "__".join(str(part) for part in loc[:depth]).upper()
        if candidate in present:
            return present[candidate]
    return None


def explain_by_key(
    exc: ValidationError, what: str, path: Path | None, reference: str, env_prefix: str
) -> str:
    """One line per error, led by the dotted key it is about (``limits.burst: ...``) and by the
    environment variable that set it, if one did: the file is blamed only for its own values."""
    file = str(path) if path else "settings"
    lines, sources = [], set()
    for err in exc.errors(include_url=False):
        key = _dotted_key(err)
        variable = environment_source(err["loc"], env_prefix)
        sources.add("environment" if variable else file)
        if variable:
            key = f"{key} (from {variable})"
        lines.append(f"  {key}: {_message(err, reference)}")
    blamed = ", ".join(source for source in (file, "environment") if source in sources)
    return "\n".join([f"{what} ({blamed}):", *lines])


def explain_file_errors(exc: ValidationError, what: str, origin: str, reference: str) -> str:
    """``explain_by_key`` for a file no environment variable overrides (the plan, the alerts):
    one line per error, led by its dotted key. Input values are never quoted (an alerts file
    holds channel URLs with passwords in them)."""
    lines = [f"{what} ({origin}):"]
    for err in exc.errors(include_url=False, include_input=False):
        lines.append(f"  {_dotted_key(err)}: {_message(err, reference)}")
    return "\n".join(lines)


def _dotted_key(err: ErrorDetails) -> str:
    return ".".join(str(p) for p in err["loc"]) or "(top level)"


def _message(err: ErrorDetails, reference: str) -> str:
    if err["type"] == "extra_forbidden":
        return f"unknown key (check its spelling against {reference})"
    return err["msg"].removeprefix("Value error, ")
