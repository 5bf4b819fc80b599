"""Starts a throw-away InfluxDB 1.x (``/usr/bin/influxd``) on free loopback ports.

Used by the test fixtures in ``tests/conftest.py``; a benchmark can reuse it the same way::

    with Influxd() as influxd:
        print(influxd.url)
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

INFLUXD = Path("/usr/bin/influxd")

#: How long influxd may take to answer /ping (a cold start on a slow CI disk takes a few seconds).
START_TIMEOUT_S = 30.0
START_ATTEMPTS = 3

# Loopback only, and never through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Influxd:
    """One ``influxd`` process with its own temporary meta, data and WAL directories."""

    def __init__(self, *, auth_enabled: bool = False, max_row_limit: int = 0) -> None:
        """``max_row_limit`` > 0 makes influxd cut longer query replies short (``partial``)."""
        self.auth_enabled = auth_enabled
        self.max_row_limit = max_row_limit
        self.url = ""
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None
        #: ``(user, password)`` of the administrator ``create_admin`` made, if any.
        self.admin: tuple[str, str] | None = None

    def start(self) -> None:
        if not INFLUXD.is_file():
            raise RuntimeError(
                f"{INFLUXD} is missing: the storage tests need a real InfluxDB 1.x. Run the test"
                " set-up first (it installs Debian's influxdb package: apt-get install influxdb)."
            )
        # A free port can be taken between our probe and influxd's bind: try fresh ports again.
        for attempt in range(1, START_ATTEMPTS + 1):
            self._launch()
            problem = self._wait_ready()
            if problem is None:
                return
            tail = self.log_tail()
            exited = self._proc is not None and self._proc.poll() is not None
            self.stop()
            if attempt == START_ATTEMPTS or not exited:
                raise RuntimeError(f"{problem}; last lines of its output:\n{tail}")

    def _launch(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="hamletnet-influxd-"))
        self._log = self._dir / "influxd.log"
        http_port, rpc_port = free_port(), free_port()
        config = self._dir / "influxdb.conf"
        config.write_text(
            _CONFIG.format(
                dir=self._dir,
                http=f"127.0.0.1:{http_port}",
                rpc=f"127.0.0.1:{rpc_port}",
                auth="true" if self.auth_enabled else "false",
                max_row_limit=self.max_row_limit,
            ),
            encoding="utf-8",
        )
        with self._log.open("wb") as log:
            self._proc = subprocess.Popen(
                [str(INFLUXD), "-config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.url = f"http://127.0.0.1:{http_port}"

    def _wait_ready(self) -> str | None:
        """None once influxd answers /ping, else what went wrong."""
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return f"influxd exited with status {self._proc.returncode} while starting"
            try:
                with _OPENER.open(f"{self.url}/ping", timeout=1) as reply:
                    # The header tells influxd from anything else that took the port.
                    if reply.status in (200, 204) and reply.headers["X-Influxdb-Version"]:
                        return None
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        return f"influxd did not answer {self.url}/ping within {START_TIMEOUT_S:.0f} s"

    def log_tail(self, lines: int = 30) -> str:
        if self._log is None or not self._log.exists():
            return "(no output)"
        text = self._log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"

    def query(
        self, q: str, *, database: str | None = None, auth: tuple[str, str] | None = None
    ) -> dict[str, Any]:
        """Run one InfluxQL statement by POST and return the decoded JSON reply (for set-up)."""
        params = {"q": q, "epoch": "ns"}
        if database is not None:
            params["db"] = database
        request = urllib.request.Request(  # noqa: S310 (http on loopback)
            f"{self.url}/query",
            data=urllib.parse.urlencode(params).encode(),
            method="POST",
        )
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with _OPENER.open(request, timeout=10) as reply:
            answer: dict[str, Any] = json.loads(reply.read())
            return answer

    def create_admin(self, user: str, password: str) -> None:
        """Create the first user, an administrator (InfluxDB allows it without credentials)."""
        quoted = password.replace("\\", "\\\\").replace("'", "\\'")
        self.query(f"CREATE USER {user} WITH PASSWORD '{quoted}' WITH ALL PRIVILEGES")
        self.admin = (user, password)

    def http_stats(self) -> dict[str, int]:
        """influxd's own counters of its HTTP service (``SHOW STATS FOR 'httpd'``): ``queryReq``,
        ``writeReq``, ``pointsWrittenOK``... The call itself counts as one ``queryReq``."""
        (series,) = self.query("SHOW STATS FOR 'httpd'")["results"][0]["series"]
        return dict(zip(series["columns"], series["values"][0], strict=True))

    def new_database_name(self) -> str:
        """A database name no other test uses (the adapter creates it on start)."""
        return f"test_{uuid.uuid4().hex[:16]}"

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=10)
        self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Influxd:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# Everything that would touch anything but loopback and the temporary directory is off:
# usage reporting, the _internal monitor database, the HTTP access log.
_CONFIG = """\
reporting-disabled = true
bind-address = "{rpc}"

[meta]
  dir = "{dir}/meta"

[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "{http}"
  auth-enabled = {auth}
  log-enabled = false
  max-row-limit = {max_row_limit}

[continuous_queries]
  enabled = false

[subscriber]
  enabled = false

[logging]
  level = "warn"
"""
