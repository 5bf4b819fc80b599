#!/usr/bin/env bash
# Install the hamletnet office server on Debian (12 or newer) without Docker, and start it.
#
#   sudo bash scripts/install-server.sh [--config FILE] [--influxdb-url URL]
#
# Installs Debian's influxdb and turns its authentication on (an administrator, a "hamletnet"
# user with ALL privileges on the hamletnet database, a read-only "grafana" user); installs the
# server into a virtualenv (/opt/hamletnet-server, the [server] extra only) and creates the
# system user "hamletnet"; writes /etc/hamletnet/server.yaml (from --config, else
# config/server.example.yaml; an existing file is kept) and the secrets, each generated once and
# kept on later runs, in files of mode 0600: /etc/hamletnet/server.env (HAMLETNET_ADMIN_TOKEN,
# HAMLETNET_INFLUXDB__PASSWORD), influxdb-admin.env, grafana.env; then a systemd unit that runs
# the server as "hamletnet" with no capabilities. /usr/local/bin/hamletnet-server links to it.
# --root DIR stages everything under DIR instead (no apt, user, chown or systemd): used by the
# tests; with --influxdb-url it still sets up that InfluxDB's users.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
root="" config="" influx_url="" real=1
while [ $# -gt 0 ]; do
  case "$1" in
    --config) config="$2"; shift 2 ;;
    --influxdb-url) influx_url="$2"; shift 2 ;;
    --root) root="$2"; real=0; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$root" ] || [ "$(id -u)" -eq 0 ] || { echo "run as root (sudo)" >&2; exit 2; }
[ -z "$config" ] || [ -f "$config" ] || { echo "--config $config: no such file" >&2; exit 2; }

user=hamletnet
venv="$root/opt/hamletnet-server"
etc="$root/etc/hamletnet"
data="$root/var/lib/hamletnet"
unit="$root/etc/systemd/system/hamletnet-server.service"
influx_conf="$root/etc/influxdb/influxdb.conf"

python3 -c 'import sys; assert sys.version_info >= (3, 11), "the server needs Python >= 3.11"'
if [ "$real" -eq 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq python3-venv influxdb
  id "$user" >/dev/null 2>&1 || useradd --system --home-dir /var/lib/hamletnet \
    --shell /usr/sbin/nologin "$user"
fi

# --- secrets: generated once, kept on every later run ----------------------------------------
mkdir -p "$etc"
chmod 0755 "$etc"
new_secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; }
# The value of NAME in an environment file, or nothing.
env_value() { [ -f "$1" ] && sed -n "s/^$2=//p" "$1" | tail -n 1 || true; }
# Add NAME=(a new secret) to FILE unless it has one; FILE is 0600 whatever it was.
ensure_secret() {
  local file="$1" name="$2"
  (umask 077 && touch "$file")
  chmod 0600 "$file"
  [ -n "$(env_value "$file" "$name")" ] || printf '%s=%s\n' "$name" "$(new_secret)" >> "$file"
}
ensure_line() {  # NAME=VALUE in FILE unless NAME is set there already
  [ -n "$(env_value "$1" "$2")" ] || printf '%s=%s\n' "$2" "$3" >> "$1"
}
server_env="$etc/server.env"
admin_env="$etc/influxdb-admin.env"
grafana_env="$etc/grafana.env"
ensure_secret "$server_env" HAMLETNET_ADMIN_TOKEN
ensure_secret "$server_env" HAMLETNET_INFLUXDB__PASSWORD
ensure_secret "$admin_env" INFLUXDB_ADMIN_PASSWORD
ensure_line "$admin_env" INFLUXDB_ADMIN_USER admin
# What grafana/provisioning/datasources/hamletnet.yaml reads: Grafana's read-only user.
ensure_secret "$grafana_env" HAMLETNET_INFLUXDB_PASSWORD
ensure_line "$grafana_env" HAMLETNET_INFLUXDB_USER grafana
ensure_line "$grafana_env" HAMLETNET_INFLUXDB_URL "${influx_url:-http://127.0.0.1:8086}"

# --- InfluxDB with authentication on -----------------------------------------------------------
if [ -f "$influx_conf" ]; then
  # "auth-enabled = true" in the [http] section (Debian ships it commented out).
  python3 - "$influx_conf" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path, encoding="utf-8").read()
head, sep, rest = text.partition("\n[http]\n")
if not sep:
    sys.exit(f"{path}: no [http] section")
body, nxt, tail = rest.partition("\n[")
body, n = re.subn(r"(?m)^\s*#?\s*auth-enabled\s*=.*$", "  auth-enabled = true", body, count=1)
if n == 0:
    body = "  auth-enabled = true\n" + body
open(path, "w", encoding="utf-8").write(head + sep + body + nxt + tail)
PY
fi
if [ "$real" -eq 1 ]; then
  systemctl enable influxdb.service
  systemctl restart influxdb.service
  influx_url="${influx_url:-http://127.0.0.1:8086}"
fi
if [ -n "$influx_url" ]; then
  # The first user of an InfluxDB with authentication on may be created without credentials,
  # and must be an administrator; everything else is done as that administrator.
  env INFLUX_URL="$influx_url" \
    ADMIN_USER="$(env_value "$admin_env" INFLUXDB_ADMIN_USER)" \
    ADMIN_PASSWORD="$(env_value "$admin_env" INFLUXDB_ADMIN_PASSWORD)" \
    SERVER_PASSWORD="$(env_value "$server_env" HAMLETNET_INFLUXDB__PASSWORD)" \
    GRAFANA_PASSWORD="$(env_value "$grafana_env" HAMLETNET_INFLUXDB_PASSWORD)" \
    python3 - <<'PY'
