"""What Grafana does to an InfluxQL query before it sends it, re-done in Python for the tests (no
Grafana server can run here): ``$timeFilter``, ``$__interval``, ``$__interval_ms`` and template
variables, single- and multi-valued, with ``$__all``.

Written from Grafana 11's sources, which it stands for: the interval is
``rangeutil.calculateInterval`` (range ÷ max data points, rounded by ``roundInterval``, written
by ``secondsToHms``); ``$timeFilter`` is the InfluxDB plugin's ``getTimeFilter`` (epoch
milliseconds, ``time >= Xms and time <= Yms``); a variable's value in a query is the plugin's
``interpolateQueryExpr``: a multi-value or include-all variable's values are regex-escaped and
joined as ``(a|b)``, a single value as it is; "All" without a custom all value stands for every
option.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

#: (upper bound, rounded interval) in ms: Grafana's ``rangeutil.roundInterval``.
_ROUND_MS = (
    (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
    (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000),
    (45000, 30000), (90000, 60000), (210000, 120000), (450000, 300000), (750000, 600000),
    (1050000, 900000), (1500000, 1200000), (2700000, 1800000), (5400000, 3600000),
    (9000000, 7200000), (16200000, 10800000), (32400000, 21600000), (86400000, 43200000),
    (604800000, 86400000), (1814400000, 604800000), (3628800000, 2592000000),
)  # fmt: skip
_YEAR_MS = 31536000000
ALL = "$__all"


def round_interval_ms(interval_ms: float) -> int:
    for bound, rounded in _ROUND_MS:
        if interval_ms < bound:
            return rounded
    return _YEAR_MS


def ms_to_text(ms: int) -> str:
    """Grafana's ``secondsToHms`` of ``ms / 1000``: the largest whole unit."""
    for unit, size in (("y", _YEAR_MS), ("d", 86400000), ("h", 3600000), ("m", 60000)):
        if ms % size == 0 and ms >= size:
            return f"{ms // size}{unit}"
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


@dataclass(frozen=True)
class Variable:
    """A template variable as the dashboard defines it, with what the user picked."""

    name: str
    selected: Sequence[str]  # [ALL] for "All"
    options: Sequence[str] = ()
    multi: bool = False
    include_all: bool = False

    def values(self) -> list[str]:
        return list(self.options) if list(self.selected) == [ALL] else list(self.selected)


def _regex_escape(value: str) -> str:
    """Grafana's ``escapeRegex``: / . * + ? | ( ) [ ] { } \\ ^ $ get a backslash."""
    return re.sub(r"[\\^$.*+?()[\]{}|/]", lambda m: "\\" + m.group(0), value)


def interpolate_value(variable: Variable) -> str:
    values = variable.values()
    if not variable.multi and not variable.include_all:
        return values[0] if values else ""
    escaped = [_regex_escape(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def expand(
    query: str,
    *,
    start: datetime,
    end: datetime,
    max_data_points: int,
    variables: Mapping[str, Variable] = {},
) -> str:
    """``query`` as Grafana would send it for the time range ``start``..``end``."""
    from_ms, to_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    interval_ms = round_interval_ms((to_ms - from_ms) / max_data_points)
    text = query.replace("$timeFilter", f"time >= {from_ms}ms and time <= {to_ms}ms")
    text = text.replace("$__interval_ms", str(interval_ms))
    text = text.replace("$__interval", ms_to_text(interval_ms))
    # Longest names first, so $hamlet_name is never taken for $hamlet + "_name".
    for name in sorted(variables, key=len, reverse=True):
        value = interpolate_value(variables[name])
        text = text.replace("${" + name + "}", value)
        text = re.sub(r"\$" + re.escape(name) + r"\b", value.replace("\\", "\\\\"), text)
    left = re.findall(r"\$(?!tag_|col\b)\w+", text)
    if left:
        raise ValueError(f"query still has {left} after expansion: {text}")
    return text
