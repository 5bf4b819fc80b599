"""A network lab of Linux network namespaces for tests and benchmarks that cross a network.

Hosts are namespaces joined by veth pairs; links are shaped with ``tc qdisc ... tbf`` (netem is
not available on these machines). Addresses come from ranges reserved for exactly this:
198.18.0.0/15 (RFC 2544, network benchmarking) and 2001:db8::/32 (RFC 3849, documentation), so
nothing here can be mistaken for, or reach, a real network. Everything is torn down on exit.

    with Lab() as lab:
        a, b = lab.host("cli"), lab.host("srv")
        if_a, if_b = lab.link(a, b, "198.18.1.1/24", "198.18.1.2/24")
        lab.shape(a, if_a, rate_mbit=100)     # a's egress (upload)
        lab.run(a, "ping", "-c1", "198.18.1.2")
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

_counter = itertools.count()


def lab_available() -> str | None:
    """None when this machine can build the lab, else why not (for a skip or a failure)."""
    if os.geteuid() != 0:
        return "the network lab needs root (ip netns, tc)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"the network lab needs '{tool}' (iproute2)"
    return None


@dataclass
class Host:
    ns: str
    interfaces: list[str] = field(default_factory=list)


class Lab:
    def __init__(self) -> None:
        self.tag = f"hn{os.getpid() % 100000}{uuid.uuid4().hex[:4]}"
        self.hosts: list[Host] = []
        self._procs: list[subprocess.Popen[bytes]] = []

    # -- building -------------------------------------------------------------------------------
    def host(self, name: str) -> Host:
        ns = f"{self.tag}-{name}"
        _ip("netns", "add", ns)
        host = Host(ns)
        self.hosts.append(host)
        self.run(host, "ip", "link", "set", "lo", "up")
        # Keep DAD from delaying IPv6 addresses: the lab's addresses are unique by construction.
        self.run(host, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0")
        self.run(host, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
        return host

    def link(
        self,
        a: Host,
        b: Host,
        addr_a: str | None = None,
        addr_b: str | None = None,
        *,
        v6: tuple[str, str] | None = None,
        mtu: int | None = None,
    ) -> tuple[str, str]:
        """A veth pair between ``a`` and ``b``; returns the interface names (a's, b's)."""
        n = next(_counter)
        if_a, if_b = f"v{n}a{self.tag[-4:]}", f"v{n}b{self.tag[-4:]}"
        _ip("link", "add", if_a, "netns", a.ns, "type", "veth", "peer", "name", if_b,
            "netns", b.ns)  # fmt: skip
        for host, ifname, addr, addr6 in (
            (a, if_a, addr_a, v6[0] if v6 else None),
            (b, if_b, addr_b, v6[1] if v6 else None),
        ):
            host.interfaces.append(ifname)
            if mtu is not None:
                self.run(host, "ip", "link", "set", ifname, "mtu", str(mtu))
            if addr:
                self.run(host, "ip", "addr", "add", addr, "dev", ifname)
            if addr6:
                self.run(host, "ip", "-6", "addr", "add", addr6, "dev", ifname, "nodad")
            self.run(host, "ip", "link", "set", ifname, "up")
        return if_a, if_b

    def shape(self, host: Host, ifname: str, rate_mbit: float, *, burst_kb: int | None = None,
              latency_ms: float = 50.0) -> None:  # fmt: skip
        """Token-bucket shaping of ``host``'s egress on ``ifname`` (tbf; netem is absent).

        The bucket must hold at least rate/HZ bytes (kernel timer granularity) and a few
        maximum-size segments (GSO packets up to 64 KiB), or tbf throttles below its rate.
        """
        burst = burst_kb * 1024 if burst_kb else max(int(rate_mbit * 1e6 / 8 / 250), 256 * 1024)
        self.run(host, "tc", "qdisc", "replace", "dev", ifname, "root", "tbf", "rate",
                 f"{rate_mbit}mbit", "burst", str(burst), "latency", f"{latency_ms}ms")  # fmt: skip

    def route(self, host: Host, *args: str) -> None:
        self.run(host, "ip", "route", "add", *args)

    def forward(self, host: Host) -> None:
        """Make ``host`` a router (IPv4 and IPv6 forwarding)."""
        self.run(host, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.run(host, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")

    # -- running --------------------------------------------------------------------------------
    def cmd(self, host: Host, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", host.ns, *argv]

    def run(self, host: Host, *argv: str, check: bool = True, timeout: float = 60,
            capture: bool = True) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return subprocess.run(
            self.cmd(host, *argv), check=check, timeout=timeout, text=True,
            capture_output=capture,
        )  # fmt: skip

    def popen(self, host: Host, *argv: str, log: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:  # fmt: skip
        out = log.open("ab") if log else subprocess.DEVNULL
        proc = subprocess.Popen(self.cmd(host, *argv), stdout=out, stderr=subprocess.STDOUT,
                                env=env)  # fmt: skip
        self._procs.append(proc)
        return proc

    # -- teardown -------------------------------------------------------------------------------
    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        for host in reversed(self.hosts):
            # Kill whatever still runs in the namespace, then delete it (veths go with it).
            pids = subprocess.run(["ip", "netns", "pids", host.ns], capture_output=True,
                                  text=True, check=False).stdout.split()  # fmt: skip
            for pid in pids:
                subprocess.run(["kill", "-9", pid], check=False, capture_output=True)
            subprocess.run(["ip", "netns", "del", host.ns], check=False, capture_output=True)
        self.hosts.clear()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.close()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def leftover_namespaces(prefix: str = "hn") -> Sequence[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return [line.split()[0] for line in out.stdout.splitlines() if line.startswith(prefix)]
