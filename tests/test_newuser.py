"""What a new user hits, following the README literally (issue 15 §6): real processes.

The commands run as the README writes them, as subprocesses of this checkout's Python; the slow
ones build fresh virtualenvs with exactly one extra, as ``scripts/venv.sh`` and
``scripts/install-probe.sh`` do, and run the installed entry points.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aiohttp
import pytest

from collector.connection_errors import describe
from probes.models import Kind
from probes.registry import DNS_ENGINE, IPV6_ENGINE, PROBES, latency_engine_for
from tests.installs import (
    ROOT,
    checkout_with_venv,
    clean_env,
    free_port,
    run_script,
    wait_http,
)

#: Runs an entry point with dnspython made unimportable, as in a venv with only [server].
WITHOUT_DNS = (
    "import sys; sys.modules['dns'] = None; sys.argv[0] = {prog!r};"
    " from {module} import main; sys.exit(main(sys.argv[1:]))"
)


def probe_cli(*args: str, without_dns: bool = False) -> subprocess.CompletedProcess[str]:
    if without_dns:
        command = ["-c", WITHOUT_DNS.format(prog="hamletnet-probe", module="collector.cli")]
    else:
        command = ["-m", "collector.cli"]
    return subprocess.run(
        [sys.executable, *command, *args],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def tcp_listener() -> Iterator[int]:
    """A listening TCP port on loopback (the kernel completes handshakes from the backlog)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


