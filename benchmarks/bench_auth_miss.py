"""How long Basic authentication takes on a cache miss, for a username that exists (with a
wrong password) and for one that does not: the difference is what a client could learn about
which usernames exist.

In-process on a temporary SQLite database with one account; the cache is emptied before every
try, and the two kinds alternate so that a busy spell hits both. Prints the medians, their
difference and a z score (difference of means over its standard error).

    python benchmarks/bench_auth_miss.py            # 1000 tries of each
    python benchmarks/bench_auth_miss.py --n 3000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import math
import statistics
import tempfile
import time

from omnirelay.api.auth import authenticate_api_user
from omnirelay.config import load_settings
from omnirelay.core import secrets
from omnirelay.core.timefmt import utcnow
from omnirelay.runtime import Runtime


def header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="omnirelay-auth-") as workdir:
        runtime = Runtime(load_settings(None, environ={}, overrides={
            "database_url": f"sqlite:///{workdir}/omnirelay.db"}))
        runtime.migrate()
        await runtime.store.create_account(
            name="bench", api_username="bench-user", api_password=secrets.new_password(),
            twilio_account_sid=secrets.new_account_sid(),
            twilio_auth_token=secrets.new_auth_token(), inbound_secret=secrets.new_password(),
            default_sender="Bench", now=utcnow())
        known = header("bench-user", "wrong-password-0123456789abcdef")
        timings: dict[str, list[float]] = {"existing": [], "missing": []}
        for i in range(n + 50):
            for kind in ("existing", "missing"):
                value = known if kind == "existing" else header(f"nobody-{i}", "wrong-password")
                runtime.accounts.forget()
                started = time.perf_counter()
                assert await authenticate_api_user(runtime.accounts, value) is None
                if i >= 50:  # the first tries warm up the database connection
                    timings[kind].append(time.perf_counter() - started)
        runtime.close()
    existing, missing = (timings[k] for k in ("existing", "missing"))
    difference = statistics.median(existing) - statistics.median(missing)
    error = math.sqrt(statistics.variance(existing) / n + statistics.variance(missing) / n)
    z = (statistics.fmean(existing) - statistics.fmean(missing)) / error
    print(f"cache-miss authentication, {n} tries each")
    print(f"  existing username: median {statistics.median(existing) * 1e6:7.1f} µs")
    print(f"  missing username : median {statistics.median(missing) * 1e6:7.1f} µs")
    print(f"  difference       : {difference * 1e6:+7.1f} µs (z = {z:.1f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=1000)
    asyncio.run(main(parser.parse_args().n))