import base64, json, os, sys, time, urllib.error, urllib.parse, urllib.request

url = os.environ["INFLUX_URL"].rstrip("/")
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
admin = (os.environ["ADMIN_USER"], os.environ["ADMIN_PASSWORD"])

def query(q, auth=None):
    request = urllib.request.Request(
        url + "/query", data=urllib.parse.urlencode({"q": q}).encode(), method="POST"
    )
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with opener.open(request, timeout=10) as reply:
            answer = json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        answer = {"error": f"HTTP {exc.code}: {exc.read().decode(errors='replace').strip()}"}
    return answer.get("error") or answer["results"][0].get("error")

for _ in range(60):
    try:
        with opener.open(url + "/ping", timeout=2):
            break
    except OSError:
        time.sleep(0.5)
else:
    sys.exit(f"InfluxDB at {url} does not answer /ping: is the influxdb service running?")

if query("SHOW USERS", admin):
    problem = query(f"CREATE USER {admin[0]} WITH PASSWORD '{admin[1]}' WITH ALL PRIVILEGES")
    if problem:
        sys.exit(
            f"InfluxDB at {url} has users already and refuses the administrator "
            f"{admin[0]!r} of /etc/hamletnet/influxdb-admin.env ({problem}): put that "
            "administrator's password there and run this script again"
        )
for user, password, privilege in (
    ("hamletnet", os.environ["SERVER_PASSWORD"], "ALL"),
    ("grafana", os.environ["GRAFANA_PASSWORD"], "READ"),
):
    for statement in (
        "CREATE DATABASE hamletnet",
        f"CREATE USER {user} WITH PASSWORD '{password}'",
        f"SET PASSWORD FOR {user} = '{password}'",
        f"REVOKE ALL ON hamletnet FROM {user}",
        f"GRANT {privilege} ON hamletnet TO {user}",
    ):
        problem = query(statement, admin)
        if problem and "already exists" not in problem:
            sys.exit(f"InfluxDB at {url}: {statement.split(' WITH ')[0]}: {problem}")
print(f"InfluxDB at {url}: authentication on; users admin, hamletnet (ALL), grafana (READ)")
PY
fi

# --- the server --------------------------------------------------------------------------------
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "$src[server]"
mkdir -p "$root/usr/local/bin"
ln -sfn /opt/hamletnet-server/bin/hamletnet-server "$root/usr/local/bin/hamletnet-server"

mkdir -p "$data"
chmod 0750 "$data"
if [ ! -f "$etc/server.yaml" ]; then
  python3 - "${config:-$src/config/server.example.yaml}" "$etc/server.yaml" \
    "${influx_url:-http://127.0.0.1:8086}" <<'PY'
import re, sys
source, dest, influx_url = sys.argv[1:]
text = open(source, encoding="utf-8").read()
# Where this install keeps things; the InfluxDB this script set up (its database exists: the
# server's user may not create one). Other keys stay as the office wrote them.
for key, value in (("data_dir", "/var/lib/hamletnet"),):
    text = re.sub(rf"(?m)^{key}:.*$", f"{key}: {value}", text)
text = re.sub(r"(?m)^(  url:).*$", rf"\1 {influx_url}", text, count=1)
if "create_database:" not in text and "\ninfluxdb:\n" in text:
    text = text.replace("\ninfluxdb:\n", "\ninfluxdb:\n  create_database: false\n", 1)
open(dest, "w", encoding="utf-8").write(text)
PY
fi
chmod 0640 "$etc/server.yaml"

mkdir -p "$(dirname "$unit")"
cat > "$unit" <<UNIT
[Unit]
Description=hamletnet office server (results from the probes, compliance, pages)
Wants=network-online.target influxdb.service
After=network-online.target influxdb.service

[Service]
Type=simple
User=$user
Group=$user
# HAMLETNET_ADMIN_TOKEN and HAMLETNET_INFLUXDB__PASSWORD (mode 0600, read by systemd).
EnvironmentFile=/etc/hamletnet/server.env
ExecStart=/opt/hamletnet-server/bin/hamletnet-server run --config /etc/hamletnet/server.yaml
Restart=always
RestartSec=5
KillSignal=SIGTERM
TimeoutStopSec=30
StateDirectory=hamletnet
StateDirectoryMode=0750
# It listens on an unprivileged port and needs no capability at all.
CapabilityBoundingSet=
AmbientCapabilities=
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ReadWritePaths=/var/lib/hamletnet

[Install]
WantedBy=multi-user.target
UNIT

# Grafana from Grafana's apt repository (README) reads the read-only user from here.
dropin="$root/etc/systemd/system/grafana-server.service.d"
mkdir -p "$dropin"
printf '[Service]\nEnvironmentFile=/etc/hamletnet/grafana.env\n' > "$dropin/hamletnet.conf"

if [ "$real" -eq 1 ]; then
  chown root:root "$server_env" "$admin_env" "$grafana_env"
  chown root:"$user" "$etc/server.yaml"
  chown -R "$user:$user" "$data"
  systemctl daemon-reload
  systemctl enable hamletnet-server.service
  systemctl restart hamletnet-server.service
  systemctl --no-pager status hamletnet-server.service | head -5
  echo "installed; the admin token is HAMLETNET_ADMIN_TOKEN in $server_env"
  echo "add a probe: sudo -u $user env \$(sudo cat $server_env) hamletnet-server probe add" \
    "--config $etc/server.yaml --hamlet CODE --isp VNPT --access fiber"
else
  echo "staged under $root"
fi
