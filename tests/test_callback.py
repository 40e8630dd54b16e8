"""Pending callbacks: the outbox on SQLite and on a real Redis (bounds, exclusive claims, leases,
restarts), and delivery to real receivers on 127.0.0.1 (hostile replies, retries, lost replicas).
The bounds are also checked through the HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import http.server
import io
import json
import logging
import pickle
import sqlite3
import threading
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from starlette.testclient import TestClient

from serve_app.callback import REPLY_BYTES, Callbacks, check, post
from serve_app.errors import InvalidRequest
from serve_app.ingress import Ingress
from serve_app.licensing.auth import LicenseAuthenticator, RevocationList
from serve_app.licensing.keys import PublicKeys
from serve_app.licensing.limits import Limiter
from serve_app.licensing.usage import RedisStore, SqliteStore
from serve_app.metrics import NoMetrics
from serve_app.outbox import READY, RUNNING, OutboxStore, RedisOutbox, SqliteOutbox
from serve_app.pipeline.fetch import UrlPolicy
from serve_app.settings import CallbackArgs

from .helpers import JFK_FLAC, FileServer, free_port, serving
from .support import AUTH, ISSUER, FakeEngine, make_ingress, serve_log

LOOPBACK = UrlPolicy(["127.0.0.1/32"])  # these tests' receivers; the service refuses loopback by default
FAST = CallbackArgs(backoff_s=0.05, poll_s=0.02, attempt_timeout_s=2)
T0 = 1_000_000.0


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> OutboxStore:
    if request.param == "sqlite":
        return SqliteOutbox(tmp_path / "usage.sqlite3")
    return RedisOutbox(request.getfixturevalue("redis_url"), prefix=f"test:{uuid.uuid4().hex}")


def reopened(store: OutboxStore) -> OutboxStore:
    """A new instance on the same file or Redis, as a restarted (or another) replica has; pickled as Serve does."""
    return pickle.loads(pickle.dumps(store))


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- the outbox ---------------------------------------------------------------------------------


def test_a_key_holds_at_most_its_bound_of_rows(store: OutboxStore) -> None:
    assert all(store.add(f"r{i}", "k1", "http://x/", "a", T0 + 60, per_key=2) for i in range(2))
    assert not store.add("r2", "k1", "http://x/", "a", T0 + 60, per_key=2)
    assert store.add("r3", "k2", "http://x/", "a", T0 + 60, per_key=2)  # another key is not affected
    store.ready("r0", "a", b"{}", "application/json", 0, T0)
    (row,) = store.claim("b", T0, T0 + 30, 10)
    store.delete(row.request_id, row.key_id, "b")
    assert store.add("r4", "k1", "http://x/", "a", T0 + 60, per_key=2)  # a delivered row frees its place


def test_a_running_row_is_claimed_only_once_its_lease_ends(store: OutboxStore) -> None:
    store.add("r", "k", "http://x/", "a", T0 + 60, per_key=5)
    assert store.claim("b", T0 + 59, T0 + 100, 10) == []
    store.renew("a", ["r"], T0 + 120)  # its replica is alive and says so
    assert store.claim("b", T0 + 119, T0 + 200, 10) == []
    (row,) = store.claim("b", T0 + 120, T0 + 200, 10)  # then it died: the row is b's, still unfinished
    assert (row.request_id, row.key_id, row.state, row.body, row.attempts) == ("r", "k", RUNNING, b"", 0)
    # The late replica can no longer finish, renew or delete it: the lease is b's.
    assert not store.ready("r", "a", b"late", "text/plain", 0, T0 + 121)
    store.renew("a", ["r"], T0 + 500)
    store.delete("r", "k", "a")
    assert [r.request_id for r in store.claim("c", T0 + 200, T0 + 300, 10)] == ["r"]


def test_ready_rows_are_due_at_their_attempt_time_and_keep_their_body(store: OutboxStore) -> None:
    store.add("r", "k", "http://x/hook", "a", T0 + 60, per_key=5)
    assert store.ready("r", "a", b"\x00result\xff", "text/vtt", 0, T0 + 1)
    assert store.claim("b", T0, T0 + 30, 10) == []
    (row,) = store.claim("b", T0 + 1, T0 + 30, 10)
    assert (row.state, row.body, row.content_type, row.url) == (READY, b"\x00result\xff", "text/vtt", "http://x/hook")
    assert store.ready("r", "b", None, None, 1, T0 + 5)  # a failed attempt: next one later, same body
    assert store.claim("c", T0 + 4, T0 + 30, 10) == []
    (row,) = store.claim("c", T0 + 5, T0 + 30, 10)
    assert (row.body, row.content_type, row.attempts) == (b"\x00result\xff", "text/vtt", 1)


def test_concurrent_claims_never_hand_out_a_row_twice(store: OutboxStore) -> None:
    ids = [f"r{i}" for i in range(30)]
    for rid in ids:
        store.add(rid, f"k{rid}", "http://x/", "a", T0 - 1, per_key=1)  # all leases already over
    claimers = [reopened(store) for _ in range(6)]  # separate connections, as separate replicas have

    def claim_all(i: int) -> list[str]:
        got: list[str] = []
        for _ in range(len(ids)):  # bounded: a claim that took no lease would hand rows out forever
            got += [r.request_id for r in claimers[i].claim(f"owner{i}", T0, T0 + 60, 3)]
        return got

    with ThreadPoolExecutor(6) as pool:
        claimed = [rid for got in pool.map(claim_all, range(6)) for rid in got]
    assert sorted(claimed) == sorted(ids)  # every row once, none twice


def test_rows_survive_a_restart(store: OutboxStore) -> None:
    store.add("r", "k", "http://x/", "a", T0 + 60, per_key=5)
    store.ready("r", "a", b"body", "application/json", 0, T0)
    (row,) = reopened(store).claim("b", T0, T0 + 30, 10)
    assert (row.request_id, row.body) == ("r", b"body")


# --- one attempt against hostile receivers -------------------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1 whose every POST is answered by `reply(handler)`; it records the
    bodies it read and how many reply bytes it got to send."""

    def __init__(self, reply: Callable[[Receiver, http.server.BaseHTTPRequestHandler], None], port: int = 0) -> None:
        self.bodies: list[bytes] = []
        self.sent = 0
        self.stop = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                reply(receiver, self)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def read_body(self, h: http.server.BaseHTTPRequestHandler) -> None:
        self.bodies.append(h.rfile.read(int(h.headers["Content-Length"])))

    def send(self, h: http.server.BaseHTTPRequestHandler, data: bytes) -> bool:
        try:
            h.wfile.write(data)
            h.wfile.flush()
        except OSError:  # the client hung up
            return False
        self.sent += len(data)
        return True

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@contextlib.contextmanager
def receiving(reply: Callable[[Receiver, http.server.BaseHTTPRequestHandler], None]) -> Iterator[Receiver]:
    receiver = Receiver(reply)
    try:
        yield receiver
    finally:
        receiver.close()


