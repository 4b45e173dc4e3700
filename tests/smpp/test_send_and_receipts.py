"""Sending through the SMPP channel to the simulator over TCP, and the receipts coming back."""

from __future__ import annotations

import asyncio

import pytest

from omnirelay.channels.smpp import pdu
from omnirelay.channels.smpp.connector import Connector
from omnirelay.core.sms import parse_concat_udh
from omnirelay.core.statuses import Err, Status
from omnirelay.smsc import SmscSimulator
from tests.smpp.support import RecordingSink, connector, make_channel, sms


@pytest.fixture
async def smsc():
    async with SmscSimulator(port=0, users={"esme1": "secret"}, receipt_delay=0.01) as simulator:
        yield simulator


async def test_wrong_password_fails_clearly(smsc: SmscSimulator, sink: RecordingSink) -> None:
    channel = make_channel(connector("a", smsc.port, password="wrong"))
    await channel.start(sink)
    try:
        a = channel.connectors["a"]
        await _first_error(a)
        assert a.last_error is not None and "ESME_RINVPASWD" in a.last_error
        assert not a.is_up
        [result] = await channel.send([sms("+37255500001")])
        assert result.retry_after is not None and result.status is None
        assert smsc.stats.bind_failures >= 1
    finally:
        await channel.stop()


async def test_unknown_system_id_is_refused(smsc: SmscSimulator, sink: RecordingSink) -> None:
    channel = make_channel(connector("a", smsc.port, system_id="nobody"))
    await channel.start(sink)
    try:
        a = channel.connectors["a"]
        await _first_error(a)
        assert a.last_error is not None and "ESME_RINVSYSID" in a.last_error
    finally:
        await channel.stop()


@pytest.mark.parametrize(("text", "parts", "data_coding"), [
    ("Hello there", 1, 0),
    ("x" * 400, 3, 0),
    ("Привет мир " * 15, 3, 8),
])
async def test_parts_and_receipts(smsc: SmscSimulator, sink: RecordingSink, text: str, parts: int,
                                  data_coding: int) -> None:
    channel = make_channel(connector("a", smsc.port))
    await channel.start(sink)
    try:
        await channel.wait_ready(5)
        [result] = await channel.send([sms("+37255500001", text, sender="+3725000")])
        assert result.status is None and result.retry_after is None
        assert result.parts_count == parts and len(result.provider_refs) == parts
        submitted = smsc.submissions
        assert len(submitted) == parts
        for seq, sub in enumerate(submitted, start=1):
            assert sub.destination_addr == "37255500001" and sub.dest_addr_ton == 1
            assert sub.source_addr == "3725000" and sub.source_addr_ton == 1
            assert sub.data_coding == data_coding
            assert sub.registered_delivery == 1
            if parts == 1:
                assert sub.esm_class == 0 and sub.udh == b""
            else:
                assert sub.esm_class == 0x40
                _ref, total, sequence = parse_concat_udh(sub.udh) or (0, 0, 0)
                assert (total, sequence) == (parts, seq)
        assert "".join(sub.text for sub in submitted) == text
        refs = set(result.provider_refs)
        await sink.wait_for(lambda: refs <= set(sink.by_ref()))
        for ref in refs:
            report = sink.by_ref()[ref]
            assert report.status == Status.DELIVRD and report.err == Err.NO_ERROR
            assert report.channel == "sms"
    finally:
        await channel.stop()


async def test_same_long_text_twice_gets_two_concatenation_references(
        smsc: SmscSimulator, sink: RecordingSink) -> None:
    # The handset joins parts by sender and reference: equal references would merge two messages.
    channel = make_channel(connector("a", smsc.port))
    await channel.start(sink)
    try:
        await channel.wait_ready(5)
        await channel.send([sms("+37255500001", "x" * 400)])
        await channel.send([sms("+37255500001", "x" * 400)])
        references = [(parse_concat_udh(sub.udh) or (0, 0, 0))[0] for sub in smsc.submissions]
        assert len(references) == 6
        assert len(set(references[:3])) == 1 and len(set(references[3:])) == 1
        assert references[0] != references[3]
    finally:
        await channel.stop()


