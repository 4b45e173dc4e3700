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
With a `receipt_id_base`, `smsc_id` re-bases every id a receipt carries, TLV and text alike, except
that a receipt whose TLV and text ids differ keeps its TLV as is: SMPP 3.4 says that TLV repeats the
submit_sm_resp id, and the differing text is then the one in the other base.

The text is decoded by data_coding: 8 (UCS-2) as UTF-16BE, which some SMSCs use when the original
text was not Latin; every other coding as Latin-1, since the field syntax is ASCII and the GSM
default alphabet would turn `submit_date`'s `_` into `§`. A data_sm's text may sit in message_payload.
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
    tlv_id: str  # receipted_message_id as the SMSC wrote it, "" when absent
    text_id: str  # the text's id: field, "" when absent
    stat: str  # upper-case stat name, e.g. DELIVRD
    smsc_err: str | None  # the receipt's own err field, network specific
    done_at: datetime | None
    known_stat: bool = True  # False: neither a message_state TLV nor a stat the map knows

    @property
    def message_id(self) -> str:
        """As the SMSC wrote it (TLV, else text); normalise before matching."""
        return self.tlv_id or self.text_id

    @property
    def from_text_id(self) -> bool:
        return not self.tlv_id

    def smsc_id(self, receipt_base: int | None, submit_base: int) -> str:
        """The id to match, in the submit_sm_resp base (see the module docstring)."""
        if receipt_base is None:
            return self.message_id
        if (self.tlv_id and self.text_id
                and normalize_message_id(self.tlv_id) != normalize_message_id(self.text_id)):
            return self.tlv_id
        return normalize_message_id(self.message_id, convert_from=receipt_base,
                                    convert_to=submit_base)


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


def receipt_text(message: pdu.ShortMessage) -> str:
    payload = message.short_message or message.tlvs.get(pdu.Tag.MESSAGE_PAYLOAD, b"")
    if not payload:
        return ""
    if message.data_coding == 8:
        return payload.decode("utf-16-be", errors="replace")
    return payload.decode("latin-1")


def read_receipt(message: pdu.ShortMessage) -> Receipt | None:
    """The receipt carried by `message`, or None when it has no message id at all."""
    fields = parse_text(receipt_text(message))
    tlv_id = message.tlvs.get(pdu.Tag.RECEIPTED_MESSAGE_ID, b"").rstrip(b"\0").decode("latin-1").strip()
    text_id = fields.get("id", "").strip("\0").strip()
    if not (tlv_id or text_id):
        return None
    state = message.tlvs.get(pdu.Tag.MESSAGE_STATE)
    if state and state[0] in MESSAGE_STATE_NAMES:
        stat, known = MESSAGE_STATE_NAMES[state[0]], True
    else:
        stat = fields.get("stat", "UNKNOWN").upper()
        known = stat in STAT_MAP
    return Receipt(tlv_id, text_id, stat, fields.get("err"), _date(fields.get("done date")),
                   known_stat=known)


def describe_pdu(message: pdu.ShortMessage) -> str:
    """The raw fields of a deliver_sm/data_sm, for a log line about one we could not read."""
    tlvs = " ".join(f"0x{tag:04x}={value.hex()}" for tag, value in sorted(message.tlvs.items()))
    return (f"esm_class=0x{message.esm_class:02x} data_coding=0x{message.data_coding:02x} "
            f"source_addr={message.source_addr!r} ton={message.source_addr_ton} "
            f"destination_addr={message.destination_addr!r} ton={message.dest_addr_ton} "
            f"short_message={message.short_message.hex() or '-'} tlvs={tlvs or '-'}")


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
