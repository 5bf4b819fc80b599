"""Tests of grafana/: dashboards as code, provisioning, and every query on a real influxd."""
