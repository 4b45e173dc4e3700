"""The phonebook's queries: each account's blacklist, contacts and groups.

Every statement is scoped by account, so one account can neither read nor change another's
entries, nor learn that they exist. A second insert of an existing key is told apart with
ON CONFLICT DO NOTHING rather than by catching an integrity error, which would abort the
surrounding PostgreSQL transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import Connection, Table, and_, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Select

from omnirelay.store.database import Database
from omnirelay.store.tables import (
    phonebook_blacklist,
    phonebook_contacts,
    phonebook_groups,
    phonebook_members,
)

DETAIL_COLUMNS = ("email", "first_name", "last_name", "company", "title", "custom", "custom2",
                  "custom3", "custom4")


@dataclass(frozen=True, slots=True)
class Contact:
    phone: str
    details: dict[str, str | None]  # by column name


@dataclass(frozen=True, slots=True)
class Group:
    id: str
    name: str
    created_at: datetime
    contacts_count: int


class Membership(Enum):
    ADDED = "added"
    ALREADY = "already"  # the contact was in the group before
    MISSING = "missing"  # no such contact, or no such group, in this account


def _insert_new(conn: Connection, table: Table, row: dict[str, Any]) -> bool:
    """Insert `row` unless its key exists; True when it was inserted."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    # RETURNING rather than rowcount, which psycopg reports as -1 here
    key = table.primary_key.columns.values()[0]
    statement = dialect.insert(table).values(**row).on_conflict_do_nothing().returning(key)
    return conn.execute(statement).first() is not None


def _contact(row: Any) -> Contact:
    return Contact(row.phone, {name: getattr(row, name) for name in DETAIL_COLUMNS})


# counted per group on the members' primary key (group_id, phone)
_MEMBERS = (select(func.count()).where(phonebook_members.c.group_id == phonebook_groups.c.id)
            .correlate(phonebook_groups).scalar_subquery())


def _groups(account_id: int) -> Select[Any]:
    g = phonebook_groups.c
    return (select(g.id, g.name, g.created_at, _MEMBERS)
            .where(g.account_id == account_id)
            .order_by(g.created_at, g.id))


def _group(row: Any) -> Group:
    return Group(row[0], row[1], row[2], int(row[3]))


def forget_account(conn: Connection, account_id: int) -> None:
    """A deleted account's phonebook goes at once: it is personal data, and nobody can read it
    any more. (The account's row stays, so its foreign keys do not cascade.)"""
    for table in (phonebook_groups, phonebook_contacts, phonebook_blacklist):
        conn.execute(delete(table).where(table.c.account_id == account_id))