def _answer(status: int, headers: dict[str, str], chunks: list[bytes]) -> Callable[[Receiver, Any], None]:
    def reply(r: Receiver, h: http.server.BaseHTTPRequestHandler) -> None:
        r.read_body(h)
        head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        if r.send(h, head.encode()):
            all(r.send(h, chunk) for chunk in chunks)

    return reply


MB = 1_000_000
ZEROS = bytes(MB)  # sent 50 times by one receiver: made once, outside the memory measured


@functools.cache
def _bomb() -> bytes:
    """~50 KB on the wire, 50 MB once decompressed (made without holding the 50 MB)."""
    packer = gzip.GzipFile(fileobj=(out := io.BytesIO()), mode="wb")
    for _ in range(50):
        packer.write(bytes(MB))
    packer.close()
    return out.getvalue()


def _gzip_bomb(r: Receiver, h: http.server.BaseHTTPRequestHandler) -> None:
    _answer(200, {"Content-Encoding": "gzip", "Content-Length": str(len(_bomb()))}, [_bomb()])(r, h)


def _50mb_reply(r: Receiver, h: http.server.BaseHTTPRequestHandler) -> None:
    _answer(200, {"Content-Length": str(50 * MB)}, [ZEROS] * 50)(r, h)


@pytest.mark.parametrize("reply", [_gzip_bomb, _50mb_reply])
def test_a_huge_reply_is_not_read(reply: Callable) -> None:
    _bomb()  # made before memory is measured
    with receiving(reply) as receiver:
        tracemalloc.start()
        result = asyncio.run(post(receiver.url, b'{"ok": 1}', "application/json", LOOPBACK, 5))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        time.sleep(0.2)  # the receiver notices the hang-up
    assert result.status == 200 and receiver.bodies == [b'{"ok": 1}']
    assert 0 < len(result.head) <= REPLY_BYTES and result.head.startswith(b"HTTP/1.1 200")
    assert peak < 2 * MB  # decompressing the bomb, or reading the reply whole, would take 50 MB
    if reply is _50mb_reply:
        assert receiver.sent < 20 * MB  # the connection was dropped: the rest was never sent


