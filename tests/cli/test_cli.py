"""The `omnirelay` command as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

import omnirelay
from omnirelay.config import load_settings
from tests import processes
from tests.cli.runner import cli, cli_fails, create_account_cli
from tests.processes import start_gateway, write_config
from tests.support import LiveServer, WebhookReceiver, start_live_server, wait_until


def live_gateway(config: Path) -> LiveServer:
    """The gateway the configuration file describes, in a thread of this process: for tests of
    what it does with what a command stored, not of `omnirelay serve` as a process."""
    return start_live_server(load_settings(config, environ={}))


def test_account_create_list_rotate_and_set(tmp_path: Path) -> None:
    config = write_config(tmp_path / "omnirelay.toml", f"sqlite:///{tmp_path}/cli.db")
    # The real command once (a fresh process, the database created from nothing); the rest of the
    # CLI tests run the commands' code in this process.
    created = processes.create_account_cli(config, "shop", "--password", "s3cret-password",
                                           "--sender", "Shop", "--inbound-number",
                                           "+37255500001")
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


def test_account_replacement_table_drives_autoconvert_and_smart_encoding(tmp_path: Path) -> None:
    config = write_config(tmp_path / "omnirelay.toml", f"sqlite:///{tmp_path}/table.db",
                          sandbox={"delay_ms": 10})
    account = create_account_cli(config, "shop")
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"ж": "zh"}))
    cli(config, "account", "set", "shop", "--replacements", str(table))
    # 159 GSM characters and a Cyrillic letter: UCS-2 in 3 parts with the built-in table (it has
    # no answer for ж), GSM-7 in 2 parts ("zh" makes 161 septets) with the account's table.
    text = "x" * 159 + "ж"
    auth = (account["api_username"], account["api_password"])
    twilio_auth = (account["twilio_account_sid"], account["twilio_auth_token"])
    messages = f"/2010-04-01/Accounts/{account['twilio_account_sid']}/Messages.json"
    gateway = live_gateway(config)
    try:
        base = gateway.base_url
        sent = httpx.post(base + "/v1/omnimessage", auth=auth, json={
            "to": "+37255512345", "messages": [{"channel": "sms", "text": text}]})
        assert sent.status_code == 201, sent.text
        status_url = f"{base}/v1/omnimessage/{sent.json()['omnimessage_id']}/status"

        def reported() -> dict[str, Any] | None:
            item: dict[str, Any] = httpx.get(status_url, auth=auth).json()["statuses"][0]
            return item if item["status"] is not None else None

        item = wait_until(reported)
        assert item["price_info"]["parts_count"] == 2
        smart = httpx.post(base + messages, auth=twilio_auth, data={
            "To": "+37255512345", "From": "Shop", "Body": text, "SmartEncoded": "true"})
        plain = httpx.post(base + messages, auth=twilio_auth, data={
            "To": "+37255512345", "From": "Shop", "Body": text})
        assert (smart.json()["num_segments"], plain.json()["num_segments"]) == ("2", "3")
    finally:
        gateway.stop()

    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"ab": "x"}))
    result = cli_fails(config, "account", "set", "shop", "--replacements", str(broken))
    assert result.exit_code == 2
    assert "single characters" in result.stderr
    cli(config, "account", "set", "shop", "--replacements", "default")
    gateway = live_gateway(config)
    try:
        plain_again = httpx.post(gateway.base_url + messages, auth=twilio_auth, data={
            "To": "+37255512345", "From": "Shop", "Body": text, "SmartEncoded": "true"})
        assert plain_again.json()["num_segments"] == "3"
    finally:
        gateway.stop()


def test_version_and_shell_completion() -> None:
    version = subprocess.run([sys.executable, "-m", "omnirelay.cli", "--version"],
                             capture_output=True, text=True, timeout=60, check=True)
    assert version.stdout == f"omnirelay {omnirelay.__version__}\n"
    script = Path(sys.executable).with_name("omnirelay")
    completion = subprocess.run([str(script), "--show-completion", "bash"], capture_output=True,
                                text=True, timeout=60, check=True)
    assert "_OMNIRELAY_COMPLETE" in completion.stdout
    words = subprocess.run([str(script)], capture_output=True, text=True, timeout=60,
                           check=False, env={**os.environ, "_OMNIRELAY_COMPLETE": "complete_bash",
                                             "COMP_WORDS": "omnirelay acc", "COMP_CWORD": "1"})
    assert words.stdout.split() == ["account"]


def test_a_shared_port_answers_without_waiting_for_delayed_acks() -> None:
    """serve --reuse-port binds its own socket; uvloop does not set TCP_NODELAY on sockets it did
    not bind, so the listener carries it (accepted sockets inherit it on Linux)."""
    import socket

    from omnirelay.cli import _listening_socket

    listener = _listening_socket("127.0.0.1", 0)
    try:
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        accepted.close()
        client.close()
    finally:
        listener.close()


def test_account_show_disable_enable_delete(tmp_path: Path) -> None:
    config = write_config(tmp_path / "omnirelay.toml", f"sqlite:///{tmp_path}/cli.db")
    created = create_account_cli(config, "shop", "--inbound-number", "+37255500001",
                                 "--dlr-url", "https://hooks.example.com/" + "d" * 300)
    shown = json.loads(cli(config, "account", "show", "shop", "--json"))
    assert (shown["state"], shown["inbound_numbers"]) == ("active", ["+37255500001"])
    # The whole account: every credential, the URLs uncut.
    assert {k: shown[k] for k in created} == created
    text = cli(config, "account", "show", "shop")
    assert f"api_password         {created['api_password']}\n" in text
    assert f"dlr_url              {created['dlr_url']}\n" in text
    listed = json.loads(cli(config, "account", "list", "--json"))
    assert listed[0]["dlr_url"] == created["dlr_url"]
    cli(config, "account", "disable", "shop")
    assert json.loads(cli(config, "account", "show", "shop", "--json"))["state"] == "disabled"
    cli(config, "account", "enable", "shop")
    assert json.loads(cli(config, "account", "show", "shop", "--json"))["state"] == "active"
    cli(config, "account", "delete", "shop", "--yes")
    missing = cli_fails(config, "account", "show", "shop")
    assert missing.exit_code == 1
    assert missing.stderr.strip() == "error: no account named 'shop'"
    assert json.loads(cli(config, "account", "list", "--json")) == []
    create_account_cli(config, "shop")  # the name is free again
    bad = cli_fails(config, "account", "rotate", "shop", "--what", "[everything]")
    assert bad.exit_code == 2 and "[everything]" not in bad.stderr  # the choices, not markup
    assert "all, api-password" in bad.stderr


def test_messages_and_webhooks_commands_read_and_redeliver(tmp_path: Path,
                                                           receiver: WebhookReceiver) -> None:
    config = write_config(tmp_path / "omnirelay.toml", f"sqlite:///{tmp_path}/cli.db",
                          sandbox={"delay_ms": 20}, webhooks={"max_tries": 1})
    account = create_account_cli(config, "shop")
    receiver.status = 503
    gateway = live_gateway(config)
    try:
        base = gateway.base_url
        sent = httpx.post(base + "/v1/omnimessage", auth=(account["api_username"],
                                                          account["api_password"]),
                          json={"to": "+37255512345", "dlr_url": receiver.url + "/dlr",
                                "messages": [{"channel": "sms", "text": "hi"}]})
        assert sent.status_code == 201, sent.text
        omnimessage_id = sent.json()["omnimessage_id"]

        def dead() -> list[dict[str, Any]]:
            return json.loads(cli(config, "webhooks", "list", "--account", "shop", "--state",
                                  "dead", "--json"))  # type: ignore[no-any-return]

        dead_ones = wait_until(dead)
        assert [w["omnimessage_id"] for w in dead_ones] == [omnimessage_id]
        listed = json.loads(cli(config, "messages", "list", "--account", "shop", "--json"))
        assert [m["omnimessage_id"] for m in listed] == [omnimessage_id]
        assert listed[0]["attempts"][0]["status"] == "DELIVRD"
        whole = json.loads(cli(config, "messages", "show", omnimessage_id))
        assert [e["event"] for e in whole["attempts"][0]["timeline"]] == ["submitted", "status"]
        assert whole["reports"][0]["state"] == "dead"
        assert cli_fails(config, "messages", "list", "--account", "shop", "--status",
                         "nope").exit_code == 2

        receiver.status = 200
        out = cli(config, "webhooks", "redeliver", "--account", "shop")
        assert out.strip() == "1 callback(s) queued again"
        wait_until(lambda: receiver.received)
        assert receiver.received[0].json()["omnimessage_id"] == omnimessage_id
    finally:
        gateway.stop()
