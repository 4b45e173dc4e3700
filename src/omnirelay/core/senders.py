"""Sender names, checked where a sender enters: a message's own sender (the Messente API) and an
account's default sender (the operator API and the CLI alike).

Any channel's sender is a bounded string without control characters. An SMS also carries its
sender as the originating address, which holds a phone number or an alphanumeric name of at most
11 characters (GSM 03.40); SMPP's source_addr holds at most 20 characters. A longer name would be
cut, refused by the SMSC, or (beyond 20) not encodable at all, so it is refused here instead, while
the client can still fix it.
"""

from __future__ import annotations

import re
from typing import Any

from omnirelay.core import validation as v

MAX_SENDER_LENGTH = 64  # any channel's sender (a Viber or Telegram name)
MAX_SMS_NAME = 11  # an alphanumeric SMS sender
MAX_SMS_NUMBER_DIGITS = 15  # E.164
MAX_SMS_ADDRESS = 20  # SMPP source_addr, without its NUL
_NUMBER = re.compile(r"^\+?[0-9][0-9 ]*$")


def sender(value: Any, path: str) -> str:
    """Any channel's sender."""
    return v.string(value, path, min_length=1, max_length=MAX_SENDER_LENGTH)


def sms_sender(value: Any, path: str) -> str:
    """A sender an SMS can carry: a phone number (at most 15 digits, spaces allowed) or a name of
    at most 11 printable ASCII characters."""
    text = sender(value, path)
    if _NUMBER.fullmatch(text):
        if sum(c.isdigit() for c in text) > MAX_SMS_NUMBER_DIGITS or len(text) > MAX_SMS_ADDRESS:
            v.fail(path, f"{path} must have at most {MAX_SMS_NUMBER_DIGITS} digits "
                         f"({MAX_SMS_ADDRESS} characters with + and spaces) as a phone number")
        return text
    if len(text) > MAX_SMS_NAME or not (text.isascii() and text.isprintable()):
        v.fail(path, f"{path} must be a phone number or a name of at most {MAX_SMS_NAME} "
                     "ASCII letters, digits, spaces or punctuation (what an SMS can carry as "
                     "its sender)")
    return text
