"""Running the real `omnirelay` command as subprocesses, for crash and multi-worker tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support import free_port


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def write_config(path: Path, database_url: str, **sections: dict[str, Any]) -> Path:
    lines = [f"database_url = {toml_value(database_url)}", 'log_level = "warning"']
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in table.items())
    path.write_text("\n".join(lines) + "\n")
    return path


def cli(config: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "omnirelay.cli", *args, "--config",
                             str(config)], capture_output=True, text=True, timeout=60,
                            check=False, env={**os.environ})
    assert result.returncode == 0, result.stderr
    return result.stdout


def create_account_cli(config: Path, name: str, *extra: str) -> dict[str, Any]:
    return json.loads(cli(config, "account", "create", name, "--json", *extra))  # type: ignore[no-any-return]


def start_process(config: Path, *command: str, port: int | None = None,
                  log: Path | None = None) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "omnirelay.cli", *command, "--config", str(config)]
    if port is not None:
        args += ["--port", str(port)]
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ})


def start_gateway(config: Path, log: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = start_process(config, "serve", port=port, log=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"omnirelay serve exited with {process.returncode}")
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("omnirelay serve did not become healthy")
