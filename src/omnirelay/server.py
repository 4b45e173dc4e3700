"""The HTTP server: uvicorn on httptools, bounded by the [server] settings.

httptools buffers a header line for as long as it lasts and waits for a request for ever, so one
client could hold any amount of memory (a 50 MB header line was accepted) or a connection slot.
The protocol below counts what a request's head has sent so far and refuses it past the limits,
and gives a whole request `request_timeout` seconds once its first byte arrived. Costs are a few
integer operations per read and a timer only for a request that spans several reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httptools
import uvicorn
from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from omnirelay.config import ServerSettings

LINGER_SECONDS = 2.0  # how long a refused connection's further input is read and dropped

# (the request's path as far as it was read, status, detail) -> the answer, in the surface's format
Refusal = Callable[[str, int, str], Response]


def plain_refusal(_path: str, _status: int, detail: str) -> Response:
    return Response(detail, media_type="text/plain")


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """httptools with bounds on the request line, the head, the header count and the time a
    request takes to arrive. A refusal answers in the surface's format and closes the
    connection: the rest of what the client sends cannot be parsed reliably."""

    bounds: ServerSettings = ServerSettings()
    refusal: Refusal = staticmethod(plain_refusal)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # waiting for or reading a request's line and headers
        self._head_began = False  # a head began during the current read
        self._head_bytes = 0
        self._header_count = 0
        self._parsed_bytes = 0  # the request line and headers httptools has handed over
        self._reading = False  # a request began and has not fully arrived
        self._read_timer: asyncio.TimerHandle | None = None
        self._refused: tuple[int, str] | None = None
        self._lingering = False

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        self._unset_keepalive_if_required()
        self._head_began = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._refused is not None:
                self._refuse(*self._refused)
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        # A head that began in this read is counted from the next one: the read may hold the
        # end of the previous request too. That leaves the bound at most one read lenient.
        if self._in_head and not self._head_began:
            self._head_bytes += len(data)
            if self._head_bytes > self.bounds.max_header_bytes:
                self._refuse(431, "the request's headers are too large")
                return
        if self._reading and self._read_timer is None:
            self._read_timer = self.loop.call_later(self.bounds.request_timeout, self._timed_out)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading = True
        self._header_count = 0
        self._parsed_bytes = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._parsed_bytes += len(url)
        if len(self.url) > self.bounds.max_request_line_bytes:
            self._stop(414, "the request's URL is too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        # Exact where data_received's count can be one read lenient (a head within one read).
        self._header_count += 1
        self._parsed_bytes += len(name) + len(value) + 4
        if self._header_count > self.bounds.max_headers:
            self._stop(431, "the request has too many headers")
        if self._parsed_bytes > self.bounds.max_header_bytes:
            self._stop(431, "the request's headers are too large")
        super().on_header(name, value)

    def _stop(self, status: int, detail: str) -> None:
        """Stop the parser from a callback: httptools turns the exception into a parser error,
        which data_received answers with this refusal."""
        self._refused = (status, detail)
        raise ValueError(detail)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        self._head_began = True
        self._reading = False
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lingering = False
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
        super().connection_lost(exc)

    def _timed_out(self) -> None:
        self._read_timer = None
        if self._lingering or self.transport.is_closing():
            return
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # the app answered already; there is nothing left to say
        else:
            self._refuse(408, f"the request did not arrive within {self.bounds.request_timeout:g} s")

    def _refuse(self, status: int, detail: str) -> None:
        self.logger.info("refused a request from %s: %d %s", self._peer(), status, detail)
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            # The app may be serving this request; it must not write after the refusal.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        response = type(self).refusal(self._path(), status, detail)
        head = [STATUS_LINE[status]]
        for name, value in response.raw_headers:
            if name not in (b"content-length", b"connection"):
                head += [name, b": ", value, b"\r\n"]
        head += [b"content-length: ", str(len(response.body)).encode(), b"\r\n",
                 b"connection: close\r\n\r\n", bytes(response.body)]
        self.transport.write(b"".join(head))
        # Closing with unread data would reset the connection, and the client would likely lose
        # the answer: end our side, read and drop what still comes for a moment, then close.
        self._lingering = True
        self._unset_keepalive_if_required()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self._close)

    def _close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def _path(self) -> str:
        url = getattr(self, "url", b"")
        return url.split(b"?", 1)[0].decode("latin-1")[:self.bounds.max_request_line_bytes]

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "a client"


def protocol_class(bounds: ServerSettings, refusal: Refusal = plain_refusal
                   ) -> type[BoundedHttpToolsProtocol]:
    """uvicorn builds one protocol per connection from a class; the bounds ride on it."""
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,),
                {"bounds": bounds, "refusal": staticmethod(refusal)})


def uvicorn_config(app: Any, bounds: ServerSettings, *, host: str, port: int,
                   refusal: Refusal = plain_refusal, **options: Any) -> uvicorn.Config:
    """The server's settings for `app`; the same in `serve` and in the tests. uvicorn's own
    logging config is left out: its loggers propagate to the root logger, which
    omnirelay.logs.configure sets up, so its lines have the format of all the others."""
    return uvicorn.Config(
        app, host=host, port=port, http=protocol_class(bounds, refusal),
        timeout_keep_alive=bounds.keep_alive_timeout,
        # uvicorn counts the connection being served: N lets N - 1 others be open.
        limit_concurrency=bounds.max_connections + 1,
        server_header=False, **{"log_config": None, **options})
