"""Unpadded URL-safe base64, the form of every opaque token the gateway hands out (history
cursors, template cursors, console cookies): safe in a query string and a cookie as it is."""

from __future__ import annotations

import base64


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """The bytes of an unpadded token; ValueError for anything that is not one."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError("not base64") from exc
