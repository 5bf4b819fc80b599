"""DNS probe against a real resolver: unbound in the far namespace, serving local records."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.netns import Host, Lab, lab_available
from tests.lab.probe_runs import ENV, ROOT, measure

pytestmark = [pytest.mark.lab]

RESOLVER_V4, RESOLVER_V6 = "198.18.6.2", "2001:db8:6::2"
NOBODY = "198.18.6.9"  # on the link, but no host answers ARP: queries time out

UNBOUND_CONF = """\
server:
    interface: {v4}
    interface: {v6}
    port: 53
    access-control: 198.18.0.0/15 allow
    access-control: 2001:db8::/32 allow
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{dir}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 1
    module-config: "iterator"
    local-zone: "lab.test." static
    local-data: "www.lab.test. 300 IN A 198.18.6.80"
    local-data: "www.lab.test. 300 IN AAAA 2001:db8:6::80"
    local-data: "www.lab.test. 300 IN AAAA 2001:db8:6::81"
    local-data: "v4only.lab.test. 300 IN A 198.18.6.81"
remote-control:
    control-enable: no
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Host]]:
    why = lab_available()
    if why:
        pytest.fail(why) if shutil.which("ip") else pytest.skip(why)
    if shutil.which("unbound") is None:
        pytest.fail("unbound is missing: run the test set-up (scripts/test.sh)")
    workdir = tmp_path_factory.mktemp("unbound")
    conf = workdir / "unbound.conf"
    conf.write_text(UNBOUND_CONF.format(v4=RESOLVER_V4, v6=RESOLVER_V6, dir=workdir))
    with Lab() as lab:
        cli, srv = lab.host("cli"), lab.host("srv")
        lab.link(cli, srv, "198.18.6.1/24", f"{RESOLVER_V4}/24",
                 v6=("2001:db8:6::1/64", f"{RESOLVER_V6}/64"))  # fmt: skip
        log = workdir / "unbound.log"
        lab.popen(srv, "unbound", "-d", "-c", str(conf), log=log)
        _wait_for_port_53(lab, srv, log)
        # Resolve the neighbours first (ARP, ND): a fresh veth can lose the first neighbour
        # solicitation, and a 1 s ND retransmit is not what a DNS timing test is about.
        for address in (RESOLVER_V4, RESOLVER_V6):
            lab.run(cli, "ping", "-c1", "-W2", address)
        yield lab, cli


def _wait_for_port_53(lab: Lab, srv: Host, log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if ":53 " in lab.run(srv, "ss", "-uln", check=False).stdout:
            return
        time.sleep(0.1)
    raise AssertionError(f"unbound did not start: {log.read_text() if log.exists() else ''}")


@pytest.mark.parametrize(
    ("resolver", "qtype", "answers"),
    [(RESOLVER_V4, "A", 1), (f"[{RESOLVER_V6}]:53", "AAAA", 2), (RESOLVER_V6, "A", 1)],
)
def test_a_and_aaaa_resolve_with_timing(
    lab: tuple[Lab, Host], resolver: str, qtype: str, answers: int
) -> None:
    net, cli = lab
    code, result = measure(net, cli, "dns", "www.lab.test", "--option", f"resolvers={resolver}",
                           "--option", f"qtypes={qtype}")  # fmt: skip
    assert code == 0, result
    assert (result["status"], result["rcode"], result["answers"]) == ("ok", "NOERROR", answers)
    assert (result["qname"], result["qtype"], result["resolver"]) == (
        "www.lab.test", qtype, resolver,
    )  # fmt: skip
    # A local answer over a veth: more than nothing, far below a millisecond's scheduling noise
    # plus unbound's own work.
    assert 0 < result["resolve_ms"] < 5
    assert result["timestamp_source"] == "kernel"


def test_name_without_aaaa_is_ok_with_no_answers(lab: tuple[Lab, Host]) -> None:
    net, cli = lab
    code, result = measure(net, cli, "dns", "v4only.lab.test", "--option",
                           f"resolvers={RESOLVER_V4}", "--option", "qtypes=AAAA")  # fmt: skip
    assert code == 0 and result["rcode"] == "NOERROR" and result["answers"] == 0


def test_nxdomain_is_a_failed_result_with_its_rcode(lab: tuple[Lab, Host]) -> None:
    net, cli = lab
    code, result = measure(net, cli, "dns", "missing.lab.test", "--option",
                           f"resolvers={RESOLVER_V4}", "--option", "qtypes=A")  # fmt: skip
    assert code == 1
    assert (result["status"], result["failure_kind"], result["rcode"]) == (
        "failed", "dns", "NXDOMAIN",
    )  # fmt: skip
    assert result["resolve_ms"] > 0  # the resolver did answer, and how fast is kept


def test_silent_resolver_times_out_and_closed_port_is_refused(lab: tuple[Lab, Host]) -> None:
    net, cli = lab
    fast = ("--option", "qtypes=A", "--option", "wait_s=0.3", "--option", "tries=2")
    _, silent = measure(net, cli, "dns", "www.lab.test", "--option", f"resolvers={NOBODY}", *fast)
    assert (silent["status"], silent["failure_kind"]) == ("failed", "timeout")
    assert silent["rcode"] is None and silent["resolve_ms"] is None
    _, closed = measure(net, cli, "dns", "www.lab.test", "--option",
                        f"resolvers={RESOLVER_V4}:5353", *fast)  # fmt: skip
    assert (closed["status"], closed["failure_kind"]) == ("failed", "refused")


def test_every_resolver_name_and_type_gives_one_result(lab: tuple[Lab, Host]) -> None:
    net, cli = lab
    # In-process through the registry, inside the namespace: 2 resolvers x 2 names x 2 types.
    script = (
        "import asyncio, json\n"
        "from probes.registry import PROBES\n"
        "from probes.spec import ProbeSpec\n"
        "from probes.models import Kind\n"
        "spec = ProbeSpec('p1', ['www.lab.test', 'missing.lab.test'],"
        f" options={{'resolvers': ['{RESOLVER_V4}', '{RESOLVER_V6}']}})\n"
        "rs = asyncio.run(PROBES[Kind.DNS].run(spec))\n"
        "keys = ('resolver', 'qname', 'qtype', 'rcode')\n"
        "print(json.dumps([[m.fields[k] for k in keys] for m in rs]))\n"
    )
    out = subprocess.run(net.cmd(cli, sys.executable, "-c", script), env=ENV, cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=60).stdout  # fmt: skip
    assert json.loads(out) == [
        [resolver, name, qtype, "NOERROR" if name.startswith("www") else "NXDOMAIN"]
        for resolver in (RESOLVER_V4, RESOLVER_V6)
        for name in ("www.lab.test", "missing.lab.test")
        for qtype in ("A", "AAAA")
    ]
    # measure prints one object, so it refuses to pick one of several and says how to narrow.
    cli_run = subprocess.run(
        net.cmd(cli, sys.executable, "-m", "collector.cli", "measure", "dns", "--target",
                "www.lab.test", "--option", f"resolvers={RESOLVER_V4}"),
        env=ENV, cwd=ROOT, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert cli_run.returncode == 2 and "--option qtypes=A" in cli_run.stderr