@pytest.fixture
def http_server() -> Iterator[int]:
    class Ok(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


# --- the latency engine follows the target's form -------------------------------------------


@pytest.mark.parametrize(
    ("target", "engine"),
    [
        ("127.0.0.1:8080", "tcp"), ("hamletnet.example.vn:443", "tcp"), ("[2001:db8::1]:80", "tcp"),
        ("http://127.0.0.1:8080/", "http"), ("https://hamletnet.example.vn/", "http"),
        ("127.0.0.1", "icmp"), ("vnnic.vn", "icmp"), ("2001:db8::1", "icmp"), ("::1", "icmp"),
    ],
)  # fmt: skip
def test_latency_engine_follows_the_target_form(target: str, engine: str) -> None:
    assert latency_engine_for([target]) == engine


def test_mixed_target_forms_ask_for_an_engine() -> None:
    with pytest.raises(ValueError, match=r"need different engines.*'a:1' \(tcp\)"):
        latency_engine_for(["a:1", "vnnic.vn"])


def test_the_readme_latency_example_measures_tcp(tcp_listener: int) -> None:
    result = probe_cli(
        "measure", "latency", "--target", f"127.0.0.1:{tcp_listener}", "--json",
        "--option", "count=3", "--option", "interval_s=0.05",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    measured = json.loads(result.stdout)
    assert measured["engine"] == "tcp" and measured["status"] == "ok"
    assert measured["received"] == 3


def test_a_url_target_measures_http(http_server: int) -> None:
    result = probe_cli(
        "measure", "latency", "--target", f"http://127.0.0.1:{http_server}/", "--json",
        "--option", "count=2", "--option", "interval_s=0.05",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    assert json.loads(result.stdout)["engine"] == "http"


def test_icmp_with_host_port_says_which_engine_to_use() -> None:
    result = probe_cli("measure", "latency", "--engine", "icmp", "--target", "127.0.0.1:8080")
    assert result.returncode == 2
    assert "'127.0.0.1:8080' is HOST:PORT: icmp takes a host name or address; use engine tcp" in (
        result.stderr
    )
    assert "resolve" not in result.stderr


# --- entry points without the optional engines' packages ------------------------------------


def test_the_registry_engine_names_match_their_modules() -> None:
    from probes import dns
    from probes.ipv6 import readiness

    assert (DNS_ENGINE, IPV6_ENGINE) == (dns.ENGINE, readiness.ENGINE)
    assert PROBES[Kind.DNS].engine == dns.ENGINE and PROBES[Kind.IPV6].engine == readiness.ENGINE


def test_probe_measures_latency_without_dnspython(tcp_listener: int) -> None:
    result = probe_cli(
        "measure", "latency", "--target", f"127.0.0.1:{tcp_listener}", "--option", "count=2",
        "--option", "interval_s=0.05", without_dns=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "ok"


def test_a_dns_test_without_dnspython_names_the_extra() -> None:
    result = probe_cli("measure", "dns", "--target", "vnnic.vn", without_dns=True)
    assert result.returncode == 2
    assert (
        "dns tests need the Python module 'dns', which is not installed: install the agent"
        " with the [probe] extra" in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_the_target_runs_without_dnspython() -> None:
    port = free_port()
    command = WITHOUT_DNS.format(prog="hamletnet-server", module="server.cli")
    with subprocess.Popen(
        [sys.executable, "-c", command, "target", "--listen", f"127.0.0.1:{port}"],
        cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as target:  # fmt: skip
        try:
            assert wait_http(f"http://127.0.0.1:{port}/latency", target) in (200, 204)
        finally:
            target.terminate()
            output = target.communicate(timeout=30)[0]
    assert "No module named" not in output


# --- the probe's command line as the README and install-probe.sh write it --------------------


def test_config_and_state_dir_are_accepted_after_the_command(tmp_path: Path) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text("{}\n", encoding="utf-8")
    state = tmp_path / "state"
    state.mkdir()
    result = probe_cli("status", "--config", str(config), "--state-dir", str(state))
    assert result.returncode == 1, result.stderr
    assert f"no status yet at {state / 'status.json'}" in result.stdout


def test_status_as_another_user_says_whose_state_it_is(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run as another user")
    state = tmp_path / "state"  # root's, mode 0700, as /var/lib/hamletnet-probe is hamletnet's
    state.mkdir(mode=0o700)
    (state / "status.json").write_text("{}", encoding="utf-8")
    result = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
         sys.executable, "-m", "collector.cli", "--state-dir", str(state), "status"],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "PermissionError" not in result.stderr
    assert f"cannot read {state / 'status.json'}: it belongs to the user 'root'" in result.stderr
    assert "sudo -u root hamletnet-probe status" in result.stderr


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_register_against_a_closed_port_says_host_port_and_reason(
    tmp_path: Path, scheme: str
) -> None:
    port = free_port()
    result = probe_cli(
        "--state-dir", str(tmp_path), "register", "--server", f"{scheme}://127.0.0.1:{port}",
        "--token", "hn_0123456789abcdef",
    )  # fmt: skip
    assert result.returncode == 2
    assert f"cannot connect to 127.0.0.1 port {port}: Connection refused" in result.stderr
    for raw in ("ConnectionKey", "SSLContext", " at 0x", "Error("):
        assert raw not in result.stderr


async def test_a_server_that_hangs_up_is_described_in_words() -> None:
    """What the agent's status shows as its last upload problem."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def hang_up() -> None:
            conn, _ = listener.accept()
            conn.recv(65536)
            conn.close()

        closer = threading.Thread(target=hang_up, daemon=True)
        closer.start()
        url = f"http://127.0.0.1:{port}/api/v1/results"
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.ClientError) as caught:
                async with http.post(url, data=b"{}"):
                    pass
        closer.join(timeout=10)
    assert (
        describe(caught.value, url)
        == f"127.0.0.1 port {port} closed the connection before answering"
    )


# --- the demo's own venv, made by scripts/venv.sh as scripts/demo.sh makes it ------------------


@pytest.fixture(scope="module")
def server_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The office server's own install: the ``[server]`` extra alone (as the Dockerfile)."""
    return checkout_with_venv(tmp_path_factory, "server")


@pytest.fixture(scope="module")
def demo_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's install, as ``scripts/demo.sh`` makes it: the server and probe extras."""
    return checkout_with_venv(tmp_path_factory, "server,probe")


@pytest.mark.slow
def test_the_server_venv_has_the_server_extra_and_no_more(server_tree: Path) -> None:
    freeze = subprocess.run(
        [str(server_tree / ".venv/bin/python"), "-m", "pip", "freeze"],
        capture_output=True, text=True, check=True,
    ).stdout.lower()  # fmt: skip
    assert "aiohttp" in freeze and "prometheus" in freeze
    assert "dnspython" not in freeze and "apscheduler" not in freeze


@pytest.mark.slow
def test_the_target_runs_with_the_server_extra(server_tree: Path) -> None:
    port = free_port()
    with subprocess.Popen(
        [str(server_tree / ".venv/bin/hamletnet-server"), "target", "--listen",
         f"127.0.0.1:{port}"],
        cwd=server_tree, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    ) as target:  # fmt: skip
        try:
            assert wait_http(f"http://127.0.0.1:{port}/latency", target) in (200, 204)
        finally:
            target.terminate()
            target.communicate(timeout=30)


@pytest.mark.slow
def test_the_probe_measures_latency_with_the_server_extra_alone(
    server_tree: Path, tcp_listener: int
) -> None:
    result = subprocess.run(
        [str(server_tree / ".venv/bin/hamletnet-probe"), "measure", "latency",
         "--target", f"127.0.0.1:{tcp_listener}", "--json", "--option", "count=2",
         "--option", "interval_s=0.05"],
        cwd=server_tree, env=clean_env(), capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["engine"] == "tcp"


@pytest.mark.slow
def test_the_demo_starts_again_without_network(demo_tree: Path) -> None:
    data = demo_tree / "demo-data"
    first = run_script(demo_tree, "scripts/demo.sh", "--once", "--port", "0", "--data-dir",
                       str(data), network=False)  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr[-3000:]
    again = run_script(demo_tree, "scripts/demo.sh", "--once", "--port", "0", "--data-dir",
                       str(data), network=False)  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr[-3000:]
    # The seeded history is all there already (answered duplicate), the loopback round is new.
    assert re.search(
        r"for \d{4}-\d{2}: 0 accepted, [1-9][0-9]* duplicate, 0 rejected", again.stdout
    ), again.stdout
    assert re.search(r"measured over loopback and posted: [1-9][0-9]* accepted, 0 rejected",
                     again.stdout), again.stdout  # fmt: skip


@pytest.mark.slow
def test_a_changed_pyproject_installs_again(demo_tree: Path) -> None:
    pyproject = demo_tree / "pyproject.toml"
    original = pyproject.read_text(encoding="utf-8")
    try:
        pyproject.write_text(original + "# changed\n", encoding="utf-8")
        changed = run_script(demo_tree, "scripts/venv.sh", "server,probe", network=False)
        assert changed.returncode != 0  # it went to the (absent) registry
    finally:
        pyproject.write_text(original, encoding="utf-8")
    more = run_script(demo_tree, "scripts/venv.sh", "dev", network=False)
    assert more.returncode != 0  # an extra not installed yet also needs it
    assert run_script(demo_tree, "scripts/venv.sh", "server", network=False).returncode == 0
