"""Submits/s and receipts/s through the SMPP channel to the SMSC simulator on loopback.

    python benchmarks/bench_smpp_channel.py [--n 20000] [--batch 500] [--window 64] [--same-process]

The simulator runs in a child process (as it would against a real SMSC, the channel has its core to
itself) unless --same-process. The channel gets batches as the dispatcher would hand them over; a
counting sink stands in for the engine. The simulator runs without outcome rules (everything is
delivered). Bounded by --n and a 300 s timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import time
from collections.abc import Sequence
from typing import Any

from omnirelay.channels.base import OutboundMessage, StatusReport
from omnirelay.channels.smpp import create_channel
from omnirelay.smsc import SmscSimulator
from omnirelay.supervisor import Supervisor


class CountingSink:
    def __init__(self, expected: int) -> None:
        self.receipts = 0
        self.supervisor = Supervisor()
        self.expected = expected
        self.done = asyncio.Event()
        self.last = 0.0

    async def report_statuses(self, reports: Sequence[StatusReport]) -> None:
        self.receipts += len(reports)
        self.last = time.perf_counter()
        if self.receipts >= self.expected:
            self.done.set()

    async def receive_inbound(self, messages: Sequence[Any]) -> None:
        return None

    async def receive_fragments(self, fragments: Sequence[Any]) -> None:
        return None

    async def remember_subscriber(self, provider: str, phone: str, address: str) -> None:
        return None

    async def lookup_subscribers(self, provider: str, phones: Sequence[str]) -> dict[str, str]:
        return {}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(port: int, ready: Any) -> None:
    async def run() -> None:
        async with SmscSimulator(port=port, receipt_delay=0.0, record=False, rules=()):
            ready.set()
            await asyncio.Event().wait()

    asyncio.run(run())


async def bench(port: int, n: int, batch: int, window: int) -> None:
    channel = create_channel({"connectors": [{"name": "bench", "host": "127.0.0.1", "port": port,
                                              "system_id": "bench", "window": window}]})
    sink = CountingSink(n)
    await channel.start(sink)
    await channel.wait_ready(10)
    messages = [OutboundMessage(f"m{i}", f"o{i}", 1, "sms", f"+3725{i:07d}", "Bench",
                                {"text": f"Your code is {i:06d}"}) for i in range(n)]
    start = time.perf_counter()
    refs = 0
    for at in range(0, n, batch):
        results = await channel.send(messages[at : at + batch])
        refs += sum(len(result.provider_refs) for result in results)
    sent = time.perf_counter() - start
    await asyncio.wait_for(sink.done.wait(), 300)
    received = sink.last - start
    print(f"n={n} batch={batch} window={window}: {refs} accepted, {n / sent:,.0f} submits/s; "
          f"{sink.receipts} receipts, {sink.receipts / received:,.0f} receipts/s "
          f"(all receipts in {received:.2f}s)")
    await channel.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--same-process", action="store_true")
    args = parser.parse_args()
    if args.same_process:
        async def together() -> None:
            async with SmscSimulator(port=0, receipt_delay=0.0, record=False, rules=()) as smsc:
                await bench(smsc.port, args.n, args.batch, args.window)

        asyncio.run(asyncio.wait_for(together(), 300))
        return
    port = _free_port()
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(port, ready), daemon=True)
    server.start()
    try:
        ready.wait(10)
        asyncio.run(asyncio.wait_for(bench(port, args.n, args.batch, args.window), 300))
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
