"""Throttling, dropped links, routing with failover: every message still gets a result."""

from __future__ import annotations

import asyncio

from omnirelay.channels.smpp import pdu
from omnirelay.core.statuses import Err, Status
from omnirelay.smsc import SmscSimulator
from tests.smpp.support import RecordingSink, connector, make_channel, send_until_done, sms


async def test_throttling_slows_the_connector_and_everything_goes_out(sink: RecordingSink) -> None:
    async with SmscSimulator(port=0, receipt_delay=0.01, throttle_fraction=0.2, queue_full_fraction=0.05,
                             seed=7) as smsc:
        channel = make_channel(connector("a", smsc.port, retry_within=5.0))
        await channel.start(sink)
        try:
            await channel.wait_ready(5)
            batch = [sms(f"+3725551{i:04d}") for i in range(300)]
            results = await send_until_done(channel, batch)
            assert all(r.status is None and len(r.provider_refs) == 1 for r in results.values())
            assert smsc.stats.throttled > 0 and smsc.stats.queue_full > 0
            assert smsc.stats.submitted == 300
            refs = {r.provider_refs[0] for r in results.values()}
            await sink.wait_for(lambda: refs <= set(sink.by_ref()))
        finally:
            await channel.stop()


async def test_rate_throttling_pauses_then_reports_retry_after(sink: RecordingSink) -> None:
    async with SmscSimulator(port=0, throttle_rate=50) as smsc:
        channel = make_channel(connector("a", smsc.port, retry_within=0.0, throttle_pause_min=0.5,
                                         throttle_pause_max=1.0))
        await channel.start(sink)
        try:
            await channel.wait_ready(5)
            results = await channel.send([sms(f"+3725552{i:04d}") for i in range(120)])
            later = [r for r in results if r.retry_after is not None]
            assert later and all(r.retry_after > 0 for r in later)
            assert channel.connectors["a"].is_paused
        finally:
            await channel.stop()


async def test_link_dropped_mid_load_reconnects_and_nothing_is_lost(sink: RecordingSink) -> None:
    async with SmscSimulator(port=0, receipt_delay=0.01, drop_after=250) as smsc:
        channel = make_channel(connector("a", smsc.port, window=20))
        await channel.start(sink)
        try:
            await channel.wait_ready(5)
            batch = [sms(f"+3725553{i:04d}", "y" * 200) for i in range(400)]  # two parts each
            results = await send_until_done(channel, batch, within=60)
            assert len(results) == 400
            assert all(r.status is None and len(r.provider_refs) == 2 for r in results.values())
            assert smsc.stats.drops > 0
            refs = {ref for r in results.values() for ref in r.provider_refs}
            await sink.wait_for(lambda: refs <= set(sink.by_ref()), within=30)
        finally:
            await channel.stop()


async def test_drop_on_command(sink: RecordingSink) -> None:
    async with SmscSimulator(port=0, receipt_delay=0.01) as smsc:
        channel = make_channel(connector("a", smsc.port))
        await channel.start(sink)
        try:
            await channel.wait_ready(5)
            assert smsc.drop_links() == 1
            results = await send_until_done(channel, [sms("+37255540001")])
            assert [len(r.provider_refs) for r in results.values()] == [1]
            assert smsc.stats.binds == 2
        finally:
            await channel.stop()


async def test_routing_by_prefix_with_failover(sink: RecordingSink) -> None:
    async with SmscSimulator(port=0) as first, SmscSimulator(port=0) as second:
        channel = make_channel(
            connector("a", first.port), connector("b", second.port),
            routes=[{"prefix": "+372", "connectors": ["a", "b"]}, {"prefix": "+44", "connectors": ["b"]}])
        await channel.start(sink)
        try:
            await channel.wait_ready(5)
            results = await channel.send([sms("+37255550001"), sms("+447700900001")])
            assert all(r.status is None for r in results)
            assert [s.destination_addr for s in first.submissions] == ["37255550001"]
            assert [s.destination_addr for s in second.submissions] == ["447700900001"]

            [unroutable] = await channel.send([sms("+15551234567")])
            assert (unroutable.status, unroutable.err) == (Status.REJECTD, Err.UNROUTABLE)

            await first.stop()  # connector a goes down: +372 fails over to b
            for _ in range(200):
                if not channel.connectors["a"].is_up:
                    break
                await asyncio.sleep(0.01)
            [moved] = await channel.send([sms("+37255550002")])
            assert moved.status is None and moved.provider_refs[0].startswith("esme1@127.0.0.1:")
            assert second.submissions[-1].destination_addr == "37255550002"

            await second.stop()  # every connector of the route is down: come back later
            for _ in range(200):
                if not channel.connectors["b"].is_up:
                    break
                await asyncio.sleep(0.01)
            [later] = await channel.send([sms("+37255550003")])
            assert later.retry_after is not None and later.status is None
        finally:
            await channel.stop()


