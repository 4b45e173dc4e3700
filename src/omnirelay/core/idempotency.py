"""Idempotency keys, the pure part: which header values are keys, and a request's fingerprint.

A retry must be recognised as the same request even when a client serialises it differently
(JSON keys in another order, other whitespace, form fields in another order), so the fingerprint
hashes a canonical form of what was parsed rather than the bytes received. The operation is part
of it: a key sent first to one route and then to another is a different request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

HEADER = "Idempotency-Key"
MAX_LENGTH = 255  # as the column; longer than any UUID or ULID a client would use

# The operations a key can answer for; each names one kind of create, whatever its path prefix.
MESSENTE_SEND = "messente.omnimessage"
MESSENTE_BULK = "messente.omnimessages"
TWILIO_CREATE = "twilio.messages.create"


def key_problem(values: Sequence[str]) -> str | None:
    """Why the Idempotency-Key header values are not one usable key, or None when they are."""
    if len(values) > 1:
        return f"send one {HEADER} header, not {len(values)}"
    value = values[0]
    if not value:
        return f"{HEADER} is empty: send 1 to {MAX_LENGTH} printable ASCII characters"
    if len(value) > MAX_LENGTH:
        return f"{HEADER} is {len(value)} characters long; at most {MAX_LENGTH} are allowed"
    if not all(" " <= char <= "~" for char in value):
        return f"{HEADER} must be printable ASCII characters (a UUID, for example)"
    return None


def json_fingerprint(operation: str, body: Any) -> str:
    """A parsed JSON body: object keys sorted, so key order and whitespace do not matter."""
    return _digest(operation, orjson.dumps(body, option=orjson.OPT_SORT_KEYS))


def form_fingerprint(operation: str, form: Mapping[str, Sequence[str]]) -> str:
    """Form fields by name; a repeated field's values keep their order, which has meaning."""
    return _digest(operation, orjson.dumps(sorted((name, list(values))
                                                  for name, values in form.items())))


def _digest(operation: str, canonical: bytes) -> str:
    return hashlib.sha256(operation.encode() + b"\n" + canonical).hexdigest()
