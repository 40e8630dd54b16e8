"""Fetch audio from a URL without becoming a way into the operator's network.

Rules: http and https only; the host name is resolved once and every address it resolves to must
be public (the table in addresses.py) or inside the operator's allowlist; the connection goes to
the address that was checked (no second lookup that DNS rebinding could change); each redirect is
checked again; redirects and size are capped while streaming; one deadline covers the whole fetch
(connect, every redirect, headers, body) and interrupts a blocked read; proxy settings from the
environment are ignored (urllib3 connections are used directly). `Fetcher` runs fetches on their
own bounded thread pool, so slow servers cannot starve decoding and the usage store.
"""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urljoin, urlsplit

import certifi
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection

from ..errors import FileTooLarge, InvalidRequest, UrlFetchFailed, UrlNotAllowed
from .addresses import IPAddress, Network, allowed

Resolver = Callable[[str, int], list[str]]
_REDIRECTS = {301, 302, 303, 307, 308}
_NETWORK_ERRORS = (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)
TIMED_OUT = "Timed out downloading audio"
# The async wait is a backstop for a worker stuck where no socket can be shut (a slow DNS lookup);
# the margin lets a worker's own answer at the deadline (often the timeout itself) arrive first.
_BACKSTOP_MARGIN_S = 1.0


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))  # str(): typeshed allows an int for non-IP families


class UrlPolicy:
    """Which addresses a URL may reach: public ones, plus the operator's allowlist."""

    def __init__(self, allowlist: Iterable[str] = (), resolver: Resolver = system_resolver) -> None:
        self.networks: list[Network] = []
        self.hosts: set[str] = set()
        for entry in allowlist:
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.add(entry.lower().rstrip("."))
        self.resolver = resolver

    def allows(self, ip: IPAddress) -> bool:
        return allowed(ip, self.networks)

    def resolve(self, host: str, port: int) -> str:
        """The address to connect to; raises unless every address of `host` is allowed."""
        try:
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in self.resolver(host, port)]
        except (OSError, UnicodeError, ValueError) as exc:  # ValueError: e.g. a NUL byte in the name
            raise UrlFetchFailed(f"Could not resolve host {host!r}") from exc
        if not addresses:
            raise UrlFetchFailed(f"Could not resolve host {host}")
        if host.lower().rstrip(".") not in self.hosts and not all(self.allows(ip) for ip in addresses):
            raise UrlNotAllowed("URL points to a non-public address; the operator can allowlist it")
        return str(addresses[0])


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int
    timeout_s: float  # the whole fetch, not each read
    max_redirects: int


