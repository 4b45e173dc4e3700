"""The `omnirelay` command: serve, worker, migrate, account, messages, webhooks, smsc."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from omnirelay import account_admin as ops
from omnirelay.api import history as api_history
from omnirelay.config import Settings, load_settings
from omnirelay.core.history import (
    Cursors,
    parse_message_filter,
    parse_redelivery,
    parse_webhook_filter,
)
from omnirelay.core.sms import check_replacements
from omnirelay.core.timefmt import utcnow
from omnirelay.core.validation import RequestError
from omnirelay.errors import ConfigError
from omnirelay.runtime import Runtime
from omnirelay.store.history import History
from omnirelay.store.queries import Account

app = typer.Typer(help="omnirelay: a self-hosted omnichannel messaging gateway.",
                  no_args_is_help=True, add_completion=False)
account_app = typer.Typer(help="Create, show, change, rotate, disable and delete accounts.",
                          no_args_is_help=True)
app.add_typer(account_app, name="account")
messages_app = typer.Typer(help="Look up omnimessages.", no_args_is_help=True)
app.add_typer(messages_app, name="messages")
webhooks_app = typer.Typer(help="List callbacks and queue them again.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")
console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c",
                                                   help="TOML configuration file.")]


def _settings(config: Path | None, **overrides: Any) -> Settings:
    try:
        return load_settings(config, overrides=overrides)
    except ConfigError as exc:
        err_console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


def _logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _print_credentials(account: Account, as_json: bool, heading: str) -> None:
    creds = ops.credentials(account)
    if as_json:
        print(json.dumps(creds))
        return
    console.print(f"{heading} (shown once; store them safely)", style="bold", markup=False)
    for key, value in creds.items():
        console.print(f"  {key:20} {value if value is not None else '-'}", markup=False,
                      highlight=False)


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (default 8080).")] = None,
    workers: Annotated[bool, typer.Option(
        help="Also run the workers here; --no-workers serves the API only (PostgreSQL, with "
             "`omnirelay worker` processes elsewhere).")] = True,
    reuse_port: Annotated[bool, typer.Option(
        help="Bind with SO_REUSEPORT so that several serve processes share the port and the "
             "kernel spreads connections across them (PostgreSQL).")] = False,
) -> None:
    """Run the API and the workers in one process (applies migrations first)."""
    settings = _settings(config, host=host, port=port)
    _logging(settings)
    runtime = Runtime(settings)
    runtime.migrate()
    asyncio.run(_serve(runtime, workers, reuse_port))


def _listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # Accepted sockets inherit it on Linux. uvloop sets it only on sockets of servers it binds
    # itself, so without this every response waited out the client's delayed ACK (40 ms):
    # 2 API processes served 330 requests/s where 1 served 1,500.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


async def _serve(runtime: Runtime, workers: bool = True, reuse_port: bool = False) -> None:
    import uvicorn

    from omnirelay.app import create_app
    from omnirelay.server import uvicorn_config

    settings = runtime.settings
    if not settings.is_production and await runtime.store.count_accounts() == 0:
        account = await ops.create_account(runtime, "dev", sender="omnirelay")
        _print_credentials(account, False, "Development account created")
        console.print(f"  Messente SDK host     {settings.base_url}/v1")
    app = create_app(runtime, workers=workers)
    server = uvicorn.Server(uvicorn_config(
        app, settings.server, host=settings.host, port=settings.port, refusal=app.refusal,
        access_log=False, log_level=settings.log_level, loop="auto"))
    sockets = [_listening_socket(settings.host, settings.port)] if reuse_port else None
    try:
        await server.serve(sockets=sockets)
    finally:
        runtime.close()


@app.command()
def worker(config: ConfigOption = None) -> None:
    """Run the workers only (dispatcher, expiry, webhooks); any number may share PostgreSQL."""
    settings = _settings(config)
    _logging(settings)
    runtime = Runtime(settings)
    runtime.migrate()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await runtime.start()
        console.print(f"worker {runtime.worker_id} running; Ctrl-C stops it")
        await stop.wait()
        await runtime.stop()
        runtime.close()

    asyncio.run(run())


@app.command()
def migrate(config: ConfigOption = None) -> None:
    """Apply the database migrations."""
    settings = _settings(config)
    runtime = Runtime(settings)
    runtime.migrate()
    runtime.close()
    console.print("database is up to date")


def _operate(config: Path | None, work: Callable[[Runtime], Coroutine[Any, Any, T]]) -> T:
    """Run one operator action against the configured database, answering an OperatorError
    with one line and exit status 1."""
    runtime = Runtime(_settings(config))
    runtime.migrate()
    try:
        return asyncio.run(work(runtime))
    except ops.OperatorError as exc:
        err_console.print(f"error: {exc.message}", markup=False, highlight=False)
        raise typer.Exit(2 if exc.kind == "invalid" else 1) from None
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
    table = Table("name", "state", "api_username", "twilio_account_sid", "default_sender",
                  "dlr_url")
    for a in accounts:
        table.add_row(a["name"], a["state"], a["api_username"], a["twilio_account_sid"],
                      a["default_sender"], a["dlr_url"] or "-")
    console.print(table)


@account_app.command("show")
def account_show(name: str, config: ConfigOption = None) -> None:
    """Show one account (without secrets), as JSON."""
    _print_json(_operate(config, lambda runtime: ops.show_account(runtime, name)))


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
    config: ConfigOption = None,
) -> None:
    """Change an account's settings."""
    table = _replacement_table(replacements) if replacements not in (None, "default") else None
    changes = ops.AccountChanges(default_sender=sender, dlr_url=dlr_url, inbound_url=inbound_url,
                                 inbound_numbers=inbound_number, replacements=table,
                                 reset_replacements=replacements == "default")
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
    table = Table("omnimessage_id", "created", "to", "state", "attempts")
    for m in items:
        table.add_row(m["omnimessage_id"], m["created"], m["to"], m["state"], ", ".join(
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
    table = Table("id", "kind", "receiver", "state", "tries", "last_error")
    for w in items:
        table.add_row(str(w["id"]), w["kind"], w["receiver"], w["state"], str(w["tries"]),
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
        err_console.print(f"[red]--replacements: cannot read {path}: {error.strerror}[/red]")
    except ValueError as error:  # JSONDecodeError included
        err_console.print(f"[red]--replacements: {path}: {error}[/red]")
    raise typer.Exit(2)


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
                err_console.print(f"[red]--user {entry!r}: expected SYSTEM_ID:PASSWORD[/red]")
                raise typer.Exit(2)
            users[system_id] = password
    try:
        rules = tuple(parse_rule(r) for r in rule) if rule else DEFAULT_RULES
    except ValueError as exc:
        err_console.print(f"[red]--rule: {exc}[/red]")
        raise typer.Exit(2) from None
    if id_format not in {"hex", "dec", "hex-dec"}:
        err_console.print("[red]--id-format must be hex, dec or hex-dec[/red]")
        raise typer.Exit(2)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    console.print(f"SMSC simulator on {host}:{port}"
                  + (f", control API on http://{host}:{control_port}" if control_port else ""))
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


if __name__ == "__main__":
    main()
