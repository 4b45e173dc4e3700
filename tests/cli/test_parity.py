"""The CLI checks what the operator API checks, with the same words: both go through
omnirelay.account_admin, so a value one refuses the other refuses too, and nothing is stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from omnirelay.cli import app
from omnirelay.config import load_settings
from tests.cli.runner import cli, create_account_cli
from tests.processes import write_config
from tests.support import start_live_server

TOKEN = "operator-token-for-the-parity-tests-0123456789"

# (API field, CLI option, value): each is refused by both, on create and on change.
REFUSED: list[tuple[str, str, Any]] = [
    ("dlr_url", "--dlr-url", "not-a-url"),
    ("dlr_url", "--dlr-url", "ftp://example.com/dlr"),
    ("dlr_url", "--dlr-url", "http://"),
    ("dlr_url", "--dlr-url", "http://user:secret@example.com/dlr"),
    ("dlr_url", "--dlr-url", "http://example.com/a b"),
    ("dlr_url", "--dlr-url", "http://example.com:0/dlr"),
    ("dlr_url", "--dlr-url", "http://example.com/" + "a" * 2100),
    ("inbound_url", "--inbound-url", "not-a-url"),
    ("inbound_url", "--inbound-url", "mailto:ops@example.com"),
    ("default_sender", "--sender", "x" * 22),
    ("default_sender", "--sender", "TwelveLetter"),
    ("default_sender", "--sender", "Café"),
    ("default_sender", "--sender", "Shop\x01"),
    ("default_sender", "--sender", ""),
    ("default_sender", "--sender", "+1234567890123456"),
    ("inbound_numbers", "--inbound-number", "+1"),
    ("inbound_numbers", "--inbound-number", ""),
    ("inbound_numbers", "--inbound-number", "x" * 65),
]
CREATE_ONLY: list[tuple[str, str, Any]] = [
    ("name", "", "x" * 101),
    ("password", "--password", "short"),
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, httpx.Client]]:
    tmp = tmp_path_factory.mktemp("parity")
    config = write_config(tmp / "omnirelay.toml", f"sqlite:///{tmp}/parity.db",
                          admin={"token": TOKEN})
    create_account_cli(config, "shop", "--sender", "Shop")
    # The gateway in a thread here: what is compared is the two surfaces' answers, not a process.
    gateway = start_live_server(load_settings(config, environ={}))
    try:
        with httpx.Client(base_url=gateway.base_url + "/admin/v1", timeout=10,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as admin:
            yield config, admin
    finally:
        gateway.stop()


def refused_by_cli(config: Path, *args: str) -> str:
    """The command's own code, run in this process: a refusal happens before anything a fresh
    interpreter would change (tests/cli/test_misconfiguration.py runs the real process), and
    starting one per case cost about 3 s each, most of this file's time."""
    result = CliRunner().invoke(app, [*args, "--config", str(config)])
    assert result.exit_code == 2, (args, result.stdout, result.stderr, result.exception)
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: "), line
    return line.removeprefix("error: ")


def api_detail(answer: httpx.Response) -> str:
    assert answer.status_code == 400, answer.text
    (error,) = answer.json()["errors"]
    return str(error["detail"])


def api_value(field: str, value: Any) -> Any:
    return [value] if field == "inbound_numbers" else value


@pytest.mark.parametrize(("field", "option", "value"), REFUSED,
                         ids=[f"{f}={v[:24]!r}" for f, _, v in REFUSED])
def test_account_set_refuses_what_the_api_refuses(
        gateway: tuple[Path, httpx.Client], field: str, option: str, value: str) -> None:
    config, admin = gateway
    before = admin.get("/accounts/shop").json()
    detail = api_detail(admin.patch("/accounts/shop", json={field: api_value(field, value)}))
    assert refused_by_cli(config, "account", "set", "shop", option, value) == detail
    assert admin.get("/accounts/shop").json() == before


@pytest.mark.parametrize(("field", "option", "value"), REFUSED + CREATE_ONLY,
                         ids=[f"{f}={v[:24]!r}" for f, _, v in REFUSED + CREATE_ONLY])
def test_account_create_refuses_what_the_api_refuses(
        gateway: tuple[Path, httpx.Client], field: str, option: str, value: str) -> None:
    config, admin = gateway
    name = value if field == "name" else "newshop"
    body = {"name": name} | ({} if field == "name" else {field: api_value(field, value)})
    detail = api_detail(admin.post("/accounts", json=body))
    args = ("account", "create", name) + (() if field == "name" else (option, value))
    assert refused_by_cli(config, *args) == detail
    assert [a["name"] for a in admin.get("/accounts").json()["accounts"]] == ["shop"]


def test_what_both_accept_is_stored_alike(gateway: tuple[Path, httpx.Client]) -> None:
    config, admin = gateway
    cli(config, "account", "set", "shop", "--sender", "+372 5550 0001", "--dlr-url",
        "https://hooks.example.com/dlr?x=1")
    shown = json.loads(cli(config, "account", "show", "shop", "--json"))
    assert (shown["default_sender"], shown["dlr_url"]) == (
        "+372 5550 0001", "https://hooks.example.com/dlr?x=1")
    assert admin.patch("/accounts/shop", json={"default_sender": "Shop"}).status_code == 200
    assert json.loads(cli(config, "account", "show", "shop", "--json"))["default_sender"] == "Shop"
