"""Server configuration: every shipped file loads; each rule has an invalid case, by message."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from server import compliance
from server.alerts.config import load_alerts
from server.compliance.plan import load_plan
from server.errors import ConfigError
from server.settings import DEFAULT_COMMUNE_CODE, bundled_plan_path, load_settings

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_server_config_loads(path: Path) -> None:
    if "probe" in path.name:
        pytest.skip("probe agent configuration, checked by the collector's tests")
    if path.name == "plan.yaml":
        assert load_plan(path).indicators, "the plan holds no indicators"
        return
    if path.name.startswith("alerts"):
        assert load_alerts(path).rules, f"{path.name} defines no alert rules"
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
        (
            "communes:\n  - {code: x, name: X}\n  - {code: x, name: Y}\n",
            "communes: commune codes must be unique; repeated: x",
        ),
        ("communes:\n  - {code: x}\n", "communes.0.name: Field required"),
        (
            "communes:\n  - {code: x, name: X}\nhamlets:\n  - {code: a, name: A, commune: y}\n",
            "hamlets.0.commune: 'y' is not a configured commune; known: x",
        ),
        (
            "communes:\n  - {code: x, name: X}\n  - {code: y, name: Y}\n"
            "hamlets:\n  - {code: a, name: A}\n",
            "hamlets.0.commune: missing; with several communes configured",
        ),
        (
            "hamlets:\n  - {code: a, name: A, commune: y}\n",
            "hamlets.0.commune: 'y' is not a configured commune; known: none",
        ),
        (
            "hamlets:\n  - {code: a, name: A, lat: 91, lon: 1}\n",
            "hamlets.0.lat: Input should be less",
        ),
        (
            "hamlets:\n  - {code: a, name: A, lat: 1, lon: -181}\n",
            "hamlets.0.lon: Input should be greater",
        ),
        ("hamlets:\n  - {code: a, name: A, lat: 1}\n", "hamlets.0: lat and lon go"),
        (
            "hamlets:\n  - {code: a, name: A, population: 10, adults: 11}\n",
            "hamlets.0: adults (11) cannot exceed population (10)",
        ),
        ("hamlets:\n  - {code: a, name: A, adults: -1}\n", "hamlets.0.adults: Input should be"),
        (
            "hamlets:\n  - {code: a, name: A, isps: [VNPT, VNPT]}\n",
            "hamlets.0.isps: ISPs must be listed once; repeated: VNPT",
        ),
        ("hamlets:\n  - {code: a, name: A, isps: ['']}\n", "hamlets.0.isps.0: String should"),
        ("hamlets:\n  - {code: a, name: A, comune: x}\n", "hamlets.0.comune: unknown key"),
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


def test_one_commune_is_every_hamlets_default(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text(
        "communes:\n  - {code: hiep-luc, name: Xã Hiệp Lực}\n"
        "hamlets:\n  - {code: a, name: Thôn A}\n  - {code: b, name: Thôn B, commune: hiep-luc}\n",
        encoding="utf-8",
    )
    settings = load_settings(path)
    assert [h.commune for h in settings.hamlets] == ["hiep-luc", "hiep-luc"]
    assert settings.commune("hiep-luc").name == "Xã Hiệp Lực"


def test_a_file_from_before_communes_still_loads_into_one_commune(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("hamlets:\n  - {code: a, name: Thôn A, households: 3}\n", encoding="utf-8")
    settings = load_settings(path)
    assert [c.code for c in settings.communes] == [DEFAULT_COMMUNE_CODE]
    assert settings.hamlets[0].commune == DEFAULT_COMMUNE_CODE


def test_hamlet_facts_are_kept(tmp_path: Path) -> None:
    settings = load_settings(CONFIG_DIR / "hiep-luc.yaml")
    assert [c.name for c in settings.communes] == ["Xã Hiệp Lực"]
    for hamlet in settings.hamlets:
        assert hamlet.commune == "hiep-luc"
        assert hamlet.population and hamlet.adults and hamlet.households and hamlet.isps
        assert hamlet.lat is not None and hamlet.lon is not None


def test_plan_file_is_relative_to_the_file_and_defaults_to_the_bundled_plan(
    tmp_path: Path,
) -> None:
    assert load_settings(None).plan_path == bundled_plan_path()
    assert load_plan(bundled_plan_path()).indicators
    assert bundled_plan_path().read_bytes() == (CONFIG_DIR / "plan.yaml").read_bytes()
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "server.yaml"
    path.write_text("plan_file: my-plan.yaml\n", encoding="utf-8")
    assert load_settings(path).plan_path == tmp_path / "etc" / "my-plan.yaml"


def test_the_bundled_plan_is_package_data() -> None:
    """A pip-installed server finds the plan: pyproject ships it inside ``server.compliance``
    (a link to config/plan.yaml in the checkout; building a wheel copies the file)."""
    project = tomllib.loads((CONFIG_DIR.parent / "pyproject.toml").read_text(encoding="utf-8"))
    assert "compliance/plan.yaml" in project["tool"]["setuptools"]["package-data"]["server"]
    assert bundled_plan_path().parent == Path(compliance.__file__).parent
