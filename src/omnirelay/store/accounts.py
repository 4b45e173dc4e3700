"""Accounts: their settings, their secrets (sealed at rest, opened on read) and the inbound
numbers each owns."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select, update
from sqlalchemy.sql import ColumnElement

from omnirelay.core.addresses import number_keys
from omnirelay.core.secrets import SecretBox
from omnirelay.store.database import Database
from omnirelay.store.phonebook import forget_account as forget_phonebook
from omnirelay.store.tables import accounts, inbound_numbers


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    name: str
    api_username: str
    api_password: str
    twilio_account_sid: str
    twilio_auth_token: str
    inbound_secret: str
    default_sender: str
    dlr_url: str | None
    inbound_url: str | None
    replacements: dict[str, str] | None
    created_at: datetime
    state: str = "active"
    max_rps: int | None = None  # omnimessages accepted per second (omnirelay.ratelimits)
    max_send_rps: int | None = None  # attempts handed to channels per second

    def __repr__(self) -> str:  # never print secrets, not even in a traceback
        return f"Account(id={self.id}, name={self.name!r})"


class Accounts:
    def __init__(self, db: Database, box: SecretBox) -> None:
        self.db = db
        self.box = box

    async def create_account(
        self, *, name: str, api_username: str, api_password: str, twilio_account_sid: str,
        twilio_auth_token: str, inbound_secret: str, default_sender: str, now: datetime,
        dlr_url: str | None = None, inbound_url: str | None = None,
    ) -> Account:
        values = {
            "name": name,
            "api_username": api_username,
            "api_password_enc": self.box.seal(api_password),
            "twilio_account_sid": twilio_account_sid,
            "twilio_auth_token_enc": self.box.seal(twilio_auth_token),
            "inbound_secret_enc": self.box.seal(inbound_secret),
            "default_sender": default_sender,
            "dlr_url": dlr_url,
            "inbound_url": inbound_url,
            "created_at": now,
        }

        def work(conn: Connection) -> int:
            return int(conn.execute(insert(accounts).values(**values)
                                    .returning(accounts.c.id)).scalar_one())

        account_id = await self.db.write(work)
        account = await self.account_by(accounts.c.id == account_id)
        assert account is not None
        return account

    async def account_by_name(self, name: str) -> Account | None:
        return await self.account_by(accounts.c.name == name)

    # Credentials only open active accounts: a disabled or deleted one is as unknown as a name
    # that never existed, and takes the same path in authentication.
    async def account_by_username(self, username: str) -> Account | None:
        return await self.account_by(and_(accounts.c.api_username == username,
                                          accounts.c.state == "active"))

    async def account_by_sid(self, sid: str) -> Account | None:
        return await self.account_by(and_(accounts.c.twilio_account_sid == sid,
                                          accounts.c.state == "active"))

    async def account_by_id(self, account_id: int) -> Account | None:
        return await self.account_by(accounts.c.id == account_id)

    async def account_by(self, condition: ColumnElement[bool]) -> Account | None:
        def work(conn: Connection) -> Any:
            return conn.execute(select(accounts).where(condition)).mappings().first()

        row = await self.db.read(work)
        return None if row is None else self._account(row)

    async def list_accounts(self) -> list[Account]:
        def work(conn: Connection) -> Any:
            return conn.execute(select(accounts).where(accounts.c.state != "deleted")
                                .order_by(accounts.c.id)).mappings().all()

        return [self._account(row) for row in await self.db.read(work)]

    async def count_accounts(self) -> int:
        def work(conn: Connection) -> int:
            return int(conn.execute(select(func.count()).select_from(accounts)).scalar_one())

        return await self.db.read(work)

    async def update_account(self, account_id: int, **changes: Any) -> Account:
        """Change settings or secrets; secrets are given in clear and sealed here."""
        values: dict[str, Any] = {}
        for key, value in changes.items():
            if key in {"api_password", "twilio_auth_token", "inbound_secret"}:
                values[key + "_enc"] = self.box.seal(value)
            else:
                values[key] = value

        def work(conn: Connection) -> None:
            conn.execute(update(accounts).where(accounts.c.id == account_id).values(**values))

        await self.db.write(work)
        account = await self.account_by_id(account_id)
        assert account is not None
        return account

    async def delete_account(self, account_id: int, scrubbed: Mapping[str, str]) -> None:
        """The account's credentials stop opening anything and its names are free again; its
        messages, inbound and callbacks stay until retention purges them. `scrubbed`: fresh
        random secrets, in clear, to seal over the old ones."""
        def work(conn: Connection) -> None:
            freed = f"~deleted~{account_id}"  # no name, username or SID can look like this
            conn.execute(update(accounts).where(accounts.c.id == account_id).values(
                state="deleted", name=freed, api_username=freed, twilio_account_sid=freed,
                **{key + "_enc": self.box.seal(value) for key, value in scrubbed.items()}))
            conn.execute(delete(inbound_numbers).where(inbound_numbers.c.account_id == account_id))
            forget_phonebook(conn, account_id)

        await self.db.write(work)

    async def set_inbound_numbers(self, account_id: int, numbers: Iterable[str]) -> None:
        wanted = list(dict.fromkeys(numbers))

        def work(conn: Connection) -> None:
            conn.execute(delete(inbound_numbers).where(inbound_numbers.c.account_id == account_id))
            conn.execute(delete(inbound_numbers).where(inbound_numbers.c.number.in_(wanted)))
            if wanted:
                conn.execute(insert(inbound_numbers),
                             [{"number": n, "account_id": account_id} for n in wanted])

        await self.db.write(work)

    async def inbound_numbers_of(self, account_id: int) -> list[str]:
        def work(conn: Connection) -> list[str]:
            query = select(inbound_numbers.c.number).where(
                inbound_numbers.c.account_id == account_id).order_by(inbound_numbers.c.number)
            return list(conn.execute(query).scalars())

        return await self.db.read(work)

    async def owners(self, recipients: list[str]) -> dict[str, Account]:
        """recipient -> the account owning it, registered with or without its '+'."""
        keys = {key: recipient for recipient in recipients for key in number_keys(recipient)}

        def work(conn: Connection) -> list[tuple[str, int]]:
            return [(r[0], r[1]) for r in conn.execute(
                select(inbound_numbers.c.number, inbound_numbers.c.account_id)
                .where(inbound_numbers.c.number.in_(list(keys))))]

        owners: dict[str, Account] = {}
        # the recipient's own spelling wins over another form of it
        for number, account_id in sorted(await self.db.read(work),
                                         key=lambda row: row[0] != keys[row[0]]):
            account = await self.account_by_id(account_id)
            if account is not None:
                owners.setdefault(keys[number], account)
        return owners

    def _account(self, row: Any) -> Account:
        return Account(
            id=row["id"], name=row["name"], api_username=row["api_username"],
            api_password=self.box.open(row["api_password_enc"]),
            twilio_account_sid=row["twilio_account_sid"],
            twilio_auth_token=self.box.open(row["twilio_auth_token_enc"]),
            inbound_secret=self.box.open(row["inbound_secret_enc"]),
            default_sender=row["default_sender"], dlr_url=row["dlr_url"],
            inbound_url=row["inbound_url"], replacements=row["replacements"],
            created_at=row["created_at"], state=row["state"],
            max_rps=row["max_rps"], max_send_rps=row["max_send_rps"],
        )
