"""The answer to a request beyond its account's accept rate (omnirelay.ratelimits), on each
surface in its own format: 429 with Retry-After in whole seconds.

Messente documents no rate limit and its error codes have none of their own; of them, 102
(Forbidden) says what happened: the request is well formed and authenticated, and refused for
now. Twilio has 20429, Too Many Requests.
"""

from __future__ import annotations

import orjson
from starlette.responses import Response

from omnirelay.api.errors import error_response
from omnirelay.core.twilio.errors import twilio_error

MESSENTE_CODE = "102"
TWILIO_CODE = 20429
STATUS = 429


def rate_limited_detail(retry_after: int) -> str:
    return (f"the account's rate limit is reached; nothing was stored; retry after "
            f"{retry_after} s")


def messente_rate_limited(retry_after: int) -> Response:
    return error_response(MESSENTE_CODE, rate_limited_detail(retry_after), None, status=STATUS,
                          headers={"Retry-After": str(retry_after)})


def twilio_rate_limited(retry_after: int) -> Response:
    error = twilio_error(TWILIO_CODE, detail=rate_limited_detail(retry_after))
    return Response(orjson.dumps(error.body()), status_code=error.status,
                    media_type="application/json", headers={"Retry-After": str(retry_after)})