def _drip(r: Receiver, h: http.server.BaseHTTPRequestHandler) -> None:
    r.read_body(h)
    while not r.stop.is_set() and r.send(h, b"H"):  # a status line that never ends
        time.sleep(0.05)


def _never_read(r: Receiver, h: http.server.BaseHTTPRequestHandler) -> None:
    r.stop.wait(10)  # neither reads the request nor answers


@pytest.mark.parametrize("reply, body_mb", [(_drip, 0), (_never_read, 64)], ids=["dripped-reply", "unread-body"])
def test_an_attempt_ends_at_its_deadline(reply: Callable, body_mb: int) -> None:
    body = bytes(body_mb * MB) or b"{}"
    with receiving(reply) as receiver:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            asyncio.run(post(receiver.url, body, "application/json", LOOPBACK, 1.0))
        elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 2.5


@pytest.mark.parametrize("url", ["http://127.0.0.1/a b", "http://127.0.0.1/\u00e9", "http://127.0.0.1/a\x00"])
def test_callback_urls_that_would_break_the_request_line_are_refused(url: str) -> None:
    with pytest.raises(InvalidRequest):
        check(url, LOOPBACK)


# --- the delivery loop ---------------------------------------------------------------------------


def _until(condition: Callable[[], bool], timeout_s: float = 10.0) -> Awaitable[None]:
    async def wait() -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.02)

    return wait()


def _statuses(*statuses: int) -> Callable[[Receiver, Any], None]:
    """Answers each POST with the next status, then 200."""
    queue = list(statuses)

    def reply(r: Receiver, h: http.server.BaseHTTPRequestHandler) -> None:
        r.read_body(h)
        r.send(h, f"HTTP/1.1 {queue.pop(0) if queue else 200} X\r\nContent-Length: 0\r\n\r\n".encode())

    return reply


def _rows(store: OutboxStore) -> int:
    """Rows in the outbox, read without claiming any."""
    if isinstance(store, SqliteOutbox):
        with sqlite3.connect(store.path) as db:
            return db.execute("SELECT COUNT(*) FROM callback_outbox").fetchone()[0]
    assert isinstance(store, RedisOutbox)
    return len(store.redis.keys(f"{store.prefix}:row:*"))


def _nothing_left(store: OutboxStore, timeout_s: float = 10.0) -> bool:
    """The outbox empties (a delivered row is deleted just after its receiver answered)."""
    deadline = time.monotonic() + timeout_s
    while _rows(store) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _rows(store) == 0


def test_a_refused_delivery_is_retried_until_it_arrives(store: OutboxStore) -> None:
    async def run(receiver: Receiver) -> None:
        callbacks = Callbacks(store, LOOPBACK, FAST)
        await callbacks.accept("r1", "k", receiver.url)
        await callbacks.finish("r1", b"the result", "text/plain")
        await _until(lambda: len(receiver.bodies) == 3)
        await asyncio.sleep(0.2)  # nothing more is sent once it arrived

    with receiving(_statuses(503, 500)) as receiver:
        asyncio.run(run(receiver))
        assert receiver.bodies == [b"the result"] * 3
    assert _nothing_left(store)


