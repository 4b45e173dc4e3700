"""What an operator does to accounts, one implementation for the `omnirelay account` commands and
the operator API (/admin/v1): create, show, change, rotate secrets, disable, enable, delete.

Values are checked here, so the CLI refuses what the API refuses, in the same words: a check
raises `RequestError` naming the field (`dlr_url`, `default_sender`, `inbound_numbers[0]`).

Every change drops this process's account cache, so a rotated, disabled or deleted credential
stops working here at once; other processes see it within the cache's few seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from omnirelay.core import secrets
from omnirelay.core import validation as v
from omnirelay.core.omnimessage import parse_phone_number
from omnirelay.core.senders import sms_sender
from omnirelay.core.timefmt import utcnow
from omnirelay.runtime import Runtime
from omnirelay.store.queries import Account

ROTATIONS: dict[str, dict[str, Callable[[], str]]] = {
    "api-password": {"api_password": secrets.new_password},
    "twilio-token": {"twilio_auth_token": secrets.new_auth_token},
    "inbound-secret": {"inbound_secret": secrets.new_password},
}
ROTATION_CHOICES = ("all", *ROTATIONS)


class OperatorError(Exception):
    """A request the operator can fix: `kind` is not_found, conflict or invalid."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class AccountChanges:
    default_sender: str | None = None
    dlr_url: str | None = None
    inbound_url: str | None = None
    inbound_numbers: Sequence[str] | None = None
    replacements: dict[str, str] | None = None
    reset_replacements: bool = False  # back to the built-in look-alike table
    # per second (omnirelay.ratelimits); 0 or "unlimited" clears; None leaves it as it is
    max_rps: int | str | None = None
    max_send_rps: int | str | None = None


MAX_NAME = 100
MIN_PASSWORD = 12
MAX_INBOUND_NUMBERS = 100
MAX_RATE = 1_000_000  # per second
UNLIMITED = "unlimited"


def check_name(value: Any) -> str:
    return v.string(value, "name", min_length=1, max_length=MAX_NAME)


def check_password(value: Any) -> str:
    return v.string(value, "password", min_length=MIN_PASSWORD, max_length=100)


def check_sender(value: Any) -> str:
    """The default sender of every message that names none, SMS included: so it must be what an
    SMS can carry (a longer Viber or Telegram name goes in each message's `sender`)."""
    return sms_sender(value, "default_sender")


def check_url(value: Any, path: str) -> str:
    # Both are URLs the gateway calls, stored and logged with every report: no user:password@.
    return v.url(value, path, callback=True)


def check_inbound_numbers(value: Any) -> list[str]:
    # A tuple from Python callers; anything else that is not a JSON array (a string) is refused.
    return v.array(list(value) if isinstance(value, tuple) else value, "inbound_numbers",
                   _inbound_number, max_items=MAX_INBOUND_NUMBERS)


def check_rate(value: Any, path: str) -> int | None:
    """A rate limit per second: a positive integer, or 0 or "unlimited" for none (None). The CLI
    gives a string, the API a JSON integer or the string."""
    if isinstance(value, str):
        if value.strip().lower() == UNLIMITED:
            return None
        if not value.strip().isdigit():
            v.fail(path, f"{path} must be a whole number of messages per second, or unlimited")
        value = int(value)
    rate = v.integer(value, path, minimum=0, maximum=MAX_RATE)
    return rate or None


def _inbound_number(value: Any, path: str) -> str:
    """A phone number (stored as E.164) or a short code / bot id as given."""
    text = v.string(value, path, min_length=1, max_length=64)
    return parse_phone_number(text, path) if text.startswith("+") else text


def credentials(account: Account) -> dict[str, str | int | None]:
    """Everything a client needs; shown once, when created or rotated."""
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


