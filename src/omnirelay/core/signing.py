"""Webhook signatures as the receivers verify them."""

from __future__ import annotations

import hashlib
import hmac


def messente_signature(secret: str, body: bytes) -> str:
    """X-Messente-Signature: lowercase hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
