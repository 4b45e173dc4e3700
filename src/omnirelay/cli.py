"""The `omnirelay` command: serve, worker, migrate, account, messages, webhooks, smsc."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from omnirelay import __version__, cli_pricing
from omnirelay import account_admin as ops
from omnirelay.api import history as api_history
from omnirelay.config import Settings, config_file, load_settings
from omnirelay.core.history import (
    Cursors,
    parse_message_filter,
    parse_redelivery,
    parse_webhook_filter,
)
from omnirelay.core.sms import check_replacements
from omnirelay.core.timefmt import utcnow
from omnirelay.core.validation import RequestError
from omnirelay.errors import ConfigError, StartupError
from omnirelay.runtime import Runtime
from omnirelay.store.database import StoreUnavailable
from omnirelay.store.history import History
from omnirelay.store.queries import Account

app = typer.Typer(help="omnirelay: a self-hosted omnichannel messaging gateway.",
                  no_args_is_help=True)
account_app = typer.Typer(help="Create, show, change, rotate, disable and delete accounts.",
                          no_args_is_help=True)
app.add_typer(account_app, name="account")
messages_app = typer.Typer(help="Look up omnimessages.", no_args_is_help=True)
app.add_typer(messages_app, name="messages")
webhooks_app = typer.Typer(help="List callbacks and queue them again.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")
cli_pricing.register(app, account_app)  # prices import/show, account credit
console = Console()
T = TypeVar("T")

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c",
                                                   help="TOML configuration file.")]


_options = {"debug": False}


def _print_version(wanted: bool) -> None:
    if wanted:
        print(f"omnirelay {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    debug: Annotated[bool, typer.Option(
        "--debug", help="Show the traceback of a failure at start; without it, one line names "
                        "the cause and the fix.")] = False,
    version: Annotated[bool | None, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the version and exit.")] = None,
) -> None:
    _options["debug"] = debug


def _fail(message: str, status: int) -> NoReturn:
    """One line on stderr, as given: user text is never read as Rich markup ([engine] stays)."""
    print(" ".join(message.split()), file=sys.stderr)
    raise typer.Exit(status)


def _settings(config: Path | None, **overrides: Any) -> Settings:
    return load_settings(config, overrides=overrides)


def _runtime(settings: Settings, config: Path | None) -> Runtime:
    """The runtime; a provider table it refuses is said to come from the configuration file."""
    try:
        return Runtime(settings)
    except ConfigError as exc:
        found = config_file(config, os.environ)
        raise exc.located(str(found) if found is not None else None) from None
    except OSError as exc:  # SQLite's directory could not be made
        raise StartupError(f"cannot create the database at database_url = "
                           f"{settings.database_url!r}: {exc.strerror} ({exc.filename}); give "
                           "a path in a writable directory") from None


def _logging(settings: Settings) -> None:
    from omnirelay.logs import configure  # text or JSON lines, uvicorn's included

    configure(settings.log_level, settings.log_format)


def _print_credentials(account: Account, as_json: bool, heading: str) -> None:
    creds = ops.credentials(account)
    if as_json:
        print(json.dumps(creds))
        return
    console.print(f"{heading} (shown once; store them safely)", style="bold", markup=False)
    for key, value in creds.items():
        print(f"  {key:20} {value if value is not None else '-'}")  # unwrapped, for copying


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (default 8080).")] = None,
    workers: Annotated[bool, typer.Option(
        help="Also run the workers here; --no-workers serves the API only, with `omnirelay "
             "worker` processes beside it (on SQLite: one API process and one worker).")] = True,
    reuse_port: Annotated[bool, typer.Option(
        help="Bind with SO_REUSEPORT so that several serve processes share the port and the "
             "kernel spreads connections across them (PostgreSQL).")] = False,
) -> None:
    """Run the API and the workers in one process (applies migrations first)."""
    settings = _settings(config, host=host, port=port)
    _logging(settings)
    runtime = _runtime(settings, config)
    # Bound first: a port in use is refused before anything else is done (or printed).
    listener = _bind(settings.host, settings.port, reuse_port)
    try:
        _migrated(runtime, quiet=True)
        if runtime.db.is_sqlite:
            if workers:
                _refuse_a_second_sqlite_process(runtime, "serve")
            else:
                print("note: --no-workers on SQLite: this process only accepts; run one "
                      "`omnirelay worker` on the same database to send (SQLite takes one API "
                      "process and one worker)", file=sys.stderr)
    except BaseException:
        listener.close()
        runtime.close()
        raise
    asyncio.run(_serve(runtime, listener, workers))


def _migrated(runtime: Runtime, *, quiet: bool = False) -> None:
    """Apply the migrations; say so when the schema was created or upgraded (always, unless
    `quiet`)."""
    outcome = runtime.migrate()
    if not quiet or outcome.before != outcome.after:
        print(outcome.describe())  # print, not Rich: a long path must not be wrapped


def _refuse_a_second_sqlite_process(runtime: Runtime, command: str) -> None:
    """SQLite takes one worker process (`serve` with its workers, or `worker` beside an API-only
    `serve --no-workers`): refuse to run the workers beside another live process's, which the
    workers table's heartbeats show."""
    stale = timedelta(seconds=3 * runtime.settings.engine.heartbeat_seconds)
    live = [(worker_id, beat) for worker_id, beat in
            asyncio.run(runtime.store.live_workers(utcnow() - stale))
            if _may_be_alive(worker_id)]
    if live:
        worker_id, beat = live[0]
        ago = max(0.0, (utcnow() - beat).total_seconds())
        raise StartupError(
            f"refusing to start `omnirelay {command}`: SQLite serves one worker process, and worker "
            f"{worker_id} (heartbeat {ago:.0f} s ago) already runs on "
            f"{runtime.settings.database_url}; stop it first, or use PostgreSQL to run "
            "several processes")