class Recorded(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_receiver_down_at_first_gets_it_once_it_listens(store: OutboxStore) -> None:
    port = free_port()  # nothing listens there yet: connections are refused
    log = Recorded()

    async def run() -> Receiver:
        callbacks = Callbacks(store, LOOPBACK, FAST.model_copy(update={"backoff_s": 0.3}))
        await callbacks.accept("r1", "k", f"http://127.0.0.1:{port}/hook")
        await callbacks.finish("r1", b"late", "text/plain")
        await _until(lambda: any("attempt 1/5 failed: ConnectionRefusedError" in m for m in log.messages))
        receiver = Receiver(_statuses(), port)
        await _until(lambda: len(receiver.bodies) == 1)
        await asyncio.sleep(0.2)
        return receiver

    with serve_log(log):
        receiver = asyncio.run(run())
    receiver.close()
    assert receiver.bodies == [b"late"] and _nothing_left(store)


def test_a_delivery_is_given_up_after_its_last_attempt(store: OutboxStore) -> None:
    async def run(receiver: Receiver) -> None:
        callbacks = Callbacks(store, LOOPBACK, FAST.model_copy(update={"attempts": 2}))
        await callbacks.accept("r1", "k", receiver.url)
        await callbacks.finish("r1", b"{}", "application/json")
        await _until(lambda: len(receiver.bodies) == 2)
        await asyncio.sleep(0.3)

    with receiving(_statuses(500, 500, 500)) as receiver:
        asyncio.run(run(receiver))
        assert len(receiver.bodies) == 2
    assert _nothing_left(store)


def test_a_callback_whose_replica_died_is_reported_failed(store: OutboxStore) -> None:
    clock = Clock()

    async def run(receiver: Receiver) -> None:
        Callbacks(reopened(store), LOOPBACK, FAST, clock).start()
        await asyncio.sleep(0.2)
        assert receiver.bodies == []  # its lease still runs
        clock.now = T0 + 61
        await _until(lambda: len(receiver.bodies) == 1 and _rows(store) == 0)  # delivered, then deleted

    with receiving(_statuses()) as receiver:
        store.add("lost", "k", receiver.url, "dead-replica", T0 + 60, per_key=5)  # left mid-transcription
        asyncio.run(run(receiver))
        body = json.loads(receiver.bodies[0])
    assert (body["request_id"], body["status"], body["code"]) == ("lost", "failed", "SERVICE_UNAVAILABLE")
    assert _nothing_left(store)


def test_a_long_transcription_keeps_its_lease(store: OutboxStore) -> None:
    clock = Clock()

    async def run(receiver: Receiver) -> None:
        alive = Callbacks(store, LOOPBACK, FAST, clock)
        await alive.accept("r1", "k", receiver.url)
        clock.now = T0 + 50  # past a third of the lease: it is renewed
        await _until(lambda: alive._renewed == T0 + 50)
        assert reopened(store).claim("other", T0 + 70, T0 + 100, 10) == []  # not taken for a dead one
        await alive.finish("r1", b"done", "text/plain")
        await _until(lambda: len(receiver.bodies) == 1)

    with receiving(_statuses()) as receiver:
        asyncio.run(run(receiver))
        assert receiver.bodies == [b"done"]


def test_the_delivery_loop_stops_when_cancelled_as_it_is_woken(tmp_path: Any) -> None:
    """A result stored (the loop's wake) in the same turn as the replica's shutdown: the loop must
    still end (asyncio.wait_for on 3.11 lost that cancellation, and a test run hung on it)."""

    async def run() -> bool:
        callbacks = Callbacks(SqliteOutbox(tmp_path / "usage.sqlite3"), LOOPBACK, FAST.model_copy(update={"poll_s": 30}))
        callbacks.start()
        await asyncio.sleep(0.1)  # the loop has polled and waits to be woken
        assert callbacks._loop is not None and not callbacks._loop.done()
        callbacks._wake.set()
        callbacks._loop.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(callbacks._loop), 2)
        return callbacks._loop.cancelled()

    assert asyncio.run(run())


