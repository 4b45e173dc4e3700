"""Delivery receipts: recognising them, reading them, and mapping SMSC states onto our statuses.

A receipt is a deliver_sm or data_sm whose esm_class message-type bits (2-5) say "MC delivery receipt"
(0x04); the intermediate-notification and SME-acknowledgement types (0x20, 0x08, 0x10) are read the same
way. The message id and state come from the `receipted_message_id` and `message_state` TLVs when present,
else from the de-facto text format (SMPP 3.4 Appendix B), read leniently: any case, fields in any order
or missing, `submit date`/`submit_date`/`submitdate`, 10- or 12-digit dates:

    id:0000001F sub:001 dlvrd:001 submit date:2611230849 done date:2611230849 stat:DELIVRD err:000 text:...

State mapping (receipt `stat:` text, or `message_state` TLV value) -> Status, err:

    stat      message_state     Status    err
    DELIVRD   2 DELIVERED       DELIVRD   0  (no error)
    EXPIRED   3 EXPIRED         EXPIRED   2  (sending message expired)
    DELETED   4 DELETED         DELETED   1  (delivery failure)
    UNDELIV   5 UNDELIVERABLE   UNDELIV   1  (delivery failure)
    ACCEPTD   6 ACCEPTED        ACCEPTD   -  progress (e.g. accepted by an operator on the user's behalf)
    UNKNOWN   7 UNKNOWN         UNKNOWN   -  not final; the attempt's validity decides
    REJECTD   8 REJECTED        REJECTD   1  (delivery failure)
    ENROUTE   1 ENROUTE         (none)       intermediate: acknowledged upstream, nothing reported
    SKIPPED   9 (SMPP 5)        UNDELIV   1
    anything else               UNKNOWN   -

Receipt ids are normalised by `normalize_message_id` (see there) exactly as submit_sm_resp ids are.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from omnirelay.channels.smpp import pdu
from omnirelay.core.statuses import Err, Status

ESM_TYPE_MASK = 0x3C
# MC delivery receipt, SME delivery ack, SME manual/user ack, intermediate notification
RECEIPT_TYPES = frozenset({0x04, 0x08, 0x10, 0x20})

STAT_MAP: dict[str, tuple[Status, int] | None] = {
    "DELIVRD": (Status.DELIVRD, Err.NO_ERROR),
    "DELIVERED": (Status.DELIVRD, Err.NO_ERROR),
    "EXPIRED": (Status.EXPIRED, Err.EXPIRED),
    "DELETED": (Status.DELETED, Err.DELIVERY_FAILURE),
    "UNDELIV": (Status.UNDELIV, Err.DELIVERY_FAILURE),
    "UNDELIVERABLE": (Status.UNDELIV, Err.DELIVERY_FAILURE),
    "ACCEPTD": (Status.ACCEPTD, -1),
    "ACCEPTED": (Status.ACCEPTD, -1),
    "UNKNOWN": (Status.UNKNOWN, -1),
    "REJECTD": (Status.REJECTD, Err.DELIVERY_FAILURE),
    "REJECTED": (Status.REJECTD, Err.DELIVERY_FAILURE),
    "SKIPPED": (Status.UNDELIV, Err.DELIVERY_FAILURE),
    "ENROUTE": None,
}
MESSAGE_STATE_NAMES = {1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV",
                       6: "ACCEPTD", 7: "UNKNOWN", 8: "REJECTD", 9: "SKIPPED"}

_KEYS = r"(?:id|sub|dlvrd|submit[ _]?date|done[ _]?date|stat|err)"
_FIELD = re.compile(rf"(?P<key>{_KEYS})\s*:\s*(?P<value>.*?)(?=\s+{_KEYS}\s*:|\s*$)",
                    re.IGNORECASE | re.DOTALL)
_TEXT = re.compile(r"(?:^|\s)text\s*:", re.IGNORECASE)
_HEX = re.compile(r"[0-9A-Fa-f]+")


@dataclass(frozen=True, slots=True)
class Receipt:
    message_id: str  # as the SMSC wrote it (TLV, else text); normalise before matching
    stat: str  # upper-case stat name, e.g. DELIVRD
    smsc_err: str | None  # the receipt's own err field, network specific
    done_at: datetime | None
    from_text_id: bool  # the id came from the text, not the receipted_message_id TLV


def is_receipt(esm_class: int) -> bool:
    return esm_class & ESM_TYPE_MASK in RECEIPT_TYPES


def parse_text(text: str) -> dict[str, str]:
    """The receipt text's fields, keys lower-case with `submit date`/`done date` spelled so."""
    fields: dict[str, str] = {}
    # text: comes last and may quote anything, "stat:" included, so it is cut off first.
    cut = _TEXT.search(text)
    if cut:
        fields["text"] = text[cut.end():]
        text = text[: cut.start()]
    for match in _FIELD.finditer(text):
        fields.setdefault(_field_name(match["key"]), match["value"].strip())
    return fields


