"""Credentials: generating them, encrypting them at rest, and comparing them in constant time.

Webhook signatures need the account's API password and inbound secret in clear (Messente signs
delivery reports with the API password), so secrets cannot be stored as one-way hashes. They are
encrypted with Fernet (AES-128-CBC + HMAC-SHA256) under a key derived from the server's
`secret_key` setting; a stolen database alone reveals none of them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken


class SecretBox:
    def __init__(self, server_key: str) -> None:
        derived = hashlib.sha256(b"omnirelay-secretbox-v1:" + server_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except InvalidToken:
            raise ValueError(
                "a stored secret cannot be decrypted: the server secret_key differs from the "
                "one it was stored with"
            ) from None


def new_password() -> str:
    return secrets.token_urlsafe(24)


def new_username() -> str:
    return secrets.token_hex(8)


def new_account_sid() -> str:
    return "AC" + secrets.token_hex(16)


def new_auth_token() -> str:
    return secrets.token_hex(16)


def same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
