"""WhatsApp message templates: where they live, who may touch them, and the send-time check.

With a Cloud API provider on the whatsapp channel, templates are Meta's, in the WABAs that the
provider's `wabas` table assigns to accounts (by account name): an account may manage and send
with the templates of its WABAs only, and any other WABA id answers 403. Otherwise the sandbox
keeps each account's templates in the store, under any WABA id the account names, seen by that
account only; a new one is `pending` until something reads it, and is then `approved` (or
`rejected` when its name starts with `reject_`).

Sending: an omnimessage whose WhatsApp variant names a template is refused at accept (400, code
105, the source naming the field) when the provider can tell the template does not exist: in the
sandbox once the account keeps any template there (an unknown name or language, or one that is
not approved); with the Cloud API when fresh lists of all the account's WABAs are cached (an
unknown name or language only, since an approval can happen at Meta at any time). Otherwise the
message is accepted and Meta's own answer decides. The lists are cached, so the check costs a
lookup; the sandbox re-reads an account's templates at most every few seconds.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from omnirelay.channels.whatsapp import WhatsAppCloudChannel
from omnirelay.channels.whatsapp_templates import CloudTemplates, PageLink
from omnirelay.core import validation as v
from omnirelay.core import whatsapp_templates as wt
from omnirelay.core.accept import NewOmnimessage
from omnirelay.core.timefmt import utcnow
from omnirelay.core.whatsapp_templates import TemplateError
from omnirelay.store.database import Database
from omnirelay.store.queries import Account
from omnirelay.store.whatsapp_templates import TemplateStore

SANDBOX_CACHE_SECONDS = 5.0


class Backend(Protocol):
    async def listing(self, account: Account, waba_id: str, query: wt.ListQuery,
                   link: PageLink) -> dict[str, Any]: ...

    async def create(self, account: Account, waba_id: str,
                     template: wt.NewTemplate) -> dict[str, Any]: ...

    async def get(self, account: Account, waba_id: str, template_id: str) -> dict[str, Any]: ...

    async def update(self, account: Account, waba_id: str, template_id: str,
                     changes: wt.TemplateChanges) -> dict[str, Any]: ...

    async def delete(self, account: Account, waba_id: str, name: str,
                     hsm_id: str | None) -> dict[str, Any]: ...


class SandboxTemplates:
    def __init__(self, db: Database) -> None:
        self.store = TemplateStore(db)
        self._known: dict[int, tuple[float, list[tuple[str, str, str]]]] = {}

    async def listing(self, account: Account, waba_id: str, query: wt.ListQuery,
                   link: PageLink) -> dict[str, Any]:
        page = await self.store.page(account.id, waba_id, query)
        paging: dict[str, Any] = {"cursors": {}}
        if page.templates:
            first, last = page.templates[0].cursor, page.templates[-1].cursor
            paging["cursors"] = {"before": first, "after": last}
            if page.has_after:
                paging["next"] = link("after", last)
            if page.has_before:
                paging["previous"] = link("before", first)
        return {"templates": [t.body() for t in page.templates], "paging": paging}

    async def create(self, account: Account, waba_id: str,
                     template: wt.NewTemplate) -> dict[str, Any]:
        stored = await self.store.create(account.id, waba_id, template, utcnow())
        if stored is None:
            raise TemplateError("105", f"WABA {waba_id} has a template {template.name} in "
                                f"{template.language} already", "name")
        self._known.pop(account.id, None)
        return {"id": stored.id, "status": stored.status, "category": stored.category}

    async def get(self, account: Account, waba_id: str, template_id: str) -> dict[str, Any]:
        stored = await self.store.get(account.id, waba_id, template_id)
        if stored is None:
            raise wt.not_found(template_id, waba_id)
        return stored.body()

    async def update(self, account: Account, waba_id: str, template_id: str,
                     changes: wt.TemplateChanges) -> dict[str, Any]:
        if not await self.store.update(account.id, waba_id, template_id, changes, utcnow()):
            raise wt.not_found(template_id, waba_id)
        self._known.pop(account.id, None)
        return {"success": True}

    async def delete(self, account: Account, waba_id: str, name: str,
                     hsm_id: str | None) -> dict[str, Any]:
        if not await self.store.delete(account.id, waba_id, name, hsm_id):
            what = f"template {hsm_id} named {name}" if hsm_id else f"template named {name}"
            raise TemplateError("101", f"no {what} in WABA {waba_id}")
        self._known.pop(account.id, None)
        return {"success": True}

    async def known(self, account: Account) -> list[tuple[str, str, str]]:
        cached = self._known.get(account.id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < SANDBOX_CACHE_SECONDS:
            return cached[1]
        known = await self.store.known(account.id)
        self._known[account.id] = (now, known)
        return known


class CloudBackend:
    """CloudTemplates behind the WABA assignment: an account reaches its own WABAs only."""

    def __init__(self, cloud: CloudTemplates) -> None:
        self.cloud = cloud

    def _check(self, account: Account, waba_id: str) -> None:
        if not self.cloud.allows(account.name, waba_id):
            # The same answer whether the WABA exists or not.
            raise TemplateError("102", f"WABA {waba_id} is not one this account may use")

    async def listing(self, account: Account, waba_id: str, query: wt.ListQuery,
                   link: PageLink) -> dict[str, Any]:
        self._check(account, waba_id)
        return await self.cloud.listing(waba_id, query, link)

    async def create(self, account: Account, waba_id: str,
                     template: wt.NewTemplate) -> dict[str, Any]:
        self._check(account, waba_id)
        return await self.cloud.create(waba_id, template)

    async def get(self, account: Account, waba_id: str, template_id: str) -> dict[str, Any]:
        self._check(account, waba_id)
        return await self.cloud.get(waba_id, template_id)

    async def update(self, account: Account, waba_id: str, template_id: str,
                     changes: wt.TemplateChanges) -> dict[str, Any]:
        self._check(account, waba_id)
        return await self.cloud.update(waba_id, template_id, changes)

    async def delete(self, account: Account, waba_id: str, name: str,
                     hsm_id: str | None) -> dict[str, Any]:
        self._check(account, waba_id)
        return await self.cloud.delete(waba_id, name, hsm_id)


class WhatsAppTemplates:
    """The backend the whatsapp channel's provider implies, and the send-time check."""

    def __init__(self, db: Database, whatsapp: object) -> None:
        self.sandbox: SandboxTemplates | None = None
        self.cloud: CloudTemplates | None = None
        if isinstance(whatsapp, WhatsAppCloudChannel):
            self.cloud = CloudTemplates(whatsapp.settings, whatsapp.name)
            self.backend: Backend = CloudBackend(self.cloud)
        else:
            self.sandbox = SandboxTemplates(db)
            self.backend = self.sandbox

    async def check_send(self, account: Account, message: NewOmnimessage,
                         path: str = "") -> None:
        """Raises RequestError (400, code 105) for a WhatsApp template the provider knows not
        to exist (see the module docstring)."""
        for index, attempt in enumerate(message.attempts):
            template = attempt.content.get("template") if attempt.channel == "whatsapp" \
                else None
            if isinstance(template, dict):
                await self._check(account, template, v.join(v.join(path, "messages"), index))

    async def _check(self, account: Account, template: dict[str, Any], path: str) -> None:
        name = str(template.get("name"))
        language = template.get("language")
        code = str(language.get("code")) if isinstance(language, dict) else ""
        source = v.join(path, "template")
        if self.sandbox is not None:
            known = await self.sandbox.known(account)
            if not known:
                return  # the account keeps no templates here: the sandbox cannot tell
            statuses = {(n, lang): s for n, lang, s in known}
            names = {n for n, _lang, _s in known}
        else:
            assert self.cloud is not None
            pairs = self.cloud.known_for(account.name)
            if pairs is None:
                return
            statuses = dict.fromkeys(pairs, "approved")
            names = {n for n, _lang in pairs}
        if name not in names:
            v.fail(v.join(source, "name"),
                   f"WhatsApp template {name!r} is not one of this account's templates")
        status = statuses.get((name, code))
        if status is None:
            v.fail(v.join(v.join(source, "language"), "code"),
                   f"WhatsApp template {name!r} has no {code!r} translation")
        if status != "approved":
            v.fail(v.join(source, "name"),
                   f"WhatsApp template {name!r} ({code}) is {status}, not approved")
