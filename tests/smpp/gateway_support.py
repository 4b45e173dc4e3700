"""The whole gateway against an SMSC over TCP: `omnirelay smsc` in a subprocess (with its control API),
a gateway whose sms channel is SMPP, and the Messente API calls the tests make."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support import LiveServer, free_port, make_settings, start_live_server, wait_until


@dataclass(frozen=True)
class CliSmsc:
    port: int
    control: str

    def stats(self) -> dict[str, Any]:
        return httpx.get(self.control + "/stats").json()  # type: ignore[no-any-return]


@contextlib.contextmanager
def cli_smsc(*args: str, port: int | None = None) -> Iterator[CliSmsc]:
    port, control = port or free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "omnirelay.cli", "smsc", "--port", str(port), "--control-port",
         str(control), "--user", "omni:secret-pw", "--receipt-delay", "0.05", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    smsc = CliSmsc(port, f"http://127.0.0.1:{control}")

    def up() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return httpx.get(smsc.control + "/stats").status_code == 200
        except (OSError, httpx.HTTPError):
            return False

    try:
        wait_until(up, timeout=20, interval=0.1)
        yield smsc
    finally:
        process.terminate()
        process.wait(10)


def smpp_gateway(database_url: str, *connectors: dict[str, Any]) -> LiveServer:
    return start_live_server(make_settings(database_url, channels={"sms": "smpp"},
                                           providers={"smpp": {"connectors": list(connectors)}}))


def smpp_connector(name: str, port: int, **overrides: Any) -> dict[str, Any]:
    return {"name": name, "host": "127.0.0.1", "port": port, "system_id": "omni",
            "password": "secret-pw", "reconnect_min": 0.2, **overrides}


def send(client: httpx.Client, live: LiveServer, account: Any, text: str, to: str) -> str:
    response = client.post(live.base_url + "/v1/omnimessage",
                           auth=(account.api_username, account.api_password),
                           json={"to": to, "messages": [{"channel": "sms", "text": text}]})
    assert response.status_code == 201, response.text
    return response.json()["omnimessage_id"]  # type: ignore[no-any-return]


def status(client: httpx.Client, live: LiveServer, account: Any, omnimessage_id: str) -> dict[str, Any]:
    report = client.get(f"{live.base_url}/v1/omnimessage/{omnimessage_id}/status",
                        auth=(account.api_username, account.api_password)).json()
    return report["statuses"][0]  # type: ignore[no-any-return]


def wait_final(client: httpx.Client, live: LiveServer, account: Any, omnimessage_id: str,
               timeout: float = 30) -> dict[str, Any]:
    return wait_until(lambda: (found := status(client, live, account, omnimessage_id))["status"]  # type: ignore[no-any-return]
                      is not None and found, timeout=timeout)