async def test_alphanumeric_sender_ton(smsc: SmscSimulator, sink: RecordingSink) -> None:
    channel = make_channel(connector("a", smsc.port))
    await channel.start(sink)
    try:
        await channel.wait_ready(5)
        await channel.send([sms("+37255500001", sender="Omni")])
        [sub] = smsc.submissions
        assert (sub.source_addr, sub.source_addr_ton) == ("Omni", 5)
    finally:
        await channel.stop()


async def test_outcomes_by_destination(smsc: SmscSimulator, sink: RecordingSink) -> None:
    channel = make_channel(connector("a", smsc.port))
    await channel.start(sink)
    try:
        await channel.wait_ready(5)
        batch = [sms(f"+3725550{suffix}") for suffix in ("0999", "0998", "0997", "0996", "0994", "0993")]
        results = {r.message_id: r for r in await channel.send(batch)}
        invalid, failed, undeliv, expired, rejectd, deleted = (results[m.message_id] for m in batch)
        assert (invalid.status, invalid.err) == (Status.REJECTD, Err.INVALID_NUMBER)
        assert "ESME_RINVDSTADR" in (invalid.error or "")
        assert (failed.status, failed.err) == (Status.FAILED, Err.DELIVERY_FAILURE)
        pending = {undeliv.provider_refs[0]: (Status.UNDELIV, Err.DELIVERY_FAILURE),
                   expired.provider_refs[0]: (Status.EXPIRED, Err.EXPIRED),
                   rejectd.provider_refs[0]: (Status.REJECTD, Err.DELIVERY_FAILURE),
                   deleted.provider_refs[0]: (Status.DELETED, Err.DELIVERY_FAILURE)}
        await sink.wait_for(lambda: set(pending) <= set(sink.by_ref()))
        for ref, expected in pending.items():
            report = sink.by_ref()[ref]
            assert (report.status, report.err) == expected
    finally:
        await channel.stop()


async def test_no_receipt_rule_sends_none(smsc: SmscSimulator, sink: RecordingSink) -> None:
    channel = make_channel(connector("a", smsc.port))
    await channel.start(sink)
    try:
        await channel.wait_ready(5)
        [silent, loud] = await channel.send([sms("+37255500995"), sms("+37255500001")])
        await sink.wait_for(lambda: loud.provider_refs[0] in sink.by_ref())
        await _tick(0.05)
        assert silent.provider_refs[0] not in sink.by_ref()
    finally:
        await channel.stop()


async def test_receipt_is_acknowledged_only_after_the_sink_stored_it(smsc: SmscSimulator,
                                                                    sink: RecordingSink) -> None:
    sink.fail_next = 1
    channel = make_channel(connector("a", smsc.port))
    await channel.start(sink)
    try:
        await channel.wait_ready(5)
        [result] = await channel.send([sms("+37255500001")])
        # The first hand-over fails: the receipt is refused (ESME_RX_T_APPN) and the SMSC redelivers it.
        await sink.wait_for(lambda: result.provider_refs[0] in sink.by_ref(), within=5)
        for _ in range(100):
            if smsc.stats.receipts_sent:
                break
            await _tick()
        assert smsc.stats.receipts_sent == 1
        assert sink.fail_next == 0 and len(sink.reports) == 1
    finally:
        await channel.stop()


async def test_bind_transmitter_plus_receiver(smsc: SmscSimulator, sink: RecordingSink) -> None:
    channel = make_channel(connector("a", smsc.port, bind="transmitter+receiver"))
    await channel.start(sink)
    try:
        await channel.wait_ready(5)
        [result] = await channel.send([sms("+37255500001")])
        await sink.wait_for(lambda: result.provider_refs[0] in sink.by_ref())
        assert smsc.stats.binds == 2
    finally:
        await channel.stop()


def test_status_names() -> None:
    assert pdu.status_name(0x58) == "ESME_RTHROTTLED"
    assert pdu.status_name(0x401) == "0x00000401"


async def _tick(seconds: float = 0.02) -> None:
    await asyncio.sleep(seconds)


async def _first_error(connector: Connector) -> None:
    for _ in range(100):
        if connector.last_error:
            return
        await _tick()