def _may_be_alive(worker_id: str) -> bool:
    """False for a worker id (host-pid-suffix) of this host whose process is gone: a killed
    process leaves its heartbeat behind for a while."""
    host, pid_text, _suffix = [*worker_id.rsplit("-", 2), "", ""][:3]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True
    if int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    """The listening socket, or one line on why not and what to change."""
    try:
        return _listening_socket(host, port, reuse_port=reuse_port)
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on host {host!r}: {exc.strerror}; set host (or "
                           "--host) to an address of this machine, e.g. 127.0.0.1 or 0.0.0.0"
                           ) from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"cannot listen on {host}:{port}: the port is already in use "
                               "(another omnirelay serve, or another program); stop that, or "
                               "choose a free port with port = N or --port N") from None
        if exc.errno == errno.EACCES:
            raise StartupError(f"cannot listen on {host}:{port}: permission denied (ports below "
                               "1024 need privileges); use a port above 1024 with port = N or "
                               "--port N, behind a reverse proxy") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise StartupError(f"cannot listen on {host}:{port}: {host} is not an address of "
                               "this machine; set host (or --host), e.g. 127.0.0.1 or 0.0.0.0"
                               ) from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _listening_socket(host: str, port: int, *, reuse_port: bool = True) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # Accepted sockets inherit it on Linux. uvloop sets it only on sockets of servers it binds
    # itself, so without this every response waited out the client's delayed ACK (40 ms):
    # 2 API processes served 330 requests/s where 1 served 1,500.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


async def _serve(runtime: Runtime, listener: socket.socket, workers: bool = True) -> None:
    import uvicorn

    from omnirelay.app import create_app
    from omnirelay.server import uvicorn_config

    settings = runtime.settings
    if not settings.is_production and await runtime.store.count_accounts() == 0:
        account = await ops.create_account(runtime, "dev", sender="omnirelay")
        _print_credentials(account, False, "Development account created")
        console.print(f"  Messente SDK host     {settings.base_url}/v1", markup=False)
        if settings.console.enabled:
            console.print(f"  Web console           {settings.base_url}/console", markup=False)
    app = create_app(runtime, workers=workers)
    server = uvicorn.Server(uvicorn_config(
        app, settings.server, host=settings.host, port=settings.port, refusal=app.refusal,
        access_log=False, log_level=settings.log_level, loop="auto"))
    try:
        await server.serve(sockets=[listener])
    finally:
        listener.close()
        runtime.close()
    if not server.started:  # uvicorn logged why (the application's startup failed)
        raise StartupError("the gateway did not start; the log above says why")


