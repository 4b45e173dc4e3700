"""One supervisor for every long-lived task of a process.

A task that raises is logged once with its traceback and its name, counted, and started again
after a back-off that doubles while it keeps failing; a task that returns while the process is
not stopping is treated as a failure too, since a loop that ends on its own has stopped doing its
job. The causes worth surviving lie outside the process (the database restarted, an upstream
gone), so restarting is the right answer where procrastinate would stop the worker.

The supervisor also keeps each task's state for the readiness endpoint: running, or restarting
since when and after which error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from omnirelay.core.timefmt import utcnow
from omnirelay.metrics import Metrics

log = logging.getLogger(__name__)

TaskFactory = Callable[[], Awaitable[None]]

BACKOFF_MIN = 0.2
BACKOFF_MAX = 5.0
# A run that lasted this long counts as healthy: the next failure starts the back-off afresh.
HEALTHY_AFTER = 30.0


@dataclass(slots=True)
class TaskState:
    name: str
    state: str = "starting"  # starting, running, restarting, stopped
    restarts: int = 0
    last_error: str | None = None
    since: datetime | None = None  # when the current state began

    def as_dict(self) -> dict[str, object]:
        return {"state": self.state, "restarts": self.restarts, "last_error": self.last_error,
                "since": self.since.isoformat() + "Z" if self.since else None}


class Supervisor:
    def __init__(self, metrics: Metrics | None = None, *, backoff_min: float = BACKOFF_MIN,
                 backoff_max: float = BACKOFF_MAX) -> None:
        self.metrics = metrics or Metrics()
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.states: dict[str, TaskState] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Set by stop(); every supervised loop is given this event and ends when it is set.
        self.stopping_event = asyncio.Event()

    def spawn(self, name: str, factory: TaskFactory) -> str:
        """Run `factory()` until the supervisor stops, restarting it whenever it fails. Returns
        the task's name: `name`, or `name#2` and so on when a live task has it already (names
        label the metrics and the readiness report)."""
        base, n = name, 1
        while name in self._tasks and not self._tasks[name].done():
            n += 1
            name = f"{base}#{n}"
        self.stopping_event.clear()
        self.states[name] = TaskState(name, since=utcnow())
        self._tasks[name] = asyncio.get_running_loop().create_task(self._run(name, factory),
                                                                   name=name)
        return name

    async def _run(self, name: str, factory: TaskFactory) -> None:
        state = self.states[name]
        delay = self.backoff_min
        while not self.stopping_event.is_set():
            state.state, state.since = "running", utcnow()
            started = time.monotonic()
            failure: Exception | None = None
            try:
                await factory()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                if self.stopping_event.is_set():
                    log.warning("task %s failed while stopping: %s", name, error)
                    break
                failure = exc
            else:
                if self.stopping_event.is_set():
                    break
                error = "ended without being asked to stop"
            if time.monotonic() - started >= HEALTHY_AFTER:
                delay = self.backoff_min
            state.state, state.since, state.last_error = "restarting", utcnow(), error
            state.restarts += 1
            self.metrics.task_restarts.labels(name).inc()
            log.error("task %s failed (%s); restarting in %.1f s", name, error, delay,
                      exc_info=failure)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping_event.wait(), timeout=delay)
            delay = min(delay * 2, self.backoff_max)
        state.state, state.since = "stopped", utcnow()

    def failing(self) -> list[str]:
        """Tasks that are not running: waiting to restart after a failure."""
        return sorted(name for name, s in self.states.items() if s.state == "restarting")

    def report(self) -> dict[str, dict[str, object]]:
        return {name: state.as_dict() for name, state in sorted(self.states.items())}

    async def stop(self, grace: float = 10.0, names: list[str] | None = None) -> None:
        """Ask every task to stop (each loop watches the stopping event it was given) and wait;
        what is still running after `grace` seconds is cancelled."""
        self.stopping_event.set()
        tasks = [t for n, t in self._tasks.items() if names is None or n in names]
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            log.warning("task %s did not stop within %.0f s; cancelling it", task.get_name(),
                        grace)
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for name in [n for n, t in self._tasks.items() if t.done()]:
            del self._tasks[name]

    async def cancel(self, name: str) -> None:
        """Stop one task at once (for loops that only end by cancellation, such as LISTEN)."""
        task = self._tasks.pop(name, None)
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        if name in self.states:
            self.states[name].state = "stopped"
