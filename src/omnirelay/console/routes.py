"""The console's own routes: its page and assets, and signing in and out.

Everything else the console shows or does goes through the public endpoints (/v1 history and
send, /admin/v1 for the operator) with the session cookie; see api/auth.py. The assets are
package data, so the console works with no network and no build step.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from omnirelay.api.auth import (
    account_fingerprint,
    check_api_user,
    console_session,
    operator_fingerprint,
)
from omnirelay.api.errors import error_response
from omnirelay.api.requests import BodyError, read_json
from omnirelay.console.limits import FailedSignIns
from omnirelay.console.sessions import COOKIE, SessionCodec
from omnirelay.core.secrets import same_secret
from omnirelay.runtime import Runtime

PREFIX = "/console"
ASSETS = {"console.js": "text/javascript; charset=utf-8",
          "console.css": "text/css; charset=utf-8",
          "favicon.svg": "image/svg+xml"}
# The page runs only its own script and style; nothing from elsewhere, no inline code.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_MAX_SIGN_IN_BYTES = 4096


def _asset(name: str) -> bytes:
    return resources.files("omnirelay.console").joinpath("static", name).read_bytes()


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers={**NO_STORE, **(headers or {})})


def _secure(request: Request, runtime: Runtime) -> bool:
    """Secure cookies when the browser speaks HTTPS to us, directly or through a proxy that
    public_url names."""
    return request.url.scheme == "https" or runtime.settings.base_url.startswith("https://")


def _same_origin(request: Request) -> bool:
    """A sign-in posted by another site's page is refused (login CSRF); browsers send Origin on
    every cross-origin POST."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


def install(app: Any, runtime: Runtime) -> None:
    codec = SessionCodec(runtime.settings.secret_key)
    app.state.console_codec = codec
    lifetime = runtime.settings.console.session_minutes * 60
    operator_token = runtime.settings.admin.token
    failures = FailedSignIns()
    index = _asset("index.html")
    assets = {name: _asset(name) for name in ASSETS}

    async def page(_request: Request) -> Response:
        return Response(index, media_type="text/html; charset=utf-8",
                        headers={**SECURITY_HEADERS, **NO_STORE})

    async def asset(request: Request) -> Response:
        name: str = request.path_params["name"]
        if name not in assets:
            return error_response("101", "no such resource")
        return Response(assets[name], media_type=ASSETS[name],
                        headers={"Cache-Control": "no-cache", **SECURITY_HEADERS})

    def described(kind: str, name: str, csrf: str, expires: int) -> dict[str, Any]:
        return {"kind": kind, "name": name, "csrf_token": csrf, "expires": expires,
                "operator_api": bool(operator_token)}

    async def session(request: Request) -> Response:
        try:
            current = console_session(request)
        except HTTPException:
            current = None
        if current is None:
            return _json(401, {"signed_in": False, "operator_api": bool(operator_token)})
        name = "operator"
        if current.kind == "account":
            account = await runtime.accounts.by_id(current.account_id or 0)
            if (account is None or account.state != "active" or not same_secret(
                    current.fingerprint, account_fingerprint(codec, account))):
                return _json(401, {"signed_in": False, "operator_api": bool(operator_token)})
            name = account.name
        elif not operator_token or not same_secret(
                current.fingerprint, operator_fingerprint(codec, operator_token)):
            return _json(401, {"signed_in": False, "operator_api": bool(operator_token)})
        return _json(200, {"signed_in": True, **described(
            current.kind, name, codec.csrf_token(current), current.expires)})

    async def sign_in(request: Request) -> Response:
        address = request.client.host if request.client else "-"
        wait = failures.retry_after(address)
        if wait:
            return error_response("102", f"too many failed sign-ins from this address; try again "
                                  f"in {wait} s", status=429, headers={"Retry-After": str(wait)})
        answer = await check_sign_in(request)
        if answer.status_code in (401, 403):
            failures.failed(address)
        return answer

    async def check_sign_in(request: Request) -> Response:
        if not _same_origin(request):
            return error_response("102", "sign-in from another site is refused")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return error_response("105", "send the credentials as application/json")
        try:
            body = await read_json(request, _MAX_SIGN_IN_BYTES)
        except BodyError as exc:
            return error_response("105", exc.detail, exc.source)
        if not isinstance(body, dict):
            return error_response("105", "expected an object")
        token, username, password = body.get("token"), body.get("username"), body.get("password")
        if isinstance(token, str) and token:
            # Compared even when no operator token is set, so both cases take the same path.
            ok = same_secret(token, operator_token or "\x00unset") and bool(operator_token)
            if not ok:
                return error_response("103", "wrong operator token")
            cookie, made = codec.issue("operator", None, operator_fingerprint(codec, operator_token),
                                       lifetime)
            name, kind = "operator", "operator"
        elif isinstance(username, str) and isinstance(password, str) and username:
            account = await check_api_user(runtime.accounts, username, password)
            if account is None:
                return error_response("103", "Wrong username or password")
            cookie, made = codec.issue("account", account.id, account_fingerprint(codec, account),
                                       lifetime)
            name, kind = account.name, "account"
        else:
            return error_response("106", "give username and password, or the operator token")
        response = _json(200, {"signed_in": True, **described(kind, name, codec.csrf_token(made),
                                                               made.expires)})
        response.set_cookie(COOKIE, cookie, max_age=lifetime, path="/", httponly=True,
                            samesite="strict", secure=_secure(request, runtime))
        return response

    async def sign_out(request: Request) -> Response:
        # console_session refuses a sign-out without the CSRF token (403): another site cannot
        # sign the viewer out either. A session that has already ended is cleared all the same.
        try:
            console_session(request)
        except HTTPException as exc:
            if exc.status_code != 401:
                raise
        response = _json(200, {"signed_in": False},
                         headers={"Clear-Site-Data": '"cache", "cookies", "storage"'})
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                               secure=_secure(request, runtime))
        return response

    app.router.routes.extend([
        Route(PREFIX, page, methods=["GET"], include_in_schema=False),
        Route(PREFIX + "/", page, methods=["GET"], include_in_schema=False),
        Route(PREFIX + "/static/{name}", asset, methods=["GET"], include_in_schema=False),
        Route(PREFIX + "/session", session, methods=["GET"], include_in_schema=False),
        Route(PREFIX + "/sign-in", sign_in, methods=["POST"], include_in_schema=False),
        Route(PREFIX + "/sign-out", sign_out, methods=["POST"], include_in_schema=False),
    ])
