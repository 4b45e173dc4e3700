"""Every expected failure at start: one line on stderr that names the cause and where the fix goes,
a non-zero exit status, and no traceback (that takes --debug).

Each case runs `main()`, what the `omnirelay` command runs, in this process with its own argv,
environment, stdout and stderr (`run_here`): a fresh interpreter costs 2-4 s of imports here. A
kind of each failure also runs as the real process (`run`), for what only a process shows: that
nothing else reaches stderr (a warning at import, a log line) and the interpreter's exit status."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import pytest

from omnirelay.cli import main
from tests.cli.runner import cli
from tests.conftest import POSTGRES_URL, postgres_available
from tests.processes import start_gateway, write_config
from tests.support import wait_until


@dataclass(frozen=True)
class Case:
    toml: str  # the configuration file's text; {db} is a fresh SQLite URL
    status: int
    expected: tuple[str, ...]  # each must appear in the one line
    command: tuple[str, ...] = ("serve",)
    environ: dict[str, str] = field(default_factory=dict)
    needs_postgres: bool = False


SMPP = '[channels]\nsms = "smpp"\n[providers.smpp]\nconnectors = [{{name = "sim", ' \
       'host = "127.0.0.1", port = 1, system_id = "{system_id}"}}]\n'

CASES: dict[str, Case] = {
    "unknown key with a close match": Case(
        "[engine]\nbatchsize = 100\n", 2, ("omnirelay.toml", "[engine] batchsize",
                                           "unknown setting", "did you mean batch_size?")),
    "unknown top-level key": Case(
        "prot = 9000\n", 2, ("omnirelay.toml", "prot", "did you mean port?")),
    "unknown section": Case(
        "[engin]\nbatch_size = 100\n", 2, ("[engin]", "unknown section",
                                           "did you mean [engine]?")),
    "top-level key inside a section": Case(
        "[engine]\nport = 9000\n", 2, ("[engine] port", "top-level setting",
                                       "above the first [section]")),
    "wrong type, top level": Case(
        'port = "eighty"\n', 2, ("omnirelay.toml", "port", "must be an integer", "'eighty'")),
    "wrong type in a section": Case(
        '[webhooks]\nmax_tries = "ten"\n', 2, ("[webhooks] max_tries", "must be an integer")),
    "missing connector": Case(
        '[channels]\nsms = "smpp"\n', 2, ("[channels] sms", "no [providers.smpp]",
                                          '"sandbox"')),
    "unknown channel": Case(
        '[channels]\nsmss = "sandbox"\n', 2, ("[channels] smss", "unknown channel",
                                              "did you mean sms?")),
    "bad database URL": Case(
        'database_url = "mysql://root@localhost/relay"\n', 2, ("database_url",
                                                               "sqlite:///", "postgresql://")),
    "bad public URL": Case(
        'public_url = "sms.example.com"\n', 2, ("public_url", "http or https")),
    "bad mode": Case(
        'mode = "prod"\n', 2, ("mode", "'development' or 'production'", "'prod'")),
    "bad log level": Case(
        'log_level = "verbose"\n', 2, ("log_level", "debug, info, warning")),
    "production without a secret key": Case(
        'mode = "production"\n', 2, ("secret_key", "production", "OMNIRELAY_SECRET_KEY")),
    "short admin token": Case(
        '[admin]\ntoken = "short"\n', 2, ("[admin] token", "at least 24")),
    "port out of range": Case(
        "port = 70000\n", 2, ("port", "65535")),
    "bad TOML syntax": Case(
        "port = \n", 2, ("omnirelay.toml", "not valid TOML", "line 2")),
    "from the environment": Case(
        "", 2, ("OMNIRELAY_ENGINE__BATCHSIZE", "[engine] batchsize", "did you mean batch_size?"),
        environ={"OMNIRELAY_ENGINE__BATCHSIZE": "100"}),
    "too-long SMPP system_id": Case(
        SMPP.format(system_id="x" * 16), 2, ("omnirelay.toml", "providers.smpp",
                                              "system_id", "at most 15")),
    "unknown provider type": Case(
        '[channels]\nsms = "gsm"\n[providers.gsm]\ntype = "modem"\n', 2, (
            "[providers.gsm] type", "'modem'", "smpp")),
    "upstream without its token": Case(
        '[channels]\nwhatsapp = "whatsapp_cloud"\n[providers.whatsapp_cloud]\n'
        'phone_number_id = "1"\n', 2, ("[providers.whatsapp_cloud]", "access_token")),
    "unreachable database": Case(
        'database_url = "postgresql://postgres@127.0.0.1:1/x"\n', 1, (
            "cannot reach the database", "postgresql://postgres@127.0.0.1:1/x",
            "Connection refused", "database_url")),
    "unknown database role": Case(
        "", 1, ("cannot reach the database", "omnirelay_no_such_role", "user and password"),
        needs_postgres=True),
    "database does not exist": Case(
        "", 1, ("cannot reach the database", "omnirelay_no_such_db", "createdb"),
        needs_postgres=True),
    "SQLite file cannot be made": Case(
        'database_url = "sqlite:////proc/omnirelay/relay.db"\n', 1, (
            "sqlite:////proc/omnirelay/relay.db", "database_url")),
    "unknown settings for migrate": Case(
        "[engine]\nbatchsize = 1\n", 2, ("[engine] batchsize",), command=("migrate",)),
    "unknown settings for worker": Case(
        "[engine]\nbatchsize = 1\n", 2, ("[engine] batchsize",), command=("worker",)),
}


def _postgres_url(**parts: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(POSTGRES_URL).set(**parts).render_as_string(hide_password=False)


def run(config: Path | None, *args: str, environ: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "omnirelay.cli", *args]
    if config is not None:
        command += ["--config", str(config)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIRELAY_")}
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False,
                          env={**env, **(environ or {})}, cwd=cwd)


def run_here(config: Path | None, *args: str, environ: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    """As `run`, in this process: `main()` with the same argv and environment; stdout, stderr and
    the exit status it would give the process. The root logger that `serve` and `worker` set up
    is put back afterwards."""
    argv = ["omnirelay", *args] + (["--config", str(config)] if config is not None else [])
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIRELAY_")}
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    status: int = 0
    try:
        with (mock.patch.object(sys, "argv", argv),
              mock.patch.dict(os.environ, {**env, **(environ or {})}, clear=True),
              contextlib.redirect_stdout(out), contextlib.redirect_stderr(err)):
            try:
                main()
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return subprocess.CompletedProcess(argv, status, out.getvalue(), err.getvalue())


def assert_one_line(result: subprocess.CompletedProcess[str], status: int,
                    expected: tuple[str, ...]) -> str:
    lines = result.stderr.splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    assert result.returncode == status, (result.returncode, result.stderr)
    for fragment in expected:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# A configuration error from the file and from the environment, and one from the environment
# outside (exit status 1): as the real process too.
IN_A_PROCESS = ("unknown key with a close match", "from the environment", "unreachable database")


@pytest.mark.parametrize(("name", "process"), [
    *((name, False) for name in CASES), *((name, True) for name in IN_A_PROCESS)],
    ids=[*CASES, *(f"{name} (process)" for name in IN_A_PROCESS)])
def test_a_misconfiguration_is_one_line_naming_the_fix(name: str, process: bool,
                                                        tmp_path: Path) -> None:
    case = CASES[name]
    toml = case.toml
    if name == "unknown database role":
        if postgres_available() is not None:
            pytest.skip("needs PostgreSQL")
        toml = f'database_url = "{_postgres_url(username="omnirelay_no_such_role")}"\n'
    if name == "database does not exist":
        if postgres_available() is not None:
            pytest.skip("needs PostgreSQL")
        toml = f'database_url = "{_postgres_url(database="omnirelay_no_such_db")}"\n'
    if "database_url" not in toml:
        toml = f'database_url = "sqlite:///{tmp_path}/relay.db"\n' + toml
    config = tmp_path / "omnirelay.toml"
    config.write_text(toml)
    result = (run if process else run_here)(config, *case.command, environ=case.environ)
    assert_one_line(result, case.status, case.expected)


def test_a_missing_configuration_file(tmp_path: Path) -> None:
    result = run_here(tmp_path / "nowhere.toml", "serve")
    assert_one_line(result, 2, ("nowhere.toml", "does not exist", "--config"))


@pytest.fixture
def busy_port() -> Iterator[int]:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    try:
        yield blocker.getsockname()[1]
    finally:
        blocker.close()


def test_a_port_in_use(tmp_path: Path, busy_port: int) -> None:
    config = write_config(tmp_path / "omnirelay.toml", f"sqlite:///{tmp_path}/relay.db")
    result = run(config, "serve", "--port", str(busy_port))
    assert_one_line(result, 1, (f"127.0.0.1:{busy_port}", "in use", "--port"))
    # Refused before anything was done: no development account was made and printed.
    assert "Development account" not in result.stdout


def test_a_database_newer_than_the_code(tmp_path: Path) -> None:
    config = write_config(tmp_path / "omnirelay.toml", f"sqlite:///{tmp_path}/relay.db")
    cli(config, "migrate")
    with sqlite3.connect(tmp_path / "relay.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '0999'")
    assert_one_line(run(config, "serve"), 1, ("revision 0999", "newer omnirelay", "backup"))
    for command in (("serve",), ("worker",), ("migrate",), ("account", "list")):
        result = run_here(config, *command)
        assert_one_line(result, 1, ("revision 0999", "newer omnirelay", "backup"))


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    config = tmp_path / "omnirelay.toml"
    config.write_text("[engine]\nbatchsize = 100\n")
    result = run(config, "--debug", "serve")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "batchsize" in result.stderr


def test_migrate_says_what_it_did(tmp_path: Path) -> None:
    from omnirelay.store.database import Database
    from omnirelay.store.migrate import head_revision, upgrade

    head = head_revision()
    config = write_config(tmp_path / "omnirelay.toml", f"sqlite:///{tmp_path}/relay.db")
    assert cli(config, "migrate").strip() == (
        f"sqlite:///{tmp_path}/relay.db: created the schema at revision {head}")
    assert cli(config, "migrate").strip().endswith(f"already at revision {head} (up to date)")
    older = write_config(tmp_path / "older.toml", f"sqlite:///{tmp_path}/older.db")
    db = Database(f"sqlite:///{tmp_path}/older.db")
    try:
        assert upgrade(db, "0002").after == "0002"
    finally:
        db.dispose()
    assert cli(older, "migrate").strip().endswith(
        f"upgraded the schema from revision 0002 to {head}")


def test_worker_beside_serve_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    database = tmp_path / "relay.db"
    config = write_config(tmp_path / "omnirelay.toml", f"sqlite:///{database}")
    process, _base = start_gateway(config)
    try:
        def serving_worker() -> list[str]:
            with sqlite3.connect(database) as db:
                return [r[0] for r in db.execute("SELECT id FROM workers")]

        (serving,) = wait_until(serving_worker)
        result = run(config, "worker")
        line = assert_one_line(result, 1, ("SQLite serves one worker process", serving, "PostgreSQL"))
        assert "worker" in line
    finally:
        process.terminate()
        process.wait(10)
