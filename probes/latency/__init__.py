"""Latency probes: round-trip times to a target by ICMP, TCP connect or HTTP."""
