"""The production stack as files: docker-compose.yml and the Dockerfile, read as Docker reads
them (no container engine runs here), and the server started with the very environment the
compose file gives it, against a real InfluxDB with authentication on."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.influxd import Influxd
from tests.installs import ROOT, clean_env, copy_checkout, free_port, wait_http

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
#: The secrets the README's office guide tells the office to put in .env: each must be
#: required by the compose file (``${VAR:?...}``), so a missing one stops ``docker compose up``.
SECRETS = {
    "HAMLETNET_ADMIN_TOKEN",
    "INFLUXDB_ADMIN_PASSWORD",
    "INFLUXDB_HAMLETNET_PASSWORD",
    "INFLUXDB_GRAFANA_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
}
#: Environment keys whose value is a secret: it must be a ``${VAR:?...}`` reference.
SECRET_KEY = re.compile(r"PASSWORD|TOKEN|SECRET", re.IGNORECASE)
REQUIRED = re.compile(r"^\$\{(?P<var>[A-Z0-9_]+):\?[^}]+\}$")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def service(name: str) -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"][name]
    return found


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    steps = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            steps.append((instruction.upper(), args.strip()))
    return steps


# --- docker-compose.yml ------------------------------------------------------------------------


def test_the_three_services_restart_and_have_health_checks() -> None:
    services = compose()["services"]
    assert set(services) == {"influxdb", "server", "grafana"}
    for name, svc in services.items():
        assert svc.get("restart") in ("unless-stopped", "always"), name
        check = svc.get("healthcheck")
        assert check and check["test"][0] == "CMD" and len(check["test"]) > 1, name
        assert {"interval", "timeout", "retries"} <= set(check), name


def test_influxdb_has_authentication_on_and_three_users() -> None:
    influx = service("influxdb")
    env = influx["environment"]
    assert influx["image"].startswith("influxdb:1.8")
    assert env["INFLUXDB_HTTP_AUTH_ENABLED"] == "true"
    assert env["INFLUXDB_DB"] == "hamletnet"
    assert (env["INFLUXDB_ADMIN_USER"], env["INFLUXDB_USER"], env["INFLUXDB_READ_USER"]) == (
        "admin", "hamletnet", "grafana",
    )  # fmt: skip
    assert "ports" not in influx  # reached on the stack's network only
    assert "influxdb:/var/lib/influxdb" in influx["volumes"]


def test_the_server_and_grafana_use_their_own_influxdb_users() -> None:
    server, grafana, influx = service("server"), service("grafana"), service("influxdb")
    server_env, grafana_env = server["environment"], grafana["environment"]
    influx_env = influx["environment"]
    assert server_env["HAMLETNET_INFLUXDB__URL"] == "http://influxdb:8086"
    assert server_env["HAMLETNET_INFLUXDB__USERNAME"] == influx_env["INFLUXDB_USER"]
    assert server_env["HAMLETNET_INFLUXDB__PASSWORD"] == influx_env["INFLUXDB_USER_PASSWORD"]
    assert server_env["HAMLETNET_INFLUXDB__DATABASE"] == influx_env["INFLUXDB_DB"]
    # Grafana reads with the read-only user (the data source file takes these variables).
    assert grafana_env["HAMLETNET_INFLUXDB_USER"] == influx_env["INFLUXDB_READ_USER"]
    assert grafana_env["HAMLETNET_INFLUXDB_PASSWORD"] == influx_env["INFLUXDB_READ_USER_PASSWORD"]
    datasource = (ROOT / "grafana/provisioning/datasources/hamletnet.yaml").read_text()
    for name in (
        "HAMLETNET_INFLUXDB_URL",
        "HAMLETNET_INFLUXDB_USER",
        "HAMLETNET_INFLUXDB_PASSWORD",
    ):
        assert "${" + name + "}" in datasource and name in grafana_env
    for svc in (server, grafana):
        assert svc["depends_on"]["influxdb"]["condition"] == "service_healthy"


def test_secrets_come_only_from_the_environment() -> None:
    required: set[str] = set()
    for name, svc in compose()["services"].items():
        for key, value in svc.get("environment", {}).items():
            if SECRET_KEY.search(key):
                match = REQUIRED.match(str(value))
                assert match, f"{name}.{key} = {value!r} is not a required ${{VAR:?...}}"
                required.add(match["var"])
    assert required == SECRETS
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert all(f"{name}=" in readme for name in SECRETS), "the office guide names each secret"
    assert not (ROOT / ".env").exists() or ".env" in (ROOT / ".gitignore").read_text()


def test_volumes_keep_every_service_data() -> None:
    assert set(compose()["volumes"]) == {"influxdb", "hamletnet", "grafana"}
    assert "hamletnet:/var/lib/hamletnet" in service("server")["volumes"]
    assert "grafana:/var/lib/grafana" in service("grafana")["volumes"]
    config_mount = next(v for v in service("server")["volumes"] if ":/etc/hamletnet/" in v)
    assert config_mount == (
        "${HAMLETNET_CONFIG:-./config/server.example.yaml}:/etc/hamletnet/server.yaml:ro"
    )


def test_grafana_mounts_match_the_dashboard_provider() -> None:
    provider = yaml.safe_load(
        (ROOT / "grafana/provisioning/dashboards/hamletnet.yaml").read_text(encoding="utf-8")
    )["providers"][0]
    mounts = service("grafana")["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    assert service("grafana")["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith(
        "${GRAFANA_ADMIN_PASSWORD:?"
    )


# --- Dockerfile ----------------------------------------------------------------------------------


def test_the_image_runs_as_its_own_user_with_a_health_check() -> None:
    steps = dockerfile()
    users = [args for instruction, args in steps if instruction == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    (check,) = [args for instruction, args in steps if instruction == "HEALTHCHECK"]
    assert "/healthz" in check and "--interval=" in check
    (cmd,) = [args for instruction, args in steps if instruction == "CMD"]
    assert yaml.safe_load(cmd) == [
        "hamletnet-server", "run", "--config", "/etc/hamletnet/server.yaml",
    ]  # fmt: skip
    assert ("VOLUME", '["/var/lib/hamletnet"]') in steps


def test_the_image_installs_the_server_extra_only_and_no_secret() -> None:
    steps = dockerfile()
    installs = [args for instruction, args in steps if instruction == "RUN" and "pip" in args]
    assert len(installs) == 1 and 'pip install ".[server]"' in installs[0]
    copied = [args.split()[0] for instruction, args in steps if instruction == "COPY"]
    assert not any(".env" in c or c in (".", "var", "config") for c in copied), copied
    for instruction, args in steps:
        if instruction in ("ENV", "ARG"):
            assert not SECRET_KEY.search(args), args
    # The build context is the sources alone: everything else stays out unless named.
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "*" in ignored and not any(".env" in line or ".venv" in line for line in ignored)


# --- the server with the compose file's environment, on a real InfluxDB with auth -----------------


def influx_users_as_the_image_makes_them(influxd: Influxd, database: str) -> dict[str, str]:
    """What influxdb:1.8's init-influxdb.sh does on first start with the compose environment:
    the database, the ALL user and the READ user (the administrator exists already)."""
    assert influxd.admin is not None
    passwords = {"hamletnet": "server 'pass' 1", "grafana": "grafana-pass-2"}
    for statement in (
        f'CREATE DATABASE "{database}"',
        "CREATE USER hamletnet WITH PASSWORD 'server \\'pass\\' 1'",
        f'GRANT ALL ON "{database}" TO hamletnet',
        "CREATE USER grafana WITH PASSWORD 'grafana-pass-2'",
        f'GRANT READ ON "{database}" TO grafana',
    ):
        answer = influxd.query(statement, auth=influxd.admin)
        error = answer["results"][0].get("error", "")
        assert not error or "already exists" in error, (statement, answer)
    return passwords


def compose_server_env(influx_url: str, database: str, password: str) -> dict[str, str]:
    """The server service's environment from docker-compose.yml, its ``${VAR}`` references
    filled in and the InfluxDB address pointed at ``influx_url``."""
    given = {"INFLUXDB_HAMLETNET_PASSWORD": password,
             "HAMLETNET_ADMIN_TOKEN": "stack-admin-token-0123456789"}  # fmt: skip
    env: dict[str, str] = {}
    for key, value in service("server")["environment"].items():
        match = REQUIRED.match(str(value))
        env[key] = given[match["var"]] if match else str(value)
    env["HAMLETNET_INFLUXDB__URL"] = influx_url
    env["HAMLETNET_INFLUXDB__DATABASE"] = database
    return env


@pytest.mark.slow
def test_the_server_runs_on_influxdb_with_the_compose_environment(
    influxd_auth: Influxd, tmp_path: Path
) -> None:
    database = influxd_auth.new_database_name()
    passwords = influx_users_as_the_image_makes_them(influxd_auth, database)
    port = free_port()
    env = clean_env(
        **compose_server_env(influxd_auth.url, database, passwords["hamletnet"]),
        HAMLETNET_DATA_DIR=str(tmp_path / "data"),
        HAMLETNET_LISTEN_HOST="127.0.0.1",
        HAMLETNET_LISTEN_PORT=str(port),
        HAMLETNET_PUBLIC_URL=f"http://127.0.0.1:{port}",
    )
    config = ROOT / "config/server.example.yaml"  # the image's default settings file
    with subprocess.Popen(
        [sys.executable, "-m", "server.cli", "run", "--config", str(config)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as server:  # fmt: skip
        try:
            assert wait_http(f"http://127.0.0.1:{port}/healthz", server) == 200
            # Compliance rows are replaced per month: the ALL-on-one-database user may do it.
            published = subprocess.run(
                [sys.executable, "-m", "server.cli", "compliance", "publish",
                 "--config", str(config)],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert published.returncode == 0, published.stderr[-2000:]
            assert "compliance rows published" in published.stdout
        finally:
            server.terminate()
            output = server.communicate(timeout=30)[0]
    assert server.returncode == 0, output[-2000:]
    # The read-only user Grafana gets sees what the server wrote.
    rows = influxd_auth.query(
        "SHOW MEASUREMENTS", database=database, auth=("grafana", passwords["grafana"])
    )
    assert "error" not in rows["results"][0], rows
    with pytest.raises(urllib.error.HTTPError):  # and may not write
        influxd_auth.query(
            f'CREATE DATABASE "{database}_x"', auth=("grafana", passwords["grafana"])
        )


# --- scripts/install-server.sh, staged (no systemd, apt or user here) ----------------------------


@dataclass
class Staged:
    root: Path
    source: Path
    influxd: Influxd
    first_run: str


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if line)
    return dict(pairs)


def install_server(source: Path, root: Path, influx_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(source / "scripts/install-server.sh"), "--root", str(root),
         "--influxdb-url", influx_url],
        env=clean_env(), capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Staged]:
    """install-server.sh staged under a directory, setting up a fresh InfluxDB that has
    authentication on and no user yet (as Debian's influxdb is once the script turned it on)."""
    base = tmp_path_factory.mktemp("install-server")
    source = copy_checkout(base / "src")
    root = base / "root"
    conf = root / "etc/influxdb/influxdb.conf"
    conf.parent.mkdir(parents=True)
    # Debian's own file where the package is installed (tests/ installs it), else its [http]
    # section as the package ships it (hand-written: auth-enabled commented out).
    debian = Path("/etc/influxdb/influxdb.conf")
    conf.write_text(
        debian.read_text(encoding="utf-8") if debian.is_file()
        else "[meta]\n  dir = \"/var/lib/influxdb/meta\"\n\n[http]\n  # enabled = true\n"
             "  # auth-enabled = false\n\n[logging]\n",
        encoding="utf-8",
    )  # fmt: skip
    with Influxd(auth_enabled=True) as influxd:
        first = install_server(source, root, influxd.url)
        assert first.returncode == 0, first.stdout + first.stderr[-3000:]
        yield Staged(root, source, influxd, first.stdout)


@pytest.mark.slow
def test_install_server_keeps_secrets_in_0600_files(staged: Staged) -> None:
    etc = staged.root / "etc/hamletnet"
    for name in ("server.env", "influxdb-admin.env", "grafana.env"):
        assert (etc / name).stat().st_mode & 0o777 == 0o600, name
    server_env = env_file(etc / "server.env")
    assert set(server_env) == {"HAMLETNET_ADMIN_TOKEN", "HAMLETNET_INFLUXDB__PASSWORD"}
    assert len(server_env["HAMLETNET_ADMIN_TOKEN"]) >= 32
    assert server_env["HAMLETNET_INFLUXDB__PASSWORD"] != server_env["HAMLETNET_ADMIN_TOKEN"]
    assert env_file(etc / "grafana.env")["HAMLETNET_INFLUXDB_USER"] == "grafana"
    config = yaml.safe_load((etc / "server.yaml").read_text(encoding="utf-8"))
    assert config["data_dir"] == "/var/lib/hamletnet"
    assert config["influxdb"]["url"] == staged.influxd.url
    assert config["influxdb"]["create_database"] is False
    assert "admin_token" not in config and "password" not in config["influxdb"]
    assert (staged.root / "var/lib/hamletnet").stat().st_mode & 0o777 == 0o750


@pytest.mark.slow
def test_install_server_writes_an_unprivileged_unit(staged: Staged) -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(staged.root / "etc/systemd/system/hamletnet-server.service")
    service = unit["Service"]
    assert service["User"] == "hamletnet" and service["Group"] == "hamletnet"
    assert service["EnvironmentFile"] == "/etc/hamletnet/server.env"
    assert service["ExecStart"] == (
        "/opt/hamletnet-server/bin/hamletnet-server run --config /etc/hamletnet/server.yaml"
    )
    assert service["CapabilityBoundingSet"] == "" and service["AmbientCapabilities"] == ""
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/var/lib/hamletnet" and service["Restart"] == "always"
    assert "influxdb.service" in unit["Unit"]["After"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    link = staged.root / "usr/local/bin/hamletnet-server"
    assert os.readlink(link) == "/opt/hamletnet-server/bin/hamletnet-server"
    dropin = staged.root / "etc/systemd/system/grafana-server.service.d/hamletnet.conf"
    assert "EnvironmentFile=/etc/hamletnet/grafana.env" in dropin.read_text(encoding="utf-8")


@pytest.mark.slow
def test_install_server_turns_influxdb_authentication_on(staged: Staged) -> None:
    conf = (staged.root / "etc/influxdb/influxdb.conf").read_text(encoding="utf-8")
    http = conf.split("\n[http]\n", 1)[1].split("\n[", 1)[0]
    assert re.search(r"(?m)^\s*auth-enabled = true$", http), http
    assert "auth-enabled = true" not in conf.split("\n[http]\n", 1)[0]
    etc = staged.root / "etc/hamletnet"
    admin = env_file(etc / "influxdb-admin.env")
    users = staged.influxd.query(
        "SHOW USERS", auth=(admin["INFLUXDB_ADMIN_USER"], admin["INFLUXDB_ADMIN_PASSWORD"])
    )["results"][0]["series"][0]["values"]
    assert sorted(users) == [["admin", True], ["grafana", False], ["hamletnet", False]]
    grafana = ("grafana", env_file(etc / "grafana.env")["HAMLETNET_INFLUXDB_PASSWORD"])
    with pytest.raises(urllib.error.HTTPError):  # read-only
        staged.influxd.query("CREATE DATABASE elsewhere", auth=grafana)
    with pytest.raises(urllib.error.HTTPError):  # and nothing without a password
        staged.influxd.query("SHOW DATABASES")


@pytest.mark.slow
def test_the_installed_server_runs_with_its_files(staged: Staged) -> None:
    """The staged venv ([server] only), config and environment file, on the InfluxDB it set up."""
    etc = staged.root / "etc/hamletnet"
    port = free_port()
    env = clean_env(
        **env_file(etc / "server.env"),
        HAMLETNET_DATA_DIR=str(staged.root / "var/lib/hamletnet"),  # not the real /var/lib
        HAMLETNET_LISTEN_HOST="127.0.0.1",
        HAMLETNET_LISTEN_PORT=str(port),
    )
    server_bin = staged.root / "opt/hamletnet-server/bin/hamletnet-server"
    freeze = subprocess.run(
        [str(server_bin.parent / "python"), "-m", "pip", "freeze"],
        capture_output=True, text=True, check=True,
    ).stdout.lower()  # fmt: skip
    assert "aiohttp" in freeze and "dnspython" not in freeze and "apscheduler" not in freeze
    with subprocess.Popen(
        [str(server_bin), "run", "--config", str(etc / "server.yaml")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as server:  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            assert wait_http(url + "/healthz", server) == 200
            request = urllib.request.Request(f"{url}/api/v1/admin/probes")  # noqa: S310
            request.add_header("Authorization", f"Bearer {env['HAMLETNET_ADMIN_TOKEN']}")
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                request, timeout=10
            ) as reply:
                assert reply.status == 200
        finally:
            server.terminate()
            output = server.communicate(timeout=30)[0]
    assert server.returncode == 0, output[-3000:]


@pytest.mark.slow
def test_install_server_again_keeps_every_secret(staged: Staged) -> None:
    etc = staged.root / "etc/hamletnet"
    names = ("server.env", "influxdb-admin.env", "grafana.env", "server.yaml")
    before = {name: (etc / name).read_text() for name in names}
    again = install_server(staged.source, staged.root, staged.influxd.url)
    assert again.returncode == 0, again.stdout + again.stderr[-3000:]
    assert {name: (etc / name).read_text() for name in before} == before
