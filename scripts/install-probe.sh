#!/usr/bin/env bash
# Install the hamletnet probe agent on Raspberry Pi OS (Bookworm), register it, and start it.
#
#   sudo bash scripts/install-probe.sh --server https://hamletnet.example.vn --token hn_...
#
# Installs into a virtualenv (/opt/hamletnet-probe), creates the unprivileged system user
# "hamletnet", writes /etc/hamletnet/probe.yaml (if absent) and a systemd unit that runs the agent
# as that user with only CAP_NET_RAW and CAP_NET_ADMIN (ICMP sockets, interface counters), then
# enables and starts it; /usr/local/bin/hamletnet-probe links to the agent. Run from a copy of
# this repository on the Pi.
# --root DIR stages everything under DIR instead (no user, no systemd): used by the tests.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
root="" server="" token="" start=1
while [ $# -gt 0 ]; do
  case "$1" in
    --server) server="$2"; shift 2 ;;
    --token) token="$2"; shift 2 ;;
    --root) root="$2"; start=0; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$root" ] || [ "$(id -u)" -eq 0 ] || { echo "run as root (sudo)" >&2; exit 2; }

user=hamletnet
venv="$root/opt/hamletnet-probe"
etc="$root/etc/hamletnet"
state="$root/var/lib/hamletnet-probe"
unit="$root/etc/systemd/system/hamletnet-probe.service"

if [ -z "$root" ]; then
  python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; }
  id "$user" >/dev/null 2>&1 || useradd --system --home-dir /var/lib/hamletnet-probe \
    --shell /usr/sbin/nologin "$user"
fi
python3 -c 'import sys; assert sys.version_info >= (3, 11), "the probe needs Python >= 3.11"'
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "$src[probe]"
# On everyone's PATH, so the README's commands ("hamletnet-probe status") work as written.
mkdir -p "$root/usr/local/bin"
ln -sfn /opt/hamletnet-probe/bin/hamletnet-probe "$root/usr/local/bin/hamletnet-probe"

mkdir -p "$etc" "$state"
chmod 0700 "$state"
if [ ! -f "$etc/probe.yaml" ]; then
  sed "s#^state_dir: .*#state_dir: /var/lib/hamletnet-probe#" \
    "$src/config/probe.example.yaml" > "$etc/probe.yaml"
  if [ -n "$server" ]; then  # measure latency to the server itself by default
    hostport="$(python3 - "$server" <<'PY'
import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
print(f"{u.hostname}:{u.port or (443 if u.scheme == 'https' else 80)}")
PY
)"
    sed -i "s#hamletnet.example.vn:443#${hostport}#" "$etc/probe.yaml"
  fi
fi

mkdir -p "$(dirname "$unit")"
cat > "$unit" <<UNIT
[Unit]
Description=hamletnet probe agent (Internet quality measurements for the commune)
Wants=network-online.target time-sync.target
After=network-online.target time-sync.target

[Service]
Type=simple
User=$user
Group=$user
ExecStart=/opt/hamletnet-probe/bin/hamletnet-probe --config /etc/hamletnet/probe.yaml run
Restart=always
RestartSec=10
KillSignal=SIGTERM
TimeoutStopSec=30
# Only what measuring needs: raw/ICMP sockets and reading/setting network interfaces.
AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN
CapabilityBoundingSet=CAP_NET_RAW CAP_NET_ADMIN
NoNewPrivileges=yes
StateDirectory=hamletnet-probe
StateDirectoryMode=0700
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
ReadWritePaths=/var/lib/hamletnet-probe

[Install]
WantedBy=multi-user.target
UNIT

if [ "$start" -eq 1 ]; then
  chown -R "$user:$user" "$state"
  if [ -n "$token" ]; then
    [ -n "$server" ] || { echo "--token needs --server" >&2; exit 2; }
    runuser -u "$user" -- "$venv/bin/hamletnet-probe" --config "$etc/probe.yaml" \
      register --server "$server" --token "$token"
  fi
  systemctl daemon-reload
  systemctl enable --now hamletnet-probe.service
  systemctl --no-pager status hamletnet-probe.service | head -5
  # status.json lives in the agent's own 0700 state directory: read it as the agent's user.
  echo "installed; 'sudo -u $user hamletnet-probe status' shows what it does"
else
  echo "staged under $root"
fi
