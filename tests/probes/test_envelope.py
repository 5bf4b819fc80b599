"""One shape for every probe kind: a spec in, measurements out, and the result envelope
(``result_id``, ``measured_at``, ``duration_ms``, status, failure) built in one place."""

from __future__ import annotations

import ast
import inspect
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from probes.envelope import build_result, stamp
from probes.models import (
    MODEL_BY_KIND,
    BandwidthResult,
    FailureKind,
    Ipv6Result,
    LatencyResult,
    ResultBase,
    Status,
)
from probes.registry import PROBES
from probes.spec import Failure, Measurement, Span

ROOT = Path(__file__).resolve().parents[2]
ENVELOPE_FIELDS = ("result_id", "failure_kind")


def _calls_setting(field: str) -> list[str]:
    """Every call in probes/ and collector/ that passes ``field=`` (file:line)."""
    found = []
    for package in ("probes", "collector"):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and any(k.arg == field for k in node.keywords):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_the_envelope_is_built_in_one_place() -> None:
    for field in ENVELOPE_FIELDS:
        assert _calls_setting(field) == [_calls_setting(field)[0]], field
        assert _calls_setting(field)[0].startswith("probes/envelope.py:"), field


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_probe_module_imports_the_registry() -> None:
    # The registry imports the probes; a probe importing it back made a circle (ipv6 did).
    importers = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "probes").rglob("*.py"))
        if path.name != "registry.py" and "probes.registry" in _imports(path)
    ]
    assert importers == []


def test_every_kind_has_one_entry_point_taking_a_spec() -> None:
    for kind, entry in PROBES.items():
        params = list(inspect.signature(entry.run).parameters)
        assert params == ["spec"], kind
        assert inspect.iscoroutinefunction(entry.run), kind


def test_ipv6_readiness_fields_are_exactly_the_result_model_fields() -> None:
    from probes.ipv6.readiness import Readiness

    envelope = set(ResultBase.model_fields) | {"kind"}
    assert set(Readiness.__dataclass_fields__) == set(Ipv6Result.model_fields) - envelope
    fields = Readiness(global_address=False, reasons={"global_address": "x" * 300}).fields()
    result = stamp(Ipv6Result, "p1", Measurement("readiness", "h", fields), _span())
    assert result.reasons == {"global_address": "x" * 256} and result.global_address is False


def _span() -> Span:
    return Span(datetime.now(UTC), 12.5)


def test_status_follows_the_failure_and_the_caller_span_fills_in() -> None:
    span = _span()
    ok = stamp(LatencyResult, "p1", Measurement("icmp", "192.0.2.1", {"sent": 1}), span)
    assert (ok.status, ok.failure_kind, ok.error) == (Status.OK, None, None)
    assert (ok.measured_at, ok.duration_ms, ok.probe_id) == (span.measured_at, 12.5, "p1")
    own = Span(datetime.now(UTC), 3.0)
    failed = stamp(
        LatencyResult,
        "p1",
        Measurement("icmp", "192.0.2.1", failure=Failure(FailureKind.DNS, "e" * 3000), span=own),
        span,
    )
    assert (failed.status, failed.failure_kind) == (Status.FAILED, FailureKind.DNS)
    assert failed.error == "e" * 2048 and failed.duration_ms == 3.0
    assert ok.result_id != failed.result_id


def test_the_builder_takes_any_status_and_target_for_every_kind() -> None:
    for kind, model in MODEL_BY_KIND.items():
        result = build_result(model, "p1", engine="e", target="t" * 300, span=_span())
        assert (result.kind, result.target) == (kind, "t" * 256)
    # The status is passed through as given, not derived, and the model judges it: failed
    # without a failure is refused (room for statuses such as deferred or skipped).
    with pytest.raises(ValidationError, match="failure_kind"):
        build_result(
            BandwidthResult, "p1", engine="http", target=None, span=_span(), status=Status.FAILED
        )
