"""Wire shapes of the server's own replies and admin requests (results are in ``probes.models``).

The OpenAPI document is generated from these models, so what the handlers send and what the
document promises cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from probes.models import Access, Identifier


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ItemOutcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


class ResultBatch(BaseModel):
    """``POST /api/v1/results`` body; items are validated one by one, so typed loosely here."""

    model_config = ConfigDict(extra="forbid")
    results: list[dict[str, Any]] = Field(description="Results of one probe, oldest first.")


class ItemReply(_Wire):
    index: int = Field(ge=0, description="Position of the item in the batch.")
    result_id: str | None = Field(description="The item's result_id, if it had a readable one.")
    outcome: ItemOutcome
    reason: str | None = Field(default=None, description="Why the item was rejected.")


class BatchReply(_Wire):
    accepted: int = Field(ge=0)
    duplicate: int = Field(ge=0)
    rejected: int = Field(ge=0)
    items: list[ItemReply]


class HeartbeatReply(_Wire):
    outcome: Literal["accepted", "duplicate"]
    server_time: datetime


class ErrorReply(_Wire):
    error: str = Field(description="Machine-readable code, e.g. 'unauthorized'.")
    detail: Any = Field(description="What was wrong and what to do, for a human.")


class HealthReply(_Wire):
    status: Literal["ok"]
    storage: str


class ProbeCreate(_Wire):
    hamlet: Identifier
    isp: Annotated[str, StringConstraints(max_length=64)] = Field(
        min_length=1, pattern=r"^[^\x00-\x1f\x7f\\]+$"
    )
    access: Access
    probe_id: Identifier | None = None
    public_key: str | None = Field(default=None, max_length=128)


class ProbeView(_Wire):
    probe_id: str
    hamlet: str
    isp: str
    access: Access
    enabled: bool
    created_at: datetime
    last_seen_at: datetime | None
    has_key: bool = Field(description="Whether the probe registered its signing key.")


class ProbeCreated(ProbeView):
    token: str = Field(description="Shown once; only its hash is stored.")


class ProbeUpdate(_Wire):
    enabled: bool | None = None
    reset_key: bool = Field(
        default=False, description="Forget the probe's signing key so it can register a new one."
    )


class KeyRegistration(_Wire):
    public_key: str = Field(
        min_length=44, max_length=44, description="Raw Ed25519 public key, base64 (32 bytes)."
    )


class HamletView(_Wire):
    code: str
    name: str
    population: int | None
    households: int | None
    probes: int = Field(ge=0)
