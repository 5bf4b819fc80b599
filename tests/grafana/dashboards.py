"""Reads grafana/: the committed dashboards, the build script, the provisioned data sources."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
PROVISIONING = GRAFANA / "provisioning"


def load_build() -> ModuleType:
    """grafana/build.py as a module (grafana/ is not a package), loaded once."""
    if "grafana_build" in sys.modules:
        return sys.modules["grafana_build"]
    spec = importlib.util.spec_from_file_location("grafana_build", GRAFANA / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["grafana_build"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def committed() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in DASHBOARDS.glob("*.json")}


def provisioned_uids() -> set[str]:
    uids = set()
    for path in (PROVISIONING / "datasources").glob("*.yaml"):
        for source in yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]:
            uids.add(source["uid"])
    return uids


@dataclass(frozen=True)
class Query:
    """One query of a dashboard: where it is, its text, and the panel's own time override."""

    dashboard: str
    where: str  # "panel <title> / <refId>", "variable <name>", "annotation <name>"
    text: str
    datasource_uid: str | None
    result_format: str = "time_series"
    time_from: str | None = None


def queries(name: str, board: dict[str, Any]) -> Iterator[Query]:
    """Every panel target, template-variable query and annotation query of ``board``."""
    for panel in board.get("panels", []):
        panel_uid = (panel.get("datasource") or {}).get("uid")
        for target in panel.get("targets", []):
            uid = (target.get("datasource") or {}).get("uid", panel_uid)
            yield Query(
                name,
                f"panel {panel['title']!r} / {target['refId']}",
                target["query"],
                uid,
                target.get("resultFormat", "time_series"),
                panel.get("timeFrom"),
            )
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            yield Query(
                name,
                f"variable {variable['name']}",
                variable["query"],
                (variable.get("datasource") or {}).get("uid"),
            )
    for annotation in board.get("annotations", {}).get("list", []):
        target = annotation.get("target") or {}
        if "query" in target:
            yield Query(
                name,
                f"annotation {annotation['name']!r}",
                target["query"],
                (annotation.get("datasource") or {}).get("uid"),
            )
