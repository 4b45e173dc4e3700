"""The `omnirelay` command: serve, worker, migrate, account, smsc."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from omnirelay.config import Settings, load_settings
from omnirelay.core import secrets
from omnirelay.core.sms import check_replacements
from omnirelay.core.timefmt import utcnow
from omnirelay.errors import ConfigError
from omnirelay.runtime import Runtime
from omnirelay.store.queries import Account

app = typer.Typer(help="omnirelay: a self-hosted omnichannel messaging gateway.",
                  no_args_is_help=True, add_completion=False)
account_app = typer.Typer(help="Create, list and rotate account credentials.",
                          no_args_is_help=True)
app.add_typer(account_app, name="account")
console = Console()
err_console = Console(stderr=True)

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


def _credentials(account: Account) -> dict[str, str | int | None]:
    return {
        "name": account.name,
        "api_username": account.api_username,
        "api_password": account.api_password,
        "twilio_account_sid": account.twilio_account_sid,
        "twilio_auth_token": account.twilio_auth_token,
        "inbound_secret": account.inbound_secret,
        "default_sender": account.default_sender,
        "dlr_url": account.dlr_url,
        "inbound_url": account.inbound_url,
    }


def _print_credentials(account: Account, as_json: bool, heading: str) -> None:
    creds = _credentials(account)
    if as_json:
        print(json.dumps(creds))
        return
    console.print(f"[bold]{heading}[/bold] (shown once; store them safely)")
    for key, value in creds.items():
        console.print(f"  {key:20} {value if value is not None else '-'}")


async def _create_account(runtime: Runtime, name: str, password: str | None,
                          sender: str, dlr_url: str | None = None,
                          inbound_url: str | None = None) -> Account:
    return await runtime.store.create_account(
        name=name, api_username=secrets.new_username(),
        api_password=password or secrets.new_password(),
        twilio_account_sid=secrets.new_account_sid(),
        twilio_auth_token=secrets.new_auth_token(),
        inbound_secret=secrets.new_password(), default_sender=sender, now=utcnow(),
        dlr_url=dlr_url, inbound_url=inbound_url,
    )


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
        account = await _create_account(runtime, "dev", None, "omnirelay")
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
    runtime = Runtime(_settings(config))
    runtime.migrate()

    async def run() -> Account:
        if await runtime.store.account_by_name(name) is not None:
            err_console.print(f"[red]an account named {name!r} exists already[/red]")
            raise typer.Exit(1)
        account = await _create_account(runtime, name, password, sender, dlr_url, inbound_url)
        if inbound_number:
            await runtime.store.set_inbound_numbers(account.id, inbound_number)
        return account

    try:
        account = asyncio.run(run())
    finally:
        runtime.close()
    _print_credentials(account, as_json, f"Account {name} created")


@account_app.command("list")
def account_list(
    as_json: Annotated[bool, typer.Option("--json")] = False, config: ConfigOption = None
) -> None:
    """List accounts (without secrets)."""
    runtime = Runtime(_settings(config))
    runtime.migrate()
    try:
        accounts = asyncio.run(runtime.store.list_accounts())
    finally:
        runtime.close()
    if as_json:
        print(json.dumps([{"name": a.name, "api_username": a.api_username,
                           "twilio_account_sid": a.twilio_account_sid,
                           "default_sender": a.default_sender, "dlr_url": a.dlr_url,
                           "inbound_url": a.inbound_url} for a in accounts]))
        return
    table = Table("name", "api_username", "twilio_account_sid", "default_sender", "dlr_url")
    for a in accounts:
        table.add_row(a.name, a.api_username, a.twilio_account_sid, a.default_sender,
                      a.dlr_url or "-")
    console.print(table)


@account_app.command("rotate")
def account_rotate(
    name: str,
    what: Annotated[str, typer.Option(
        help="Which secrets: all, api-password, twilio-token, inbound-secret.")] = "all",
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOption = None,
) -> None:
    """Replace an account's secrets and print the new credentials."""
    choices = {
        "api-password": {"api_password": secrets.new_password},
        "twilio-token": {"twilio_auth_token": secrets.new_auth_token},
        "inbound-secret": {"inbound_secret": secrets.new_password},
    }
    if what == "all":
        generators = {k: v for c in choices.values() for k, v in c.items()}
    elif what in choices:
        generators = choices[what]
    else:
        err_console.print(f"[red]--what must be all or one of {', '.join(choices)}[/red]")
        raise typer.Exit(2)
    runtime = Runtime(_settings(config))
    runtime.migrate()

    async def run() -> Account:
        account = await runtime.store.account_by_name(name)
        if account is None:
            err_console.print(f"[red]no account named {name!r}[/red]")
            raise typer.Exit(1)
        return await runtime.store.update_account(
            account.id, **{key: make() for key, make in generators.items()})

    try:
        account = asyncio.run(run())
    finally:
        runtime.close()
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
    runtime = Runtime(_settings(config))
    runtime.migrate()

    async def run() -> None:
        account = await runtime.store.account_by_name(name)
        if account is None:
            err_console.print(f"[red]no account named {name!r}[/red]")
            raise typer.Exit(1)
        changes = {k: v for k, v in {"default_sender": sender, "dlr_url": dlr_url,
                                     "inbound_url": inbound_url}.items() if v is not None}
        if changes:
            await runtime.store.update_account(account.id, **changes)
        if inbound_number is not None:
            await runtime.store.set_inbound_numbers(account.id, inbound_number)
        if replacements is not None:
            await runtime.store.update_account(account.id, replacements=table)

    try:
        asyncio.run(run())
    finally:
        runtime.close()
    console.print(f"account {name} updated")


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
