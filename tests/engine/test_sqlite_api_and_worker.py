"""SQLite with two processes: an API-only `serve --no-workers` and one `worker` on the same file.
The worker polls only every `poll_interval` (here far longer than the test waits), so a message
delivered within the wait was woken for by the API process's signal after its commit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.cli.runner import create_account_cli  # the command in-process: setup, not under test
from tests.processes import start_process, write_config
from tests.support import free_port, wait_until

SLOW_POLL = {"poll_interval": 60.0, "heartbeat_seconds": 1.0}


def _status(base: str, auth: tuple[str, str], omnimessage_id: str) -> list[str]:
    response = httpx.get(f"{base}/v1/omnimessage/{omnimessage_id}/status", auth=auth, timeout=5)
    assert response.status_code == 200, response.text
    return [item["status"] for item in response.json()["statuses"]]


def _healthy(base: str) -> bool:
    try:
        return httpx.get(base + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_an_api_process_wakes_the_worker_beside_it(tmp_path: Path) -> None:
    database = tmp_path / "relay.db"
    config = write_config(tmp_path / "omnirelay.toml", f"sqlite:///{database}", engine=SLOW_POLL,
                          sandbox={"delay_ms": 20})
    account = create_account_cli(config, "split")
    auth = (account["api_username"], account["api_password"])
    log = tmp_path / "processes.log"
    port = free_port()
    api = start_process(config, "serve", "--no-workers", port=port, log=log)
    worker = start_process(config, "worker", log=log)
    processes: list[Any] = [api, worker]
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _healthy(base), timeout=30)
        wait_until(lambda: "running" in log.read_text(), timeout=30)  # the worker's banner
        for round_ in range(3):
            sent = httpx.post(base + "/v1/omnimessage", auth=auth, timeout=5, json={
                "to": "+37255512345", "messages": [{"channel": "sms", "text": f"r{round_}"}]})
            assert sent.status_code == 201, sent.text
            omnimessage_id = sent.json()["omnimessage_id"]
            wait_until(lambda id_=omnimessage_id: "DELIVRD" in _status(base, auth, id_), timeout=15)
        assert worker.poll() is None and api.poll() is None
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(15)
    assert "Traceback" not in log.read_text()
