#!/usr/bin/env bash
# Create .venv (installing Debian's python3-venv if this machine lacks it) and install
# hamletnet into it with the extras given as $1 (e.g. "server" or "dev").
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -x .venv/bin/python ]; then
  if ! python3 -m venv .venv 2>/dev/null; then
    rm -rf .venv
    echo "python3 -m venv failed; installing Debian's python3-venv" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    python3 -m venv .venv
  fi
fi
.venv/bin/python -c 'import sys; assert sys.version_info >= (3, 11), "hamletnet needs Python >= 3.11"'
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[${extras}]"
