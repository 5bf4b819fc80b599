"""Engine settings from ``ProbeSpec.options``: validated into a model, refused with a message
that names each offending option (the schedule's ``options:`` or ``measure --option``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def validate_options(model: type[M], options: Mapping[str, Any], what: str) -> M:
    """``model`` from ``options``; ValueError like "dns options: qtypes.0: Input should be ..."."""
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'options'}:"
            f" {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors(include_url=False)
        )
        raise ValueError(f"{what} options: {problems}") from None
