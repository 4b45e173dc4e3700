"""Console sessions, kept in a signed cookie so the server stores nothing.

A cookie is `v1.<payload>.<mac>`: the payload (base64url JSON) says who signed in (an account by
id, or the operator), until when, and carries a fingerprint of the credential used, so that
rotating an account's password, disabling it, or changing the operator token ends its sessions.
The CSRF token is derived from the session's random nonce: the page reads it once and sends it in
a header with every state-changing request; a cross-site form can send the cookie (were it not
SameSite=Strict) but never the header.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Literal

import orjson

from omnirelay.core.base64url import b64url_decode, b64url_encode
from omnirelay.core.secrets import same_secret

COOKIE = "omnirelay_console"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_VERSION = "v1"
MAX_COOKIE_CHARS = 1024  # ours are about 200; anything longer is not ours

Kind = Literal["account", "operator"]


@dataclass(frozen=True, slots=True)
class Session:
    kind: Kind
    account_id: int | None  # None for the operator
    fingerprint: str
    expires: int  # unix seconds
    nonce: str


class SessionCodec:
    """Signs and checks session cookies under a key derived from the server's secret_key."""

    def __init__(self, secret_key: str) -> None:
        self._key = hashlib.sha256(b"omnirelay-console-session-v1:" + secret_key.encode()).digest()

    def _mac(self, label: str, data: str) -> str:
        return b64url_encode(hmac.new(self._key, f"{label}|{data}".encode(), hashlib.sha256).digest())

    def fingerprint(self, *credential: str) -> str:
        """A short keyed digest of a credential: it changes when the credential does, and tells
        nothing about it without the server key."""
        return self._mac("credential", "\x00".join(credential))[:22]

    def issue(self, kind: Kind, account_id: int | None, fingerprint: str, lifetime_seconds: int,
              now: float | None = None) -> tuple[str, Session]:
        session = Session(kind, account_id, fingerprint,
                          int((time.time() if now is None else now) + lifetime_seconds),
                          secrets.token_urlsafe(16))
        payload = b64url_encode(orjson.dumps({"k": kind, "a": account_id, "f": fingerprint,
                                     "x": session.expires, "n": session.nonce}))
        return f"{_VERSION}.{payload}.{self._mac('session', payload)}", session

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie holds, or None when it is absent, forged or expired."""
        if not cookie or len(cookie) > MAX_COOKIE_CHARS:
            return None
        version, _, rest = cookie.partition(".")
        payload, _, mac = rest.partition(".")
        if version != _VERSION or not payload or not mac:
            return None
        if not same_secret(mac, self._mac("session", payload)):
            return None
        try:
            data = orjson.loads(b64url_decode(payload))
            session = Session(data["k"], data["a"], data["f"], int(data["x"]), data["n"])
        except (ValueError, KeyError, TypeError):
            return None
        if session.kind not in ("account", "operator"):
            return None
        if session.expires <= (time.time() if now is None else now):
            return None
        return session

    def csrf_token(self, session: Session) -> str:
        return self._mac("csrf", session.nonce)

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        return bool(given) and same_secret(given or "", self.csrf_token(session))
