"""Fetch audio from a URL without becoming a way into the operator's network.

Rules: http and https only; the host name is resolved once and every address it resolves to must
be public (or inside the operator's allowlist); the connection goes to the address that was checked
(no second lookup that DNS rebinding could change); each redirect is checked again; redirects, size
and time are capped while streaming; proxy settings from the environment are ignored (urllib3 pools
are used directly).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Callable, Iterable
from urllib.parse import urljoin, urlsplit

import certifi
import urllib3

from ..errors import FileTooLarge, InvalidRequest, UrlFetchFailed, UrlNotAllowed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
_REDIRECTS = {301, 302, 303, 307, 308}


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def is_public(ip: IPAddress) -> bool:
    """Globally routable unicast only: no loopback, private, link-local, CGNAT, multicast, reserved."""
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return is_public(mapped)
    return ip.is_global and not ip.is_multicast


class UrlPolicy:
    """Which addresses a URL may reach: public ones, plus the operator's allowlist."""

    def __init__(self, allowlist: Iterable[str] = (), resolver: Resolver = system_resolver) -> None:
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.hosts: set[str] = set()
        for entry in allowlist:
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.add(entry.lower().rstrip("."))
        self.resolver = resolver

    def allows(self, ip: IPAddress) -> bool:
        return is_public(ip) or any(ip in net for net in self.networks)

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
    timeout_s: float
    max_redirects: int


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


def pinned_pool(scheme: str, host: str, ip: str, port: int, timeout: float) -> urllib3.HTTPConnectionPool:
    kwargs = dict(host=ip, port=port, timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=False, maxsize=1)
    if scheme == "https":
        return urllib3.HTTPSConnectionPool(
            **kwargs, server_hostname=host, assert_hostname=host, cert_reqs="CERT_REQUIRED", ca_certs=certifi.where()
        )
    return urllib3.HTTPConnectionPool(**kwargs)


def fetch(url: str, policy: UrlPolicy, limits: FetchLimits) -> bytes:
    deadline = time.monotonic() + limits.timeout_s
    for _ in range(limits.max_redirects + 1):
        scheme, host, port, path = split_url(url)
        ip = policy.resolve(host, port)
        with pinned_pool(scheme, host, ip, port, limits.timeout_s) as pool:
            try:
                resp = pool.urlopen(
                    "GET", path, headers={"Host": host_header(host, port), "User-Agent": "selfhost-stt"},
                    redirect=False, preload_content=False, retries=False,
                )
            except urllib3.exceptions.HTTPError as exc:
                raise UrlFetchFailed(f"Could not connect to {host}") from exc
            try:
                if resp.status in _REDIRECTS and resp.headers.get("Location"):
                    url = urljoin(url, resp.headers["Location"])
                    continue
                if resp.status >= 400:
                    raise UrlFetchFailed(f"URL returned HTTP {resp.status}", upstream_status=resp.status)
                return _read_capped(resp, limits.max_bytes, deadline)
            finally:
                resp.release_conn()
    raise UrlFetchFailed("Too many redirects")


def _read_capped(resp: urllib3.BaseHTTPResponse, max_bytes: int, deadline: float) -> bytes:
    declared = resp.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FileTooLarge(f"Audio at URL is larger than {max_bytes} bytes")
    body = bytearray()
    try:
        for block in resp.stream(64 * 1024):
            body += block
            if len(body) > max_bytes:
                raise FileTooLarge(f"Audio at URL is larger than {max_bytes} bytes")
            if time.monotonic() > deadline:
                raise UrlFetchFailed("Timed out downloading audio")
    except urllib3.exceptions.HTTPError as exc:
        raise UrlFetchFailed("Connection failed while downloading audio") from exc
    return bytes(body)
