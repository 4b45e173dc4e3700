"""The sandbox's WhatsApp message templates: each account's, per WABA id.

Every statement is scoped by account, so an account neither reads nor changes another's
templates, nor learns that they exist, even under the same WABA id. A pending template gets the
sandbox's review decision (core.whatsapp_templates.reviewed) the first time a read finds it, and
keeps it; an update sends it back to pending.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ColumnElement

from omnirelay.core.whatsapp_templates import (
    ListQuery,
    NewTemplate,
    TemplateChanges,
    TemplateError,
    decode_cursor,
    encode_cursor,
    reviewed,
    search_text,
)
from omnirelay.store.database import Database
from omnirelay.store.tables import whatsapp_templates

t = whatsapp_templates.c


@dataclass(frozen=True, slots=True)
class StoredTemplate:
    id: str
    waba_id: str
    name: str
    language: str
    category: str
    status: str
    components: list[dict[str, Any]]
    created_at: datetime

    def body(self) -> dict[str, Any]:
        """As Messente's WhatsappTemplateResponse."""
        return {"id": self.id, "name": self.name, "language": self.language,
                "category": self.category, "status": self.status,
                "components": self.components}

    @property
    def cursor(self) -> str:
        return encode_cursor(self.created_at.isoformat(), self.id)


@dataclass(frozen=True, slots=True)
class Page:
    templates: list[StoredTemplate]
    has_before: bool
    has_after: bool


def _template(row: Any) -> StoredTemplate:
    return StoredTemplate(row.id, row.waba_id, row.name, row.language, row.category, row.status,
                          list(row.components), row.created_at)


def _new_id() -> str:
    # 16 digits like Meta's template ids; random, so an id tells nothing about other accounts.
    return str(10**15 + secrets.randbelow(9 * 10**15))


def _scope(account_id: int, waba_id: str) -> ColumnElement[bool]:
    return and_(t.account_id == account_id, t.waba_id == waba_id)


def _review(conn: Connection, where: ColumnElement[bool]) -> None:
    pending = conn.execute(select(t.id, t.name).where(where, t.status == "pending")).all()
    for row in pending:
        conn.execute(update(whatsapp_templates).where(t.id == row.id, t.status == "pending")
                     .values(status=reviewed(row.name)))


def _key_after(cursor: str, source: str, *, before: bool) -> ColumnElement[bool]:
    stamp, template_id = decode_cursor(cursor, source, 2)
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        raise TemplateError("105", f"{source} is not a cursor this API gave out",
                            source) from None
    if before:
        return or_(t.created_at < when, and_(t.created_at == when, t.id < template_id))
    return or_(t.created_at > when, and_(t.created_at == when, t.id > template_id))


class TemplateStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, account_id: int, waba_id: str, template: NewTemplate,
                     now: datetime) -> StoredTemplate | None:
        """None when the WABA has a template of this name and language already."""
        stored = StoredTemplate(_new_id(), waba_id, template.name, template.language,
                                template.category, "pending", template.components, now)
        row = {"id": stored.id, "account_id": account_id, "waba_id": waba_id,
               "name": stored.name, "language": stored.language, "category": stored.category,
               "status": stored.status, "components": stored.components,
               "search_text": search_text(stored.components), "created_at": now,
               "updated_at": now}

        def work(conn: Connection) -> bool:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            statement = (dialect.insert(whatsapp_templates).values(**row)
                         .on_conflict_do_nothing().returning(t.id))
            return conn.execute(statement).first() is not None

        return stored if await self.db.write(work) else None

    async def page(self, account_id: int, waba_id: str, query: ListQuery) -> Page:
        where = _scope(account_id, waba_id)
        filters: list[ColumnElement[bool]] = []
        if query.category is not None:
            filters.append(t.category == query.category)
        if query.status is not None:
            filters.append(t.status == query.status)
        if query.language is not None:
            filters.append(t.language == query.language)
        if query.name is not None:
            filters.append(t.name.contains(query.name.lower(), autoescape=True))
        if query.content is not None:
            filters.append(t.search_text.contains(query.content.lower(), autoescape=True))
        backwards = query.before is not None
        listing = select(whatsapp_templates).where(where, *filters)
        if query.before is not None:
            listing = listing.where(_key_after(query.before, "before", before=True))
        if query.after is not None:
            listing = listing.where(_key_after(query.after, "after", before=False))
        order = (t.created_at.desc(), t.id.desc()) if backwards else (t.created_at, t.id)
        listing = listing.order_by(*order).limit(query.limit + 1)

        def work(conn: Connection) -> Page:
            _review(conn, where)
            rows = [_template(r) for r in conn.execute(listing)]
            more = len(rows) > query.limit
            rows = rows[:query.limit]
            if backwards:
                rows.reverse()
                return Page(rows, has_before=more, has_after=True)
            return Page(rows, has_before=query.after is not None, has_after=more)

        return await self.db.write(work)

    async def get(self, account_id: int, waba_id: str, template_id: str
                  ) -> StoredTemplate | None:
        where = and_(_scope(account_id, waba_id), t.id == template_id)

        def work(conn: Connection) -> StoredTemplate | None:
            _review(conn, where)
            row = conn.execute(select(whatsapp_templates).where(where)).first()
            return None if row is None else _template(row)

        return await self.db.write(work)

    async def update(self, account_id: int, waba_id: str, template_id: str,
                     changes: TemplateChanges, now: datetime) -> bool:
        """An edited template goes back to review: pending until the next read."""
        values: dict[str, Any] = {"status": "pending", "updated_at": now}
        if changes.category is not None:
            values["category"] = changes.category
        if changes.components is not None:
            values["components"] = changes.components
            values["search_text"] = search_text(changes.components)
        where = and_(_scope(account_id, waba_id), t.id == template_id)
        return await self.db.write(lambda conn: bool(conn.execute(
            update(whatsapp_templates).where(where).values(**values)).rowcount))

    async def delete(self, account_id: int, waba_id: str, name: str,
                     template_id: str | None) -> int:
        """Every language of the name, or only the one with `template_id`; how many went."""
        where = and_(_scope(account_id, waba_id), t.name == name)
        if template_id is not None:
            where = and_(where, t.id == template_id)
        return await self.db.write(lambda conn: int(conn.execute(
            delete(whatsapp_templates).where(where)).rowcount))

    async def known(self, account_id: int) -> list[tuple[str, str, str]]:
        """(name, language, status) of each of the account's templates, in any WABA, with a
        pending one's status as its review will decide."""
        def work(conn: Connection) -> list[tuple[str, str, str]]:
            rows = conn.execute(select(t.name, t.language, t.status)
                                .where(t.account_id == account_id))
            return [(r.name, r.language, reviewed(r.name) if r.status == "pending" else r.status)
                    for r in rows]

        return await self.db.read(work)
