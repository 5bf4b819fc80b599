"""Probe configuration: the shipped example loads; each rule has an invalid case, by message."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.config import load_config
from collector.errors import ConfigError
from probes.models import Kind

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "probe.example.yaml"


def test_the_shipped_example_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.tls.verify is True
    assert config.schedules[Kind.LATENCY].targets
    assert config.upload.batch_size <= 1000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("spool:\n  max_byte: 5\n", "spool.max_byte: unknown key"),
        ("schedules:\n  latency: {every_s: 60, cron: '* * * * *', targets: ['a:1']}\n",
         "give exactly one of 'every_s' or 'cron'"),
        ("schedules:\n  latency: {targets: ['a:1']}\n", "give exactly one of 'every_s' or 'cron'"),
        ("schedules:\n  latency: {cron: 'every day', targets: ['a:1']}\n", "is not a crontab line"),
        ("schedules:\n  latency: {every_s: 60}\n", "latency.targets: give at least one target"),
        ("schedules:\n  latency: {every_s: 60, engine: tcp, targets: ['no-port']}\n",
         "must be HOST:PORT"),
        ("schedules:\n  latency: {every_s: -1, targets: ['a:1']}\n",
         "schedules.latency.every_s: Input should be greater than 0"),
        ("schedules:\n  teleport: {every_s: 60}\n", "schedules.teleport.[key]: Input should be"),
        ("upload:\n  batch_size: 5000\n", "upload.batch_size: Input should be less than or equal"),
        ("upload:\n  backoff_min_s: 10\n  backoff_max_s: 1\n", "backoff_max_s must be at least"),
        ("tls:\n  ca_bundle: /nonexistent/ca.pem\n", "tls.ca_bundle: /nonexistent/ca.pem is not a"),
        ("server_url: ftp://x\n", "server_url: 'ftp://x' must start with https://"),
        ("log_level: LOUD\n", "log_level: String should match pattern"),
    ],
)  # fmt: skip
def test_bad_probe_config_is_reported_by_name(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "probe.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert expected in str(caught.value)


def test_environment_overrides_and_unknown_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "probe.yaml"
    path.write_text("state_dir: state\nupload:\n  batch_size: 100\n", encoding="utf-8")
    monkeypatch.setenv("HAMLETNET_PROBE_UPLOAD__BATCH_SIZE", "250")
    config = load_config(path)
    assert config.upload.batch_size == 250
    assert config.state_dir == tmp_path / "state"
    monkeypatch.setenv("HAMLETNET_PROBE_SPOL__MAX_BYTES", "1")
    with pytest.raises(ConfigError, match="HAMLETNET_PROBE_SPOL__MAX_BYTES"):
        load_config(path)


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n"])
def test_an_empty_file_is_refused_not_run_on_defaults(tmp_path: Path, text: str) -> None:
    path = tmp_path / "probe.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"holds no settings .* write \{\} in it"):
        load_config(path)


def test_an_explicit_empty_mapping_means_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "probe.yaml"
    path.write_text("{}\n", encoding="utf-8")
    assert load_config(path).upload.batch_size == 500


def test_a_bad_environment_variable_is_blamed_on_itself_not_on_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "probe.yaml"
    path.write_text("upload:\n  batch_size: 100\n", encoding="utf-8")
    monkeypatch.setenv("HAMLETNET_PROBE_UPLOAD__EVERY_S", "-1")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "invalid probe configuration (environment):" in message
    assert str(path) not in message
    assert "upload.every_s (from HAMLETNET_PROBE_UPLOAD__EVERY_S): Input should be greater" in (
        message
    )
    path.write_text("upload:\n  batch_size: 5000\n", encoding="utf-8")  # and one from the file
    with pytest.raises(ConfigError) as both:
        load_config(path)
    assert f"({path}, environment):" in str(both.value)
    assert "  upload.batch_size: Input should be less than" in str(both.value)
