"""An HLR service over HTTP that speaks /hlr/sync's own protocol: POST {"numbers": [...]} with
JSON, answer {"result": [SyncNumberLookupResult, ...]} in the same order. Messente's API is one
(url https://api.messente.com/v1/hlr/sync with username and password); another omnirelay with an
http or sandbox provider is another. Credentials go as `Authorization: Bearer <token>`, or HTTP
Basic with username and password; they are never logged."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import httpx

from omnirelay.core.number_lookup import LookupNumber, UpstreamAnswerError, upstream_result
from omnirelay.lookups.base import LookupUnavailable

log = logging.getLogger(__name__)


class HttpLookup:
    name = "http"

    def __init__(self, url: str, *, token: str = "", username: str = "", password: str = "",
                 timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout
        self.headers = {"Accept": "application/json", "User-Agent": "omnirelay"}
        self.auth: httpx.BasicAuth | None = None
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        elif username:
            self.auth = httpx.BasicAuth(username, password)
        self._client: httpx.AsyncClient | None = None

    def _pooled(self) -> httpx.AsyncClient:
        # One client for the process, made on first use, so lookups reuse its connections
        # (and TLS sessions) instead of opening one per request.
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, auth=self.auth,
                                             headers=self.headers, follow_redirects=False)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def lookup(self, numbers: Sequence[LookupNumber]) -> list[dict[str, Any]]:
        try:
            response = await self._pooled().post(
                self.url, json={"numbers": [n.number for n in numbers]})
        except httpx.TimeoutException:
            log.warning("number lookup: the HLR service did not answer within %g s", self.timeout)
            raise LookupUnavailable(f"the number lookup service did not answer within "
                                    f"{self.timeout:g} s; nothing was charged", 504) from None
        except httpx.HTTPError as exc:
            log.warning("number lookup: cannot reach the HLR service (%s)", type(exc).__name__)
            raise LookupUnavailable("the number lookup service cannot be reached; nothing was "
                                    "charged") from None
        if response.status_code != 200:
            log.warning("number lookup: the HLR service answered HTTP %d", response.status_code)
            raise LookupUnavailable(f"the number lookup service answered HTTP "
                                    f"{response.status_code}; nothing was charged")
        try:
            return parse_answer(numbers, response.json())
        except (ValueError, UpstreamAnswerError) as exc:
            log.warning("number lookup: the HLR service's answer is unusable: %s", exc)
            raise LookupUnavailable("the number lookup service's answer was not usable; "
                                    "nothing was charged") from None


def parse_answer(numbers: Sequence[LookupNumber], body: Any) -> list[dict[str, Any]]:
    results = body.get("result") if isinstance(body, dict) else None
    if not isinstance(results, list) or len(results) != len(numbers):
        raise UpstreamAnswerError(f"expected result: an array of {len(numbers)} results")
    return [upstream_result(item, raw, f"result[{i}]")
            for i, (item, raw) in enumerate(zip(numbers, results, strict=True))]
