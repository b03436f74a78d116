"""Slow or stalled clients cannot take the service down (gunicorn's threaded worker).

A gthread worker has a fixed pool of threads, and a request holds one from its first header
byte to its answer, including while its body arrives. Forty clients trickling a body one
byte every five seconds once held every thread and left ``GET health/`` unanswered for
minutes. Three rules keep threads free for health and status polls, however many clients
send slowly:

- the request line and headers must be in within ``PFCON_HEADER_TIMEOUT`` seconds, or the
  connection is closed;
- no read waits more than ``PFCON_CLIENT_TIMEOUT`` seconds, and a body must bring at least
  :data:`MIN_BODY_RATE` bytes/s over each such period: a stalled or trickling body is
  answered 408 and its connection closed (its staged upload is removed with the request);
- at most ``PFCON_UPLOAD_SLOTS`` requests per worker (half its threads by default) may be
  reading a body at once; a quarter of the threads more may wait for a slot (up to
  ``PFCON_CLIENT_TIMEOUT``); beyond that a body is answered 503 at once, unread, and its
  connection closed. A quarter of the threads always serves requests without a body.

gunicorn itself waits for a new connection's first byte without a thread and drains an
unread body for at most 5 s; :class:`GuardedSocket` (through :class:`GuardedThreadWorker`)
and :class:`BodySlots` add the rest.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from gunicorn.http.body import LengthReader
from gunicorn.workers.gthread import ThreadWorker

from pfcon.settings import load_serving_settings

MIN_BODY_RATE = 1024  # bytes/s, averaged over each PFCON_CLIENT_TIMEOUT period


class GuardedSocket:
    """A client socket as gunicorn's threads use it, with pfcon's time limits.

    gunicorn makes the socket blocking before each request (``setblocking(True)``); here that
    means "blocking, for at most the idle timeout". Reads during the headers end at their
    deadline (as an end of stream: gunicorn then closes quietly); reads of a body raise
    :class:`TimeoutError` when it stalls or trickles. :meth:`refuse_rest` makes gunicorn
    answer ``Connection: close`` and close at once, without draining a body nobody wants.
    """

    __slots__ = ("_sock", "header_deadline", "idle", "refused", "request", "window_bytes", "window_start")

    def __init__(self, sock: Any, idle: float) -> None:
        self._sock = sock
        self.idle = idle
        self.header_deadline: float | None = None
        self.refused = False
        self.request: Any = None  # gunicorn's request being served
        self.window_start = 0.0
        self.window_bytes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def setblocking(self, flag: bool) -> None:
        self._sock.settimeout(self.idle if flag else 0.0)

    def settimeout(self, value: float | None) -> None:
        self._sock.settimeout(self.idle if value is None else value)

    def start_headers(self, header_seconds: float) -> None:
        self.header_deadline = time.monotonic() + header_seconds

    def start_body(self, request: Any) -> None:
        self.request = request
        self.header_deadline = None
        self.window_start, self.window_bytes = time.monotonic(), 0
        self._sock.settimeout(self.idle)

    def refuse_rest(self) -> None:
        """Answer with ``Connection: close``, then close without reading the rest."""
        self.refused = True
        if self.request is not None:
            self.request.must_close = True

    def recv(self, size: int, *flags: int) -> bytes:
        if self.refused:
            return b""
        if self.header_deadline is not None:
            return self._recv_header(size, *flags)
        data = self._sock.recv(size, *flags)
        self._check_rate(len(data))
        return data

    def recv_into(self, buffer: memoryview, size: int = 0, *flags: int) -> int:
        """A body read straight into ``buffer`` (see :func:`direct_body`), with the same limits."""
        if self.refused:
            return 0
        if self.header_deadline is not None:
            data = self._recv_header(size or len(buffer), *flags)
            buffer[: len(data)] = data
            return len(data)
        count = self._sock.recv_into(buffer, size, *flags)
        self._check_rate(count)
        return count

    def _recv_header(self, size: int, *flags: int) -> bytes:
        remaining = self.header_deadline - time.monotonic()
        if remaining <= 0:
            return b""
        self._sock.settimeout(min(self.idle, remaining))
        try:
            return self._sock.recv(size, *flags)
        except TimeoutError:
            return b""

    def _check_rate(self, received: int) -> None:
        now = time.monotonic()
        self.window_bytes += received
        if now - self.window_start >= self.idle:
            if self.window_bytes < MIN_BODY_RATE * self.idle:
                raise TimeoutError(f"the request body came slower than {MIN_BODY_RATE} bytes/s")
            self.window_start, self.window_bytes = now, 0


class _DirectBody:
    """A request body of known length read from the client socket into the caller's buffer.

    gunicorn's body reader copies each chunk three times on its way out (its read-ahead
    buffer, a ``getvalue``, a slice) and werkzeug's stream twice more; a 512 MiB upload spent
    a third of its CPU there. This reads what gunicorn already holds, then ``recv_into``, and
    keeps gunicorn's count of the bytes left so it still knows where the next request starts.
    """

    def __init__(self, body: Any, sock: GuardedSocket) -> None:
        self.body, self.reader, self.sock = body, body.reader, sock
        held = self.reader.unreader.take_buffered()
        if len(held) > self.reader.length:  # the start of a pipelined next request: give it back
            self.reader.unreader.unread(held[self.reader.length :])
            held = held[: self.reader.length]
        self.held = memoryview(held)

    def readinto(self, buffer: memoryview) -> int:
        if self.held:
            count = min(len(buffer), len(self.held))
            buffer[:count] = self.held[:count]
            self.held = self.held[count:]
        elif (want := min(len(buffer), self.reader.length)) <= 0:
            return 0
        else:
            try:
                count = self.sock.recv_into(buffer, want)
            except BaseException:
                self.body.failed = True  # where the next request starts is unknown now
                raise
        self.reader.length -= count
        return count


def direct_body(environ: dict[str, Any]) -> Callable[[memoryview], int] | None:
    """A fast ``readinto`` for the body of a gunicorn request of known length, else None.

    Only while nothing of the body has been read through ``wsgi.input``.
    """
    body, sock = environ.get("wsgi.input"), environ.get("gunicorn.socket")
    reader = getattr(body, "reader", None)
    if (
        not isinstance(sock, GuardedSocket)
        or not isinstance(reader, LengthReader)
        or not hasattr(reader.unreader, "take_buffered")
        or body.buf.tell()
    ):
        return None
    return _DirectBody(body, sock).readinto


class GuardedThreadWorker(ThreadWorker):
    """gunicorn's gthread worker over :class:`GuardedSocket` connections."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        serving = load_serving_settings()
        self.client_timeout = serving.client_timeout
        self.header_timeout = serving.header_timeout

    def handle(self, conn: Any) -> Any:
        if not isinstance(conn.sock, GuardedSocket):
            conn.sock = GuardedSocket(conn.sock, self.client_timeout)
        conn.sock.start_headers(self.header_timeout)
        return super().handle(conn)

    def handle_request(self, req: Any, conn: Any) -> Any:
        conn.sock.start_body(req)
        return super().handle_request(req, conn)