@app.command()
def worker(config: ConfigOption = None) -> None:
    """Run the workers only (dispatcher, expiry, webhooks); any number may share PostgreSQL,
    one may run beside `serve --no-workers` on SQLite."""
    settings = _settings(config)
    _logging(settings)
    runtime = _runtime(settings, config)
    try:
        _migrated(runtime, quiet=True)
        if runtime.db.is_sqlite:
            _refuse_a_second_sqlite_process(runtime, "worker")
    except BaseException:
        runtime.close()
        raise

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await runtime.start()
        console.print(f"worker {runtime.worker_id} running; Ctrl-C stops it", markup=False)
        await stop.wait()
        await runtime.stop()
        runtime.close()

    asyncio.run(run())


@app.command()
def migrate(config: ConfigOption = None) -> None:
    """Apply the database migrations and say what was done."""
    runtime = _runtime(_settings(config), config)
    try:
        _migrated(runtime)
    finally:
        runtime.close()


def _operate(config: Path | None, work: Callable[[Runtime], Coroutine[Any, Any, T]]) -> T:
    """Run one operator action against the configured database, answering an OperatorError
    or a refused value with one line (the API's words) and exit status 1 (not found, conflict)
    or 2 (invalid)."""
    runtime = _runtime(_settings(config), config)
    try:
        runtime.migrate()  # silently: stdout is the command's own (JSON for scripts)
        return asyncio.run(work(runtime))
    except ops.OperatorError as exc:
        _fail(f"error: {exc.message}", 2 if exc.kind == "invalid" else 1)
    except RequestError as exc:
        _fail(f"error: {exc.detail}", 2)
    finally:
        runtime.close()


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


