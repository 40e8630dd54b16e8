"""Safe URL fetching. Address classification is checked without connecting anywhere (more in
test_addresses.py); end to end, only loopback servers are used: a canary on 127.0.0.1 must receive
nothing while loopback is refused, and a dripping server on 127.0.0.1 must not hold a fetch past its
deadline."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from serve_app.errors import FileTooLarge, InvalidRequest, UrlFetchFailed, UrlNotAllowed
from serve_app.pipeline.addresses import is_public
from serve_app.pipeline.fetch import TIMED_OUT, Fetcher, FetchLimits, UrlPolicy, fetch

from .helpers import DRIP_HEAD as HEAD
from .helpers import Dripper, FileServer, serving

LIMITS = FetchLimits(max_bytes=1000, timeout_s=5, max_redirects=2)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.0.0.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "198.18.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "2002:a00:1::",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def _resolver(table: dict[str, list[str]]):
    return lambda host, port: table[host]


def test_policy_refuses_a_name_when_any_address_is_private() -> None:
    policy = UrlPolicy(resolver=_resolver({"mixed.test": ["93.184.215.14", "10.1.2.3"]}))
    with pytest.raises(UrlNotAllowed):
        policy.resolve("mixed.test", 80)


def test_allowlist_opens_cidrs_and_hostnames_only() -> None:
    policy = UrlPolicy(
        ["10.20.0.0/16", "storage.internal"],
        _resolver(
            {
                "a.test": ["10.20.1.1"],
                "b.test": ["10.21.1.1"],
                "storage.internal": ["192.168.7.7"],
            }
        ),
    )
    assert policy.resolve("a.test", 80) == "10.20.1.1"
    assert policy.resolve("storage.internal", 80) == "192.168.7.7"
    with pytest.raises(UrlNotAllowed):
        policy.resolve("b.test", 80)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.wav",
        "file:///etc/passwd",
        "gopher://x",
        "http:///nohost",
        "http://h:99999/",
        "http://[::1",
        "http://[zz::1]/a.wav",
        "http://h:port/",
    ],
)
def test_only_http_and_https_urls(url: str) -> None:
    with pytest.raises(InvalidRequest):
        fetch(url, UrlPolicy(), LIMITS)


@pytest.fixture
def canary() -> Iterator[FileServer]:
    yield from serving("127.0.0.1", {"/a.wav": b"RIFF"})


@pytest.fixture
def storage() -> Iterator[FileServer]:
    yield from serving("127.0.0.2", {"/a.wav": b"audio-bytes", "/big.wav": b"x" * 5000})


def test_loopback_refused_by_default_and_canary_sees_nothing(canary: FileServer) -> None:
    with pytest.raises(UrlNotAllowed):
        fetch(canary.url("/a.wav"), UrlPolicy(), LIMITS)
    assert canary.requests == []


def test_loopback_fetched_once_allowlisted(canary: FileServer) -> None:
    assert fetch(canary.url("/a.wav"), UrlPolicy(["127.0.0.1/32"]), LIMITS) == b"RIFF"
    assert canary.requests == ["/a.wav"]


def test_redirect_to_refused_address_is_checked_again(canary: FileServer, storage: FileServer) -> None:
    storage.redirects["/moved.wav"] = canary.url("/a.wav")
    with pytest.raises(UrlNotAllowed):
        fetch(storage.url("/moved.wav"), UrlPolicy(["127.0.0.2/32"]), LIMITS)
    assert canary.requests == []


def test_redirects_are_capped(storage: FileServer) -> None:
    storage.redirects.update({"/r1": "/r2", "/r2": "/r3", "/r3": "/a.wav"})
    with pytest.raises(UrlFetchFailed, match="redirects"):
        fetch(storage.url("/r1"), UrlPolicy(["127.0.0.2/32"]), LIMITS)
    storage.redirects.update({"/r1": "/r2", "/r2": "/a.wav"})
    assert fetch(storage.url("/r1"), UrlPolicy(["127.0.0.2/32"]), LIMITS) == b"audio-bytes"


def test_404_and_oversized_and_unreachable(storage: FileServer) -> None:
    policy = UrlPolicy(["127.0.0.2/32", "127.0.0.3/32"])
    with pytest.raises(UrlFetchFailed) as info:
        fetch(storage.url("/missing.wav"), policy, LIMITS)
    assert info.value.extra["upstream_status"] == 404
    with pytest.raises(FileTooLarge):
        fetch(storage.url("/big.wav"), policy, LIMITS)
    with pytest.raises(UrlFetchFailed):
        fetch(f"http://127.0.0.3:{storage.port}/a.wav", policy, LIMITS)  # nothing listens there


def test_unresolvable_names_are_a_fetch_failure_not_a_crash() -> None:
    def nul_resolver(host: str, port: int) -> list[str]:
        raise ValueError("embedded null character")  # what getaddrinfo raises for a NUL in the name

    with pytest.raises(UrlFetchFailed):
        fetch("http://a%00b/x", UrlPolicy(resolver=nul_resolver), LIMITS)


TLS_RECORD_HEAD = b"\x16\x03\x03\x40\x00"  # a 16 KiB handshake record follows, a byte at a time


@pytest.fixture
def dripper() -> Iterator[Dripper]:
    server = Dripper()
    yield server
    server.close()


LOOPBACK = UrlPolicy(["127.0.0.1/32"])
TWO_SECONDS = FetchLimits(max_bytes=1000, timeout_s=2, max_redirects=2)


def _timed_out(call: Callable[[], object]) -> float:
    """Seconds until `call` raised the deadline's error (its message repeats nothing of the URL)."""
    start = time.monotonic()
    with pytest.raises(UrlFetchFailed) as info:
        call()
    assert info.value.message == TIMED_OUT
    return time.monotonic() - start


