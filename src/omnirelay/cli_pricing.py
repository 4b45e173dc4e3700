"""`omnirelay prices ...` and `omnirelay account credit`: price lists and prepaid balances.

Registered on the main command by `register`; the commands reuse the operator actions' account
lookup, so an unknown account name is the same one-line error as elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from omnirelay import account_admin as ops
from omnirelay.config import load_settings
from omnirelay.core.money import MoneyError, format_amount, parse_amount
from omnirelay.core.pricing import PriceListError, parse_csv, render_csv
from omnirelay.core.timefmt import utcnow
from omnirelay.errors import ConfigError
from omnirelay.runtime import Runtime
from omnirelay.store.pricing import Pricing

prices_app = typer.Typer(help="Import and show price lists.", no_args_is_help=True)
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)
T = TypeVar("T")

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c",
                                                   help="TOML configuration file.")]


def _fail(message: str, status: int = 2) -> typer.Exit:
    err_console.print(f"error: {message}", markup=False)
    return typer.Exit(status)


def _operate(config: Path | None, work: Callable[[Runtime], Coroutine[Any, Any, T]]) -> T:
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        raise _fail(f"configuration error: {exc}") from None
    runtime = Runtime(settings)
    runtime.migrate()
    try:
        return asyncio.run(work(runtime))
    except ops.OperatorError as exc:
        raise _fail(exc.message, 2 if exc.kind == "invalid" else 1) from None
    finally:
        runtime.close()


async def _account_id(runtime: Runtime, name: str | None) -> int | None:
    return None if name is None else (await ops.find_account(runtime, name)).id


@prices_app.command("import")
def prices_import(
    file: Annotated[Path, typer.Argument(help="CSV with Country,Code,MCCMNC,Network,Price "
                                              "(and optionally Channel).")],
    account: Annotated[str | None, typer.Option(
        help="The account whose own list this is (default: the global list).")] = None,
    channel: Annotated[str, typer.Option(
        help="The channel of rows without a Channel column.")] = "sms",
    config: ConfigOption = None,
) -> None:
    """Replace a price list (an account's, or the global one) with a CSV file's rows."""
    try:
        rows = parse_csv(file.read_text(encoding="utf-8"), channel.lower())
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read {file}: {exc}") from None
    except PriceListError as exc:
        raise _fail(f"{file}: {exc}") from None

    async def work(runtime: Runtime) -> int:
        owner = await _account_id(runtime, account)
        return await Pricing(runtime.store.db).replace_prices(owner, rows, [channel.lower()])

    count = _operate(config, work)
    console.print(f"imported {count} prices into the {account or 'global'} price list",
                  markup=False)


@prices_app.command("show")
def prices_show(
    account: Annotated[str, typer.Argument(help="The account whose prices to show.")],
    channel: Annotated[str, typer.Option(help="Which channel's prices.")] = "sms",
    config: ConfigOption = None,
) -> None:
    """Print the prices an account pays (its own list over the global one), as CSV."""
    async def work(runtime: Runtime) -> str:
        owner = (await ops.find_account(runtime, account)).id
        return render_csv(await Pricing(runtime.store.db).price_list(owner, channel.lower()))

    print(_operate(config, work), end="")


def account_credit(
    name: str,
    amount: Annotated[str | None, typer.Argument(help="What to add, e.g. 10.23.")] = None,
    debit: Annotated[bool, typer.Option(
        "--debit", help="Take AMOUNT off instead (never below zero).")] = False,
    unlimited: Annotated[bool, typer.Option(
        "--unlimited", help="Drop the balance: the account sends without a limit.")] = False,
    config: ConfigOption = None,
) -> None:
    """Add to (or take from) an account's prepaid balance; an account never credited is
    unlimited, and the first credit makes it prepaid."""
    if unlimited == (amount is not None):
        raise _fail("give an AMOUNT, or --unlimited")
    micros = 0
    if amount is not None:
        try:
            micros = -parse_amount(amount) if debit else parse_amount(amount)
        except MoneyError as exc:
            raise _fail(str(exc)) from None

    async def work(runtime: Runtime) -> str:
        account = await ops.find_account(runtime, name)
        pricing = Pricing(runtime.store.db)
        if unlimited:
            await pricing.set_unlimited(account.id)
            return f"account {name}: unlimited"
        balance = await pricing.credit(account.id, micros, utcnow())
        if balance is None:
            raise ops.OperatorError("conflict", f"account {name}: the balance would go below zero"
                                                " (or it is unlimited); nothing changed")
        return f"account {name}: balance {format_amount(balance)}"

    console.print(_operate(config, work), markup=False)


def register(app: typer.Typer, account_app: typer.Typer) -> None:
    app.add_typer(prices_app, name="prices")
    account_app.command("credit")(account_credit)
