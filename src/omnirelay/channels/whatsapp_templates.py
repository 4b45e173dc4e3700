"""Meta's message-template endpoints, for the WhatsApp Templates API with a Cloud API provider.

    GET    /{version}/{waba_id}/message_templates       list (limit, before/after, filters)
    POST   /{version}/{waba_id}/message_templates       create -> {id, status, category}
    GET    /{version}/{template_id}                     one template
    POST   /{version}/{template_id}                     edit (category, components)
    DELETE /{version}/{waba_id}/message_templates       by name (and hsm_id)

All with the provider's access token and HTTP settings. A template fetched or edited by id is
first checked to be in the WABA of the path (a filtered list of that WABA must hold the id): the
token may reach other WABAs, which the caller may not. Graph errors become Messente's error
shape: a refused request 400 (code 105), an unknown template 404 (101), a token without the
permission 403 (102), a refused or expired token 500 (104, and an error log), throttling and
outages 503 (104) with Retry-After. Graph's paging URLs carry the token, so they never reach a
client: the answer's `next`/`previous` point at the gateway's own list.

Each WABA's list of (name, language) is cached for the send-time check
(`template_cache_seconds`); a stale or missing list is fetched in the background.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from omnirelay.channels.http_upstream import json_object, new_client, retry_after_header
from omnirelay.channels.whatsapp import AUTH_CODES, THROTTLED, WhatsAppSettings
from omnirelay.core import whatsapp_templates as wt
from omnirelay.core.whatsapp_templates import TemplateError

log = logging.getLogger(__name__)

FIELDS = "id,name,language,status,category,components"
UNAVAILABLE_RETRY = 5.0
REFRESH_BACKOFF = 30.0  # seconds between background fetches of a list that failed
MAX_PAGES = 50  # of 500 templates: more than Meta lets a WABA have
NONEXISTENT_OBJECT = 33  # Graph error_subcode: no object with that id (or not readable)

# cursor key ("before" or "after"), cursor -> the gateway's URL of that page
PageLink = Callable[[str, str], str]
Known = frozenset[tuple[str, str]]


class CloudTemplates:
    def __init__(self, settings: WhatsAppSettings, name: str) -> None:
        self.settings = settings
        self.name = name
        self._known: dict[str, tuple[float, Known]] = {}
        self._refreshing: dict[str, asyncio.Task[None]] = {}
        self._failed_at: dict[str, float] = {}

    def wabas_of(self, account_name: str) -> list[str]:
        return [waba for waba, names in self.settings.wabas.items() if account_name in names]

    def allows(self, account_name: str, waba_id: str) -> bool:
        return account_name in self.settings.wabas.get(waba_id, ())

    # --- the five operations ----------------------------------------------------------------------

    async def listing(self, waba_id: str, query: wt.ListQuery, link: PageLink) -> dict[str, Any]:
        params = {"fields": FIELDS, **wt.cloud_list_params(query)}
        answer = await self._call("GET", f"/{waba_id}/message_templates", params=params)
        data = answer.get("data")
        templates = [wt.messente_template(t) for t in data if isinstance(t, dict)] \
            if isinstance(data, list) else []
        paging = answer.get("paging") if isinstance(answer.get("paging"), dict) else {}
        assert isinstance(paging, dict)
        raw = paging.get("cursors") if isinstance(paging.get("cursors"), dict) else {}
        assert isinstance(raw, dict)
        cursors = {k: raw[k] for k in ("before", "after") if isinstance(raw.get(k), str)}
        out: dict[str, Any] = {"cursors": cursors}
        if paging.get("next") and "after" in cursors:
            out["next"] = link("after", cursors["after"])
        if paging.get("previous") and "before" in cursors:
            out["previous"] = link("before", cursors["before"])
        return {"templates": templates, "paging": out}

    async def create(self, waba_id: str, template: wt.NewTemplate) -> dict[str, Any]:
        answer = await self._call("POST", f"/{waba_id}/message_templates",
                                  json=wt.cloud_new_template(template))
        if not answer.get("id"):
            raise self._malformed("a created template without an id")
        self._learn(waba_id, template.name, template.language)
        return wt.messente_created(answer, template.category)

    async def get(self, waba_id: str, template_id: str) -> dict[str, Any]:
        template = await self._in_waba(waba_id, template_id)
        return wt.messente_template(template)

    async def update(self, waba_id: str, template_id: str,
                     changes: wt.TemplateChanges) -> dict[str, Any]:
        await self._in_waba(waba_id, template_id)
        await self._call("POST", f"/{template_id}", json=wt.cloud_changes(changes))
        return {"success": True}

    async def delete(self, waba_id: str, name: str, hsm_id: str | None) -> dict[str, Any]:
        params = {"name": name, **({"hsm_id": hsm_id} if hsm_id is not None else {})}
        await self._call("DELETE", f"/{waba_id}/message_templates", params=params)
        cached = self._known.get(waba_id)
        if cached is not None and hsm_id is None:  # with an id only one language went
            self._known[waba_id] = (cached[0], frozenset(k for k in cached[1] if k[0] != name))
        return {"success": True}

    # --- the send-time check ----------------------------------------------------------------------

    def known_for(self, account_name: str) -> Known | None:
        """The (name, language) pairs of the account's WABAs when every list is fresh; else
        None (it cannot tell), and the stale lists are fetched in the background."""
        wabas = self.wabas_of(account_name)
        if not wabas or self.settings.template_cache_seconds <= 0:
            return None
        now = time.monotonic()
        known: set[tuple[str, str]] = set()
        fresh = True
        for waba in wabas:
            cached = self._known.get(waba)
            if cached is None or now - cached[0] > self.settings.template_cache_seconds:
                fresh = False
                self._refresh_soon(waba)
            else:
                known |= cached[1]
        return frozenset(known) if fresh else None

    def _refresh_soon(self, waba_id: str) -> None:
        running = self._refreshing.get(waba_id)
        # After a failed fetch, sends do not hammer Meta: the next try waits a while.
        failed = self._failed_at.get(waba_id)
        if failed is not None and time.monotonic() - failed < REFRESH_BACKOFF:
            return
        if running is None or running.done():
            self._refreshing[waba_id] = asyncio.get_running_loop().create_task(
                self._refresh_quietly(waba_id))

    async def _refresh_quietly(self, waba_id: str) -> None:
        try:
            await self.refresh(waba_id)
        except TemplateError as exc:
            self._failed_at[waba_id] = time.monotonic()
            log.warning("%s: could not fetch the templates of WABA %s: %s", self.name, waba_id,
                        exc.detail)
        except Exception:  # a background task: nobody else would see it
            self._failed_at[waba_id] = time.monotonic()
            log.exception("%s: fetching the templates of WABA %s failed", self.name, waba_id)

    async def refresh(self, waba_id: str) -> Known:
        known: set[tuple[str, str]] = set()
        params = {"fields": "name,language", "limit": str(wt.MAX_LIMIT)}
        for _page in range(MAX_PAGES):
            answer = await self._call("GET", f"/{waba_id}/message_templates", params=params)
            for item in answer.get("data") or []:
                if isinstance(item, dict) and isinstance(item.get("name"), str):
                    known.add((item["name"], str(item.get("language") or "")))
            after = _after(answer)
            if after is None:
                break
            params = {**params, "after": after}
        result = frozenset(known)
        self._known[waba_id] = (time.monotonic(), result)
        self._failed_at.pop(waba_id, None)
        return result

    def _learn(self, waba_id: str, name: str, language: str) -> None:
        cached = self._known.get(waba_id)
        if cached is not None:
            self._known[waba_id] = (cached[0], cached[1] | {(name, language)})

    # --- HTTP -------------------------------------------------------------------------------------

    async def _in_waba(self, waba_id: str, template_id: str) -> dict[str, Any]:
        template = await self._call("GET", f"/{template_id}", params={"fields": FIELDS})
        name, language = template.get("name"), template.get("language")
        if isinstance(name, str) and isinstance(language, str):
            params = {"fields": "id", "name": name, "language": language,
                      "limit": str(wt.MAX_LIMIT)}
            for _page in range(MAX_PAGES):
                answer = await self._call("GET", f"/{waba_id}/message_templates", params=params)
                data = answer.get("data")
                if any(isinstance(t, dict) and str(t.get("id")) == template_id
                       for t in (data if isinstance(data, list) else [])):
                    return template
                after = _after(answer)
                if after is None:
                    break
                params = {**params, "after": after}
        raise wt.not_found(template_id, waba_id)

    async def _call(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                    json: Mapping[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.settings.access_token}"}
        url = f"/{self.settings.api_version}{path}"
        try:
            async with new_client(self.settings.base_url, self.settings.http, headers) as client:
                response = await client.request(method, url, params=params, json=json)
        except httpx.HTTPError as exc:
            log.warning("%s: %s %s: %s", self.name, method, path, type(exc).__name__)
            raise TemplateError("104", f"the WhatsApp Cloud API did not answer "
                                f"({type(exc).__name__}); try again shortly",
                                status=503, retry_after=UNAVAILABLE_RETRY) from None
        if response.is_success:
            body = json_object(response)
            if not body and response.content.strip() not in (b"{}",):
                raise self._malformed("an answer that is not a JSON object")
            return body
        raise self._refusal(response)

    def _malformed(self, what: str) -> TemplateError:
        log.error("%s: the WhatsApp Cloud API sent %s", self.name, what)
        return TemplateError("104", f"the WhatsApp Cloud API sent {what}", status=500)

    def _refusal(self, response: httpx.Response) -> TemplateError:
        error = json_object(response).get("error")
        error = error if isinstance(error, dict) else {}
        code = error.get("code") if isinstance(error.get("code"), int) else None
        subcode = error.get("error_subcode")
        said = str(error.get("error_user_msg") or error.get("message") or
                   response.reason_phrase or "error")[:300]
        detail = f"WhatsApp Cloud API: {said} (code {code if code is not None else '-'})"
        status = response.status_code
        if status == 429 or code in THROTTLED or status >= 500 or error.get("is_transient"):
            wait = retry_after_header(response)
            default = THROTTLED.get(code, UNAVAILABLE_RETRY) if code is not None \
                else UNAVAILABLE_RETRY
            return TemplateError("104", detail, status=503,
                                 retry_after=wait if wait is not None else default)
        if status == 401 or code == 190:
            # The token itself is never logged; the operator needs to know which setting.
            log.error("%s: Meta refused the access token (HTTP %d, code %s); check "
                      "[providers.%s] access_token", self.name, status, code, self.name)
            return TemplateError("104", "the gateway's WhatsApp access token was refused; "
                                 "the operator must renew it", status=500)
        if code in AUTH_CODES or (code is not None and 200 <= code <= 299) or status == 403:
            return TemplateError("102", detail)
        if (code == 100 and subcode == NONEXISTENT_OBJECT) or status == 404:
            return TemplateError("101", detail)
        return TemplateError("105", detail)


def _after(answer: dict[str, Any]) -> str | None:
    paging = answer.get("paging")
    if not isinstance(paging, dict) or not paging.get("next"):
        return None
    cursors = paging.get("cursors")
    after = cursors.get("after") if isinstance(cursors, dict) else None
    return after if isinstance(after, str) and after else None
