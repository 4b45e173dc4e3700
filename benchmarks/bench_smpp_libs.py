"""Compare the SMPP libraries we could build on, on loopback (the numbers behind the library choice).

    python benchmarks/bench_smpp_libs.py [--n 20000] [--window 10]

Modes (each bounded by --n and a 120 s timeout):
  codec      encode+decode one submit_sm, smpp34 (Rust) vs aiosmpplib (pure Python)
  smpp34     smpp34.Client -> smpp34.Server (server in a child process), window-limited pipelining
  aiosmpplib aiosmpplib.ESME -> smpp34.Server (aiosmpplib has no server side)
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import time
from typing import Any

import smpp34


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(port: int, ready: Any) -> None:
    async def main() -> None:
        server = smpp34.Server(host="127.0.0.1", port=port, system_id="BENCH")
        await server.start()
        ready.set()
        counter = 0
        while True:
            event = await server.next()
            if isinstance(event, smpp34.SubmitSmEvent):
                counter += 1
                event.accept(message_id=f"{counter:08x}")

    asyncio.run(main())


def bench_codec(n: int) -> None:
    from aiosmpplib import PhoneNumber, SubmitSm  # imported here: only this mode needs it
    from aiosmpplib.protocol import PduHeader, SmppCommand, SmppCommandStatus

    payload = b"Hello world, this is a benchmark message" * 3
    start = time.perf_counter()
    for seq in range(n):
        wire = smpp34.SubmitSm("Sender", "37255512345", payload, data_coding=0, registered_delivery=1,
                               sequence_number=seq + 1).encode()
        smpp34.decode(wire)
    rust = n / (time.perf_counter() - start)

    start = time.perf_counter()
    for seq in range(n):
        message = SubmitSm(short_message="x", source=PhoneNumber("Sender"),
                           destination=PhoneNumber("37255512345"), sequence_num=seq + 1)
        message.set_encoded_message(payload)
        message.encoding = "ucs2"
        wire = message.pdu()
        header = PduHeader(len(wire), SmppCommand.SUBMIT_SM, SmppCommandStatus.ESME_ROK, seq + 1)
        SubmitSm.from_pdu(wire, header)
    python = n / (time.perf_counter() - start)
    print(f"codec: smpp34 {rust:,.0f} encode+decode/s; aiosmpplib {python:,.0f} encode+decode/s")


async def bench_smpp34(port: int, n: int, window: int) -> None:
    client = smpp34.Client("127.0.0.1", port, "bench", "secret", window_size=window)
    smsc = await client.connect()
    gate = asyncio.Semaphore(window)
    failures = 0

    async def one(i: int) -> None:
        nonlocal failures
        async with gate:
            resp = await smsc.submit_sm(f"3725{i:07d}", b"hello benchmark", source_addr="Bench",
                                        registered_delivery=0)
            failures += not resp.is_success

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - start
    print(f"smpp34 client -> smpp34 server: n={n} window={window} {n / elapsed:,.0f} submit_sm/s "
          f"(failures {failures})")
    await client.stop()


async def bench_aiosmpplib(port: int, n: int) -> None:
    from aiosmpplib import ESME, AbstractHook, PhoneNumber, SubmitSm, SubmitSmResp

    done = asyncio.Event()
    seen = 0

    class Hook(AbstractHook):
        async def sending(self, smpp_message: Any, pdu: bytes, client_id: str) -> None:
            return None

        async def received(self, smpp_message: Any, pdu: bytes, client_id: str) -> None:
            nonlocal seen
            if isinstance(smpp_message, SubmitSmResp):
                seen += 1
                if seen >= n:
                    done.set()

        async def send_error(self, smpp_message: Any, error: Exception, client_id: str) -> None:
            return None

    esme = ESME("127.0.0.1", port, "bench", "secret", hook=Hook(), log_level="ERROR")
    task = asyncio.create_task(esme.start())
    for i in range(n):
        await esme.broker.enqueue(SubmitSm(short_message="hello benchmark", source=PhoneNumber("Bench"),
                                           destination=PhoneNumber(f"3725{i:07d}"), log_id=str(i),
                                           registered_delivery=0))
        if i == 0:
            start = time.perf_counter()
    await asyncio.wait_for(done.wait(), 120)
    elapsed = time.perf_counter() - start
    print(f"aiosmpplib ESME -> smpp34 server: n={n} {n / elapsed:,.0f} submit_sm/s (no window limit)")
    await esme.stop()
    task.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--mode", choices=["codec", "smpp34", "aiosmpplib", "all"], default="all")
    args = parser.parse_args()
    if args.mode in ("codec", "all"):
        bench_codec(args.n)
    for mode in ("smpp34", "aiosmpplib"):
        if args.mode not in (mode, "all"):
            continue
        port = _free_port()
        ready = multiprocessing.Event()
        server = multiprocessing.Process(target=_serve, args=(port, ready), daemon=True)
        server.start()
        try:
            ready.wait(10)
            if mode == "smpp34":
                asyncio.run(asyncio.wait_for(bench_smpp34(port, args.n, args.window), 120))
            else:
                asyncio.run(asyncio.wait_for(bench_aiosmpplib(port, args.n), 120))
        finally:
            server.terminate()
            server.join(5)


if __name__ == "__main__":
    main()
