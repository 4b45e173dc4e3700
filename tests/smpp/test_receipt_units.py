"""Pure rules behind issue 13's receipts and inbound items: id bases, receipt text codings,
inbound addresses, multi-part receipt rules."""

from __future__ import annotations

import pytest

from omnirelay.channels.smpp import pdu
from omnirelay.channels.smpp.receipts import read_receipt
from omnirelay.core import multipart
from omnirelay.core.addresses import inbound_address, number_keys
from omnirelay.core.statuses import Status


def _receipt(text: bytes, tlvs: dict[int, bytes] | None = None, coding: int = 0) -> pdu.ShortMessage:
    return pdu.ShortMessage("37255500001", 1, "Omni", 5, 0x04, coding, 0, text, tlvs or {})


def test_the_id_base_applies_to_the_tlv_unless_it_differs_from_the_text() -> None:
    both_decimal = read_receipt(_receipt(b"id:0000000031 stat:DELIVRD",
                                         {pdu.Tag.RECEIPTED_MESSAGE_ID: b"0000000031\0"}))
    tlv_only = read_receipt(_receipt(b"", {pdu.Tag.RECEIPTED_MESSAGE_ID: b"31\0",
                                           pdu.Tag.MESSAGE_STATE: b"\x02"}))
    tlv_as_submitted = read_receipt(_receipt(b"id:16 stat:DELIVRD",
                                             {pdu.Tag.RECEIPTED_MESSAGE_ID: b"10\0"}))
    assert both_decimal and tlv_only and tlv_as_submitted
    assert both_decimal.smsc_id(10, 16) == "1f"
    assert tlv_only.smsc_id(10, 16) == "1f"
    assert tlv_as_submitted.smsc_id(10, 16) == "10"
    assert both_decimal.smsc_id(None, 16) == "0000000031"


def test_a_ucs2_receipt_text_is_read() -> None:
    receipt = read_receipt(_receipt("id:0000001F submit_date:2611230849 done_date:2611230850 "
                                    "stat:UNDELIV err:001 text:Ваш".encode("utf-16-be"), coding=8))
    assert receipt is not None
    assert (receipt.message_id, receipt.stat, receipt.smsc_err) == ("0000001F", "UNDELIV", "001")
    assert receipt.done_at is not None and receipt.done_at.minute == 50


@pytest.mark.parametrize(("address", "ton", "expected"), [
    ("37255500001", 0, "+37255500001"),  # international number, TON unknown
    ("37255500001", 1, "+37255500001"),
    ("+37255500001", 0, "+37255500001"),
    ("0037255500001", 0, "+37255500001"),
    ("1234", 0, "1234"),  # short code
    ("1234", 1, "+1234"),  # the SMSC says international: as before
    ("55512345", 2, "55512345"),  # national: no country to put in front
    ("37255500001", 2, "37255500001"),
    ("Bank", 5, "Bank"),
    ("Bank", 0, "Bank"),
])
def test_inbound_addresses(address: str, ton: int, expected: str) -> None:
    assert inbound_address(address, ton) == expected


def test_number_keys() -> None:
    assert number_keys("+37255500001") == ("+37255500001", "37255500001")
    assert number_keys("1234") == ("1234", "+1234")
    assert number_keys("Bank") == ("Bank",)


@pytest.mark.parametrize(("rule", "part", "expected"), [
    ("every", 2, None),  # parts 0 and 1 have not reported
    ("any", 1, Status.DELIVRD),
    ("first", 0, Status.DELIVRD),
    ("first", 2, None),
    ("last", 2, Status.DELIVRD),
    ("last", 0, None),
])
def test_multipart_rules(rule: str, part: int, expected: Status | None) -> None:
    statuses: list[Status | None] = [None, None, None]
    statuses[part] = Status.DELIVRD
    assert multipart.message_status(rule, part, Status.DELIVRD, statuses) == expected
