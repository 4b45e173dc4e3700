"""Configuration: TOML file, OMNIRELAY_* overrides, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnirelay.config import DEV_SECRET_KEY, load_settings
from omnirelay.errors import ConfigError


def test_defaults_need_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.database_url == "sqlite:///omnirelay.db"
    assert (settings.host, settings.port, settings.mode) == ("127.0.0.1", 8080, "development")
    assert settings.provider_for("sms") == "sandbox"


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text('port = 9000\n[engine]\nbatch_size = 50\n[webhooks]\nmax_tries = 3\n')
    settings = load_settings(config, environ={"OMNIRELAY_ENGINE__BATCH_SIZE": "70",
                                              "OMNIRELAY_LOG_LEVEL": "debug"},
                             overrides={"port": 9100})
    assert settings.engine.batch_size == 70
    assert settings.webhooks.max_tries == 3
    assert settings.log_level == "debug"
    assert settings.port == 9100


def test_omnirelay_toml_in_the_working_directory_is_read(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "omnirelay.toml").write_text('port = 9300\n')
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ={}).port == 9300


@pytest.mark.parametrize(("text", "message"), [
    ("prot = 1\n", "bad.toml: prot: unknown setting; did you mean port?"),
    ("port = 'eighty'\n", "bad.toml: port: must be an integer, not 'eighty'"),
    ("[engine]\nbatch = 1\n", "[engine] batch: unknown setting; did you mean batch_size?"),
    ("[engine]\nzzz = 1\n", "[engine] zzz: unknown setting (known: batch_size, "),
    ("[engin]\nbatch_size = 1\n", "[engin]: unknown section; did you mean [engine]?"),
    ("[engine]\nport = 1\n", "[engine] port: unknown setting; port is a top-level setting"),
    ("[webhooks]\nmax_tries = 0\n", "[webhooks] max_tries: must be 1 or more"),
    ("[engine]\nclaim_linger = 5\n", "[engine] claim_linger: must be from 0 to 1 second"),
    ("[server]\nmax_headers = 0\n", "[server] max_headers: must be positive"),
    ("[retention]\ninbound_days = -1\n", "[retention] inbound_days: must be 0"),
    ("mode = 'production'\n", "secret_key: required in production"),
    ("database_url = 'mysql://u:hunter2@x/db'\n", "database_url: must be sqlite:///PATH"),
    ("public_url = 'example.com'\n", "public_url: must be the http or https URL"),
    ("log_level = 'loud'\n", "log_level: must be one of debug, info"),
    ("[channels]\nsms = 'smpp'\n", "[channels] sms = 'smpp', but there is no [providers.smpp]"),
    ("[channels]\nfax = 'sandbox'\n", "[channels] fax: unknown channel"),
    ("[channels]\nsms = 1\n", "[channels] sms: must be a provider's name"),
    ("[providers]\nsmpp = 1\n", "[providers] smpp: must be a table"),
    ("port = \n", "bad.toml: not valid TOML"),
])
def test_mistakes_are_named(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_settings(config, environ={})
    assert message in str(error.value)
    assert "hunter2" not in str(error.value)  # a database password is never echoed


def test_an_environment_variable_is_named_as_the_place_to_fix(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text("port = 9000\n")
    with pytest.raises(ConfigError) as error:
        load_settings(config, environ={"OMNIRELAY_WEBHOOKS__MAX_TRIE": "3"})
    assert str(error.value) == ("OMNIRELAY_WEBHOOKS__MAX_TRIE: [webhooks] max_trie: unknown "
                                "setting; did you mean max_tries?")
    with pytest.raises(ConfigError) as error:
        load_settings(config, environ={}, overrides={"port": 70000})
    assert str(error.value).startswith("--port: port: must be from 1 to 65535")


def test_production_with_a_secret_key(tmp_path: Path) -> None:
    settings = load_settings(None, environ={"OMNIRELAY_MODE": "production",
                                            "OMNIRELAY_SECRET_KEY": "x" * 32,
                                            "OMNIRELAY_DATABASE_URL": "sqlite:///t.db"})
    assert settings.is_production and settings.secret_key != DEV_SECRET_KEY


def test_the_test_suites_variables_are_not_settings(tmp_path: Path) -> None:
    settings = load_settings(None, environ={"OMNIRELAY_TEST_REQUIRE_POSTGRES": "1",
                                            "OMNIRELAY_TEST_POSTGRES_URL": "postgresql://x/y"})
    assert settings.port == 8080
