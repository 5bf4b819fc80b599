#!/usr/bin/env bash
# The whole test suite: installs what the tests need (Debian's influxdb, iperf3, ping, unbound,
# tayga, the Python dev extras), lints, type-checks, then runs pytest. Needs root (or sudo) for
# apt and for the network-namespace lab tests. Its last line is pytest's summary.
set -euo pipefail
cd "$(dirname "$0")/.."
# The lab's tools (ip, tc, sysctl, unbound, tayga) live in sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need=()
command -v influxd >/dev/null || need+=(influxdb)
command -v iperf3 >/dev/null || need+=(iperf3)
command -v ping >/dev/null || need+=(iputils-ping)
command -v ip >/dev/null || need+=(iproute2)
command -v unbound >/dev/null || need+=(unbound)
command -v tayga >/dev/null || need+=(tayga)  # the IPv6 lab's NAT64 (tests/lab/ipv6_lab.py)
# Second implementations the signature test vectors are checked with (tests/probes/vectors/).
command -v openssl >/dev/null || need+=(openssl)
command -v node >/dev/null || need+=(nodejs)
command -v chromium >/dev/null || need+=(chromium)  # the compliance page's browser test
command -v minisign >/dev/null || need+=(minisign)  # evidence exports verify with it (docs/evidence.md)
command -v pdftotext >/dev/null || need+=(poppler-utils)  # the PDFs' text and pages (pdftoppm)
if [ ${#need[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Debian's package may start its own influxd on :8086; the tests start their own instances.
bash scripts/venv.sh dev
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/pytest "$@"
