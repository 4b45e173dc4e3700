"""The Idempotency-Key header on the create routes, the same for every surface.

A route reads the key (`read_key`), then hands `idempotent` a `build` that validates the request
and prepares its messages and its answer without storing anything. Without a key that is just
accept-and-answer. With one, the answer is committed with the messages; a retry with the same
body gets the stored answer again (marked `Idempotent-Replayed: true`) and sends nothing, and
one with another body gets the surface's 422 from `conflict`. A request `build` refuses (a 4xx)
stores nothing, so its key stays free. So does one whose store fails (503): the key commits in
the accept's transaction or not at all, and when a broken connection leaves that unknown, the
retry finds out — it replays the answer if the commit happened and sends once if it did not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from omnirelay.core.accept import NewOmnimessage
from omnirelay.core.idempotency import HEADER, MAX_LENGTH, key_problem
from omnirelay.idempotency import Claim
from omnirelay.runtime import Runtime
from omnirelay.store.idempotency import Remembered

REPLAYED = "Idempotent-Replayed"
# The header as /openapi.json shows it on each create (whose 422 documents a reused key).
OPENAPI_PARAMETER: dict[str, Any] = {
    "name": HEADER, "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_LENGTH,
               "pattern": "^[ -~]+$"},
    "description": "Makes a retry safe: the same key with the same request within the window "
                   "answers the first answer again (with Idempotent-Replayed: true) and sends "
                   "nothing; with another request it answers 422. Per account; 1 to 255 "
                   "printable ASCII characters."}


@dataclass(frozen=True, slots=True)
class Created:
    """What a valid create request stores and answers, before anything is stored."""

    messages: Sequence[NewOmnimessage]
    status: int
    body: bytes


Build = Callable[[], Awaitable[Created | Response]]


def read_key(request: Request) -> tuple[str | None, str | None]:
    """(the key or None without the header, why the header is unusable or None)."""
    values = request.headers.getlist(HEADER)
    if not values:
        return None, None
    problem = key_problem(values)
    return (None, problem) if problem is not None else (values[0], None)


async def idempotent(runtime: Runtime, account_id: int, key: str | None,
                     fingerprint: Callable[[], str], build: Build,
                     conflict: Callable[[], Response]) -> Response:
    if key is None:
        built = await build()
        if isinstance(built, Response):
            return built
        await runtime.accept(built.messages)
        return _response(built.status, built.body)

    async def first(claim: Claim) -> Response:
        built = await build()
        if isinstance(built, Response):
            return built
        await runtime.accept(built.messages, claim.record(built.status, built.body))
        return _response(built.status, built.body)

    mine = fingerprint()
    answered = await runtime.idempotency.run(account_id, key, mine, first)
    if not isinstance(answered, Remembered):
        return answered
    if answered.fingerprint != mine:
        return conflict()
    return _response(answered.status, answered.body, {REPLAYED: "true"})


def _response(status: int, body: bytes, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type="application/json", headers=headers)