@account_app.command("create")
def account_create(
    name: str,
    password: Annotated[str | None, typer.Option(help="API password (default: random).")] = None,
    sender: Annotated[str, typer.Option(help="Default sender name.")] = "omnirelay",
    dlr_url: Annotated[str | None, typer.Option(help="Default delivery-report URL.")] = None,
    inbound_url: Annotated[str | None, typer.Option(help="Inbound message URL.")] = None,
    inbound_number: Annotated[list[str] | None, typer.Option(
        help="A number (or bot id) whose inbound messages belong to this account.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print credentials as JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """Create an account and print its credentials."""
    account = _operate(config, lambda runtime: ops.create_account(
        runtime, name, password=password, sender=sender, dlr_url=dlr_url,
        inbound_url=inbound_url, inbound_numbers=inbound_number or ()))
    _print_credentials(account, as_json, f"Account {name} created")


@account_app.command("list")
def account_list(
    as_json: Annotated[bool, typer.Option("--json")] = False, config: ConfigOption = None
) -> None:
    """List accounts (without secrets)."""
    accounts = _operate(config, ops.list_accounts)
    if as_json:
        _print_json(accounts)
        return
    table = _table("name", "state", "api_username", "twilio_account_sid", "default_sender",
                   "dlr_url")
    for a in accounts:
        _add_row(table, a["name"], a["state"], a["api_username"], a["twilio_account_sid"],
                 a["default_sender"], a["dlr_url"] or "-")
    console.print(table)


@account_app.command("show")
def account_show(
    name: str, as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    config: ConfigOption = None,
) -> None:
    """Show one account whole: credentials (secrets included), state, sender, URLs and inbound
    numbers."""
    shown = _operate(config, lambda runtime: ops.account_details(runtime, name))
    if as_json:
        _print_json(shown)
        return
    for key, value in shown.items():
        if isinstance(value, list):
            value = ", ".join(value) or "-"
        print(f"{key:20} {value if value is not None else '-'}")


def _table(*headers: str) -> Table:
    """A table that folds long values instead of cutting them."""
    table = Table()
    for header in headers:
        table.add_column(header, overflow="fold")
    return table


def _add_row(table: Table, *cells: str) -> None:
    # Text, not str: Rich reads a str cell as markup, and a sender or URL may hold [brackets].
    table.add_row(*(Text(cell) for cell in cells))


@account_app.command("rotate")
def account_rotate(
    name: str,
    what: Annotated[str, typer.Option(
        help="Which secrets: all, api-password, twilio-token, inbound-secret.")] = "all",
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOption = None,
) -> None:
    """Replace an account's secrets and print the new credentials."""
    account = _operate(config, lambda runtime: ops.rotate_secrets(runtime, name, what))
    _print_credentials(account, as_json, f"Account {name}: new credentials")


@account_app.command("set")
def account_set(
    name: str,
    sender: Annotated[str | None, typer.Option(help="Default sender name.")] = None,
    dlr_url: Annotated[str | None, typer.Option(help="Default delivery-report URL.")] = None,
    inbound_url: Annotated[str | None, typer.Option(help="Inbound message URL.")] = None,
    inbound_number: Annotated[list[str] | None, typer.Option(
        help="Replace the account's inbound numbers.")] = None,
    replacements: Annotated[str | None, typer.Option(
        help="A JSON file mapping single characters to replacements, used by autoconvert "
             "(and SmartEncoded) instead of the built-in look-alike table; 'default' goes back "
             "to the built-in table.")] = None,
    max_rps: Annotated[str | None, typer.Option(
        help="Omnimessages it may have accepted per second (a bulk request counts each); "
             "beyond it requests are answered 429. 0 or 'unlimited' (the default) clears.")] = None,
    max_send_rps: Annotated[str | None, typer.Option(
        help="Attempts the dispatcher hands to channels for it per second; 0 or 'unlimited' "
             "(the default) clears.")] = None,
    config: ConfigOption = None,
) -> None:
    """Change an account's settings."""
    table = _replacement_table(replacements) if replacements not in (None, "default") else None
    changes = ops.AccountChanges(default_sender=sender, dlr_url=dlr_url, inbound_url=inbound_url,
                                 inbound_numbers=inbound_number, replacements=table,
                                 reset_replacements=replacements == "default",
                                 max_rps=max_rps, max_send_rps=max_send_rps)
    _operate(config, lambda runtime: ops.change_account(runtime, name, changes))
    console.print(f"account {name} updated", markup=False)


@account_app.command("disable")
def account_disable(name: str, config: ConfigOption = None) -> None:
    """Refuse the account's credentials until it is enabled again (its queued messages are
    still delivered)."""
    _operate(config, lambda runtime: ops.set_enabled(runtime, name, False))
    console.print(f"account {name} disabled", markup=False)


@account_app.command("enable")
def account_enable(name: str, config: ConfigOption = None) -> None:
    """Accept a disabled account's credentials again."""
    _operate(config, lambda runtime: ops.set_enabled(runtime, name, True))
    console.print(f"account {name} enabled", markup=False)


@account_app.command("delete")
def account_delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    config: ConfigOption = None,
) -> None:
    """Delete an account: its credentials stop working and its name is free again; its messages
    stay until [retention] purges them."""
    if not yes and not typer.confirm(f"Delete account {name}?", default=False):
        raise typer.Exit(1)
    _operate(config, lambda runtime: ops.delete_account(runtime, name))
    console.print(f"account {name} deleted", markup=False)


def _scope(runtime: Runtime, name: str) -> Awaitable[int]:
    async def find() -> int:
        return (await ops.find_account(runtime, name)).id
    return find()


def _filters(**given: Any) -> dict[str, str]:
    return {key: str(value) for key, value in given.items() if value is not None}


def _parsed(parse: Callable[[], T]) -> T:
    try:
        return parse()
    except RequestError as exc:
        raise ops.OperatorError("invalid", f"--{exc.source}: {exc.detail}") from None


AccountOption = Annotated[str, typer.Option("--account", "-a", help="The account's name.")]
SinceOption = Annotated[str | None, typer.Option(help="From this time on (ISO 8601).")]
UntilOption = Annotated[str | None, typer.Option(help="Before this time (ISO 8601).")]
LimitOption = Annotated[int, typer.Option(help="How many, newest first (1-500).")]


@messages_app.command("list")
def messages_list(
    account: AccountOption,
    to: Annotated[str | None, typer.Option(help="Recipient.")] = None,
    channel: Annotated[str | None, typer.Option(help="Has an attempt on this channel.")] = None,
    status: Annotated[str | None, typer.Option(help="Has an attempt in this status.")] = None,
    since: SinceOption = None, until: UntilOption = None, limit: LimitOption = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOption = None,
) -> None:
    """An account's omnimessages, newest first (what GET /v1/omnimessages shows)."""
    async def work(runtime: Runtime) -> list[dict[str, Any]]:
        query = _parsed(lambda: parse_message_filter(_filters(
            to=to, channel=channel, status=status, since=since, until=until, limit=limit),
            Cursors(runtime.settings.secret_key, "omnimessages")))
        page = await History(runtime.db).search(await _scope(runtime, account), query)
        return [api_history.message_item(m) for m in page.items]

    items = _operate(config, work)
    if as_json:
        _print_json(items)
        return
    table = _table("omnimessage_id", "created", "to", "state", "attempts")
    for m in items:
        _add_row(table, m["omnimessage_id"], m["created"], m["to"], m["state"], ", ".join(
            f"{a['channel']} {a['status'] or a['state']}" for a in m["attempts"]))
    console.print(table)


@messages_app.command("show")
def messages_show(omnimessage_id: str, config: ConfigOption = None) -> None:
    """One omnimessage whole, as JSON: attempts with their timelines, and its reports."""
    async def work(runtime: Runtime) -> dict[str, Any]:
        found = await History(runtime.db).omnimessage(None, omnimessage_id)
        if found is None:
            raise ops.OperatorError("not_found", f"no omnimessage {omnimessage_id}")
        return api_history.history_item(found)

    _print_json(_operate(config, work))


@webhooks_app.command("list")
def webhooks_list(
    account: AccountOption,
    state: Annotated[str | None, typer.Option(help="pending, delivered or dead.")] = None,
    since: SinceOption = None, until: UntilOption = None, limit: LimitOption = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOption = None,
) -> None:
    """An account's callbacks, newest first (what GET /v1/webhooks shows)."""
    async def work(runtime: Runtime) -> list[dict[str, Any]]:
        query = _parsed(lambda: parse_webhook_filter(_filters(
            state=state, since=since, until=until, limit=limit),
            Cursors(runtime.settings.secret_key, "webhooks")))
        page = await History(runtime.db).webhooks(await _scope(runtime, account), query)
        return [api_history.outbox_item(w) for w in page.items]

    items = _operate(config, work)
    if as_json:
        _print_json(items)
        return
    table = _table("id", "kind", "receiver", "state", "tries", "last_error")
    for w in items:
        _add_row(table, str(w["id"]), w["kind"], w["receiver"], w["state"], str(w["tries"]),
                 w["last_error"] or "-")
    console.print(table)


@webhooks_app.command("redeliver")
def webhooks_redeliver(
    account: AccountOption,
    webhook_id: Annotated[int | None, typer.Option("--id", help="Just this callback.")] = None,
    state: Annotated[str, typer.Option(help="dead or delivered.")] = "dead",
    since: SinceOption = None, until: UntilOption = None,
    limit: Annotated[int, typer.Option(help="At most this many, oldest first.")] = 100,
    config: ConfigOption = None,
) -> None:
    """Queue an account's delivered or dead callbacks again (a running gateway sends them)."""
    async def work(runtime: Runtime) -> list[int]:
        owner = await _scope(runtime, account)
        if webhook_id is not None:
            found = await History(runtime.db).redeliver_one(owner, webhook_id, utcnow())
            if found is None:
                raise ops.OperatorError("not_found", f"{account} has no webhook {webhook_id}")
            return [webhook_id]
        body = {k: v for k, v in {"state": state, "since": since, "until": until,
                                  "limit": limit}.items() if v is not None}
        which = _parsed(lambda: parse_redelivery(body))
        return await History(runtime.db).redeliver(owner, which, utcnow())

    ids = _operate(config, work)
    console.print(f"{len(ids)} callback(s) queued again", markup=False)


def _replacement_table(path: str) -> dict[str, str]:
    try:
        return check_replacements(json.loads(Path(path).read_text(encoding="utf-8")))
    except OSError as error:
        _fail(f"--replacements: cannot read {path}: {error.strerror}", 2)
    except ValueError as error:  # JSONDecodeError included
        _fail(f"--replacements: {path}: {error}", 2)


@app.command()
def smsc(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="SMPP port.")] = 2775,
    control_port: Annotated[int, typer.Option(
        help="HTTP control API port (inject inbound, drop links, stats); 0 for none.")] = 2776,
    user: Annotated[list[str] | None, typer.Option(
        help="SYSTEM_ID:PASSWORD allowed to bind (repeatable); none means any bind is accepted.")
    ] = None,
    rule: Annotated[list[str] | None, typer.Option(
        help="Outcome rule, e.g. 997=UNDELIV or ^+44=reject:RINVDSTADR (repeatable); replaces "
             "the defaults.")] = None,
    receipt_delay: Annotated[float, typer.Option(help="Seconds before a receipt.")] = 0.2,
    id_format: Annotated[str, typer.Option(help="hex, dec or hex-dec message ids.")] = "hex",
    throttle_rate: Annotated[float, typer.Option(
        help="Answer ESME_RTHROTTLED above this many submits/s (0: never).")] = 0.0,
    throttle_fraction: Annotated[float, typer.Option(
        help="Answer ESME_RTHROTTLED to this share of submits.")] = 0.0,
    drop_after: Annotated[int | None, typer.Option(
        help="Drop each link on its Nth submit_sm.")] = None,
    id_start: Annotated[int, typer.Option(
        help="Number of the first message id; restarting with the same value reuses ids, as "
             "SMSCs that restart or reset their counters do.", min=1)] = 1,
) -> None:
    """Run the SMSC simulator: an SMPP 3.4 server for development and tests."""
    from omnirelay.smsc import DEFAULT_RULES, parse_rule
    from omnirelay.smsc import main as run_simulator

    users = None
    if user:
        users = {}
        for entry in user:
            system_id, colon, password = entry.partition(":")
            if not colon:
                _fail(f"--user {entry!r}: expected SYSTEM_ID:PASSWORD", 2)
            users[system_id] = password
    try:
        rules = tuple(parse_rule(r) for r in rule) if rule else DEFAULT_RULES
    except ValueError as exc:
        _fail(f"--rule: {exc}", 2)
    if id_format not in {"hex", "dec", "hex-dec"}:
        _fail("--id-format must be hex, dec or hex-dec", 2)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    console.print(f"SMSC simulator on {host}:{port}"
                  + (f", control API on http://{host}:{control_port}" if control_port else ""),
                  markup=False, highlight=False)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_simulator(
            host, port, control_port or None, users=users, rules=rules,
            receipt_delay=receipt_delay, id_format=id_format,  # type: ignore[arg-type]
            throttle_fraction=throttle_fraction, throttle_rate=throttle_rate,
            drop_after=drop_after, id_start=id_start))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except StartupError as exc:
        if _options["debug"]:
            raise
        _say(exc)
    except StoreUnavailable as exc:  # the database went away, or stayed locked, after the start
        if _options["debug"]:
            raise
        _say(StartupError(f"the database did not answer: {exc}; check that it is running (and, "
                          "for SQLite, that no other process holds it)"))


def _say(exc: StartupError) -> NoReturn:
    """The expected failure as one line (the cause and the fix) and its exit status: 2 for the
    configuration, 1 for the environment (the database, the port)."""
    prefix = "configuration error" if isinstance(exc, ConfigError) else "error"
    print(" ".join(f"{prefix}: {exc}".split()), file=sys.stderr)
    sys.exit(exc.exit_status)


if __name__ == "__main__":
    main()
