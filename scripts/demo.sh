#!/usr/bin/env bash
# The demo: the server on embedded SQLite, example hamlets and probes, real results over loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh server
exec .venv/bin/hamletnet-server demo "$@"
