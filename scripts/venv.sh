#!/usr/bin/env bash
# Create .venv (installing Debian's python3-venv if this machine lacks it) and install
# hamletnet into it with the extras given as $1 (e.g. "server" or "dev"; "dev" holds them all).
# The install is editable, so only a changed pyproject.toml needs another one: a stamp in .venv
# records its hash and the extras installed, and a venv that already has them is left alone
# (no network needed to start the demo again).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
stamp=.venv/.hamletnet-installed
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

hash="$(sha256sum pyproject.toml | cut -d' ' -f1)"
have=""  # the extras already installed from this very pyproject.toml
if [ -f "$stamp" ] && [ "$(head -n1 "$stamp")" = "$hash" ]; then
  have="$(sed -n 2p "$stamp")"
fi
missing=""
for extra in ${extras//,/ }; do
  case " $have " in
    *" $extra "*) ;;
    *) missing="$missing $extra" ;;
  esac
done
if [ -z "$missing" ]; then
  exit 0  # up to date
fi

.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[${extras}]"
installed="$have ${extras//,/ }"
case " $installed " in *" dev "*) installed="$installed probe server" ;; esac  # dev holds both
# shellcheck disable=SC2086  # split on purpose: one extra per line
printf '%s\n%s\n' "$hash" "$(printf '%s\n' $installed | sort -u | xargs)" > "$stamp"
