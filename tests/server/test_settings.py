"""Server configuration: every shipped file loads; each rule has an invalid case, by message."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.compliance.plan import load_plan
from server.errors import ConfigError
from server.settings import load_settings

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_server_config_loads(path: Path) -> None:
    if "probe" in path.name:
        pytest.skip("probe agent configuration, checked by the collector's tests")
    if path.name == "plan.yaml":
        assert load_plan(path).indicators, "the plan holds no indicators"
        return
    settings = load_settings(path)
    assert settings.hamlets, f"{path.name} defines no hamlets"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("listen_prot: 80\n", "listen_prot: unknown key"),
        ("influxdb:\n  url: http://x\n  databse: y\n", "influxdb.databse: unknown key"),
        ("influxdb:\n  url: ftp://x\n", "influxdb.url: 'ftp://x' must start with http://"),
        ("limits:\n  max_batch_items: 0\n", "limits.max_batch_items: Input should be greater"),
        ("listen_port: 70000\n", "listen_port: Input should be less than or equal to 65535"),
        ("admin_token: short\n", "admin_token: must be at least 16 characters"),
        ("hamlets:\n  - {code: a, name: A}\n  - {code: a, name: B}\n", "repeated: a"),
        ("hamlets:\n  - {code: 'thôn a', name: A}\n", "hamlets.0.code: String should match"),
        ("- just\n- a list\n", "must hold a mapping"),
        ("key: [unclosed\n", "is not valid YAML"),
    ],
)
def test_bad_settings_are_reported_by_name(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "server.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert expected in caught.value.detail


def test_environment_overrides_file_and_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("listen_port: 9000\nlimits:\n  burst: 5\n", encoding="utf-8")
    monkeypatch.setenv("HAMLETNET_LISTEN_PORT", "9100")
    monkeypatch.setenv("HAMLETNET_LIMITS__BURST", "7")
    monkeypatch.setenv("HAMLETNET_INFLUXDB__URL", "http://127.0.0.1:8086")
    monkeypatch.setenv("HAMLETNET_INFLUXDB__PASSWORD", "s3cret-value")
    settings = load_settings(path)
    assert settings.listen_port == 9100 and settings.limits.burst == 7
    assert settings.influxdb is not None and settings.influxdb.url == "http://127.0.0.1:8086"
    assert "s3cret-value" not in repr(settings)
    monkeypatch.setenv("HAMLETNET_LISTEN_PORT", "eighty")
    with pytest.raises(
        ConfigError, match=r"listen_port \(from HAMLETNET_LISTEN_PORT\): Input should be a valid"
    ):
        load_settings(path)
    monkeypatch.setenv("HAMLETNET_LISTEN_PORT", "80")
    monkeypatch.setenv("HAMLETNET_LISTN_HOST", "0.0.0.0")  # noqa: S104
    with pytest.raises(ConfigError, match="HAMLETNET_LISTN_HOST"):
        load_settings(path)


def test_relative_data_dir_is_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "server.yaml"
    path.write_text("data_dir: ../var\n", encoding="utf-8")
    assert load_settings(path).data_dir == tmp_path / "var"
