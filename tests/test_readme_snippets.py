"""The README's SDK snippets run as printed against a live gateway and print what the README says
they print: the Messente SDK in Python (and in Node where its SDK is installed), the Twilio SDK,
and the local receiver its status callbacks go to."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import LiveServer, create_account, free_port, make_settings, start_live_server, wait_until

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
# The credentials and ports the README's snippets are written with.
API_USERNAME, API_PASSWORD = "0b0e8cd068f5237b", "_UsuwhR8Fyc_yU-NS4Q5gZpfXjo98U6i"
TWILIO_SID, TWILIO_TOKEN = "AC878cb55f2d5a4548a6bf6a7f20b17e30", "a357ddf75a45fa193df96a7509dbc565"
GATEWAY, RECEIVER = "127.0.0.1:8080", "127.0.0.1:9000"


def _blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(README.read_text())]


def _snippet(marker: str) -> tuple[str, str | None]:
    """The first code block containing `marker`, and the plain block after it (its output)."""
    blocks = _blocks()
    for index, (_, code) in enumerate(blocks):
        if marker in code:
            following = blocks[index + 1] if index + 1 < len(blocks) else None
            return code, following[1] if following and following[0] == "" else None
    raise AssertionError(f"README has no snippet containing {marker!r}")


def _pattern(expected: str) -> re.Pattern[str]:
    """The printed lines, with what differs from run to run (ids, times, elisions) left open."""
    lines = []
    for line in expected.strip().splitlines():
        pattern = re.escape(line)
        pattern = re.sub(r"[0-9a-f]{8}\\-[0-9a-f]{4}\\-[0-9a-f]{4}\\-[0-9a-f]{4}\\-[0-9a-f]{12}",
                         "[0-9a-f-]{36}", pattern)
        pattern = re.sub(r"SM[0-9a-f]{32}", "SM[0-9a-f]{32}", pattern)
        pattern = re.sub(r"RawDlrDoneDate=\d+", r"RawDlrDoneDate=\\d{10}", pattern)
        lines.append(pattern.replace("…", ".*?"))
    return re.compile("\n".join(lines) + "\n?")


def _local(code: str, gateway: LiveServer, receiver_port: int = 0) -> str:
    return (code.replace(GATEWAY, f"127.0.0.1:{gateway.port}")
                .replace(RECEIVER, f"127.0.0.1:{receiver_port}")
                .replace('("127.0.0.1", 9000)', f'("127.0.0.1", {receiver_port})'))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    path = tmp_path_factory.mktemp("readme") / "omnirelay.db"
    live = start_live_server(make_settings(f"sqlite:///{path}"))
    live.call(create_account(live.runtime, "dev", api_username=API_USERNAME,
                             api_password=API_PASSWORD, twilio_account_sid=TWILIO_SID,
                             twilio_auth_token=TWILIO_TOKEN, default_sender="omnirelay"))
    yield live
    live.stop()


def _run(argv: list[str], env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_python_messente_snippet_prints_what_the_readme_says(gateway: LiveServer) -> None:
    code, expected = _snippet("from messente_api import")
    assert expected is not None, "the Python snippet has no output block"
    printed = _run([sys.executable, "-c", _local(code, gateway)])
    assert _pattern(expected).fullmatch(printed), printed


def _node_sdk() -> str | None:
    """NODE_PATH under which `require('messente_api')` works, or None."""
    if shutil.which("node") is None:
        return None
    node_path = os.environ.get("OMNIRELAY_TEST_NODE_PATH", os.environ.get("NODE_PATH", ""))
    found = subprocess.run(["node", "-e", "require.resolve('messente_api')"], capture_output=True,
                           env={**os.environ, "NODE_PATH": node_path}, timeout=30)
    return node_path if found.returncode == 0 else None


def test_node_messente_snippet_prints_what_the_readme_says(gateway: LiveServer) -> None:
    node_path = _node_sdk()
    if node_path is None:
        pytest.skip("Node's messente_api SDK is not installed (npm install messente_api, then "
                    "OMNIRELAY_TEST_NODE_PATH=<its node_modules>); the suite does not install it")
    code, expected = _snippet("require('messente_api')")
    assert expected is not None, "the Node snippet has no output block"
    printed = _run(["node", "-e", _local(code, gateway)], env={**os.environ, "NODE_PATH": node_path})
    assert _pattern(expected).fullmatch(printed), printed


def test_twilio_snippet_and_its_local_receiver(gateway: LiveServer, tmp_path: Path) -> None:
    receiver_code, receiver_expected = _snippet("HTTPServer((\"127.0.0.1\", 9000)")
    code, expected = _snippet("from twilio.rest import Client")
    assert expected is not None and receiver_expected is not None
    assert f"http://{RECEIVER}/twilio-status" in code  # a local receiver, not a public host
    port = free_port()
    log = tmp_path / "receiver.out"
    with log.open("w") as out:
        receiver = subprocess.Popen([sys.executable, "-c", _local(receiver_code, gateway, port)],
                                    stdout=out, stderr=subprocess.PIPE, text=True)
    try:
        def listening() -> bool:
            assert receiver.poll() is None, receiver.stderr.read() if receiver.stderr else ""
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        wait_until(listening)
        printed = _run([sys.executable, "-c", _local(code, gateway, port)])
        assert _pattern(expected).fullmatch(printed), printed
        lines = wait_until(lambda: (text := log.read_text()).count("\n") >= 2 and text)
    finally:
        receiver.terminate()
        receiver.wait(10)
    assert _pattern(receiver_expected).fullmatch(lines), lines


def test_pattern_leaves_only_the_varying_parts_open() -> None:
    pattern = _pattern("c4dec16b-c690-4e8e-bc57-ae92cb8733ca\nviber UNDELIV 1\n")
    assert pattern.fullmatch("0f2a1c4e-1111-4e8e-bc57-ae92cb8733ca\nviber UNDELIV 1\n")
    assert not pattern.fullmatch("0f2a1c4e-1111-4e8e-bc57-ae92cb8733ca\nviber DELIVRD 0\n")