class Phonebook:
    def __init__(self, db: Database) -> None:
        self.db = db

    # blacklist -----------------------------------------------------------------------------

    async def blacklist(self, account_id: int) -> list[str]:
        b = phonebook_blacklist.c

        def work(conn: Connection) -> list[str]:
            return list(conn.execute(select(b.phone).where(b.account_id == account_id)
                                     .order_by(b.phone)).scalars())

        return await self.db.read(work)

    async def is_blacklisted(self, account_id: int, phone: str) -> bool:
        b = phonebook_blacklist.c

        def work(conn: Connection) -> bool:
            return conn.execute(select(b.phone).where(
                b.account_id == account_id, b.phone == phone)).first() is not None

        return await self.db.read(work)

    async def add_to_blacklist(self, account_id: int, phone: str, now: datetime) -> bool:
        """False when the number was blacklisted already."""
        return await self.db.write(lambda conn: _insert_new(conn, phonebook_blacklist, {
            "account_id": account_id, "phone": phone, "created_at": now}))

    async def remove_from_blacklist(self, account_id: int, phone: str) -> bool:
        b = phonebook_blacklist.c
        return await self.db.write(lambda conn: bool(conn.execute(delete(phonebook_blacklist).where(
            b.account_id == account_id, b.phone == phone)).rowcount))

    # contacts ------------------------------------------------------------------------------

    async def create_contact(self, account_id: int, phone: str,
                             details: dict[str, str | None], now: datetime) -> Contact | None:
        """None when the account has a contact with this number already."""
        row = {"account_id": account_id, "phone": phone, **details, "created_at": now,
               "updated_at": now}
        created = await self.db.write(lambda conn: _insert_new(conn, phonebook_contacts, row))
        return Contact(phone, dict(details)) if created else None

    async def contact(self, account_id: int, phone: str) -> Contact | None:
        def work(conn: Connection) -> Contact | None:
            row = conn.execute(self._one_contact(account_id, phone)).first()
            return None if row is None else _contact(row)

        return await self.db.read(work)

    @staticmethod
    def _one_contact(account_id: int, phone: str) -> Select[Any]:
        c = phonebook_contacts.c
        return select(phonebook_contacts).where(c.account_id == account_id, c.phone == phone)

    async def contacts(self, account_id: int, group_ids: Sequence[str] = ()) -> list[Contact]:
        """The account's contacts; with `group_ids`, those in any of these groups, each once."""
        c = phonebook_contacts.c
        query = select(phonebook_contacts).where(c.account_id == account_id).order_by(c.phone)
        if group_ids:
            m = phonebook_members.c
            query = query.where(select(m.phone).where(
                m.account_id == account_id, m.phone == c.phone,
                m.group_id.in_(list(group_ids))).exists())

        def work(conn: Connection) -> list[Contact]:
            return [_contact(row) for row in conn.execute(query)]

        return await self.db.read(work)

    async def update_contact(self, account_id: int, phone: str,
                             changes: dict[str, str | None], now: datetime) -> Contact | None:
        c = phonebook_contacts.c

        def work(conn: Connection) -> Contact | None:
            conn.execute(update(phonebook_contacts)
                         .where(c.account_id == account_id, c.phone == phone)
                         .values(**changes, updated_at=now))
            row = conn.execute(self._one_contact(account_id, phone)).first()
            return None if row is None else _contact(row)

        return await self.db.write(work)

    async def delete_contact(self, account_id: int, phone: str) -> bool:
        """Its group memberships go with it (the foreign key cascades)."""
        c = phonebook_contacts.c
        return await self.db.write(lambda conn: bool(conn.execute(delete(phonebook_contacts).where(
            c.account_id == account_id, c.phone == phone)).rowcount))

    async def contact_groups(self, account_id: int, phone: str) -> list[Group] | None:
        """The groups a contact is in; None when there is no such contact."""
        m = phonebook_members.c

        def work(conn: Connection) -> list[Group] | None:
            if conn.execute(self._one_contact(account_id, phone)).first() is None:
                return None
            mine = select(m.group_id).where(m.account_id == account_id, m.phone == phone)
            return [_group(row) for row in conn.execute(
                _groups(account_id).where(phonebook_groups.c.id.in_(mine)))]

        return await self.db.read(work)

    # groups --------------------------------------------------------------------------------

    async def create_group(self, account_id: int, name: str, now: datetime) -> Group:
        group = Group(str(uuid.uuid4()), name, now, 0)
        await self.db.write(lambda conn: conn.execute(phonebook_groups.insert().values(
            id=group.id, account_id=account_id, name=name, created_at=now)))
        return group

    async def group(self, account_id: int, group_id: str) -> Group | None:
        def work(conn: Connection) -> Group | None:
            row = conn.execute(_groups(account_id).where(phonebook_groups.c.id == group_id)).first()
            return None if row is None else _group(row)

        return await self.db.read(work)

    async def groups(self, account_id: int) -> list[Group]:
        return await self.db.read(
            lambda conn: [_group(row) for row in conn.execute(_groups(account_id))])

    async def rename_group(self, account_id: int, group_id: str, name: str) -> Group | None:
        g = phonebook_groups.c

        def work(conn: Connection) -> Group | None:
            conn.execute(update(phonebook_groups).where(g.account_id == account_id,
                                                        g.id == group_id).values(name=name))
            row = conn.execute(_groups(account_id).where(g.id == group_id)).first()
            return None if row is None else _group(row)

        return await self.db.write(work)

    async def delete_group(self, account_id: int, group_id: str) -> bool:
        """Its memberships go with it; its contacts stay."""
        g = phonebook_groups.c
        return await self.db.write(lambda conn: bool(conn.execute(delete(phonebook_groups).where(
            g.account_id == account_id, g.id == group_id)).rowcount))

    async def add_member(self, account_id: int, group_id: str, phone: str,
                         now: datetime) -> Membership:
        g, c = phonebook_groups.c, phonebook_contacts.c

        def work(conn: Connection) -> Membership:
            # locked, so that neither is deleted before the membership that names it is in
            group = conn.execute(select(g.id).where(g.account_id == account_id,
                                                    g.id == group_id).with_for_update()).first()
            contact = conn.execute(select(c.phone).where(c.account_id == account_id,
                                                         c.phone == phone).with_for_update()).first()
            if group is None or contact is None:
                return Membership.MISSING
            added = _insert_new(conn, phonebook_members, {
                "group_id": group_id, "account_id": account_id, "phone": phone,
                "created_at": now})
            return Membership.ADDED if added else Membership.ALREADY

        return await self.db.write(work)

    async def remove_member(self, account_id: int, group_id: str, phone: str) -> bool:
        m = phonebook_members.c
        return await self.db.write(lambda conn: bool(conn.execute(delete(phonebook_members).where(
            and_(m.account_id == account_id, m.group_id == group_id, m.phone == phone))).rowcount))
