"""IPv6 readiness of the probe's line: one check per field, a test-ipv6.com-style score and two
verdicts (``readiness.measure_ipv6`` is the entry point; the scoring and parsers are pure)."""
