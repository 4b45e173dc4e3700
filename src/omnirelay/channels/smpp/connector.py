"""A connector: the bind (or transmitter+receiver pair) to one SMSC account, kept up for as long as
the channel runs, with its window, rate limit and throttling pause.

Each bind is kept by its own task: connect, bind, enquire_link every interval, and on any loss
reconnect with a doubling back-off (reconnect_min .. reconnect_max, with jitter so that many
connectors do not stampede a recovering SMSC).

Throttling (ESME_RTHROTTLED / ESME_RMSGQFUL) is about the account, not the message, so it acts on
the whole connector: it pauses `throttle_pause_min` (long enough for an SMSC metering per second to
start a new second) and lowers the connector's send rate to what the SMSC was seen to accept
(`ratelimit.LearnedRate`), which then creeps up again until the next throttle. Throttled responses to
submits already in flight when that happened belong to the same episode and count once. Parts wait
for a window slot before they look at the pause and the rate, so a full queue of parts behind the
window cannot all go out into a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from omnirelay.channels.smpp import pdu
from omnirelay.channels.smpp.outcomes import THROTTLING, TRANSIENT
from omnirelay.channels.smpp.ratelimit import LearnedRate, TokenBucket
from omnirelay.channels.smpp.session import LinkLost, SmppSession
from omnirelay.channels.smpp.settings import ConnectorSettings
from omnirelay.supervisor import Supervisor

log = logging.getLogger(__name__)

DeliverHandler = Callable[["Connector", SmppSession, int, int, bytes], None]


class BindRefused(ConnectionError):
    def __init__(self, connector: str, status: int) -> None:
        super().__init__(f"the SMSC refused the bind with "  # log lines name the connector
                         f"{pdu.status_name(status)}")
        self.status = status


@dataclass(frozen=True, slots=True)
class Accepted:
    message_id: str


@dataclass(frozen=True, slots=True)
class Refused:
    command_status: int


@dataclass(frozen=True, slots=True)
class RetryLater:
    after: float
    reason: str


PartOutcome = Accepted | Refused | RetryLater


@dataclass(frozen=True, slots=True)
class SubmitFields:
    """Everything of a submit_sm but the sequence number."""

    source_addr: str
    source_addr_ton: int
    source_addr_npi: int
    destination_addr: str
    dest_addr_ton: int
    dest_addr_npi: int
    short_message: bytes
    esm_class: int
    data_coding: int
    registered_delivery: int
    service_type: str
    validity_period: str

    def build(self, sequence: int) -> bytes:
        return pdu.encode_submit_sm(
            sequence, source_addr=self.source_addr, source_addr_ton=self.source_addr_ton,
            source_addr_npi=self.source_addr_npi, destination_addr=self.destination_addr,
            dest_addr_ton=self.dest_addr_ton, dest_addr_npi=self.dest_addr_npi,
            short_message=self.short_message, esm_class=self.esm_class, data_coding=self.data_coding,
            registered_delivery=self.registered_delivery, service_type=self.service_type,
            validity_period=self.validity_period)


class Connector:
    def __init__(self, settings: ConnectorSettings, on_deliver: DeliverHandler) -> None:
        self.settings = settings
        self.name = settings.name
        self._on_deliver = on_deliver
        transceiver = settings.bind == "transceiver"
        self._roles: dict[str, pdu.Command] = (
            {"trx": pdu.Command.BIND_TRANSCEIVER} if transceiver
            else {"tx": pdu.Command.BIND_TRANSMITTER, "rx": pdu.Command.BIND_RECEIVER})
        self._sender_role = "trx" if transceiver else "tx"
        self._sessions: dict[str, SmppSession] = {}
        self._tasks: list[str] = []
        self._supervisor: Supervisor | None = None
        self._binding = False
        self._bucket: TokenBucket | None = None
        self._learned = LearnedRate()
        self._window = asyncio.Semaphore(max(1, settings.window))
        self._paused_until = 0.0
        self._up = asyncio.Event()
        self.last_error: str | None = None
        self.submitted = 0

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self, supervisor: Supervisor) -> None:
        self._apply_rate()
        self._supervisor = supervisor
        self._tasks = []
        for role, command in self._roles.items():
            self._tasks.append(supervisor.spawn(f"smpp/{self.name}/{role}",
                                                self._bind_loop(role, command)))

    async def stop(self) -> None:
        # Taken before the bind loops end: their clean-up forgets the sessions, and an SMSC that
        # counts binds per system_id wants an unbind, not a bare close.
        sessions, self._sessions = list(self._sessions.values()), {}
        if self._supervisor is not None:
            for name in self._tasks:
                await self._supervisor.cancel(name)
        self._tasks = []
        await asyncio.gather(*(self._unbind(session) for session in sessions if session.is_open))
        self._up.clear()

    def _bind_loop(self, role: str, command: pdu.Command) -> Callable[[], Awaitable[None]]:
        return lambda: self._keep_bound(role, command)

    def state(self) -> dict[str, Any]:
        """bound when the sending bind is up, binding while a bind is under way, else down."""
        if self.is_up:
            state = "bound"
        elif self._binding:
            state = "binding"
        else:
            state = "down"
        return {"state": state, "last_error": self.last_error,
                "binds": sorted(role for role, s in self._sessions.items() if s.is_open),
                "send_rate": round(self.send_rate, 1) if self.send_rate is not None else None}

    async def _unbind(self, session: SmppSession) -> None:
        with contextlib.suppress(LinkLost, TimeoutError, OSError):
            await session.request(lambda sequence: pdu.frame(pdu.Command.UNBIND, sequence), 1.0,
                                  windowed=False)
        session.close()

    @property
    def is_up(self) -> bool:
        session = self._sessions.get(self._sender_role)
        return session is not None and session.is_open

    @property
    def is_paused(self) -> bool:
        return self._paused_until > asyncio.get_running_loop().time()

    async def wait_up(self, within: float) -> None:
        """For tests and start-up: wait until the sending bind is up."""
        await asyncio.wait_for(self._up.wait(), within)

    def drop_links(self) -> None:
        """Abort every bind (they reconnect): what an operator's `reconnect` would do."""
        for session in list(self._sessions.values()):
            session.abort()

    async def _keep_bound(self, role: str, command: pdu.Command) -> None:
        settings = self.settings
        delay = settings.reconnect_min
        while True:
            self._binding = True
            try:
                session = await self._bind(role, command)
            except (OSError, TimeoutError, BindRefused) as error:
                self.last_error = str(error) or type(error).__name__
                log.warning("SMPP connector %r (%s): %s; retrying in %.1fs", self.name, role,
                            self.last_error, delay)
            else:
                self._binding = False
                delay = settings.reconnect_min
                self.last_error = None
                self._sessions[role] = session
                if role == self._sender_role:
                    self._up.set()
                log.info("SMPP connector %r bound (%s) to %s:%d", self.name, role, settings.host,
                         settings.port)
                keepalive = asyncio.create_task(self._enquire_links(session))
                try:
                    await session.closed
                finally:
                    keepalive.cancel()
                    if self._sessions.get(role) is session:
                        del self._sessions[role]
                    if role == self._sender_role:
                        self._up.clear()
                log.warning("SMPP connector %r (%s): link lost; reconnecting", self.name, role)
            self._binding = False
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, settings.reconnect_max)

    async def _bind(self, role: str, command: pdu.Command) -> SmppSession:
        settings = self.settings
        loop = asyncio.get_running_loop()
        context = settings.ssl_context()
        _, session = await asyncio.wait_for(loop.create_connection(
            lambda: SmppSession(self._on_request, window=settings.window, name=f"{self.name}/{role}"),
            settings.host, settings.port, ssl=context), settings.bind_timeout)
        bind = pdu.Bind(command, settings.system_id, settings.password, settings.system_type)
        try:
            status, _ = await session.request(lambda sequence: pdu.encode_bind(bind, sequence),
                                              settings.bind_timeout, windowed=False)
        except BaseException:
            session.abort()
            raise
        if status != pdu.Status.ROK:
            session.close()
            raise BindRefused(self.name, status)
        session.system_id = settings.system_id
        session.bind_command = command
        return session

    async def _enquire_links(self, session: SmppSession) -> None:
        interval = self.settings.enquire_link_interval
        while session.is_open:
            await asyncio.sleep(interval)
            try:
                await session.request(lambda sequence: pdu.frame(pdu.Command.ENQUIRE_LINK, sequence),
                                      self.settings.response_timeout, windowed=False)
            except (TimeoutError, LinkLost):
                log.warning("SMPP connector %r: enquire_link unanswered; dropping the link", self.name)
                session.abort()
                return

    def _on_request(self, session: SmppSession, command: int, sequence: int, frame: bytes) -> None:
        if command in (pdu.Command.DELIVER_SM, pdu.Command.DATA_SM):
            self._on_deliver(self, session, command, sequence, frame)
        elif command == pdu.Command.ENQUIRE_LINK:
            session.respond(pdu.Command.ENQUIRE_LINK_RESP, sequence)
        elif command == pdu.Command.UNBIND:
            session.respond(pdu.Command.UNBIND_RESP, sequence)
            session.close()
        else:
            session.respond(pdu.Command.GENERIC_NACK, sequence, status=pdu.Status.RINVCMDID)

    # --- sending -------------------------------------------------------------------------------

    @property
    def send_rate(self) -> float | None:
        """Submits per second the connector allows itself now (configured or learned); None: no limit."""
        return self._bucket.rate if self._bucket is not None else None

    @property
    def learned_cap(self) -> float:
        """Submits the SMSC accepted in the second before its last throttle (0: none learned)."""
        return self._learned.learned

    async def submit_all(self, parts: Sequence[SubmitFields]) -> list[PartOutcome]:
        """Submit parts in their order, each waiting for a window slot, then out throttling pauses
        and the send rate for at most `retry_within` seconds; one outcome per part."""
        return await _Submission(self, parts).run()

    def _apply_rate(self) -> None:
        rates = [rate for rate in (self.settings.rate_limit, self._learned.rate) if rate]
        if not rates:
            self._bucket = None
        elif self._bucket is None:
            self._bucket = TokenBucket(min(rates))
        elif self._bucket.rate != min(rates):
            self._bucket.set_rate(min(rates))

    def _throttled(self, sent_at: float) -> None:
        now = asyncio.get_running_loop().time()
        if not self._learned.throttled(now, sent_at):
            return  # sent before this episode began: it is already paused for
        self._apply_rate()
        pause = self.settings.throttle_pause_min
        self._paused_until = now + pause
        log.info("SMPP connector %r throttled after %.0f accepted in the last second; pausing %.2fs, "
                 "then at most %.1f submits/s", self.name, self._learned.learned, pause,
                 self.send_rate or 0.0)


