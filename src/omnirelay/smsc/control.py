"""The simulator's HTTP control API (bind it to 127.0.0.1 only):

    POST /inbound  {"from": "+37255500001", "to": "1234", "text": "...", "split": "udh8|udh16|sar",
                    "system_id": "optional: only to this ESME",
                    "from_ton": 0, "to_ton": 0  (optional; default: 1 for "+...", else guessed)}
                                                                       -> {"parts": N}
    POST /receipt {"id": "0000002A", "stat": "DELIVRD"}  a receipt for any id -> {"sent": 1}
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

from omnirelay.smsc.rules import MESSAGE_STATE
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
        tons = {key: body.get(key) for key in ("from_ton", "to_ton")}
        if any(value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or not 0 <= value <= 6) for value in tons.values()):
            return JSONResponse({"error": "from_ton and to_ton must be integers from 0 to 6"},
                                status_code=400)
        parts = simulator.inject_inbound(sender, recipient, text, split=split, system_id=system_id,
                                         sender_ton=tons["from_ton"], recipient_ton=tons["to_ton"])
        return JSONResponse({"parts": parts})

    async def receipt(request: Request) -> JSONResponse:
        try:
            body: Any = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body must be JSON"}, status_code=400)
        if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not body["id"]:
            return JSONResponse({"error": "id is a required string"}, status_code=400)
        state = body.get("stat", "DELIVRD")
        if state not in MESSAGE_STATE:
            return JSONResponse({"error": f"stat must be one of {', '.join(MESSAGE_STATE)}"},
                                status_code=400)
        simulator.inject_receipt(body["id"], state)
        return JSONResponse({"sent": 1})

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
        Route("/receipt", receipt, methods=["POST"]),
        Route("/ids", ids, methods=["POST"]),
        Route("/stats", stats, methods=["GET"]),
    ])
