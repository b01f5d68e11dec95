"""Config: validated at start-up, errors name the bad key, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from zcp.config import load_config, parse_config
from zcp.errors import ConfigError

CS = {"url": "http://127.0.0.1:8080/client/api", "api_key": "k", "secret_key": "s"}


def test_defaults_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZCP_OBS_CONFIG", raising=False)
    cfg = load_config(None)
    assert cfg.inventory.source == "file" and cfg.inventory.file is None
    assert cfg.cloudstack is None and cfg.logging.loki is None


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config({"inventory": {"refresh_intervall_seconds": 5}}, "site.yaml")
    assert str(exc.value) == (
        "invalid config site.yaml: inventory.refresh_intervall_seconds: unknown key"
    )


def test_bad_values_are_named_with_the_reason() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(
            {
                "cloudstack": {**CS, "url": "cloud.example.com", "timeout_seconds": 0},
                "inventory": {"storage_classes": {"ceph-ssd": "turbo"}},
            }
        )
    msg = str(exc.value)
    assert "cloudstack.url: must start with http:// or https://" in msg
    assert "cloudstack.timeout_seconds: Input should be greater than or equal to 1" in msg
    assert "inventory.storage_classes.ceph-ssd: Input should be 'fast', 'flow' or 'bulk'" in msg


def test_missing_required_key() -> None:
    with pytest.raises(ConfigError, match=r"cloudstack\.secret_key: Field required"):
        parse_config({"cloudstack": {"url": CS["url"], "api_key": "k"}})


def test_secrets_from_env_and_file_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("file-secret-value\n")
    monkeypatch.setenv("CS_KEY", "env-key-value")
    cfg = parse_config(
        {
            "cloudstack": {
                **CS,
                "api_key": {"env": "CS_KEY"},
                "secret_key": {"file": str(secret_file)},
            }
        }
    )
    assert cfg.cloudstack is not None
    assert cfg.cloudstack.api_key.get_secret_value() == "env-key-value"
    assert cfg.cloudstack.secret_key.get_secret_value() == "file-secret-value"
    shown = repr(cfg) + str(cfg) + cfg.model_dump_json()
    assert "env-key-value" not in shown and "file-secret-value" not in shown


def test_secret_references_that_do_not_resolve(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"cloudstack\.api_key: environment variable "
        "'NOPE_NOT_SET' is not set",
    ):
        parse_config({"cloudstack": {**CS, "api_key": {"env": "NOPE_NOT_SET"}}})
    with pytest.raises(ConfigError, match=r"cloudstack\.secret_key: cannot read secret file"):
        parse_config({"cloudstack": {**CS, "secret_key": {"file": str(tmp_path / "no")}}})


def test_yaml_errors_and_unreadable_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("inventory:\n  source: [file\n")
    with pytest.raises(ConfigError, match=r"invalid config .*bad.yaml: line \d+"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(listy)


def test_loki_url_gets_the_push_path() -> None:
    cfg = parse_config({"logging": {"loki": {"url": "http://loki:3100"}}})
    assert cfg.logging.loki is not None
    assert cfg.logging.loki.url == "http://loki:3100/loki/api/v1/push"


def test_metering_gap_rules_must_be_ordered() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config({"metering": {"max_gap_seconds": 7200}}, "site.yaml")
    assert str(exc.value) == (
        "invalid config site.yaml: metering: needs "
        "scrape_interval_seconds <= max_gap_seconds <= "
        "max_outage_seconds"
    )
    assert (
        parse_config(
            {"metering": {"max_gap_seconds": 7200, "max_outage_seconds": 7200}}
        ).metering.max_gap_seconds
        == 7200
    )