@pytest.mark.parametrize("head", [HEAD, HEAD.replace(b"Content-Length: 60", b"Connection: close")])
def test_a_dripping_body_is_cut_at_the_deadline(head: bytes) -> None:
    """With a length the cut body is short; without one it would look whole: both are the timeout."""
    server = Dripper(head)
    try:
        elapsed = _timed_out(lambda: fetch(server.url(), LOOPBACK, TWO_SECONDS))
    finally:
        server.close()
    assert 1.9 <= elapsed < 15  # the dripper would take 60 s; a per-read timeout never fires on it


@pytest.mark.parametrize("scheme, head, drip_head", [("http", HEAD, True), ("https", TLS_RECORD_HEAD, False)])
def test_dripping_headers_or_tls_handshake_are_cut_at_the_deadline_too(scheme: str, head: bytes, drip_head: bool) -> None:
    server = Dripper(head, drip_head)
    try:
        elapsed = _timed_out(lambda: fetch(server.url().replace("http", scheme, 1), LOOPBACK, TWO_SECONDS))
    finally:
        server.close()
    assert 1.9 <= elapsed < 15


def test_a_deadline_already_passed_connects_nowhere(canary: FileServer) -> None:
    _timed_out(lambda: fetch(canary.url("/a.wav"), LOOPBACK, LIMITS, until=time.monotonic() - 1))
    assert canary.requests == []


def test_fetcher_returns_the_body(canary: FileServer) -> None:
    async def main() -> bytes:
        return await Fetcher(LOOPBACK, LIMITS, workers=1).fetch(canary.url("/a.wav"))

    assert asyncio.run(main()) == b"RIFF"


def test_slow_fetches_wait_for_their_own_workers_and_leave_the_default_executor_free(dripper: Dripper) -> None:
    """Two workers, three dripping fetches: two connect, the third waits within the same deadline;
    meanwhile a one-thread default executor (what decoding and the usage store use) still runs."""
    limits = FetchLimits(max_bytes=1000, timeout_s=3, max_redirects=0)

    async def main() -> tuple[list, float, int, float]:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=1))
        fetcher = Fetcher(LOOPBACK, limits, workers=2)
        start = time.monotonic()
        fetches = [asyncio.create_task(fetcher.fetch(dripper.url())) for _ in range(3)]
        await asyncio.sleep(0.5)
        quick_start = time.monotonic()
        assert await asyncio.wait_for(asyncio.to_thread(sum, [1, 2]), timeout=1.0) == 3
        quick = time.monotonic() - quick_start
        connected = dripper.accepted
        results = await asyncio.gather(*fetches, return_exceptions=True)
        return results, quick, connected, time.monotonic() - start

    results, quick, connected, elapsed = asyncio.run(main())
    assert quick < 1.0
    assert connected == 2  # the third fetch waits for a worker
    assert [getattr(r, "message", r) for r in results] == [TIMED_OUT] * 3
    assert elapsed < 5.5  # its wait counted against its deadline: 3 s for all three, not 3 s after a worker freed
