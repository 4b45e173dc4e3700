"""The `omnirelay` command's code run in this process (typer's CliRunner), for tests about what a
command does rather than about the process: a fresh interpreter costs about 2-4 s of imports here,
most of a CLI test's time. What only a real process shows (start-up, signals, the console script,
one line on stderr and nothing else) stays with tests.processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import Result
from typer.testing import CliRunner

from omnirelay.cli import app


def invoke(config: Path, *args: str) -> Result:
    """Run `omnirelay ARGS --config CONFIG`; stdout and stderr kept apart, as a process's are."""
    return CliRunner().invoke(app, [*args, "--config", str(config)])


def cli(config: Path, *args: str) -> str:
    """The command's stdout; it must succeed."""
    result = invoke(config, *args)
    assert result.exit_code == 0, (args, result.stderr, result.exception)
    return result.stdout


def cli_fails(config: Path, *args: str) -> Result:
    """The command's result; it must fail with an exit status (not an uncaught exception)."""
    result = invoke(config, *args)
    assert result.exit_code != 0, (args, result.stdout)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args, result.exception)
    return result


def create_account_cli(config: Path, name: str, *extra: str) -> dict[str, Any]:
    return json.loads(cli(config, "account", "create", name, "--json", *extra))  # type: ignore[no-any-return]
