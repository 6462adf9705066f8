"""uvicorn's httptools protocol with the bounds it lacks (docs/security.md, "Limits").

uvicorn's default parser for HTTP/1.1 (httptools, llhttp) reads a request head of any size,
and uvicorn has no deadline for a request that arrives slowly (`timeout_keep_alive` covers
only an idle connection between requests). Its h11 parser has a size bound
(`h11_max_incomplete_event_size`) but no deadline either, and is slower. So `api` and `serve`
run this subclass (`uvicorn.run(http=PROTOCOL)`), which adds both:

* a request head (request line and headers) larger than `MAX_HEADER_SECTION` is answered
  431 and the connection closed, while it streams in: the application never sees it and the
  server never holds more than the bound plus one read;
* a client gets `header_timeout` seconds from the first byte of a request (or from opening
  the connection) to send the whole head, then `body_timeout` seconds to send the whole
  body; past a deadline the server answers 408 (when the application has not started to
  answer) and closes the connection. While the server itself stops reading (a pipelined
  request waiting for the one before it, a body the application has not read yet), the
  deadline waits too.

The deadlines come from the settings (SERVICEORDERS_HTTP_HEADER_TIMEOUT,
SERVICEORDERS_HTTP_BODY_TIMEOUT): `configure` sets them in each server process before it
serves.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httptools
from serviceorders.support.limits import BODY_TIMEOUT, HEADER_TIMEOUT, MAX_HEADER_SECTION
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

PROTOCOL = "serviceorders.httpserver:BoundedHttpTools"


def configure(header_timeout: float, body_timeout: float) -> None:
    BoundedHttpTools.header_timeout = header_timeout
    BoundedHttpTools.body_timeout = body_timeout


class _HeadTooLarge(Exception):
    pass


def _error(status: int, reason: str, code: str, message: str) -> bytes:
    body = json.dumps(
        {
            "code": code,
            "reason": reason,
            "message": message,
            "status": str(status),
            "@type": "Error",
        }
    ).encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


class BoundedHttpTools(HttpToolsProtocol):
    max_head = MAX_HEADER_SECTION
    header_timeout = HEADER_TIMEOUT
    body_timeout = BODY_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._reading_head = True  # between a request's first byte and its last header
        self._head_bytes = 0  # bytes received while reading the head
        self._received = False  # a byte of the current request arrived
        self._parsed = 0

    # ------------------------------------------------------------------ deadlines
    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # the server is not reading: not the client's delay
            self._arm(self.body_timeout if not self._reading_head else self.header_timeout)
            return
        what = "head" if self._reading_head else "body"
        self.logger.log(
            logging.INFO if self._received else logging.DEBUG,
            "closing a connection from %s: the request's %s did not arrive in time",
            self.client and self.client[0],
            what,
        )
        if self._received and (
            self.cycle is None or self._reading_head or not self.cycle.response_started
        ):
            seconds = self.header_timeout if self._reading_head else self.body_timeout
            self.transport.write(
                _error(
                    408,
                    "Request Timeout",
                    "request_timeout",
                    f"the request's {'headers' if self._reading_head else 'body'} did not "
                    f"arrive within {seconds:g} s",
                )
            )
            if self.cycle is not None and not self._reading_head:
                # The application reads a disconnect and its own answer is dropped.
                self.cycle.disconnected = True
                self.cycle.message_event.set()
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # ------------------------------------------------------------------ the head's size
    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
            self._received = True
        # uvicorn's data_received, with one more answer: httptools wraps an exception raised
        # in a parser callback (on_url / on_header below) as a parser error.
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            if isinstance(e.__context__, _HeadTooLarge):
                self._too_large()
                return
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        if (
            self._reading_head
            and self._head_bytes > self.max_head
            and not self.transport.is_closing()
        ):
            self._too_large()

    def _too_large(self) -> None:
        self._disarm()
        self.logger.info(
            "refusing a request from %s: its header section exceeds %d bytes",
            self.client and self.client[0],
            self.max_head,
        )
        self.transport.write(
            _error(
                431,
                "Request Header Fields Too Large",
                "header_too_large",
                f"the request's header section exceeds {self.max_head} bytes",
            )
        )
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._reading_head:  # the next request on this connection
            self._reading_head, self._head_bytes = True, 0
        self._parsed = 0  # bytes of the request line and headers, as parsed
        self._received = True
        if self._deadline is None:
            self._arm(self.header_timeout)

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._parsed += len(url)
        if self._parsed > self.max_head:
            raise _HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed += len(name) + len(value) + 4
        if self._parsed > self.max_head:
            raise _HeadTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head, self._head_bytes = False, 0
        self._arm(self.body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._received = False
        super().on_message_complete()
