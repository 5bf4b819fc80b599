"""Each extra installed alone, every command run for real (issue 12 §5).

``hamletnet-server`` with only the ``[server]`` extra (what the Dockerfile and
``scripts/install-server.sh`` install) and ``hamletnet-probe`` with only ``[probe]`` (what
``scripts/install-probe.sh`` installs on the Pi), each in a fresh venv made by
``scripts/venv.sh`` in a copy of this checkout. The probe registers with, and uploads to, the
server from the server-only venv; everything runs on loopback.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dns.message
import dns.rrset
import pytest
import yaml

from server.demo import loopback_ipv6_options
from tests.installs import checkout_with_venv, clean_env, free_port, wait_http

pytestmark = pytest.mark.slow

ADMIN_TOKEN = "installs-admin-token-0123456789"
#: Every command of each entry point: a new one fails test_*_help_lists until it is run here.
SERVER_COMMANDS = {"run", "probe", "hand-entry", "compliance", "demo", "target", "export", "report"}
SERVER_PROBE_COMMANDS = {"add", "list", "set", "enable", "disable"}
PROBE_COMMANDS = {"register", "run", "measure", "status"}
MEASURE_KINDS = {"heartbeat", "bandwidth", "latency", "dns", "ipv6", "cellular"}


@pytest.fixture(scope="module")
def server_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return checkout_with_venv(tmp_path_factory, "server") / ".venv/bin"


@pytest.fixture(scope="module")
def probe_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return checkout_with_venv(tmp_path_factory, "probe") / ".venv/bin"


def run(command: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("timeout", 180)
    kwargs.setdefault("env", clean_env(HAMLETNET_ADMIN_TOKEN=ADMIN_TOKEN))
    return subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, check=False, **kwargs
    )


def ran(result: subprocess.CompletedProcess[str], code: int = 0) -> str:
    """``result``'s output once it exited with ``code`` and no missing module."""
    output = result.stdout + result.stderr
    assert "No module named" not in output and "Traceback" not in output, output[-3000:]
    assert result.returncode == code, output[-3000:]
    return result.stdout


def commands_in_help(text: str) -> set[str]:
    """The sub-commands argparse lists in ``{a,b,c}`` of a --help text."""
    found = re.search(r"\{([a-z0-9,-]+)\}", text)
    assert found, text
    return set(found[1].split(","))


def stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=60)[0]
    return process.returncode, output


