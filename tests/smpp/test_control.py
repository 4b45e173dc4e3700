"""The simulator as the CLI runs it: main() with its HTTP control API."""

from __future__ import annotations

import asyncio

import httpx

from omnirelay.smsc import SmscSimulator, main
from tests.smpp.support import RecordingSink, connector, make_channel, sms


async def test_control_api(sink: RecordingSink) -> None:
    started: asyncio.Future[SmscSimulator] = asyncio.get_running_loop().create_future()
    control_port = _free_port()
    runner = asyncio.create_task(main("127.0.0.1", 0, control_port, receipt_delay=0.01,
                                      ready=started.set_result))
    try:
        simulator = await asyncio.wait_for(started, 10)
        channel = make_channel(connector("a", simulator.port))
        await channel.start(sink)
        try:
            await channel.wait_ready(5)
            await channel.send([sms("+37255500001")])
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{control_port}", timeout=5) as http:
                response = await http.post("/inbound", json={"from": "+37255500009", "to": "1234",
                                                             "text": "q" * 200, "split": "sar"})
                assert response.status_code == 200 and response.json() == {"parts": 2}
                await sink.wait_for(lambda: len(sink.fragments) == 2)
                stats = (await http.get("/stats")).json()
                assert stats["submitted"] == 1 and stats["submitted_by_system_id"] == {"esme1": 1}
                bad = await http.post("/inbound", json={"from": "x", "to": "y", "text": "t", "split": "no"})
                assert bad.status_code == 400
                assert (await http.post("/drop")).json() == {"dropped": 1}
        finally:
            await channel.stop()
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
