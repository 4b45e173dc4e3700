"""HTTP Basic authentication against account credentials, and the web console's session cookie
as the one alternative to it.

A wrong username and a wrong password take the same path and give the same answer: the password
is always compared, in constant time, against the account's or a stand-in.

The console (omnirelay.console) signs in once and then calls the same endpoints as any client,
with its session cookie instead of an Authorization header. The cookie is looked at only when a
request has no Authorization header, so Basic-authenticated clients pay nothing for it; a
state-changing request on a cookie must carry the session's CSRF token in X-CSRF-Token.
"""

from __future__ import annotations

import base64
import binascii

from starlette.exceptions import HTTPException
from starlette.requests import Request

from omnirelay.accounts import AccountCache
from omnirelay.console.sessions import COOKIE, CSRF_HEADER, SAFE_METHODS, Session, SessionCodec
from omnirelay.core.secrets import same_secret
from omnirelay.core.validation import control_character
from omnirelay.store.queries import Account

_STAND_IN = "omnirelay-no-such-account-stand-in-password"


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    # A control character (NUL above all, which PostgreSQL cannot compare) is in no username
    # or AccountSid, so it fails here rather than in the store.
    if not colon or control_character(username) is not None:
        return None
    return username, password


async def authenticate_api_user(accounts: AccountCache, header: str | None) -> Account | None:
    credentials = basic_credentials(header)
    if credentials is None:
        return None
    return await check_api_user(accounts, *credentials)


async def check_api_user(accounts: AccountCache, username: str, password: str) -> Account | None:
    account = await accounts.by_username(username)
    expected = account.api_password if account is not None else _STAND_IN
    if not same_secret(password, expected) or account is None:
        return None
    return account


async def authenticate_twilio(accounts: AccountCache, header: str | None) -> Account | None:
    credentials = basic_credentials(header)
    if credentials is None:
        return None
    sid, token = credentials
    account = await accounts.by_sid(sid)
    expected = account.twilio_auth_token if account is not None else _STAND_IN
    if not same_secret(token, expected) or account is None:
        return None
    return account


def console_codec(request: Request) -> SessionCodec | None:
    """The console's cookie signer, or None when the console is off (cookies then open nothing)."""
    codec: SessionCodec | None = getattr(request.app.state, "console_codec", None)
    return codec


def console_session(request: Request) -> Session | None:
    """The console session of a request that has no Authorization header, or None when it
    carries no console cookie. A cookie that is forged or expired is refused with 401 (without
    a Basic challenge, which would make the browser ask for a password); a state-changing
    request without the session's CSRF token with 403."""
    codec = console_codec(request)
    if codec is None or "authorization" in request.headers:
        return None
    cookie = request.cookies.get(COOKIE)
    if cookie is None:
        return None
    session = codec.read(cookie)
    if session is None:
        raise HTTPException(401, "the console session has ended; sign in again")
    if request.method not in SAFE_METHODS and not codec.csrf_ok(
            session, request.headers.get(CSRF_HEADER)):
        raise HTTPException(403, "missing or wrong CSRF token: send the console's X-CSRF-Token")
    return session


def account_fingerprint(codec: SessionCodec, account: Account) -> str:
    return codec.fingerprint("account", str(account.id), account.api_username, account.api_password)


def operator_fingerprint(codec: SessionCodec, token: str) -> str:
    return codec.fingerprint("operator", token)


async def console_account(request: Request, accounts: AccountCache) -> Account | None:
    """The account a console session signed in as, if it is still active with the password it
    signed in with; None when the request carries no console cookie."""
    session = console_session(request)
    if session is None:
        return None
    codec = console_codec(request)
    assert codec is not None
    if session.kind != "account" or session.account_id is None:
        raise HTTPException(401, "this console session is the operator's: these endpoints "
                                 "take an account's credentials")
    account = await accounts.by_id(session.account_id)
    current = account_fingerprint(codec, account) if account is not None else ""
    if (account is None or account.state != "active"
            or not same_secret(session.fingerprint, current)):
        raise HTTPException(401, "the console session has ended; sign in again")
    return account


def console_operator(request: Request, token: str) -> bool:
    """True when a console session signed in with the operator token that is still set."""
    session = console_session(request)
    if session is None or session.kind != "operator" or not token:
        return False
    codec = console_codec(request)
    assert codec is not None
    return same_secret(session.fingerprint, operator_fingerprint(codec, token))
