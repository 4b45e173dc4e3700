"""HTTP Basic authentication against account credentials.

A wrong username and a wrong password take the same path and give the same answer: the password
is always compared, in constant time, against the account's or a stand-in.
"""

from __future__ import annotations

import base64
import binascii

from omnirelay.accounts import AccountCache
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
    username, password = credentials
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
