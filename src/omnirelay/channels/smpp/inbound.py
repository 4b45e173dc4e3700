"""Mobile-originated messages: a deliver_sm/data_sm that is not a receipt, as an InboundMessage, or as
an InboundFragment when it is one part of a concatenated message.

Concatenation is recognised from a UDH concatenation element (8-bit reference `00 03 ref total seq` or
16-bit `08 04 refhi reflo total seq`, wherever it sits in the UDH) or from the SAR TLVs
(sar_msg_ref_num, sar_total_segments, sar_segment_seqnum). The group key is unique per connector,
sender, recipient, scheme and reference, so the engine joins exactly the parts of one message.

Text: data_coding 0 is the GSM 03.38 default alphabet (unpacked), 8 UCS-2, 3 Latin-1, 1 ASCII;
binary codings (2, 4) are passed on as hex with extra["binary"] = True. A UCS-2 part that ends inside a
surrogate pair (other senders may split there) decodes with U+FFFD for the broken half rather than
carrying a lone surrogate into storage.

Addresses: sender and recipient in E.164 when they are full international numbers, whatever their
TON (see core.addresses); short codes and alphanumeric senders as they came.
"""

from __future__ import annotations

from datetime import datetime

from omnirelay.channels.base import InboundFragment, InboundMessage
from omnirelay.channels.smpp import pdu
from omnirelay.core import gsm7
from omnirelay.core.addresses import inbound_address
from omnirelay.core.sms import parse_concat_udh, parse_udh, split_short_message

CHANNEL = "sms"
ESM_UDHI = 0x40


def _text(payload: bytes, data_coding: int) -> tuple[str, bool]:
    coding = data_coding
    if data_coding & 0xF0 == 0xF0:  # message class coding group: bit 2 says 8-bit data, else GSM
        coding = 4 if data_coding & 0x04 else 0
    if coding == 0:
        try:
            return gsm7.decode_septets(payload), False
        except ValueError:
            return payload.decode("latin-1"), False
    if coding == 8:
        return payload.decode("utf-16-be", errors="replace"), False
    if coding in (2, 4):
        return payload.hex(), True
    if coding == 1:
        return payload.decode("ascii", errors="replace"), False
    return payload.decode("latin-1"), False


def _scheme(udh: bytes) -> str:
    for identifier, data in parse_udh(udh):
        if identifier == 0x08 and len(data) == 4:
            return "u16"
        if identifier == 0x00 and len(data) == 3:
            return "u8"
    return "u8"


def read_inbound(connector: str, message: pdu.ShortMessage,
                 received_at: datetime) -> InboundMessage | InboundFragment:
    payload = message.short_message or message.tlvs.get(pdu.Tag.MESSAGE_PAYLOAD, b"")
    concat: tuple[str, int, int, int] | None = None
    if message.esm_class & ESM_UDHI:
        try:
            udh, payload = split_short_message(payload)
        except ValueError:
            udh = b""
        found = parse_concat_udh(udh)
        if found:
            concat = (_scheme(udh), *found)
    elif pdu.Tag.SAR_MSG_REF_NUM in message.tlvs:
        tlvs = message.tlvs
        reference = int.from_bytes(tlvs[pdu.Tag.SAR_MSG_REF_NUM], "big")
        total = int.from_bytes(tlvs.get(pdu.Tag.SAR_TOTAL_SEGMENTS, b"\x01"), "big")
        sequence = int.from_bytes(tlvs.get(pdu.Tag.SAR_SEGMENT_SEQNUM, b"\x01"), "big")
        if total > 1 and 1 <= sequence <= total:
            concat = ("sar", reference, total, sequence)
    text, binary = _text(payload, message.data_coding)
    sender = inbound_address(message.source_addr, message.source_addr_ton)
    recipient = inbound_address(message.destination_addr, message.dest_addr_ton)
    if concat is not None:
        scheme, reference, total, sequence = concat
        return InboundFragment(
            channel=CHANNEL, sender=sender, recipient=recipient,
            group_key=f"smpp:{connector}:{sender}:{recipient}:{scheme}:{reference}",
            total=total, seq=sequence, text=text, received_at=received_at)
    extra: dict[str, object] = {"connector": connector, "data_coding": message.data_coding}
    if binary:
        extra["binary"] = True
    return InboundMessage(channel=CHANNEL, sender=sender, recipient=recipient, text=text,
                          received_at=received_at, extra=extra)