@functools.lru_cache(maxsize=64)
def _field_name(key: str) -> str:
    return re.sub(r"[ _]?date$", " date", key.lower())


def _date(value: str | None) -> datetime | None:
    """YYMMDDhhmm[ss] as UTC; sliced by hand, strptime cost more than the rest of a receipt."""
    if not value or not value.isdigit() or len(value) not in (10, 12):
        return None
    try:
        return datetime(2000 + int(value[0:2]), int(value[2:4]), int(value[4:6]),
                        int(value[6:8]), int(value[8:10]),
                        int(value[10:12]) if len(value) == 12 else 0, tzinfo=UTC)
    except ValueError:
        return None


def read_receipt(message: pdu.ShortMessage) -> Receipt | None:
    """The receipt carried by `message`, or None when it has no message id at all."""
    text = message.short_message.decode("latin-1") if message.short_message else ""
    fields = parse_text(text)
    tlv_id = message.tlvs.get(pdu.Tag.RECEIPTED_MESSAGE_ID, b"").rstrip(b"\0").decode("latin-1").strip()
    message_id = tlv_id or fields.get("id", "")
    if not message_id:
        return None
    state = message.tlvs.get(pdu.Tag.MESSAGE_STATE)
    if state and state[0] in MESSAGE_STATE_NAMES:
        stat = MESSAGE_STATE_NAMES[state[0]]
    else:
        stat = fields.get("stat", "UNKNOWN").upper()
    return Receipt(message_id, stat, fields.get("err"), _date(fields.get("done date")),
                   from_text_id=not tlv_id)


def map_stat(stat: str) -> tuple[Status, int | None] | None:
    """(status, err) for a receipt state; None for ENROUTE (nothing to report)."""
    mapped = STAT_MAP.get(stat.upper(), (Status.UNKNOWN, -1))
    if mapped is None:
        return None
    status, err = mapped
    return status, (None if err < 0 else err)


def normalize_message_id(raw: str, *, convert_from: int | None = None, convert_to: int | None = None) -> str:
    """The canonical form of an SMSC message id, applied alike to submit_sm_resp ids and receipt ids.

    1. Surrounding whitespace and NULs go.
    2. With `convert_from`/`convert_to` (bases 10 and 16: an SMSC that writes receipt ids in another
       base than its submit_sm_resp ids, as Jasmin's `dlr_msgid` handles), a numeral is re-based.
    3. An id made only of hex digits is lower-cased and loses its leading zeros ("0000001F" -> "1f",
       "007" -> "7", "000" -> "0"): SMSCs pad and case these freely. Any other id (UUIDs, base64) is
       kept exactly, since its case may matter.
    """
    value = raw.strip().strip("\0").strip()
    if convert_from and convert_to and convert_from != convert_to:
        try:
            number = int(value, convert_from)
        except ValueError:
            pass
        else:
            value = format(number, "x" if convert_to == 16 else "d")
    if _HEX.fullmatch(value):
        return value.lower().lstrip("0") or "0"
    return value