def test_a_result_over_the_stored_ceiling_is_delivered_as_an_error(store: OutboxStore) -> None:
    async def run(receiver: Receiver) -> None:
        callbacks = Callbacks(store, LOOPBACK, FAST.model_copy(update={"max_result_mb": 0.001}))
        await callbacks.accept("r1", "k", receiver.url)
        await callbacks.finish("r1", b"x" * 1001, "text/plain")
        await _until(lambda: len(receiver.bodies) == 1)

    with receiving(_statuses()) as receiver:
        asyncio.run(run(receiver))
        body = json.loads(receiver.bodies[0])
    assert (body["request_id"], body["status"], body["code"]) == ("r1", "failed", "RESULT_TOO_LARGE")


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_restarted_ingress_delivers_what_was_left_ready(backend: str, tmp_path: Any, request: pytest.FixtureRequest) -> None:
    """The usage store's backend holds the outbox: a new ingress (a restarted replica) on the same file
    or Redis, built on its event loop as Serve builds it, delivers a row the old one left behind."""
    usage = SqliteStore(tmp_path / "usage.sqlite3") if backend == "sqlite" else RedisStore(request.getfixturevalue("redis_url"))
    old = SqliteOutbox(tmp_path / "usage.sqlite3") if backend == "sqlite" else RedisOutbox(usage.url)
    request_id = uuid.uuid4().hex

    async def restart(receiver: Receiver) -> None:
        auth = LicenseAuthenticator(PublicKeys.from_lines([ISSUER.public_line()]), RevocationList(None))
        Ingress(FakeEngine(), {"callbacks": FAST.model_dump()}, auth, Limiter(usage), LOOPBACK, NoMetrics())
        await _until(lambda: len(receiver.bodies) == 1 and _rows(old) == 0)  # delivered, then deleted

    with receiving(_statuses()) as receiver:
        old.add(request_id, "k", receiver.url, "old-replica", time.time() + 60, per_key=5)
        old.ready(request_id, "old-replica", b'{"text": "left behind"}', "application/json", 0, time.time())
        asyncio.run(restart(receiver))
        assert receiver.bodies == [b'{"text": "left behind"}']
    assert _nothing_left(old)


# --- the bounds, through the API -----------------------------------------------------------------


class GatedEngine(FakeEngine):
    """Transcribes only once `gate` is set: callback requests stay pending meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    async def arrive(self) -> None:
        while not self.gate.is_set():
            await asyncio.sleep(0.02)


@pytest.fixture
def hooks() -> Iterator[FileServer]:
    yield from serving("127.0.0.2", {})  # make_ingress allowlists 127.0.0.2


def _callback(client: TestClient, hooks: FileServer, auth: dict[str, str]) -> Any:
    headers = {**auth, "Content-Type": "audio/flac"}
    return client.post(f"/v1/listen?callback={hooks.url('/hook')}", headers=headers, content=JFK_FLAC.read_bytes())


@pytest.mark.parametrize(
    "bounds, other_key, status, code",
    [
        ({"pending_per_key": 2}, False, 429, "RATE_LIMIT_EXCEEDED"),
        ({"pending_per_replica": 2}, True, 503, "SERVICE_UNAVAILABLE"),
    ],
    ids=["per-key", "per-replica"],
)
def test_callbacks_beyond_a_bound_are_refused_up_front(
    tmp_path: Any, hooks: FileServer, bounds: dict, other_key: bool, status: int, code: str
) -> None:
    engine = GatedEngine()
    ingress = make_ingress(engine, tmp_path, {"callbacks": {**bounds, "poll_s": 0.05}})
    with TestClient(ingress.__serve_build_asgi_app__()) as client:
        assert [_callback(client, hooks, AUTH).status_code for _ in range(2)] == [200, 200]
        third = AUTH if not other_key else {"Authorization": f"Token {ISSUER.issue()}"}
        refused = _callback(client, hooks, third)
        assert refused.status_code == status and refused.json()["code"] == code
        assert refused.headers["Retry-After"] == "5"
        if other_key:  # the replica's bound is not a key's: another key is refused as well
            assert _callback(client, hooks, AUTH).status_code == 503
        else:  # the key's bound is not the replica's: another key is taken on
            assert _callback(client, hooks, {"Authorization": f"Token {ISSUER.issue()}"}).status_code == 200
        engine.gate.set()
        outbox = sqlite3.connect(tmp_path / "usage.sqlite3")  # make_ingress's usage store holds the outbox
        deadline = time.monotonic() + 10
        while outbox.execute("SELECT COUNT(*) FROM callback_outbox").fetchone()[0]:
            assert time.monotonic() < deadline, "callbacks not delivered"
            time.sleep(0.05)
        assert len(hooks.posted) == 2 + (not other_key)
        assert _callback(client, hooks, AUTH).status_code == 200  # delivered: room again
