"""The built-in SMSC simulator: a dev tool (`omnirelay smsc`) and the peer of the SMPP tests."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence

from omnirelay.smsc.rules import DEFAULT_RULES, Rule, parse_rule
from omnirelay.smsc.simulator import IdFormat, SmscSimulator, Submission

__all__ = ["DEFAULT_RULES", "Rule", "SmscSimulator", "Submission", "main", "parse_rule"]

log = logging.getLogger(__name__)


async def main(host: str = "127.0.0.1", port: int = 2775, control_port: int | None = 2776, *,
               users: Mapping[str, str] | None = None, rules: Sequence[Rule] = DEFAULT_RULES,
               receipt_delay: float = 0.2, id_format: IdFormat = "hex",
               throttle_fraction: float = 0.0, throttle_rate: float = 0.0,
               queue_full_fraction: float = 0.0, drop_after: int | None = None, id_start: int = 1,
               ready: Callable[[SmscSimulator], None] | None = None) -> None:
    """Run the simulator (and its HTTP control API on `control_port`, None for none) until cancelled.
    `ready` is called once both listen, with the simulator (whose .port is the bound port)."""
    import uvicorn  # the control API is optional for library use; import it only here

    from omnirelay.smsc.control import control_app

    simulator = SmscSimulator(host, port, users=users, rules=rules, receipt_delay=receipt_delay,
                              id_format=id_format, throttle_fraction=throttle_fraction,
                              throttle_rate=throttle_rate, queue_full_fraction=queue_full_fraction,
                              drop_after=drop_after, record=False, id_start=id_start)
    await simulator.start()
    server: uvicorn.Server | None = None
    serving: asyncio.Task[None] | None = None
    try:
        if control_port is not None:
            config = uvicorn.Config(control_app(simulator), host=host, port=control_port, log_level="warning",
                                    lifespan="off")
            server = uvicorn.Server(config)
            serving = asyncio.create_task(server.serve())
            while not server.started:
                if serving.done():
                    await serving  # re-raises why it could not start
                    raise RuntimeError(f"the control API could not listen on {host}:{control_port}")
                await asyncio.sleep(0.01)
        log.info("SMSC simulator on %s:%d, control API on %s", host, simulator.port,
                 f"http://{host}:{control_port}" if control_port is not None else "(none)")
        if ready is not None:
            ready(simulator)
        await asyncio.Event().wait()
    finally:
        if server is not None and serving is not None:
            server.should_exit = True
            await asyncio.gather(serving, return_exceptions=True)
        await simulator.stop()
