"""IPv6 readiness of the probe's line: one check per field, a test-ipv6.com-style score and two
verdicts (``readiness.run`` is the entry point; the scoring and parsers are pure)."""
