"""The negotiated speed of the interface that routes to the target (``/sys/class/net/IF/speed``).

A gigabit verdict is only meaningful above what the probe's own port can carry (methodology.md §6
and adopt item 4a): a 1 GbE port caps TCP goodput near 941 Mb/s whatever the line can do.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

SYS_NET = Path("/sys/class/net")


def route_interface(ip_route_get_json: str) -> str | None:
    """The ``dev`` of ``ip -j route get ADDR``'s output, or None (no route, odd output)."""
    try:
        routes = json.loads(ip_route_get_json)
    except ValueError:
        return None
    if not isinstance(routes, list) or not routes or not isinstance(routes[0], dict):
        return None
    dev = routes[0].get("dev")
    return dev if isinstance(dev, str) and dev else None


def parse_speed(text: str) -> float | None:
    """The sysfs speed file holds Mb/s; -1 or an unreadable value means unknown (no link, Wi-Fi)."""
    try:
        speed = int(text.strip())
    except ValueError:
        return None
    return float(speed) if speed > 0 else None


def link_speed_mbps(address: str, sys_net: Path = SYS_NET) -> float | None:
    """Blocking (runs ``ip``): call through ``asyncio.to_thread``. None when unknown (loopback,
    virtual interfaces without a speed, no ``ip``)."""
    try:
        out = subprocess.run(  # noqa: S603 - a fixed argv; the address is only an argument
            ["ip", "-j", "route", "get", address],  # noqa: S607 - iproute2 from PATH
            capture_output=True, text=True, timeout=5, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    dev = route_interface(out.stdout)
    if dev is None or dev == "lo":
        return None
    try:
        return parse_speed((sys_net / dev / "speed").read_text())
    except OSError:
        return None
