"""Wire shapes of the server's own replies and admin requests (results are in ``probes.models``).

The OpenAPI document is generated from these models, so what the handlers send and what the
document promises cannot drift apart.
"""

from __future__ import annotations

from datetime import date, datetime
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


#: A line's monthly data budget in bytes (collector/budget.py keeps the same bounds).
DataBudgetBytes = Annotated[int, Field(ge=1, le=2**62)]


class DataBudgetWord(_Wire):
    """The office's budget for the calling probe's line, bytes per Vietnam-time month."""

    monthly_bytes: DataBudgetBytes | None


_DATA_BUDGET = Field(
    default=None,
    description="The calling probe's data budget, as the office set it; null: the office set"
    " none, so the probe's own configuration stands.",
)


class BatchReply(_Wire):
    accepted: int = Field(ge=0)
    duplicate: int = Field(ge=0)
    rejected: int = Field(ge=0)
    items: list[ItemReply]
    data_budget: DataBudgetWord | None = _DATA_BUDGET


class HeartbeatReply(_Wire):
    outcome: Literal["accepted", "duplicate"]
    server_time: datetime
    data_budget: DataBudgetWord | None = _DATA_BUDGET


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


#: A speed the operator declares for a line, in Mb/s.
DeclaredMbps = Annotated[float, Field(gt=0, allow_inf_nan=False)]
#: Who did it (a person's name or login), or a source document's reference.
Attribution = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]
ACTOR_HEADER = "X-Hamletnet-Actor"


class ProbeView(_Wire):
    probe_id: str
    hamlet: str
    isp: str
    access: Access
    enabled: bool
    created_at: datetime
    last_seen_at: datetime | None
    has_key: bool = Field(description="Whether the probe registered its signing key.")
    declared_down_mbps: float | None = Field(
        default=None, description="Download speed the operator declares for the line (Mb/s)."
    )
    declared_up_mbps: float | None = None
    declared_min_down_mbps: float | None = Field(
        default=None, description="Minimum download speed the operator declares, if any."
    )
    plan_name: str | None = Field(default=None, description="The operator's name for the plan.")
    data_budget_bytes: int | None = Field(
        default=None,
        description="A metered line's monthly budget for bandwidth tests, bytes; null: unmetered"
        " (or the probe's own configuration says). Sent to the probe in every reply.",
    )
    declared_by: str | None = Field(default=None, description="Who last changed the line.")
    declared_at: datetime | None = None


class ProbeCreated(ProbeView):
    token: str = Field(description="Shown once; only its hash is stored.")


class ProbeUpdate(_Wire):
    """Fields left out are kept; ``null`` clears a declared value. Changing the declared line
    needs ``actor`` (or the ``X-Hamletnet-Actor`` header): who, recorded with the time."""

    enabled: bool | None = None
    reset_key: bool = Field(
        default=False, description="Forget the probe's signing key so it can register a new one."
    )
    declared_down_mbps: DeclaredMbps | None = None
    declared_up_mbps: DeclaredMbps | None = None
    declared_min_down_mbps: DeclaredMbps | None = None
    plan_name: Attribution | None = None
    data_budget_bytes: DataBudgetBytes | None = Field(
        default=None, description="Monthly data budget for bandwidth tests, bytes; null: none."
    )
    actor: Attribution | None = Field(default=None, description="Who makes the change.")


class LineChangeView(_Wire):
    probe_id: str
    changed_by: str
    changed_at: datetime
    old: dict[str, int | float | str | None] = Field(description="The declared line before.")
    new: dict[str, int | float | str | None] = Field(description="The declared line after.")


class HandEntryCreate(_Wire):
    """A figure reported by hand for an indicator the plan judges by hand (or the national IPv6
    usage figure), for the commune or one hamlet."""

    indicator_id: Identifier
    commune: Identifier | None = Field(
        default=None, description="Default: the hamlet's commune, or the only commune."
    )
    hamlet: Identifier | None = None
    value: float | None = Field(
        default=None, allow_inf_nan=False, description="In the indicator's unit (e.g. %)."
    )
    achieved: bool | None = Field(default=None, description="For a qualitative indicator.")
    as_of: date = Field(description="The date the figure describes.")
    source_document: Attribution = Field(description="The report or decision it comes from.")
    actor: Attribution | None = Field(default=None, description="Who enters it.")


class HandEntryView(_Wire):
    indicator_id: str
    commune: str
    hamlet: str | None
    value: float | None
    achieved: bool | None
    as_of: date
    source_document: str
    entered_by: str
    entered_at: datetime


class RowOutcome(_Wire):
    line: int = Field(ge=1, description="Line of the CSV file (the header is line 1).")
    outcome: Literal["accepted", "rejected"]
    reason: str | None = None


class CsvImportReply(_Wire):
    accepted: int = Field(ge=0)
    rejected: int = Field(ge=0)
    rows: list[RowOutcome]


class SurveyCreate(_Wire):
    hamlet: Identifier
    service: Literal["fiber", "mobile", "5g"]
    present: bool
    surveyed_at: date
    surveyed_by: Attribution = Field(description="Who did the survey.")
    source_document: Attribution
    actor: Attribution | None = Field(default=None, description="Who enters it.")


class SurveyView(_Wire):
    hamlet: str
    service: Literal["fiber", "mobile", "5g"]
    present: bool
    surveyed_at: date
    surveyed_by: str
    source_document: str
    entered_at: datetime
    entered_by: str | None


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
    commune: str | None = None
    adults: int | None = None
    lat: float | None = None
    lon: float | None = None
    isps: list[str] = Field(default_factory=list)