def has_body(environ: dict[str, Any]) -> bool:
    length = environ.get("CONTENT_LENGTH") or "0"
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    return chunked or (length.isdigit() and int(length) > 0)


def refuse_rest(environ: dict[str, Any]) -> None:
    """Close the connection after the answer instead of reading what is left of the body."""
    sock = environ.get("gunicorn.socket")
    if isinstance(sock, GuardedSocket):
        sock.refuse_rest()


StartResponse = Callable[..., Any]


class BodySlots:
    """WSGI middleware: at most ``slots`` requests of this process read a body at once.

    One more waits for a slot for up to ``wait_seconds`` (a burst of submissions is queued,
    not refused), but only ``waiting`` of them at a time: the remaining threads of the
    worker always serve requests without a body. Beyond that: 503 at once.
    """

    def __init__(
        self,
        app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]],
        slots: int,
        waiting: int,
        wait_seconds: float,
    ) -> None:
        self.app = app
        self.slots = slots
        self.wait_seconds = wait_seconds
        self._free = threading.BoundedSemaphore(slots)
        self._queue = threading.BoundedSemaphore(waiting) if waiting else None

    def _take_slot(self) -> bool:
        if self._free.acquire(blocking=False):
            return True
        if self._queue is None or not self._queue.acquire(blocking=False):
            return False
        try:
            return self._free.acquire(timeout=self.wait_seconds)
        finally:
            self._queue.release()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not has_body(environ):
            return self.app(environ, start_response)
        if not self._take_slot():
            refuse_rest(environ)
            message = f"{self.slots} uploads are already being received by this worker; retry shortly"
            body = json.dumps({"message": message}).encode()
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            start_response("503 SERVICE UNAVAILABLE", [*headers, ("Retry-After", "5")])
            return [body]
        failed = False

        def recording(status: str, headers: list, exc_info: Any = None) -> Any:
            nonlocal failed
            failed = int(status[:3]) >= 400
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, recording)
        finally:
            self._free.release()
            if failed:  # the body may be unread: do not drain it
                refuse_rest(environ)
