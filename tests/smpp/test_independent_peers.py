"""A second, independent SMPP implementation on the other end of each side of omnirelay's SMPP stack,
so that omnirelay's ESME and its simulator cannot agree on a mistake:

- smpplib's client (PyPI) as the ESME against `omnirelay smsc`;
- an SMSC built on smpplib's PDU classes (tests/smpp/smpplib_smsc.py) against the whole gateway,
  with messages sent through the Messente HTTP API.
"""

from __future__ import annotations

from typing import Any

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)
import httpx
import pytest
from smpplib import client as smpp_client  # type: ignore[import-untyped]
from smpplib import consts, exceptions, gsm, smpp

from tests.smpp.gateway_support import cli_smsc, send, smpp_connector, smpp_gateway, wait_final
from tests.smpp.smpplib_smsc import SmpplibSmsc
from tests.support import create_account, wait_until

LONG_GSM = "All work and no play makes Jack a dull boy. " * 5
LONG_UCS2 = "Ваш код подтверждения: 1234. " * 6


def _read(client: Any, command: str | None, receipts: list[Any]) -> Any:
    """The next PDU `command`, acknowledging (and keeping) the deliver_sm that come before it; with
    `command` None, just the next deliver_sm."""
    while True:
        pdu = client.read_pdu()
        if pdu.command == "deliver_sm":
            receipts.append(pdu)
            ack = smpp.make_pdu("deliver_sm_resp", client=client)
            ack.sequence = pdu.sequence
            client.send_pdu(ack)
            if command is None:
                return pdu
            continue
        assert pdu.command == command, (pdu.command, pdu.status)
        return pdu


def test_smpplib_esme_against_omnirelay_smsc() -> None:
    # SMPP 3.4 allows 8 characters of password; smpplib holds to that, the simulator is lenient.
    with cli_smsc("--user", "peer:pw-1234") as smsc:
        refused = smpp_client.Client("127.0.0.1", smsc.port, timeout=10)
        refused.connect()
        with pytest.raises(exceptions.PDUError) as wrong:
            refused.bind_transceiver(system_id="peer", password="not-it")
        assert wrong.value.args[1] == consts.SMPP_ESME_RINVPASWD
        refused.disconnect()

        client = smpp_client.Client("127.0.0.1", smsc.port, timeout=10)
        client.connect()
        bound = client.bind_transceiver(system_id="peer", password="pw-1234")
        assert (bound.command, bound.status, bound.system_id) == ("bind_transceiver_resp", 0, b"OMNISMSC")

        receipts: list[Any] = []
        submitted: dict[str, str] = {}  # message id -> the text of its message
        for text, coding in (("Your code is 1234", consts.SMPP_ENCODING_DEFAULT),
                             (LONG_GSM, consts.SMPP_ENCODING_DEFAULT),
                             (LONG_UCS2, consts.SMPP_ENCODING_ISO10646)):
            parts, data_coding, esm_class = gsm.make_parts(text, encoding=coding)
            assert (len(parts) > 1) == (text != "Your code is 1234")
            for part in parts:
                request = client.send_message(
                    source_addr_ton=consts.SMPP_TON_ALNUM, source_addr="Omni",
                    dest_addr_ton=consts.SMPP_TON_INTL, dest_addr_npi=consts.SMPP_NPI_ISDN,
                    destination_addr="37255512345", short_message=part, data_coding=data_coding,
                    esm_class=esm_class, registered_delivery=True)
                response = _read(client, "submit_sm_resp", receipts)
                assert (response.status, response.sequence) == (0, request.sequence)
                submitted[response.message_id.decode()] = text
        assert len(submitted) == 1 + 2 + 3

        # data_sm: answered with data_sm_resp, and a receipt like any submit
        data = smpp.make_pdu("data_sm", client=client, source_addr_ton=consts.SMPP_TON_ALNUM,
                             source_addr="Omni", dest_addr_ton=consts.SMPP_TON_INTL,
                             destination_addr="37255512346", registered_delivery=1, data_coding=0,
                             message_payload=b"hello by data sm")
        client.send_pdu(data)
        data_response = _read(client, "data_sm_resp", receipts)
        assert (data_response.status, data_response.sequence) == (0, data.sequence)
        data_id = data_response.message_id.decode()
        assert data_id and data_id not in submitted

        while len(receipts) < len(submitted) + 1:
            _read(client, None, receipts)
        by_id = {r.receipted_message_id.decode(): r for r in receipts}
        assert set(by_id) == set(submitted) | {data_id}
        for message_id, receipt in by_id.items():
            assert receipt.esm_class & 0x04, "a delivery receipt"
            assert receipt.message_state == consts.SMPP_MESSAGE_STATE_DELIVERED
            body = receipt.short_message.decode("latin-1")
            assert body.startswith(f"id:{message_id} ") and " stat:DELIVRD err:000 " in body
        # The simulator read smpplib's GSM and UCS-2 parts as smpplib meant them.
        assert "text:Your code is 1234" in by_id[next(iter(submitted))].short_message.decode()
        first_long = next(i for i, t in submitted.items() if t == LONG_GSM)
        assert f"text:{LONG_GSM[:20]}" in by_id[first_long].short_message.decode()
        assert "text:hello by data sm" in by_id[data_id].short_message.decode("latin-1")

        for message_id in [*submitted, data_id]:
            client.query_message(message_id=message_id, source_addr_ton=consts.SMPP_TON_ALNUM,
                                 source_addr_npi=0, source_addr="Omni")
            state = _read(client, "query_sm_resp", receipts)
            assert (state.status, state.message_id.decode()) == (0, message_id)
            assert (state.message_state, state.error_code) == (consts.SMPP_MESSAGE_STATE_DELIVERED, 0)
            assert len(state.final_date) == 16 and state.final_date.endswith(b"+")
        client.query_message(message_id="7FFFFFFF", source_addr_ton=consts.SMPP_TON_ALNUM,
                             source_addr_npi=0, source_addr="Omni")
        unknown = _read(client, "query_sm_resp", receipts)
        assert unknown.status == 0x67  # ESME_RQUERYFAIL

        # A command the simulator does not implement (cancel_sm) still gets generic_nack.
        client._socket.sendall(bytes.fromhex("00000010" "00000008" "00000000" "00000999"))
        nack = _read(client, "generic_nack", receipts)
        assert (nack.status, nack.sequence) == (consts.SMPP_ESME_RINVCMDID, 0x999)

        unbound = client.unbind()
        assert (unbound.command, unbound.status) == ("unbind_resp", 0)
        client.disconnect()
        wait_until(lambda: smsc.stats()["sessions"] == 0)
        stats = smsc.stats()
        assert (stats["unbinds"], stats["closed_without_unbind"]) == (1, 0)
        assert (stats["submitted"], stats["receipts_sent"]) == (7, 7)


