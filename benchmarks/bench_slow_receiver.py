"""CPU of the webhook sender while one slow receiver drains a backlog.

Queues N delivery reports for one receiver that takes `--latency` seconds per request (a
subprocess, so its own CPU is not counted), runs only the webhook sender on a temporary SQLite
database, and reports this process's CPU per wall second while the receiver drains the backlog at
its own pace, plus the claim round trips, the rows claimed and the rows put back untried
(deferred), counted at the store.

    python benchmarks/bench_slow_receiver.py                     # 1000 reports, 1 s per request
    python benchmarks/bench_slow_receiver.py --n 4000 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from omnirelay.config import load_settings
from omnirelay.core import secrets
from omnirelay.core.reports import WebhookDraft
from omnirelay.core.timefmt import utcnow
from omnirelay.engine.webhooks import WebhookSender
from omnirelay.runtime import Runtime
from omnirelay.store.transitions import enqueue_webhooks

RECEIVER = textwrap.dedent("""
    import asyncio, sys

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\\r\\n\\r\\n")
                length = 0
                for line in head.split(b"\\r\\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                await asyncio.sleep(float(sys.argv[2]))
                writer.write(b"HTTP/1.1 200 OK\\r\\ncontent-length: 0\\r\\n\\r\\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
        async with server:
            await server.serve_forever()

    asyncio.run(main())
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run(n: int, seconds: float, latency: float, database: Path, port: int) -> None:
    settings = load_settings(None, environ={}, overrides={
        "database_url": f"sqlite:///{database}"})
    runtime = Runtime(settings)
    runtime.migrate()
    now = utcnow()
    account = await runtime.store.create_account(
        name="bench", api_username="bench", api_password=secrets.new_password(),
        twilio_account_sid=secrets.new_account_sid(), twilio_auth_token=secrets.new_auth_token(),
        inbound_secret=secrets.new_password(), default_sender="Bench", now=now)
    url = f"http://127.0.0.1:{port}/dlr"
    drafts = [(account.id, f"m{i}", WebhookDraft(url, "dlr", b'{"status":"DELIVRD"}'))
              for i in range(n)]
    await runtime.db.write(lambda conn: enqueue_webhooks(conn, drafts, now))
    counts = {"claims": 0, "claimed": 0, "deferred": 0}
    claim, finish = runtime.store.claim_webhooks, runtime.store.finish_webhooks

    async def counted_claim(*args: Any, **kwargs: Any) -> Any:
        rows = await claim(*args, **kwargs)
        counts["claims"] += 1
        counts["claimed"] += len(rows)
        return rows

    async def counted_finish(results: Any, when: Any) -> None:
        counts["deferred"] += sum(1 for r in results if r.deferred)
        await finish(results, when)

    # Counted at the store, so the figures mean the same for any version of the sender.
    runtime.store.claim_webhooks = counted_claim  # type: ignore[method-assign]
    runtime.store.finish_webhooks = counted_finish  # type: ignore[method-assign]
    sender = WebhookSender(runtime.store, runtime.accounts, settings.webhooks, asyncio.Event(),
                           runtime.signers, runtime.metrics)
    stopping = asyncio.Event()
    task = asyncio.get_running_loop().create_task(sender.run(stopping))
    await asyncio.sleep(2 * latency)  # past the start-up burst: measure the steady state
    cpu0, wall0, delivered0 = time.process_time(), time.monotonic(), sender.delivered
    before = dict(counts)
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    delivered = sender.delivered - delivered0
    claims, claimed, deferred = (counts[k] - before[k] for k in ("claims", "claimed", "deferred"))
    stopping.set()
    await task
    runtime.close()
    print(f"{n} reports, receiver {latency:g} s per request: {cpu / wall:.3f} of a core over "
          f"{wall:.1f} s; delivered {delivered / wall:.1f}/s; {claims / wall:.1f} claims/s "
          f"taking {claimed / wall:.0f} rows/s, of which put back untried {deferred / wall:.0f}/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="reports queued (default 1000)")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured window")
    parser.add_argument("--latency", type=float, default=1.0, help="receiver seconds/request")
    args = parser.parse_args()
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port), str(args.latency)])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(run(args.n, args.seconds, args.latency, Path(tmp) / "bench.db", port))
    finally:
        receiver.terminate()
        receiver.wait(5)


if __name__ == "__main__":
    main()