async def test_stopping_unbinds_every_session_before_closing(sink: RecordingSink) -> None:
    """SMSCs that limit binds per system_id refuse a quick restart after a bare close
    (ESME_RALYBND); a stop unbinds each session and waits for unbind_resp."""
    async with SmscSimulator(port=0, receipt_delay=0.01) as smsc:
        channel = make_channel(connector("pair", smsc.port, bind="transmitter+receiver"),
                               connector("trx", smsc.port))
        await channel.start(sink)
        await channel.wait_ready(5)
        for _ in range(200):
            if smsc.stats.binds == 3:
                break
            await asyncio.sleep(0.01)
        assert smsc.stats.binds == 3
        await channel.stop()
        for _ in range(200):
            if smsc.snapshot()["sessions"] == 0:
                break
            await asyncio.sleep(0.01)
        assert (smsc.stats.unbinds, smsc.stats.closed_without_unbind) == (3, 0)


async def test_after_a_long_throttle_the_learned_rate_comes_back_at_once(sink: RecordingSink) -> None:
    """Before, each throttle after a pause doubled the next pause (up to throttle_pause_max), so the
    link stayed idle long after the SMSC had recovered. Now the rate is what adapts, and the first
    accepted submit after a block restores half the cap learned before it."""
    async with SmscSimulator(port=0, receipt_delay=0.01, throttle_rate=50) as smsc:
        channel = make_channel(connector("a", smsc.port, retry_within=3.0, throttle_pause_min=0.05))
        await channel.start(sink)
        try:
            await channel.wait_ready(5)
            a = channel.connectors["a"]
            await send_until_done(channel, [sms(f"+3725558{i:04d}") for i in range(300)])
            cap = a.learned_cap
            assert cap > 0 and a.send_rate is not None  # it learned a cap

            smsc.throttle_rate, smsc.throttle_fraction = 0, 1.0  # the SMSC refuses everything
            [blocked] = await channel.send([sms("+37255590001")])
            assert blocked.retry_after is not None
            cap = a.learned_cap  # the first cut of the block may still have seen some accepted
            assert a.send_rate is not None and a.send_rate < cap * 0.45

            smsc.throttle_fraction = 0.0  # and recovers
            throttled = smsc.stats.throttled
            [first] = await channel.send([sms("+37255590002")])
            assert first.status is None and len(first.provider_refs) == 1
            assert a.send_rate >= cap * 0.45  # half the cap at once, not a crawl up from the floor
            results = await send_until_done(channel, [sms(f"+3725559{i:04d}") for i in range(40)])
            assert len(results) == 40 and smsc.stats.throttled == throttled
        finally:
            await channel.stop()


class _SilentOnce(asyncio.Protocol):
    """An SMSC that binds, leaves the second submit_sm unanswered until the third has been
    answered, then answers it late; the rest it accepts with ids 1, 2, ..."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.submits = 0
        self.held: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while len(self.buffer) >= pdu.HEADER_SIZE:
            length, command, _, sequence = pdu.header(self.buffer)
            if len(self.buffer) < length:
                return
            self.buffer = self.buffer[length:]
            if command == pdu.Command.BIND_TRANSCEIVER:
                self.transport.write(pdu.frame(pdu.Command.BIND_TRANSCEIVER_RESP, sequence, b"sim\0"))
            elif command == pdu.Command.SUBMIT_SM:
                self.submits += 1
                if self.submits == 2:
                    self.held = sequence
                    continue
                self.transport.write(pdu.encode_message_id_resp(
                    pdu.Command.SUBMIT_SM_RESP, sequence, 0, str(self.submits)))
            elif command & pdu.RESPONSE_BIT == 0:
                self.transport.write(pdu.frame(command | pdu.RESPONSE_BIT, sequence))

    def answer_late(self) -> None:
        assert self.transport is not None and self.held is not None
        self.transport.write(pdu.encode_message_id_resp(
            pdu.Command.SUBMIT_SM_RESP, self.held, 0, "late"))


async def test_an_unanswered_submit_times_out_alone_and_frees_its_window_slot(
        sink: RecordingSink) -> None:
    """With a window of one, the third message can only go out once the second's slot is given
    back by its timeout; the late answer to the second then matches nothing."""
    smsc = _SilentOnce()
    server = await asyncio.get_running_loop().create_server(lambda: smsc, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    channel = make_channel(connector("a", port, window=1, response_timeout=0.3))
    await channel.start(sink)
    try:
        await channel.wait_ready(5)
        first, second, third = (sms(f"+3725556000{i}") for i in range(3))
        async with asyncio.timeout(5):  # a slot never given back would hang the third
            results = {r.message_id: r for r in await channel.send([first, second, third])}
        assert results[first.message_id].provider_refs[0].endswith(":1")
        assert results[second.message_id].retry_after is not None
        assert results[second.message_id].error == "no submit_sm_resp (the part may have been sent)"
        assert results[third.message_id].provider_refs[0].endswith(":3")
        smsc.answer_late()
        [again] = await channel.send([sms("+37255560009")])
        assert again.provider_refs[0].endswith(":4")
        assert channel.connectors["a"].is_up
    finally:
        await channel.stop()
        server.close()