def _texts(submissions: list[Any]) -> list[str]:
    """The peer's submissions joined into messages, decoded by other code than omnirelay's."""
    messages: list[str] = []
    pending = b""
    for part in submissions:
        payload = part.short_message
        if part.esm_class & 0x40:
            udh, payload = payload[: payload[0] + 1], payload[payload[0] + 1 :]
            total, number = udh[-2], udh[-1]
        else:
            total = number = 1
        pending += payload
        if number == total:
            codec = "utf-16-be" if part.data_coding == 8 else "gsm03.38"
            messages.append(pending.decode(codec))
            pending = b""
    return messages


def test_gateway_against_an_smsc_on_another_codec(database_url: str) -> None:
    with SmpplibSmsc(misbehave={"0001": "nack-ok", "0002": "wrong-command"}) as peer, \
            httpx.Client() as client:
        live = smpp_gateway(database_url, smpp_connector("peer", peer.port, system_id="any",
                                                         password="any"))
        try:
            wait_until(lambda: peer.stats.binds == 1)
            account = live.call(create_account(live.runtime))
            cases = {"short GSM": ("Your code is 1234", 1), "long GSM": (LONG_GSM, 2),
                     "long UCS-2": (LONG_UCS2, 3)}
            ids = {name: send(client, live, account, text, "+37255512345")
                   for name, (text, _) in cases.items()}
            for name, (_, parts) in cases.items():
                final = wait_final(client, live, account, ids[name])
                assert final["status"] == "DELIVRD", (name, final)
                assert final["price_info"]["parts_count"] == parts, name
            assert sorted(_texts(peer.stats.submissions)) == sorted(t for t, _ in cases.values())
            # The gateway answers a receipt once its outcome is durable, which can be just after
            # the status it committed is readable: the peer's count catches up a moment later.
            wait_until(lambda: peer.stats.receipts_acknowledged == 6)
            assert peer.stats.receipts_sent == 6

            # A generic_nack answering a submit fails it, even with command_status 0 ...
            nacked = send(client, live, account, "hi", "+37255510001")
            assert wait_final(client, live, account, nacked)["status"] == "FAILED"
            # ... and a response of another command with the submit's sequence number resolves nothing:
            # the real submit_sm_resp that follows does, and its receipt matches.
            confused = send(client, live, account, "hi", "+37255510002")
            assert wait_final(client, live, account, confused)["status"] == "DELIVRD"
            assert len(peer.stats.submissions) == 6 + 1
        finally:
            live.stop()
        assert peer.stats.unbinds == 1
