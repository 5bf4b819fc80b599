"""The measurement target: what hamletnet's bandwidth probes (and speedtest-cli, LibreSpeed
clients and browsers) download from and upload to."""
