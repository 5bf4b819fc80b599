"""Alerts to operators and the office: rules in config, a pure state machine per (rule, subject),
observation builders and Vietnamese messages. Delivery (a durable outbox through Apprise) and the
wiring into ingest come apart from these, so a slow channel never slows evaluation."""