class _Submission:
    """One call's parts through a connector in one task. A part is written the moment the window,
    the pause and the send rate let it; its response (or its timeout, or the link's loss) is
    handled by a callback. So N parts cost N futures and N timers, not N coroutine chains and N
    `wait_for`s: at a few thousand submits a second that was a third of the process's time.

    A throttled part goes back in line ahead of the parts not yet sent, so the parts of a message
    still leave in order."""

    def __init__(self, connector: Connector, parts: Sequence[SubmitFields]) -> None:
        self.connector = connector
        self.parts = parts
        self.loop = asyncio.get_running_loop()
        self.outcomes: list[PartOutcome | None] = [None] * len(parts)
        self.unresolved = len(parts)
        self.deadlines: list[float | None] = [None] * len(parts)
        self.ready = list(range(len(parts)))  # a heap: the lowest index goes next
        self.changed: asyncio.Future[None] | None = None

    async def run(self) -> list[PartOutcome]:
        window = self.connector._window
        while self.unresolved:
            if not self.ready:
                # every part left is in flight: wait for the last answer, or a throttled part
                self.changed = self.loop.create_future()
                await self.changed
                continue
            index = heapq.heappop(self.ready)
            await window.acquire()
            try:
                sent = await self._send(index)
            except BaseException:
                window.release()
                raise
            if not sent:
                window.release()
        return [outcome for outcome in self.outcomes if outcome is not None]

    async def _send(self, index: int) -> bool:
        """Write part `index`, holding a window slot; False when its outcome was decided without
        sending it (the slot is then the caller's to release)."""
        connector, loop = self.connector, self.loop
        settings = connector.settings
        deadline = self.deadlines[index]
        if deadline is None:
            deadline = self.deadlines[index] = loop.time() + settings.retry_within
        while True:
            session = connector._sessions.get(connector._sender_role)
            if session is None or not session.is_open:
                self._resolve(index, RetryLater(settings.retry_after, "link down"))
                return False
            now = loop.time()
            paused_until = connector._paused_until
            if paused_until > now:
                if paused_until > deadline:
                    self._resolve(index, RetryLater(max(paused_until - now, 0.1), "throttled"))
                    return False
                await asyncio.sleep(paused_until - now)
                continue
            bucket = connector._bucket
            if bucket is not None:
                at = bucket.reserve(now, deadline)
                if at is None:
                    self._resolve(index, RetryLater(max(bucket.backlog(now), 0.1), "send rate"))
                    return False
                if at > now:
                    await asyncio.sleep(at - now)
                    if connector.is_paused:
                        continue  # throttled meanwhile: the slot was reserved at the old rate
            try:
                sequence, response = session.start_request(self.parts[index].build)
            except LinkLost:
                self._resolve(index, RetryLater(settings.retry_after, "link lost"))
                return False
            sent_at = loop.time()
            timer = loop.call_at(sent_at + settings.response_timeout, session.give_up, sequence)
            response.add_done_callback(functools.partial(self._answered, index, sent_at, timer))
            return True

    def _answered(self, index: int, sent_at: float, timer: asyncio.TimerHandle,
                  response: asyncio.Future[tuple[int, bytes]]) -> None:
        timer.cancel()
        self.connector._window.release()
        try:
            self._settle(index, sent_at, response)
        except Exception:  # a bug here must not leave the part, and its batch, waiting for ever
            log.exception("SMPP connector %r: handling a submit_sm_resp failed", self.connector.name)
            self._resolve(index, RetryLater(self.connector.settings.retry_after, "channel error"))

    def _settle(self, index: int, sent_at: float,
                response: asyncio.Future[tuple[int, bytes]]) -> None:
        connector = self.connector
        settings = connector.settings
        error = response.exception() if not response.cancelled() else LinkLost("cancelled")
        if isinstance(error, TimeoutError):
            self._resolve(index, RetryLater(settings.retry_after,
                                            "no submit_sm_resp (the part may have been sent)"))
            return
        if error is not None:
            self._resolve(index, RetryLater(settings.retry_after, "link lost"))
            return
        status, frame = response.result()
        connector.submitted += 1
        now = self.loop.time()
        if status == pdu.Status.ROK:
            connector._learned.accepted(now)
            if connector._learned.rate is not None:
                connector._apply_rate()
            self._resolve(index, Accepted(pdu.decode_message_id(frame)))
        elif status in THROTTLING:
            connector._throttled(sent_at)
            deadline = self.deadlines[index]
            if deadline is not None and now >= deadline:
                self._resolve(index, RetryLater(max(connector._paused_until - now, 0.1),
                                                pdu.status_name(status)))
            else:
                heapq.heappush(self.ready, index)
                self._wake()
        elif status in TRANSIENT:
            self._resolve(index, RetryLater(settings.retry_after, pdu.status_name(status)))
        else:
            self._resolve(index, Refused(status))

    def _resolve(self, index: int, outcome: PartOutcome) -> None:
        if self.outcomes[index] is None:
            self.outcomes[index] = outcome
            self.unresolved -= 1
            if not self.unresolved:
                self._wake()

    def _wake(self) -> None:
        if self.changed is not None and not self.changed.done():
            self.changed.set_result(None)
