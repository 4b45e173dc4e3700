"""Receipt id normalisation across SMSC id formats, and inbound (mobile-originated) SMS."""

from __future__ import annotations

import pytest

from omnirelay.channels.base import InboundFragment
from omnirelay.core.statuses import Status
from omnirelay.smsc import SmscSimulator
from tests.smpp.support import RecordingSink, connector, make_channel, sms


@pytest.mark.parametrize(("id_format", "extra"), [
    ("hex", {}),
    ("dec", {}),
    ("hex-dec", {"receipt_id_base": "dec"}),  # receipt text in decimal, no receipted_message_id TLV
])
async def test_receipt_ids_match_submit_ids(sink: RecordingSink, id_format: str,
                                            extra: dict[str, str]) -> None:
    async with SmscSimulator(port=0, receipt_delay=0.01, id_format=id_format) as smsc:  # type: ignore[arg-type]
        channel = make_channel(connector("a", smsc.port, **extra))
        await channel.start(sink)
        try:
            await channel.wait_ready(5)
            results = await channel.send([sms(f"+3725556{i:04d}") for i in range(40)])
            refs = {ref for result in results for ref in result.provider_refs}
            assert len(refs) == 40
            await sink.wait_for(lambda: len(sink.reports) == 40)
            assert set(sink.by_ref()) == refs
            assert {report.status for report in sink.reports} == {Status.DELIVRD}
            # Canonical form: lower-case hex digits without leading zeros, behind the connector's scope.
            assert all(ref.startswith(f"esme1@127.0.0.1:{smsc.port}:") for ref in refs)
            assert all(not ref.rsplit(":", 1)[1].startswith("0") for ref in refs)
        finally:
            await channel.stop()


async def test_hex_dec_mismatch_without_setting_does_not_match(sink: RecordingSink) -> None:
    async with SmscSimulator(port=0, receipt_delay=0.01, id_format="hex-dec") as smsc:
        channel = make_channel(connector("a", smsc.port))
        await channel.start(sink)
        try:
            await channel.wait_ready(5)
            results = await channel.send([sms(f"+3725557{i:04d}") for i in range(20)])
            await sink.wait_for(lambda: len(sink.reports) == 20)
            # ids 10..20 are written differently in hex and decimal: those cannot match unconfigured
            assert set(sink.by_ref()) != {ref for r in results for ref in r.provider_refs}
        finally:
            await channel.stop()


async def test_inbound_single(sink: RecordingSink) -> None:
    async with SmscSimulator(port=0) as smsc:
        channel = make_channel(connector("a", smsc.port))
        await channel.start(sink)
        try:
            await channel.wait_ready(5)
            assert smsc.inject_inbound("+37255500009", "+3725000", "Hi there €") == 1
            await sink.wait_for(lambda: len(sink.inbound) == 1)
            [message] = sink.inbound
            assert (message.sender, message.recipient) == ("+37255500009", "+3725000")
            assert message.text == "Hi there €"
            assert message.channel == "sms" and message.extra["connector"] == "a"
        finally:
            await channel.stop()


@pytest.mark.parametrize("split", ["udh8", "udh16", "sar"])
@pytest.mark.parametrize("text", ["z" * 300, "Ünïcödé ✓ " * 20])
async def test_inbound_concatenated(sink: RecordingSink, split: str, text: str) -> None:
    async with SmscSimulator(port=0) as smsc:
        channel = make_channel(connector("a", smsc.port, bind="transmitter+receiver"))
        await channel.start(sink)
        try:
            await channel.wait_ready(5)
            parts = smsc.inject_inbound("+37255500009", "+3725000", text, split=split)  # type: ignore[arg-type]
            assert parts > 1
            await sink.wait_for(lambda: len(sink.fragments) == parts)
            fragments: list[InboundFragment] = sorted(sink.fragments, key=lambda f: f.seq)
            assert len({f.group_key for f in fragments}) == 1
            assert fragments[0].group_key.startswith("smpp:a:+37255500009:+3725000:")
            assert [f.seq for f in fragments] == list(range(1, parts + 1))
            assert {f.total for f in fragments} == {parts}
            assert "".join(f.text for f in fragments) == text
            assert not sink.inbound
        finally:
            await channel.stop()
