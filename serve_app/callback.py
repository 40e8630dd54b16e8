"""Asynchronous results: a request with a callback URL is answered at once, and its result (or its
error) is POSTed to the URL later, from the outbox (outbox.py), so that a restart does not lose it.

A pending callback's life:
1. accepted (`Callbacks.accept`): an outbox row `running`, leased to this replica, which renews the
   lease while it transcribes. Bounds, checked before any work: this replica's callback requests
   still transcribing (`pending_per_replica`: 503 + retry_after, as the server is full, not the
   client at fault) and the key's rows in the outbox, across every replica
   (`pending_per_key`: 429 RATE_LIMIT_EXCEEDED + retry_after);
2. finished (`Callbacks.finish`): the row gets the formatted result, or the error, and is `ready`;
3. delivered by whichever replica's delivery loop claims it, up to `attempts` tries spaced by
   `backoff_s`, 2x, 4x..., then deleted. A `running` row whose lease ran out (its replica died while
   transcribing) is delivered as a failure, so the caller learns of it.
Delivery is at least once: a replica that dies between a receiver's 2xx and deleting the row leaves
it to be sent again once its lease ends (receivers can tell by `request_id`).

The callback URL obeys the audio-URL rules (pipeline/fetch.py): http(s) only, every resolved address
public or allowlisted, the connection made to the checked address, no proxies from the environment.
Redirects are not followed: a redirect is a failed attempt. Each attempt has one deadline for all of
it, and reads at most REPLY_BYTES of the reply, raw: only the status line counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import certifi

from .errors import InvalidRequest, RateLimited, ServiceError, ServiceUnavailable, UrlNotAllowed
from .licensing.usage import STORE_ERRORS
from .outbox import READY, OutboxStore, Pending
from .pipeline.fetch import UrlPolicy, host_header, split_url
from .settings import CallbackArgs

logger = logging.getLogger("ray.serve")

T = TypeVar("T")
REPLY_BYTES = 4096  # of a receiver's reply, read at most and never decompressed
SEND_BLOCK = 256 * 1024
RETRY_AFTER_S = 5
JSON = "application/json"
STORE_WAITS_S = (1, 2, 4)  # a result is stored again after a store blip, then given up on
_NOT_ASCII = re.compile(r"[^\x21-\x7e]")  # spaces, controls, non-ASCII: they would break the request line
_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})[ \r]")


class ResultTooLarge(ServiceError):
    status, code, default_message = 413, "RESULT_TOO_LARGE", "The result is too large for a callback"


def check(url: str, policy: UrlPolicy) -> str:
    """The callback URL, if it is well formed and may be reached; raises a 400 otherwise."""
    url = url.strip()
    if not url or _NOT_ASCII.search(url):
        raise InvalidRequest("callback must be an http(s) URL, percent-encoded", parameter="callback")
    try:
        _, host, port, _ = split_url(url)
        policy.resolve(host, port)
    except UrlNotAllowed:
        raise
    except ServiceError as exc:
        raise InvalidRequest(f"callback URL: {exc.message}", parameter="callback") from exc
    return url


def failure(request_id: str, error: ServiceError) -> bytes:
    """The body a callback gets when its request failed."""
    return json.dumps({"request_id": request_id, "status": "failed", **error.body()}).encode()


@dataclass(frozen=True)
class Reply:
    status: int | None  # None: the reply did not start with an HTTP status line
    head: bytes  # the reply's first bytes as sent (never decompressed), at most REPLY_BYTES


async def post(url: str, body: bytes, content_type: str, policy: UrlPolicy, timeout_s: float) -> Reply:
    """One POST under one deadline for all of it: resolving, connecting (and TLS), sending, and
    reading the reply's first bytes. Whatever a receiver sends back (a gzip bomb, an endless drip)
    costs at most REPLY_BYTES of reply and `timeout_s`; the connection is then dropped."""
    scheme, host, port, path = split_url(url)
    async with asyncio.timeout(timeout_s):
        ip = await asyncio.to_thread(policy.resolve, host, port)  # again: the name may point elsewhere by now
        tls = _tls_context() if scheme == "https" else None
        # limit: the reader stops taking bytes off the socket a few KiB past what is asked of it
        reader, writer = await asyncio.open_connection(
            ip, port, ssl=tls, server_hostname=host if tls else None, limit=REPLY_BYTES
        )
        try:
            writer.write(_request_head(host, port, path, content_type, len(body)))
            view = memoryview(body)
            for start in range(0, len(body), SEND_BLOCK):  # in blocks: the transport never copies a whole result
                writer.write(view[start : start + SEND_BLOCK])
                await writer.drain()
            head = await _read_head(reader)
        finally:
            writer.transport.abort()  # dropped, not drained: nothing more of the reply is wanted
    match = _STATUS.match(head)
    return Reply(int(match.group(1)) if match else None, head)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())  # the CA bundle audio URLs are checked with


def _request_head(host: str, port: int, path: str, content_type: str, length: int) -> bytes:
    name = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets in Host
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host_header(name, port)}",
        f"Content-Type: {content_type}",
        f"Content-Length: {length}",
        "User-Agent: selfhost-stt",
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    """The reply up to its status line, at most REPLY_BYTES of it."""
    head = b""
    while b"\r\n" not in head and len(head) < REPLY_BYTES:
        block = await reader.read(REPLY_BYTES - len(head))
        if not block:
            break
        head += block
    return head


class Callbacks:
    """One ingress replica's side of the outbox: it takes callback requests on (within the bounds),
    keeps the leases of those it transcribes, stores their results, and runs the delivery loop,
    which delivers whatever rows are due, this replica's or any other's."""

    def __init__(self, store: OutboxStore, policy: UrlPolicy, args: CallbackArgs, clock: Callable[[], float] = time.time) -> None:
        self.store, self.policy, self.args, self.clock = store, policy, args, clock
        self.owner = uuid.uuid4().hex  # this replica's name on the leases it holds
        self.max_body = int(args.max_result_mb * 1_000_000)
        self._running: set[str] = set()  # this replica's callback requests still transcribing
        self._delivering: set[asyncio.Task] = set()
        self._loop: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._renewed = float("-inf")

    def start(self) -> None:
        """Run the delivery loop on the running event loop (Serve builds the ingress on it). Outside
        one this does nothing: the first callback request starts it."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._loop is None or self._loop.get_loop() is not loop:  # not yet, or on a loop since closed
            self._wake = asyncio.Event()
            self._loop = loop.create_task(self._deliveries())

    async def accept(self, request_id: str, key_id: str, url: str) -> None:
        """Take a callback request on, or refuse it (503: this replica is full; 429: the key is)."""
        self.start()
        if len(self._running) >= self.args.pending_per_replica:
            raise ServiceUnavailable("Too many callback requests in progress on this server", retry_after=RETRY_AFTER_S)
        self._running.add(request_id)  # before the store call, so that requests arriving meanwhile count it
        try:
            lease_until = self.clock() + self.args.lease_s
            added = await self._store(self.store.add, request_id, key_id, url, self.owner, lease_until, self.args.pending_per_key)
        except BaseException:
            self._running.discard(request_id)
            raise
        if not added:
            self._running.discard(request_id)
            raise RateLimited("Too many callbacks pending for this key", retry_after=RETRY_AFTER_S)

    async def finish(self, request_id: str, body: bytes, content_type: str) -> None:
        """Store a request's result (or error) for delivery and wake the delivery loop."""
        if len(body) > self.max_body:
            logger.warning("callback %s: result of %d bytes is over the %d stored at most", request_id, len(body), self.max_body)
            error = ResultTooLarge(f"The result is {len(body)} bytes, callbacks carry at most {self.max_body}")
            body, content_type = failure(request_id, error), JSON
        try:
            stored = await self._patiently(lambda: self.store.ready(request_id, self.owner, body, content_type, 0, self.clock()))
        except STORE_ERRORS:
            logger.error("callback %s: result not stored; it is reported failed once its lease ends", request_id)
            return
        finally:
            self._running.discard(request_id)
        if not stored:
            logger.warning("callback %s: its lease ran out before it finished; it was reported failed", request_id)
        self._wake.set()

    async def _store(self, method: Callable[..., T], *args: object) -> T:
        """A blocking store call off the event loop; a store that cannot answer is a 503."""
        try:
            return await asyncio.to_thread(method, *args)
        except STORE_ERRORS as exc:
            raise ServiceUnavailable("Usage store unavailable", retry_after=RETRY_AFTER_S) from exc

    async def _patiently(self, call: Callable[[], T]) -> T:
        """`call` in a thread, again after a store error while STORE_WAITS_S last."""
        for wait in STORE_WAITS_S:
            try:
                return await asyncio.to_thread(call)
            except STORE_ERRORS:
                await asyncio.sleep(wait)
        return await asyncio.to_thread(call)

    async def _deliveries(self) -> None:
        """Forever: renew this replica's leases, start deliveries of the rows that are due, wait."""
        while True:
            try:
                await self._renew()
                await self._dispatch()
            except STORE_ERRORS as exc:
                logger.warning("callback outbox unavailable: %s", type(exc).__name__)
            except Exception:  # the loop outlives any one failure: other callbacks are still due
                logger.exception("callback delivery loop")
            await self._nap()

    async def _nap(self) -> None:
        """Until finish() wakes the loop or poll_s passes. Not asyncio.wait_for: on Python 3.11 it
        loses a cancellation that comes as the event is set, and the loop would outlive its replica."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.args.poll_s):
                await self._wake.wait()
        self._wake.clear()

    async def _renew(self) -> None:
        now = self.clock()
        if self._running and now - self._renewed >= self.args.lease_s / 3:
            await asyncio.to_thread(self.store.renew, self.owner, list(self._running), now + self.args.lease_s)
            self._renewed = now

    async def _dispatch(self) -> None:
        free = self.args.deliveries_in_flight - len(self._delivering)
        if free <= 0:
            return
        now = self.clock()
        # An attempt ends within attempt_timeout_s; a replica dying mid-attempt frees the row after lease_s more.
        rows = await asyncio.to_thread(
            self.store.claim, self.owner, now, now + self.args.attempt_timeout_s + self.args.lease_s, free
        )
        for row in rows:
            task = asyncio.create_task(self._deliver(row))
            self._delivering.add(task)
            task.add_done_callback(self._delivering.discard)

    async def _deliver(self, row: Pending) -> None:
        """One attempt at a claimed row, then: delete it (delivered, or the last attempt), or schedule the next."""
        interrupted = row.state != READY
        if interrupted:  # its replica stopped while transcribing
            error = ServiceUnavailable("The server stopped before the transcription finished; send the request again")
            body, content_type = failure(row.request_id, error), JSON
        else:
            body, content_type = row.body, row.content_type
        reason, final = await self._attempt(row, body, content_type)
        try:
            if final:
                await asyncio.to_thread(self.store.delete, row.request_id, row.key_id, self.owner)
            else:  # an interrupted row keeps its failure body from now on
                due = self.clock() + self.args.backoff_s * 2**row.attempts
                await asyncio.to_thread(
                    self.store.ready,
                    row.request_id,
                    self.owner,
                    body if interrupted else None,
                    content_type if interrupted else None,
                    row.attempts + 1,
                    due,
                )
        except STORE_ERRORS as exc:  # the row stays leased to this replica; it is tried again when the lease ends
            logger.warning("callback %s: outbox unavailable after an attempt: %s", row.request_id, type(exc).__name__)
        if reason is not None and final:
            logger.warning("callback %s was not delivered: %s", row.request_id, reason)

    async def _attempt(self, row: Pending, body: bytes, content_type: str) -> tuple[str | None, bool]:
        """POST once: (why it failed or None, whether this was the last attempt)."""
        try:
            reply = await post(row.url, body, content_type, self.policy, self.args.attempt_timeout_s)
        except UrlNotAllowed:
            return "the URL now points to a non-public address", True
        except (ServiceError, OSError) as exc:  # OSError: refused, reset, TLS, the deadline (TimeoutError)
            reason = exc.message if isinstance(exc, ServiceError) else type(exc).__name__
        else:
            if reply.status is not None and 200 <= reply.status < 300:
                return None, True
            reason = f"HTTP {reply.status}" if reply.status is not None else "no HTTP status line in the reply"
        attempt = row.attempts + 1
        logger.warning("callback %s attempt %d/%d failed: %s", row.request_id, attempt, self.args.attempts, reason)
        return reason, attempt >= self.args.attempts