def summary(account: Account, inbound_numbers: Sequence[str] = ()) -> dict[str, Any]:
    """An account without its secrets."""
    return {
        "name": account.name, "state": account.state, "api_username": account.api_username,
        "twilio_account_sid": account.twilio_account_sid,
        "default_sender": account.default_sender, "dlr_url": account.dlr_url,
        "inbound_url": account.inbound_url, "inbound_numbers": list(inbound_numbers),
        "max_rps": account.max_rps, "max_send_rps": account.max_send_rps,  # null: unlimited
        "created": account.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


async def create_account(runtime: Runtime, name: str, *, password: str | None = None,
                         sender: str = "omnirelay", dlr_url: str | None = None,
                         inbound_url: str | None = None,
                         inbound_numbers: Sequence[str] = ()) -> Account:
    name = check_name(name)
    password = None if password is None else check_password(password)
    sender = check_sender(sender)
    dlr_url = None if dlr_url is None else check_url(dlr_url, "dlr_url")
    inbound_url = None if inbound_url is None else check_url(inbound_url, "inbound_url")
    numbers = check_inbound_numbers(inbound_numbers)
    if await runtime.store.account_by_name(name) is not None:
        raise OperatorError("conflict", f"an account named {name!r} exists already")
    account = await runtime.store.create_account(
        name=name, api_username=secrets.new_username(),
        api_password=password or secrets.new_password(),
        twilio_account_sid=secrets.new_account_sid(),
        twilio_auth_token=secrets.new_auth_token(),
        inbound_secret=secrets.new_password(), default_sender=sender, now=utcnow(),
        dlr_url=dlr_url, inbound_url=inbound_url,
    )
    if numbers:
        await runtime.store.set_inbound_numbers(account.id, numbers)
    return account


async def find_account(runtime: Runtime, name: str) -> Account:
    account = await runtime.store.account_by_name(name)
    if account is None or account.state == "deleted":
        raise OperatorError("not_found", f"no account named {name!r}")
    return account


async def show_account(runtime: Runtime, name: str) -> dict[str, Any]:
    account = await find_account(runtime, name)
    return summary(account, await runtime.store.inbound_numbers_of(account.id))


async def account_details(runtime: Runtime, name: str) -> dict[str, Any]:
    """The whole account, secrets included: what `omnirelay account show` prints (whoever runs
    the CLI holds the database and the secret key, and so every secret, already)."""
    account = await find_account(runtime, name)
    return {**credentials(account),
            **summary(account, await runtime.store.inbound_numbers_of(account.id))}


async def list_accounts(runtime: Runtime) -> list[dict[str, Any]]:
    return [summary(a, await runtime.store.inbound_numbers_of(a.id))
            for a in await runtime.store.list_accounts()]


async def change_account(runtime: Runtime, name: str, changes: AccountChanges) -> Account:
    values: dict[str, Any] = {}
    if changes.default_sender is not None:
        values["default_sender"] = check_sender(changes.default_sender)
    for key, url in (("dlr_url", changes.dlr_url), ("inbound_url", changes.inbound_url)):
        if url is not None:
            values[key] = check_url(url, key)
    numbers = (None if changes.inbound_numbers is None
               else check_inbound_numbers(changes.inbound_numbers))
    for key, rate in (("max_rps", changes.max_rps), ("max_send_rps", changes.max_send_rps)):
        if rate is not None:
            values[key] = check_rate(rate, key)
    account = await find_account(runtime, name)
    if changes.replacements is not None or changes.reset_replacements:
        values["replacements"] = changes.replacements
    if values:
        account = await runtime.store.update_account(account.id, **values)
    if numbers is not None:
        await runtime.store.set_inbound_numbers(account.id, numbers)
    runtime.accounts.forget()
    return account


async def rotate_secrets(runtime: Runtime, name: str, what: str = "all") -> Account:
    if what not in ROTATION_CHOICES:
        raise OperatorError("invalid", f"what must be one of {', '.join(ROTATION_CHOICES)}")
    generators = ({k: v for c in ROTATIONS.values() for k, v in c.items()} if what == "all"
                  else ROTATIONS[what])
    account = await find_account(runtime, name)
    account = await runtime.store.update_account(
        account.id, **{key: make() for key, make in generators.items()})
    runtime.accounts.forget()
    return account


async def set_enabled(runtime: Runtime, name: str, enabled: bool) -> Account:
    account = await find_account(runtime, name)
    account = await runtime.store.update_account(
        account.id, state="active" if enabled else "disabled")
    runtime.accounts.forget()
    return account


async def delete_account(runtime: Runtime, name: str) -> None:
    account = await find_account(runtime, name)
    await runtime.store.delete_account(account.id, {
        key: make() for c in ROTATIONS.values() for key, make in c.items()})
    runtime.accounts.forget()