class Deadline:
    """One time limit for a whole fetch, enforced by a watchdog timer that shuts the connection's
    socket down when it passes.

    Why not socket timeouts alone: they bound each recv, not their sum, so a server sending a byte
    every few seconds never trips them; re-arming them to the time left before every recv would need
    a hook inside http.client's header parsing and inside TLS, and neither has one. Shutting the
    socket down wakes whatever read is blocked on it at once (status line, headers, TLS handshake or
    body). Socket timeouts are still set to the time left, which bounds the connect.
    """

    def __init__(self, until: float) -> None:
        self.until = until  # time.monotonic()
        self.expired = False
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._timer = threading.Timer(max(0.0, until - time.monotonic()), self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        self.watch(None)

    def remaining(self) -> float:
        left = self.until - time.monotonic()
        if left <= 0 or self.expired:
            raise UrlFetchFailed(TIMED_OUT)
        return left

    def watch(self, sock: socket.socket | None) -> None:
        """Watch `sock` from now on. The watchdog keeps its own duplicate of the descriptor: urllib3
        may close (or TLS detach) the original, and a bare descriptor number could meanwhile belong
        to another connection of this process."""
        duplicate = sock.dup() if sock is not None else None
        with self._lock:
            previous, self._sock = self._sock, duplicate
            if self.expired and duplicate is not None:
                _shut(duplicate)
        if previous is not None:
            previous.close()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._sock is not None:
                _shut(self._sock)

    def failure(self, message: str) -> UrlFetchFailed:
        """The error for a network failure: the deadline's, if the watchdog caused it."""
        return UrlFetchFailed(TIMED_OUT if self.expired else message)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already disconnected
        pass


class _Watched:
    """A urllib3 connection whose socket the deadline watches as soon as it is connected, before any
    TLS handshake, so no stage of the exchange is outside the watch."""

    deadline: Deadline

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        self.deadline.watch(sock)
        return sock


class _WatchedHTTP(_Watched, HTTPConnection):
    pass


class _WatchedHTTPS(_Watched, HTTPSConnection):
    pass


def split_url(url: str) -> tuple[str, str, int, str]:
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port  # both validate (brackets, IPv6 literals, port range)
    except ValueError as exc:
        raise InvalidRequest("URL is malformed") from exc
    if parts.scheme not in ("http", "https"):
        raise InvalidRequest("URL must use http or https")
    if not host:
        raise InvalidRequest("URL has no host")
    port = port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, host, port, path


def host_header(host: str, port: int) -> str:
    """The Host header for a connection pinned to an address: the name, with a non-default port."""
    return host if port in (80, 443) else f"{host}:{port}"


def _tls(host: str) -> dict:
    return dict(server_hostname=host, assert_hostname=host, cert_reqs="CERT_REQUIRED", ca_certs=certifi.where())


def pinned_pool(scheme: str, host: str, ip: str, port: int, timeout: float) -> urllib3.HTTPConnectionPool:
    kwargs: dict[str, Any] = dict(
        host=ip, port=port, timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=False, maxsize=1
    )
    if scheme == "https":
        return urllib3.HTTPSConnectionPool(**kwargs, **_tls(host))
    return urllib3.HTTPConnectionPool(**kwargs)


def _pinned_connection(scheme: str, host: str, ip: str, port: int, deadline: Deadline) -> HTTPConnection:
    """A connection to the checked address, watched by `deadline`; no socket call outlasts it."""
    timeout = deadline.remaining()
    if scheme == "https":
        conn: _WatchedHTTP | _WatchedHTTPS = _WatchedHTTPS(ip, port, timeout=timeout, **_tls(host))
    else:
        conn = _WatchedHTTP(ip, port, timeout=timeout)
    conn.deadline = deadline
    return conn


def fetch(url: str, policy: UrlPolicy, limits: FetchLimits, until: float | None = None) -> bytes:
    """GET `url` within one deadline: `until` (time.monotonic()), by default `limits.timeout_s` from now."""
    with Deadline(until if until is not None else time.monotonic() + limits.timeout_s) as deadline:
        for _ in range(limits.max_redirects + 1):
            scheme, host, port, path = split_url(url)
            ip = policy.resolve(host, port)
            with closing(_pinned_connection(scheme, host, ip, port, deadline)) as conn:
                headers = {"Host": host_header(host, port), "User-Agent": "selfhost-stt"}
                try:
                    conn.request("GET", path, headers=headers, preload_content=False)
                    resp = conn.getresponse()
                except _NETWORK_ERRORS as exc:
                    raise deadline.failure(f"Could not connect to {host}") from exc
                with closing(resp):
                    if resp.status in _REDIRECTS and resp.headers.get("Location"):
                        url = urljoin(url, resp.headers["Location"])
                        continue
                    if resp.status >= 400:
                        raise UrlFetchFailed(f"URL returned HTTP {resp.status}", upstream_status=resp.status)
                    return _read_capped(resp, limits.max_bytes, deadline)
        raise UrlFetchFailed("Too many redirects")


def _read_capped(resp: urllib3.BaseHTTPResponse, max_bytes: int, deadline: Deadline) -> bytes:
    declared = resp.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FileTooLarge(f"Audio at URL is larger than {max_bytes} bytes")
    body = bytearray()
    try:
        for block in resp.stream(64 * 1024):
            body += block
            if len(body) > max_bytes:
                raise FileTooLarge(f"Audio at URL is larger than {max_bytes} bytes")
    except _NETWORK_ERRORS as exc:
        raise deadline.failure("Connection failed while downloading audio") from exc
    if deadline.expired:  # a body without a length ends quietly when the watchdog shuts the socket
        raise UrlFetchFailed(TIMED_OUT)
    return bytes(body)


class Fetcher:
    """URL fetches on their own bounded thread pool. A slow server holds a fetch worker, never a
    thread of the default executor that decoding and the usage store share; when every fetch worker
    is busy a new fetch waits its turn, and the wait counts against its own deadline."""

    def __init__(self, policy: UrlPolicy, limits: FetchLimits, workers: int) -> None:
        self.policy = policy
        self.limits = limits
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="url-fetch")

    async def fetch(self, url: str) -> bytes:
        until = time.monotonic() + self.limits.timeout_s
        job = asyncio.get_running_loop().run_in_executor(self._pool, partial(fetch, url, self.policy, self.limits, until))
        try:
            # Cancelling a job still queued removes it from the pool; one running ends at its deadline.
            async with asyncio.timeout(self.limits.timeout_s + _BACKSTOP_MARGIN_S):
                return await job
        except TimeoutError as exc:
            raise UrlFetchFailed(TIMED_OUT) from exc
