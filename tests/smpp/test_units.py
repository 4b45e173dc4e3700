"""Settings validation, receipt reading and id normalisation, without a network."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from omnirelay.channels.smpp import SmppSettings, pdu
from omnirelay.channels.smpp.channel import source_ton_npi, validity_period
from omnirelay.channels.smpp.receipts import is_receipt, map_stat, normalize_message_id, read_receipt
from omnirelay.core.statuses import Err, Status
from omnirelay.errors import ConfigError
from omnirelay.smsc.rules import parse_rule


def _settings(**overrides: object) -> SmppSettings:
    item: dict[str, object] = {"name": "a", "host": "127.0.0.1", "system_id": "esme1"}
    item.update(overrides)
    return SmppSettings.from_mapping({"connectors": [item]})


def test_defaults() -> None:
    [connector] = _settings().connectors
    assert (connector.port, connector.bind, connector.window) == (2775, "transceiver", 10)
    assert connector.rate_limit == 0.0
    assert connector.scope == "esme1@127.0.0.1:2775"


@pytest.mark.parametrize(("raw", "message"), [
    ({}, "connectors must be a non-empty list"),
    ({"connectors": [{"host": "h", "system_id": "s"}]}, "connectors[0].name is required"),
    ({"connectors": [{"name": "a", "host": "h", "system_id": "s", "windoww": 3}]},
     "unknown setting(s) windoww"),
    ({"connectors": [{"name": "a", "host": "h", "system_id": "s", "bind": "rx"}]}, "bind must be"),
    ({"connectors": [{"name": "a", "host": "h", "system_id": "s", "window": 0}]},
     "window must be an integer"),
    ({"connectors": [{"name": "a", "host": "h", "system_id": "s", "reconnect_min": -1}]}, "reconnect_min"),
    ({"connectors": [{"name": "a", "host": "h", "system_id": "s"}] * 2}, "duplicate name(s) a"),
    ({"connectors": [{"name": "a", "host": "h", "system_id": "s"}],
      "routes": [{"prefix": "+1", "connectors": ["b"]}]}, "no connector named b"),
    ({"connectors": [{"name": "a", "host": "h", "system_id": "s"}], "extra": 1}, "unknown setting(s) extra"),
])
def test_config_errors(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        SmppSettings.from_mapping(raw)
    assert message in str(error.value)


def test_source_addresses() -> None:
    [settings] = _settings().connectors
    assert source_ton_npi("Omni", settings) == ("Omni", 5, 0)
    assert source_ton_npi("+3725000", settings) == ("3725000", 1, 1)
    assert source_ton_npi("37255512345", settings) == ("37255512345", 1, 1)
    assert source_ton_npi("1234", settings) == ("1234", 0, 1)
    [fixed] = _settings(source_ton=2, source_npi=9).connectors
    assert source_ton_npi("Omni", fixed) == ("Omni", 2, 9)


def test_validity_period() -> None:
    assert validity_period(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "260102030405000+"
    assert validity_period(None) == ""


def _message(text: bytes, tlvs: dict[int, bytes] | None = None, esm_class: int = 4) -> pdu.ShortMessage:
    return pdu.ShortMessage("3725", 1, "Omni", 5, esm_class, 0, 0, text, tlvs or {})


def test_receipt_from_text_leniently() -> None:
    receipt = read_receipt(_message(b"ID:0000001f SUB:001 DLVRD:000 Submit_Date:261123084900 "
                                    b"done date:2611230850 Stat:undeliv ERR:045 Text:stat:DELIVRD"))
    assert receipt is not None
    assert (receipt.message_id, receipt.stat, receipt.smsc_err) == ("0000001f", "UNDELIV", "045")
    assert receipt.done_at == datetime(2026, 11, 23, 8, 50, tzinfo=UTC)
    assert receipt.from_text_id


def test_receipt_tlvs_win_over_text() -> None:
    receipt = read_receipt(_message(b"id:99 stat:DELIVRD", {pdu.Tag.RECEIPTED_MESSAGE_ID: b"ABC\0",
                                                            pdu.Tag.MESSAGE_STATE: b"\x03"}))
    assert receipt is not None and (receipt.message_id, receipt.stat) == ("ABC", "EXPIRED")
    assert read_receipt(_message(b"stat:DELIVRD")) is None


@pytest.mark.parametrize(("stat", "expected"), [
    ("DELIVRD", (Status.DELIVRD, Err.NO_ERROR)), ("EXPIRED", (Status.EXPIRED, Err.EXPIRED)),
    ("DELETED", (Status.DELETED, Err.DELIVERY_FAILURE)), ("UNDELIV", (Status.UNDELIV, Err.DELIVERY_FAILURE)),
    ("ACCEPTD", (Status.ACCEPTD, None)), ("UNKNOWN", (Status.UNKNOWN, None)),
    ("REJECTD", (Status.REJECTD, Err.DELIVERY_FAILURE)), ("ENROUTE", None), ("WEIRD", (Status.UNKNOWN, None)),
])
def test_stat_mapping(stat: str, expected: object) -> None:
    assert map_stat(stat) == expected


def test_receipt_esm_classes() -> None:
    assert is_receipt(0x04) and is_receipt(0x08) and is_receipt(0x20) and is_receipt(0x44)
    assert not is_receipt(0x00) and not is_receipt(0x40)


def test_id_normalisation() -> None:
    assert normalize_message_id("0000001F") == normalize_message_id("1f\0") == "1f"
    assert normalize_message_id("000") == "0"
    assert normalize_message_id("31", convert_from=10, convert_to=16) == "1f"
    assert normalize_message_id("1F", convert_from=16, convert_to=10) == "31"
    assert normalize_message_id("Ab-12") == "Ab-12"


def test_data_sm_is_read() -> None:
    body = (b"\0" + bytes((1, 1)) + b"3725\0" + bytes((5, 0)) + b"Omni\0" + bytes((4, 1, 0))
            + pdu.Tag.RECEIPTED_MESSAGE_ID.to_bytes(2, "big") + (4).to_bytes(2, "big") + b"1F2\0"
            + pdu.Tag.MESSAGE_STATE.to_bytes(2, "big") + (1).to_bytes(2, "big") + b"\x02")
    message = pdu.decode_short_message(pdu.frame(pdu.Command.DATA_SM, 7, body))
    assert (message.source_addr, message.destination_addr, message.esm_class) == ("3725", "Omni", 4)
    receipt = read_receipt(message)
    assert receipt is not None and (receipt.message_id, receipt.stat) == ("1F2", "DELIVRD")


def test_simulator_rules() -> None:
    assert parse_rule("123=UNDELIV").suffix == "123"
    assert parse_rule("^+44=reject:RINVDSTADR").outcome().reject_status == 0x0B
    with pytest.raises(ValueError):
        parse_rule("123=nonsense")
