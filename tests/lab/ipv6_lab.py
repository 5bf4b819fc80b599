"""The IPv6 readiness lab: a client, an access router and an "Internet" server, in namespaces.

    cli ──(access link)── rtr ──(upstream link)── srv

- ``srv`` is the Internet: the sites are one ``python -m http.server`` on [::]:80 (both families),
  reached under names that resolve as test-ipv6.com's do — ``ipv4.hamletnet.test`` (A only),
  ``ipv6.hamletnet.test`` (AAAA only), ``ds.hamletnet.test`` (both), ``/large`` a 4000-byte body —
  and an authoritative unbound serves those names, ``v6ns.hamletnet.test`` and ``ipv4only.arpa``.
- ``rtr`` is the ISP: it forwards, runs the recursive unbound the client uses (IPv6-capable or
  not; with DNS64 for the IPv6-only access), sends Router Advertisements (``ra_sender.py``) and,
  for the IPv6-only access, translates with tayga (a real NAT64, Debian's ``tayga``).
- ``cli`` is the probe: IPv4 set statically, IPv6 only from the router's RA (SLAAC).

Topologies: ``ipv4_only``, ``dual_stack``, ``ipv6_only`` (DNS64 + NAT64, optionally PREF64 in the
RA) and ``mtu_blackhole`` (dual-stack, but the access link is 1280 bytes on the router's side,
1500 on the client's, and the router's ICMPv6 towards the Internet goes into a policy-routing
blackhole, so Packet Too Big never reaches the server: full-size IPv6 packets vanish silently,
the PMTUD black hole of RFC 2923 §2.1).

tayga refuses the well-known prefix 64:ff9b::/96 with non-global IPv4 addresses (RFC 6052 §3.1),
and the lab's IPv4 is 198.18.0.0/15, so the NAT64 uses a network-specific prefix inside
2001:db8::/32, ``2001:db8:64::/96`` — which also checks that discovery does not assume the WKP.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.lab.netns import Host, Lab

REPO = Path(__file__).resolve().parents[2]
DOMAIN = "hamletnet.test"
NAT64_PREFIX = "2001:db8:64::/96"
ACCESS_PREFIX = "2001:db8:1::/64"
RTR_ACCESS_V4, CLI_V4 = "198.18.1.1", "198.18.1.2"
RTR_ACCESS_V6 = "2001:db8:1::1"
RTR_UP_V4, SRV_V4 = "198.18.2.1", "198.18.2.2"
RTR_UP_V6, SRV_V6 = "2001:db8:2::1", "2001:db8:2::2"
# The sites' and the authoritative server's own addresses on srv.
SITE_V4, SITE_V6 = "198.18.2.10", "2001:db8:2::10"
DS_V4, DS_V6 = "198.18.2.20", "2001:db8:2::20"
NS_V4, NS_V6 = "198.18.2.53", "2001:db8:2::53"
LARGE_BYTES = 4000

TOPOLOGIES = ("ipv4_only", "dual_stack", "ipv6_only", "mtu_blackhole")


def missing_tools() -> str | None:
    for tool in ("unbound", "tayga", "ss"):
        if shutil.which(tool) is None:
            return f"the IPv6 lab needs '{tool}': run the test set-up (scripts/test.sh)"
    return None


@dataclass
class Ipv6Lab:
    lab: Lab
    cli: Host
    rtr: Host
    srv: Host
    topology: str
    resolv_dir: Path

    def probe(self, *options: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``hamletnet-probe measure ipv6`` as a real process in the client namespace."""
        argv = [
            sys.executable,
            "-m",
            "collector.cli",
            "measure",
            "ipv6",
            "--target",
            DOMAIN,
            "--timeout",
            "30",
            "--json",
        ]
        for option in options:
            argv += ["--option", option]
        return subprocess.run(
            self.lab.cmd(self.cli, *argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            check=False,
        )


def _zone_files(directory: Path) -> None:
    soa = (
        "@ IN SOA ns.hamletnet.test. admin.hamletnet.test. 1 3600 600 86400 60\n"
        "@ IN NS ns.hamletnet.test.\n"
    )
    (directory / "hamletnet.test.zone").write_text(
        "$ORIGIN hamletnet.test.\n$TTL 60\n"
        + soa
        + f"ns IN A {NS_V4}\nns IN AAAA {NS_V6}\n"
        + f"ipv4 IN A {SITE_V4}\nipv6 IN AAAA {SITE_V6}\n"
        + f"ds IN A {DS_V4}\nds IN AAAA {DS_V6}\n"
    )
    # Served as its own zone; the recursive resolver reaches it over IPv6 only (stub below).
    (directory / "v6ns.zone").write_text(
        "$ORIGIN v6ns.hamletnet.test.\n$TTL 60\n" + soa + f"ds IN A {DS_V4}\nds IN AAAA {DS_V6}\n"
    )
    (directory / "ipv4only.zone").write_text(
        "$ORIGIN ipv4only.arpa.\n$TTL 60\n" + soa + "@ IN A 192.0.0.170\n@ IN A 192.0.0.171\n"
    )


_COMMON = """server:
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{dir}"
    pidfile: "{dir}/{name}.pid"
    logfile: ""
    use-syslog: no
    verbosity: 1
    num-threads: 1
    interface-automatic: no
    port: 53
    access-control: 0.0.0.0/0 allow
    access-control: ::/0 allow
    qname-minimisation: no
    local-zone: "test." nodefault
remote-control:
    control-enable: no
server:
"""


def _auth_conf(directory: Path) -> Path:
    conf = directory / "auth.conf"
    conf.write_text(
        _COMMON.format(dir=directory, name="auth")
        + f'    interface: {NS_V4}\n    interface: {NS_V6}\n    module-config: "iterator"\n'
        + "".join(
            f'auth-zone:\n    name: "{zone}"\n    zonefile: "{directory / file}"\n'
            "    for-downstream: yes\n    for-upstream: no\n    fallback-enabled: no\n"
            for zone, file in (
                ("hamletnet.test.", "hamletnet.test.zone"),
                ("v6ns.hamletnet.test.", "v6ns.zone"),
                ("ipv4only.arpa.", "ipv4only.zone"),
            )
        )
    )
    return conf


def _recursive_conf(directory: Path, *, listen: list[str], ipv6: bool, dns64: bool) -> Path:
    conf = directory / "recursive.conf"
    lines = [f"    interface: {address}\n" for address in listen]
    lines.append(f"    do-ip6: {'yes' if ipv6 else 'no'}\n")
    if dns64:
        lines.append(f'    module-config: "dns64 iterator"\n    dns64-prefix: {NAT64_PREFIX}\n')
    else:
        lines.append('    module-config: "iterator"\n')
    stubs = (
        f'stub-zone:\n    name: "hamletnet.test."\n    stub-addr: {NS_V4}\n    stub-addr: {NS_V6}\n'
        f'stub-zone:\n    name: "v6ns.hamletnet.test."\n    stub-addr: {NS_V6}\n'
        f'stub-zone:\n    name: "ipv4only.arpa."\n    stub-addr: {NS_V4}\n    stub-addr: {NS_V6}\n'
    )
    conf.write_text(_COMMON.format(dir=directory, name="recursive") + "".join(lines) + stubs)
    return conf


def _wait(what: str, ready: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the IPv6 lab: {what} not ready after {timeout_s:g} s")
        time.sleep(0.05)


def build(lab: Lab, topology: str, workdir: Path, *, pref64: bool = False) -> Ipv6Lab:
    """Build ``topology`` in ``lab`` and start its servers; returns when the client is set up."""
    if topology not in TOPOLOGIES:
        raise ValueError(f"unknown topology {topology!r}; one of {TOPOLOGIES}")
    v4_access = topology != "ipv6_only"
    v6_access = topology != "ipv4_only"
    cli, rtr, srv = lab.host("cli"), lab.host("rtr"), lab.host("srv")
    _, if_rtr_access = lab.link(
        cli,
        rtr,
        f"{CLI_V4}/24" if v4_access else None,
        f"{RTR_ACCESS_V4}/24" if v4_access else None,
    )
    lab.link(rtr, srv, f"{RTR_UP_V4}/24", f"{SRV_V4}/24", v6=(f"{RTR_UP_V6}/64", f"{SRV_V6}/64"))
    lab.forward(rtr)
    if_srv = srv.interfaces[-1]
    for address in (SITE_V4, DS_V4, NS_V4):
        lab.run(srv, "ip", "addr", "add", f"{address}/32", "dev", if_srv)
    for address in (SITE_V6, DS_V6, NS_V6):
        lab.run(srv, "ip", "-6", "addr", "add", f"{address}/128", "dev", if_srv, "nodad")
    lab.route(srv, "default", "via", RTR_UP_V4)
    lab.route(srv, "default", "via", RTR_UP_V6)
    if v4_access:
        lab.route(cli, "default", "via", RTR_ACCESS_V4)
    if v6_access:
        lab.run(
            rtr, "ip", "-6", "addr", "add", f"{RTR_ACCESS_V6}/64", "dev", if_rtr_access, "nodad"
        )
    if topology == "mtu_blackhole":
        # The router's side of the access link carries 1280 bytes, the client's 1500 (so the
        # client's MSS invites full-size segments), and the router's own ICMPv6 to the Internet
        # is blackholed: its Packet Too Big errors never leave (tests/lab: checked with ping).
        lab.run(rtr, "ip", "link", "set", if_rtr_access, "mtu", "1280")
        lab.run(
            rtr,
            "ip",
            "-6",
            "rule",
            "add",
            "iif",
            "lo",
            "ipproto",
            "ipv6-icmp",
            "to",
            "2001:db8:2::/64",
            "blackhole",
        )

    # The Internet's DNS and sites.
    zones = workdir / "srv"
    zones.mkdir(parents=True)
    _zone_files(zones)
    lab.popen(srv, "unbound", "-d", "-c", str(_auth_conf(zones)), log=workdir / "auth.log")
    sites = workdir / "sites"
    sites.mkdir()
    (sites / "index.html").write_text("hamletnet lab site\n")
    (sites / "large").write_bytes(b"x" * LARGE_BYTES)
    lab.popen(
        srv,
        sys.executable,
        "-m",
        "http.server",
        "80",
        "--bind",
        "::",
        "--directory",
        str(sites),
        log=workdir / "http.log",
    )

    # The ISP's resolver, RA and NAT64.
    resolver_dir = workdir / "rtr"
    resolver_dir.mkdir()
    listen = ([RTR_ACCESS_V4] if v4_access else []) + ([RTR_ACCESS_V6] if v6_access else [])
    conf = _recursive_conf(
        resolver_dir, listen=listen, ipv6=v6_access, dns64=topology == "ipv6_only"
    )
    lab.popen(rtr, "unbound", "-d", "-c", str(conf), log=workdir / "recursive.log")
    if v6_access:
        ra = [
            sys.executable,
            "-m",
            "tests.lab.ra_sender",
            "--iface",
            if_rtr_access,
            "--prefix",
            ACCESS_PREFIX,
            "--other",
        ]
        if pref64:
            ra += ["--pref64", NAT64_PREFIX]
        lab.popen(rtr, *ra, log=workdir / "ra.log")
    if topology == "ipv6_only":
        _tayga(lab, rtr, workdir / "tayga")

    # The client's resolver: `ip netns exec` bind-mounts /etc/netns/NS/resolv.conf over
    # /etc/resolv.conf (ip-netns(8)), so getaddrinfo and dnspython both use the ISP resolver.
    resolv_dir = Path("/etc/netns") / cli.ns
    resolv_dir.mkdir(parents=True, exist_ok=True)
    servers = ([RTR_ACCESS_V6] if v6_access else []) + ([RTR_ACCESS_V4] if v4_access else [])
    (resolv_dir / "resolv.conf").write_text(
        "".join(f"nameserver {s}\n" for s in servers) + "options timeout:1 attempts:2\n"
    )

    def listening(host: Host, proto: str, port: int) -> Callable[[], bool]:
        return lambda: bool(lab.run(host, "ss", "-Hn", f"-l{proto}", f"sport = :{port}").stdout)

    _wait("authoritative DNS", listening(srv, "u", 53))
    _wait("recursive DNS", listening(rtr, "u", 53))
    _wait("web sites", listening(srv, "t", 80))
    if v6_access:
        _wait(
            "SLAAC address and RA default route",
            lambda: bool(
                lab.run(cli, "ip", "-6", "route", "show", "default").stdout.strip()
                and lab.run(cli, "ip", "-6", "addr", "show", "scope", "global").stdout.strip()
            ),
        )
    return Ipv6Lab(lab, cli, rtr, srv, topology, resolv_dir)


def _tayga(lab: Lab, rtr: Host, directory: Path) -> None:
    directory.mkdir()
    conf = directory / "tayga.conf"
    conf.write_text(
        "tun-device nat64\nipv4-addr 198.18.255.1\nipv6-addr 2001:db8:ff::2\n"
        f"prefix {NAT64_PREFIX}\ndynamic-pool 198.18.254.0/24\ndata-dir {directory}\n"
    )
    lab.run(rtr, "tayga", "--mktun", "-c", str(conf))
    lab.run(rtr, "ip", "link", "set", "nat64", "up")
    lab.run(rtr, "ip", "addr", "add", "198.18.255.2", "dev", "nat64")
    lab.run(rtr, "ip", "-6", "addr", "add", "2001:db8:ff::1", "dev", "nat64")
    lab.run(rtr, "ip", "route", "add", "198.18.254.0/24", "dev", "nat64")
    lab.run(rtr, "ip", "-6", "route", "add", NAT64_PREFIX, "dev", "nat64")
    lab.popen(rtr, "tayga", "-c", str(conf), "--nodetach", log=directory / "tayga.log")


def remove_resolv(ipv6_lab: Ipv6Lab) -> None:
    shutil.rmtree(ipv6_lab.resolv_dir, ignore_errors=True)
