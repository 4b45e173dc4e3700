"""The simulator's HTTP control API (bind it to 127.0.0.1 only):

    POST /inbound  {"from": "+37255500001", "to": "1234", "text": "...", "split": "udh8|udh16|sar",
                    "system_id": "optional: only to this ESME"}       -> {"parts": N}
    POST /drop                                                         -> {"dropped": N connections}
    POST /ids     {"next": 1}   reuse ids from that number on          -> {"next": N}
    GET  /stats                                                        -> counters (submitted, ...)
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from omnirelay.smsc.simulator import SmscSimulator

_SPLITS = ("udh8", "udh16", "sar")


def control_app(simulator: SmscSimulator) -> Starlette:
    async def inbound(request: Request) -> JSONResponse:
        try:
            body: Any = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body must be JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
        sender, recipient, text = body.get("from"), body.get("to"), body.get("text")
        split = body.get("split", "udh8")
        system_id = body.get("system_id")
        if not (isinstance(sender, str) and sender and isinstance(recipient, str) and recipient
                and isinstance(text, str)):
            return JSONResponse({"error": "from, to and text are required strings"}, status_code=400)
        if split not in _SPLITS:
            return JSONResponse({"error": f"split must be one of {', '.join(_SPLITS)}"}, status_code=400)
        if system_id is not None and not isinstance(system_id, str):
            return JSONResponse({"error": "system_id must be a string"}, status_code=400)
        parts = simulator.inject_inbound(sender, recipient, text, split=split, system_id=system_id)
        return JSONResponse({"parts": parts})

    async def drop(request: Request) -> JSONResponse:
        return JSONResponse({"dropped": simulator.drop_links()})

    async def ids(request: Request) -> JSONResponse:
        try:
            body: Any = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body must be JSON"}, status_code=400)
        following = body.get("next", 1) if isinstance(body, dict) else None
        if not isinstance(following, int) or isinstance(following, bool) or following < 1:
            return JSONResponse({"error": "next must be a positive integer"}, status_code=400)
        simulator.restart_ids(following)
        return JSONResponse({"next": following})

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(simulator.snapshot())

    return Starlette(routes=[
        Route("/inbound", inbound, methods=["POST"]),
        Route("/drop", drop, methods=["POST"]),
        Route("/ids", ids, methods=["POST"]),
        Route("/stats", stats, methods=["GET"]),
    ])