@dataclass
class Office:
    """The server from the [server]-only venv, running, with one probe added by the CLI."""

    bin: Path
    config: Path
    url: str
    port: int
    probe_id: str
    token: str

    def cli(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return run([self.bin / "hamletnet-server", *args, "--config", self.config])


@pytest.fixture(scope="module")
def office(server_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Office]:
    base = tmp_path_factory.mktemp("office")
    port = free_port()
    config = base / "server.yaml"
    config.write_text(yaml.safe_dump({
        "listen_host": "127.0.0.1", "listen_port": port, "data_dir": str(base / "data"),
        "communes": [{"code": "hiep-luc", "name": "Xã Hiệp Lực"}],
        "hamlets": [{"code": "thon-a", "name": "Thôn Đồng Tâm", "commune": "hiep-luc"}],
        "serve_target": True, "limits": {"requests_per_s": 1000, "burst": 1000},
        "log_level": "WARNING",
    }), encoding="utf-8")  # fmt: skip
    added = run([server_bin / "hamletnet-server", "probe", "add", "--config", config,
                 "--hamlet", "thon-a", "--isp", "VNPT", "--access", "fiber"])  # fmt: skip
    fields = dict(re.findall(r"^(probe|token):\s+(\S+)", ran(added), re.MULTILINE))
    command = [str(server_bin / "hamletnet-server"), "run", "--config", str(config)]
    env = clean_env(HAMLETNET_ADMIN_TOKEN=ADMIN_TOKEN)
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as server:  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            assert wait_http(url + "/healthz", server) == 200
            yield Office(server_bin, config, url, port, fields["probe"], fields["token"])
        finally:
            code, output = stop(server)
    assert code == 0 and "Traceback" not in output, output[-3000:]


@pytest.fixture(scope="module")
def target(server_bin: Path) -> Iterator[str]:
    """``hamletnet-server target`` from the [server]-only venv."""
    port = free_port()
    command = [str(server_bin / "hamletnet-server"), "target", "--listen", f"127.0.0.1:{port}"]
    with subprocess.Popen(command, env=clean_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as process:  # fmt: skip
        try:
            assert wait_http(f"http://127.0.0.1:{port}/latency", process) in (200, 204)
            yield f"http://127.0.0.1:{port}"
        finally:
            code, output = stop(process)
    assert code == 0 and "No module named" not in output, output[-3000:]


@pytest.fixture
def tcp_listener() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


@pytest.fixture
def resolver() -> Iterator[str]:
    """A DNS server on loopback (UDP) that answers every A question with 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            reply = dns.message.make_response(query)
            question = query.question[0]
            reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", "127.0.0.1"))
            sock.sendto(reply.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    done.set()
    thread.join(timeout=5)
    sock.close()


# --- hamletnet-server, [server] extra alone ---------------------------------------------------


def test_server_help_lists_the_commands_run_here(server_bin: Path) -> None:
    assert commands_in_help(ran(run([server_bin / "hamletnet-server", "--help"]))) == (
        SERVER_COMMANDS
    )
    probe_help = ran(run([server_bin / "hamletnet-server", "probe", "--help"]))
    assert commands_in_help(probe_help) == SERVER_PROBE_COMMANDS
    assert commands_in_help(
        ran(run([server_bin / "hamletnet-server", "hand-entry", "--help"]))
    ) == {"import"}
    assert commands_in_help(
        ran(run([server_bin / "hamletnet-server", "compliance", "--help"]))
    ) == {"publish"}
    freeze = ran(run([server_bin / "python", "-m", "pip", "freeze"])).lower()
    assert "dnspython" not in freeze and "apscheduler" not in freeze and "scapy" not in freeze


def test_server_probe_commands(office: Office) -> None:
    listed = ran(office.cli("probe", "list"))
    assert f"{office.probe_id}\tthon-a\tVNPT\tfiber\tenabled" in listed
    line = ran(office.cli("probe", "set", office.probe_id, "--declared-down", "300",
                          "--declared-up", "150", "--plan", "Home 300",
                          "--actor", "Cán bộ A"))  # fmt: skip
    assert "declared_down_mbps: 300" in line and "declared_by: Cán bộ A" in line
    assert ran(office.cli("probe", "disable", office.probe_id)).endswith("disabled\n")
    assert ran(office.cli("probe", "enable", office.probe_id)).endswith("enabled\n")


def test_server_hand_entry_import(office: Office, tmp_path: Path) -> None:
    csv_file = tmp_path / "chu-ky-so.csv"
    csv_file.write_text(
        "indicator_id,hamlet,value,as_of,source_document\n"
        "digital-signature-2026,thon-a,38.5,2026-10-31,Báo cáo số 12/BC-UBND\n",
        encoding="utf-8",
    )
    imported = office.cli("hand-entry", "import", csv_file, "--actor", "Cán bộ A")
    assert "1 accepted, 0 rejected" in ran(imported)


def test_server_compliance_publish(office: Office) -> None:
    published = ran(office.cli("compliance", "publish", "--period", "2026-10"))
    assert re.search(r"^2026-10: \d+ compliance rows published$", published, re.MULTILINE)


def vietnam_today() -> date:
    return (datetime.now(UTC) + timedelta(hours=7)).date()


def test_server_quarterly_report_verifies(office: Office, tmp_path: Path) -> None:
    today = vietnam_today()
    quarter = f"{today.year}-Q{(today.month - 1) // 3 + 1}"
    out = tmp_path / "report"
    written = ran(office.cli("report", "--quarter", quarter, "--out", out))
    assert f"quarterly report {quarter}" in written and (out / "report.pdf").is_file()
    verified = ran(office.cli("export", "verify", out))
    assert "OK: quarterly report" in verified


def test_server_demo_once(server_bin: Path, tmp_path: Path) -> None:
    demo = run([server_bin / "hamletnet-server", "demo", "--once", "--port", "0",
                "--data-dir", tmp_path / "demo"], timeout=300, env=clean_env())  # fmt: skip
    output = ran(demo)
    assert re.search(r"measured over loopback and posted: [1-9]\d* accepted, 0 rejected", output)
    # The [server] extra has no dnspython: the demo says so instead of failing.
    assert "needs dnspython" in output


def test_server_run_stops_cleanly_on_sigterm(server_bin: Path, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "server.yaml"
    config.write_text(f"listen_port: {port}\ndata_dir: {tmp_path / 'data'}\n", encoding="utf-8")
    command = [str(server_bin / "hamletnet-server"), "run", "--config", str(config)]
    with subprocess.Popen(command, env=clean_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as server:  # fmt: skip
        assert wait_http(f"http://127.0.0.1:{port}/healthz", server) == 200
        code, output = stop(server)
    assert code == 0, output[-3000:]


# --- hamletnet-probe, [probe] extra alone ------------------------------------------------------


def measure(probe_bin: Path, kind: str, *args: str, code: int = 0) -> dict[str, Any]:
    result = run([probe_bin / "hamletnet-probe", "measure", kind, "--json", *args])
    measured: dict[str, Any] = json.loads(ran(result, code))
    assert measured["kind"] == kind, measured
    return measured


def test_probe_help_lists_the_commands_run_here(probe_bin: Path) -> None:
    assert commands_in_help(ran(run([probe_bin / "hamletnet-probe", "--help"]))) == PROBE_COMMANDS
    measure_help = ran(run([probe_bin / "hamletnet-probe", "measure", "--help"]))
    assert commands_in_help(measure_help) == MEASURE_KINDS
    freeze = ran(run([probe_bin / "python", "-m", "pip", "freeze"])).lower()
    assert "prometheus" not in freeze and "dnspython" in freeze


def test_probe_measures_latency_tcp_and_http(
    probe_bin: Path, tcp_listener: int, target: str
) -> None:
    quick = ["--option", "count=3", "--option", "interval_s=0.05"]
    tcp = measure(probe_bin, "latency", "--target", f"127.0.0.1:{tcp_listener}", *quick)
    assert (tcp["engine"], tcp["status"], tcp["received"]) == ("tcp", "ok", 3)
    http = measure(probe_bin, "latency", "--target", f"{target}/latency", *quick)
    assert (http["engine"], http["status"], http["received"]) == ("http", "ok", 3)


def test_probe_measures_dns_against_a_local_resolver(probe_bin: Path, resolver: str) -> None:
    answer = measure(probe_bin, "dns", "--target", "hamletnet.test", "--option",
                     f"resolvers={resolver}", "--option", "qtypes=A")  # fmt: skip
    assert (answer["status"], answer["rcode"], answer["answers"]) == ("ok", "NOERROR", 1)


def test_probe_measures_ipv6_over_loopback(probe_bin: Path, office: Office) -> None:
    options = loopback_ipv6_options(office.port)  # checks aimed at the office's /target/
    args = [f"--option={name}={json.dumps(value)}" for name, value in options.items()]
    ready = measure(probe_bin, "ipv6", "--target", "localhost", *args, code=0)
    assert ready["ipv6_ready"] is False  # loopback is no IPv6 Internet access, and says so
    assert ready["reasons"], ready


def test_probe_measures_bandwidth_against_the_target(probe_bin: Path, target: str) -> None:
    speed = measure(probe_bin, "bandwidth", "--target", target, "--option", "duration_s=1",
                    "--option", "warmup_max_s=0.5", "--option", "streams=2")  # fmt: skip
    assert speed["status"] == "ok" and speed["download_mbps"] > 0 and speed["upload_mbps"] > 0


def test_probe_measures_cellular_without_a_modem(probe_bin: Path) -> None:
    cell = measure(probe_bin, "cellular", code=1)  # a failed result, not a crash
    assert cell["status"] != "ok" and cell["failure_kind"] in ("no_device", "tool_missing")


def test_probe_measures_heartbeat(probe_bin: Path) -> None:
    assert measure(probe_bin, "heartbeat")["status"] == "ok"


def test_probe_registers_runs_uploads_and_stops_on_sigterm(
    probe_bin: Path, office: Office, tcp_listener: int, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    config = tmp_path / "probe.yaml"
    config.write_text(yaml.safe_dump({
        "state_dir": str(state),
        "schedules": {
            "heartbeat": {"every_s": 1},
            "latency": {"every_s": 1, "engine": "tcp", "targets": [f"127.0.0.1:{tcp_listener}"],
                        "options": {"count": 2, "interval_s": 0.05}},
        },
        "upload": {"every_s": 1, "backoff_min_s": 1, "backoff_max_s": 2},
        "clock": {"max_hold_s": 0},  # send at once even where the clock is not synchronised
    }), encoding="utf-8")  # fmt: skip
    agent = [str(probe_bin / "hamletnet-probe"), "--config", str(config)]
    registered = ran(run([*agent, "register", "--server", office.url, "--token", office.token]))
    assert f"registered as {office.probe_id}" in registered
    assert "no status yet" in ran(run([*agent, "status"]), code=1)

    with subprocess.Popen([*agent, "run"], env=clean_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as process:  # fmt: skip
        try:
            for _ in range(600):  # the server saw the probe: its upload arrived
                assert process.poll() is None, process.communicate()[0][-3000:]
                seen = ran(office.cli("probe", "list")).split("\n")[0].split("\t")[-1]
                if seen != "never" and (state / "status.json").is_file():
                    break
                time.sleep(0.2)
            else:
                raise AssertionError("the agent never uploaded")
            status = ran(run([*agent, "status"]))
            assert f"probe {office.probe_id} → {office.url}" in status
        finally:
            code, output = stop(process)
    assert code == 0, output[-3000:]
    assert "Traceback" not in output and "No module named" not in output

    # What the probe uploaded, exported as evidence by the [server]-only install, verifies.
    today, out = vietnam_today(), tmp_path / "evidence"
    exported = office.cli("export", "--hamlet", "thon-a", "--from", str(today - timedelta(days=1)),
                          "--to", str(today), "--format", "csv,xlsx,pdf", "--out", out)  # fmt: skip
    ran(exported)
    assert (out / "results.jsonl").stat().st_size > 0 and (out / "report.pdf").is_file()
    assert "OK: evidence export" in ran(office.cli("export", "verify", out))
