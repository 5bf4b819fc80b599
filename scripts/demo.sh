#!/usr/bin/env bash
# The demo: the server on embedded SQLite, example hamlets and probes, real results over loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
# The demo plays the office's server and the hamlets' probes, so it needs both extras.
bash scripts/venv.sh server,probe
exec .venv/bin/hamletnet-server demo "$@"
