"""The `omnirelay` command as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.processes import cli, create_account_cli, start_gateway, write_config


def test_account_create_list_rotate_and_set(tmp_path: Path) -> None:
    config = write_config(tmp_path / "omnirelay.toml", f"sqlite:///{tmp_path}/cli.db")
    created = create_account_cli(config, "shop", "--password", "s3cret-password",
                                 "--sender", "Shop", "--inbound-number", "+37255500001")
    assert created["api_password"] == "s3cret-password"
    assert created["default_sender"] == "Shop"
    assert set(created) >= {"api_username", "twilio_account_sid", "twilio_auth_token",
                            "inbound_secret"}
    listed = json.loads(cli(config, "account", "list", "--json"))
    assert [a["name"] for a in listed] == ["shop"]
    assert "s3cret-password" not in json.dumps(listed)
    rotated = json.loads(cli(config, "account", "rotate", "shop", "--what", "api-password",
                             "--json"))
    assert rotated["api_password"] != "s3cret-password"
    assert rotated["twilio_auth_token"] == created["twilio_auth_token"]
    cli(config, "account", "set", "shop", "--dlr-url", "http://127.0.0.1:9/dlr")
    assert json.loads(cli(config, "account", "list", "--json"))[0]["dlr_url"] == \
        "http://127.0.0.1:9/dlr"


def test_serve_creates_and_prints_a_dev_account_once_and_serves_docs(tmp_path: Path) -> None:
    config = write_config(tmp_path / "omnirelay.toml", f"sqlite:///{tmp_path}/serve.db")
    log = tmp_path / "serve.log"
    process, base = start_gateway(config, log)
    try:
        output = log.read_text()
        assert "Development account created" in output
        username = next(line.split()[1] for line in output.splitlines()
                        if line.strip().startswith("api_username"))
        password = next(line.split()[1] for line in output.splitlines()
                        if line.strip().startswith("api_password"))
        sent = httpx.post(base + "/v1/omnimessage", auth=(username, password),
                          json={"to": "+37255512345", "messages": [{"channel": "sms",
                                                                    "text": "hi"}]})
        assert sent.status_code == 201
        assert httpx.get(base + "/docs").status_code == 200
        spec = httpx.get(base + "/openapi.json").json()
        assert "/v1/omnimessage" in spec["paths"]
    finally:
        process.terminate()
        process.wait(10)
    process, base = start_gateway(config, log)
    try:
        assert log.read_text().count("Development account created") == 1
    finally:
        process.terminate()
        process.wait(10)
