"""uvicorn's HTTP protocol with deadlines on what a client sends: a slow client cannot hold a connection open.

uvicorn bounds an idle keep-alive connection (5 s) but not a request that arrives slowly: headers dribbled a byte
at a time, or a body that never ends, held a socket for as long as the client liked (200 of 200 such sockets stayed
open for 40 s). Here each request's headers must be complete within ``header_timeout`` of its first byte (or of
the connection, for the first request): else the server answers 408 and closes. Its body must be complete within
``body_timeout`` of its headers: else the connection is closed (the app, waiting on the body, sees the client go).
Two timers per request, armed and cancelled on the event loop: nothing on the per-byte path.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n"
)
_BODY = b'{"detail": "the request headers did not arrive within %gs", "reason": "request_timeout"}'


def deadline_protocol(header_timeout: float, body_timeout: float) -> type[asyncio.Protocol]:
    """An ``HttpToolsProtocol`` with these deadlines, for ``uvicorn.run(http=...)``."""

    class DeadlineProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._header_deadline: asyncio.TimerHandle | None = None
            self._body_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._header_deadline = self.loop.call_later(header_timeout, self._headers_too_slow)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._header_deadline is None:  # a later request on a kept-alive connection
                self._header_deadline = self.loop.call_later(header_timeout, self._headers_too_slow)

        def on_headers_complete(self) -> None:
            self._cancel_header_deadline()
            super().on_headers_complete()
            self._body_deadline = self.loop.call_later(body_timeout, self._body_too_slow)

        def on_message_complete(self) -> None:
            self._cancel_body_deadline()
            super().on_message_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_deadline()
            self._cancel_body_deadline()
            super().connection_lost(exc)

        def _headers_too_slow(self) -> None:
            self._header_deadline = None
            if not self.transport.is_closing():
                body = _BODY % header_timeout
                self.transport.write(_REQUEST_TIMEOUT % len(body) + body)
                self.transport.close()

        def _body_too_slow(self) -> None:
            # The app may be reading the body: it sees a disconnect, and no answer goes to a client that stalled.
            self._body_deadline = None
            if not self.transport.is_closing():
                self.transport.close()

        def _cancel_header_deadline(self) -> None:
            if self._header_deadline is not None:
                self._header_deadline.cancel()
                self._header_deadline = None

        def _cancel_body_deadline(self) -> None:
            if self._body_deadline is not None:
                self._body_deadline.cancel()
                self._body_deadline = None

    return DeadlineProtocol
