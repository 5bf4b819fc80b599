"""The probe agent end to end: real server process, real agent process, real files and signals."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.spool import Spool
from probes.models import Kind, parse_result
from probes.signing import sign
from server.storage.lineprotocol import TAG_KEYS, row_to_result
from tests.collector.processes import _OPENER, AgentProcess, ServerProcess, wait_until
from tests.influxd import Influxd
from tests.probes.test_models import EXAMPLES

pytestmark = pytest.mark.slow


def agent_config(state_dir: Path, server: ServerProcess, **schedules: Any) -> dict[str, Any]:
    return {
        "state_dir": str(state_dir),
        "schedules": schedules
        or {
            "heartbeat": {"every_s": 0.5, "timeout_s": 5},
            "latency": {
                "every_s": 0.5,
                "timeout_s": 5,
                "engine": "tcp",
                "targets": [f"127.0.0.1:{server.port}"],
                # short series, so whole tests fall inside the outage below
                "options": {"count": 3, "interval_s": 0.05, "wait_s": 1},
            },
        },
        "upload": {"every_s": 0.5, "backoff_min_s": 0.2, "backoff_max_s": 1.0, "timeout_s": 5},
        # A test machine's kernel may say "not synchronised" (no time daemon in a VM): send at
        # once, marked, rather than hold for NTP (test_clock_hold.py tests the holding).
        "clock": {"max_hold_s": 0},
        "log_level": "INFO",
    }


@pytest.fixture(autouse=True)
def _no_agent_outlives_its_test() -> Any:
    """Kill every agent a test started, even when the test failed half-way."""
    yield
    for agent in AgentProcess.started:
        if agent.alive():
            agent.stop(signal.SIGKILL)
    AgentProcess.started.clear()


class InfluxServerProcess(ServerProcess):
    """The same server keeping its results in a real InfluxDB (``tests/influxd.py``)."""

    def __init__(self, workdir: Path, influxd: Influxd) -> None:
        super().__init__(workdir)
        self.influxd = influxd
        self.database = influxd.new_database_name()
        config = yaml.safe_load(self.config.read_text(encoding="utf-8"))
        config["influxdb"] = {"url": influxd.url, "database": self.database}
        self.config.write_text(yaml.safe_dump(config), encoding="utf-8")

    def stored(self) -> list[dict[str, Any]]:
        """Every stored point as its result, oldest first per kind. InfluxDB has no unique key:
        a result stored twice comes back twice."""
        stored = []
        for kind in Kind:
            statement = f'SELECT * FROM "{kind.value}"'  # noqa: S608 (a plain name)
            reply = self.influxd.query(statement, database=self.database)
            for series in reply["results"][0].get("series", ()):
                for values in series["values"]:
                    row = dict(zip(series["columns"], values, strict=True))
                    time_ns = row.pop("time")
                    tags = {k: row.pop(k) for k in TAG_KEYS if k in row}
                    item = row_to_result(kind, {k: v for k, v in tags.items() if v}, row, time_ns)
                    stored.append(item.result.model_dump(mode="json"))
        return stored


@pytest.fixture(params=["sqlite", "influxdb"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        process = ServerProcess(tmp_path)
    else:
        process = InfluxServerProcess(tmp_path, request.getfixturevalue("influxd"))
    process.start()
    yield process
    process.stop()


def outcomes(server: ServerProcess) -> Counter[str]:
    """How many items this server process has answered ``accepted``, ``duplicate`` and
    ``rejected`` (its /metrics, all kinds together; counted since the process started)."""
    with _OPENER.open(server.url + "/metrics", timeout=5) as reply:
        text = reply.read().decode()
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("hamletnet_results_total{"):
            labels, value = line[len("hamletnet_results_total{") :].rsplit("} ", 1)
            outcome = dict(part.split("=", 1) for part in labels.split(","))["outcome"]
            counts[outcome.strip('"')] += int(float(value))
    return counts


def registered_agent(tmp_path: Path, server: ServerProcess, **schedules: Any) -> AgentProcess:
    agent = AgentProcess(tmp_path, agent_config(tmp_path / "probe-state", server, **schedules))
    token = server.add_probe()
    out = agent.cli("register", "--server", server.url, "--token", token)
    assert "registered as thon-a-vnpt-fiber" in out.stdout
    for name in ("credentials.json", "probe.key"):
        assert (agent.state_dir / name).stat().st_mode & 0o777 == 0o600
    return agent


def assert_exactly_once_in_order(
    stored: list[dict[str, Any]], kinds: set[str] | None = None
) -> None:
    """No result stored twice (this can fail only where the store has no unique key: InfluxDB;
    ``outcomes`` checks the server's answers on both stores), and each kind in time order."""
    ids = Counter(r["result_id"] for r in stored)
    assert not [i for i, n in ids.items() if n > 1], "a result was stored twice"
    for kind in kinds or {r["kind"] for r in stored}:
        times = [r["measured_at"] for r in stored if r["kind"] == kind]
        assert times == sorted(times), f"{kind} results arrived out of order"


def test_server_down_then_back_every_result_arrives_once_in_order(
    tmp_path: Path, server: ServerProcess
) -> None:
    agent = registered_agent(tmp_path, server)
    agent.start()
    try:
        wait_until(lambda: len(server.stored()) >= 4, 20, "first results at the server")
        server.stop()
        stored_before = len(server.stored())
        time.sleep(3)  # results pile up in the spool; latency tests fail (refused) and say so
        assert agent.alive()
        waiting = agent.status()["spool"]["depth"]
        assert waiting > 0
        server.start()
        wait_until(lambda: agent.status()["spool"]["depth"] == 0, 20, "the backlog to drain")
    finally:
        assert agent.stop() == 0
    status = agent.status()
    stored = server.stored()
    assert agent.spool_counts() == (0, 0)
    assert len(stored) == status["results_kept"]
    assert_exactly_once_in_order(stored)
    # Since the restart the server said "accepted" exactly once per result it stored; results
    # the agent sent again (the reply lost in the outage) were answered "duplicate".
    answered = outcomes(server)
    assert answered["accepted"] == len(stored) - stored_before, answered
    assert answered["rejected"] == 0, answered
    refused = [r for r in stored if r["kind"] == "latency" and r["status"] == "failed"]
    assert refused, "latency tests while the server was down should be failed results"
    assert all(r["failure_kind"] == "refused" for r in refused)


def _prefill(state_dir: Path, probe_id: str, key_path: Path, count: int) -> list[str]:
    """Put ``count`` signed results into the agent's spool, as a long outage would."""
    from collector.identity import load_key

    key = load_key(key_path)
    ids = []
    start = datetime.now(UTC) - timedelta(seconds=count)
    with Spool(state_dir / "spool.sqlite3") as spool:
        for i in range(count):
            body = dict(EXAMPLES["bandwidth"])
            body.pop("result_id")
            body |= {"probe_id": probe_id, "result_id": __import__("uuid").uuid4().hex}
            # Two results in each microsecond, as a probe's A and AAAA queries can be: each
            # must be stored on its own (InfluxDB identifies a point by series and time).
            body["measured_at"] = (start + timedelta(milliseconds=i // 2)).isoformat()
            result = sign(parse_result(body), key)
            spool.add(result)
            ids.append(str(result.result_id))
    return ids


def test_kill_9_during_upload_loses_and_duplicates_nothing(
    tmp_path: Path, server: ServerProcess
) -> None:
    agent = registered_agent(tmp_path, server, heartbeat={"every_s": 3600})
    ids = _prefill(agent.state_dir, "thon-a-vnpt-fiber", agent.state_dir / "probe.key", 6000)
    for _ in range(3):
        agent.start()
        wait_until(
            lambda: 0 < len(server.stored()) or not agent.alive(), 20, "the upload to start",
            step=0.01,
        )  # fmt: skip
        assert agent.stop(signal.SIGKILL) == -signal.SIGKILL
    agent.start()
    try:
        wait_until(lambda: agent.spool_counts()[0] == 0, 60, "the backlog to drain")
    finally:
        agent.stop()
    stored = server.stored()
    assert_exactly_once_in_order(stored)
    bandwidth = {r["result_id"] for r in stored if r["kind"] == "bandwidth"}
    assert bandwidth == {str(__import__("uuid").UUID(i)) for i in ids}
    assert agent.spool_counts() == (0, 0)
    # Every result was answered "accepted" once; each re-send after a kill was a "duplicate".
    answered = outcomes(server)
    assert answered["accepted"] == len(stored), answered
    assert answered["rejected"] == 0, answered


def test_result_altered_in_the_spool_is_quarantined_with_its_reason(
    tmp_path: Path, server: ServerProcess
) -> None:
    import sqlite3

    agent = registered_agent(tmp_path, server, heartbeat={"every_s": 3600})
    ids = _prefill(agent.state_dir, "thon-a-vnpt-fiber", agent.state_dir / "probe.key", 3)
    with sqlite3.connect(agent.state_dir / "spool.sqlite3") as conn:
        conn.execute(
            "UPDATE items SET payload = replace(payload, '\"download_mbps\":941.2',"
            " '\"download_mbps\":999.9') WHERE result_id = ?",
            (str(__import__("uuid").UUID(ids[1])),),
        )
    agent.start()
    try:
        wait_until(lambda: agent.spool_counts() == (0, 1), 20, "upload and quarantine")
        time.sleep(1.5)  # a few more upload rounds: the rejected one must not be retried
        assert agent.spool_counts() == (0, 1)
    finally:
        agent.stop()
    (rejected,) = Spool(agent.state_dir / "spool.sqlite3").__enter__().rejected()
    assert "altered after signing" in rejected.reason
    stored = {r["result_id"] for r in server.stored() if r["kind"] == "bandwidth"}
    assert len(stored) == 2 and rejected.result_id not in stored
    status = agent.cli("status").stdout
    assert "1 rejected by the server" in status


@pytest.mark.lab
def test_full_disk_is_reported_and_the_agent_recovers(
    tmp_path: Path, server: ServerProcess
) -> None:
    mount = tmp_path / "small-disk"
    mount.mkdir(exist_ok=True)
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True,
            capture_output=True,
        )  # fmt: skip
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {exc}")
    try:
        agent = AgentProcess(tmp_path, agent_config(mount / "state", server))
        token = server.add_probe()
        agent.cli("register", "--server", server.url, "--token", token)
        server.stop()  # nothing leaves the spool while we fill the disk
        agent.start()
        wait_until(lambda: (mount / "state" / "status.json").exists(), 20, "the agent to start")
        filler = mount / "filler"
        with filler.open("wb") as f:  # fill every free byte
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        wait_until(lambda: "disk is full" in agent.log.read_text(), 20, "the agent to log it")
        time.sleep(1)
        assert agent.alive(), "a full disk must not stop the agent"
        # The office hears of it: the next heartbeat carries the error, through the spool or,
        # when the spool cannot take it, straight to the server.
        server.start()
        wait_until(lambda: _server_heard_disk_full(server), 20, "a heartbeat naming the full disk")
        filler.unlink()
        before = len(server.stored())
        wait_until(lambda: len(server.stored()) > before + 4, 20, "results after recovery")
        wait_until(lambda: _spool_error(agent) is None, 20, "the error to clear")
        assert agent.alive()
        assert agent.stop() == 0
        # Heartbeats sent around the full spool overtake the spooled backlog by design.
        assert_exactly_once_in_order(server.stored(), kinds={"latency"})
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


def _server_heard_disk_full(server: ServerProcess) -> bool:
    return any(
        "disk is full" in (r.get("last_errors") or {}).get("spool", "")
        for r in server.stored()
        if r["kind"] == "heartbeat"
    )


def _spool_error(agent: AgentProcess) -> str | None:
    try:
        errors: dict[str, str] = agent.status()["last_errors"]
    except (OSError, ValueError):
        return None
    return errors.get("spool")
