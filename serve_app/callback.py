"""Deliver an asynchronous result: POST the JSON body to the caller's callback URL, with retries.

The callback URL obeys the audio-URL rules (audio/fetch.py): http(s) only, every resolved address
public or allowlisted, the connection pinned to the checked address, no proxies from the
environment. Redirects are not followed: a redirect is a failed attempt.
"""

from __future__ import annotations

import asyncio
import logging

import urllib3

from .audio.fetch import UrlPolicy, host_header, pinned_pool, split_url
from .errors import InvalidRequest, ServiceError, UrlNotAllowed

logger = logging.getLogger("ray.serve")


def check(url: str, policy: UrlPolicy) -> str:
    """The callback URL, if it is well formed and may be reached; raises a 400 otherwise."""
    if not url.strip():
        raise InvalidRequest("callback must be an http(s) URL", parameter="callback")
    try:
        _, host, port, _ = split_url(url.strip())
        policy.resolve(host, port)
    except UrlNotAllowed:
        raise
    except ServiceError as exc:
        raise InvalidRequest(f"callback URL: {exc.message}", parameter="callback") from exc
    return url.strip()


def post(url: str, body: bytes, content_type: str, policy: UrlPolicy, timeout_s: float) -> int:
    scheme, host, port, path = split_url(url)
    ip = policy.resolve(host, port)  # again: the name may point elsewhere by now
    headers = {"Host": host_header(host, port), "Content-Type": content_type, "User-Agent": "selfhost-stt"}
    with pinned_pool(scheme, host, ip, port, timeout_s) as pool:
        response = pool.urlopen("POST", path, body=body, headers=headers, redirect=False, retries=False)
        return response.status


async def deliver(
    url: str, body: bytes, content_type: str, policy: UrlPolicy, attempts: int = 5, backoff_s: float = 1.0, timeout_s: float = 10.0
) -> bool:
    """POST until a 2xx, waiting backoff_s, 2x, 4x... between attempts. Returns whether it arrived."""
    for attempt in range(attempts):
        try:
            status = await asyncio.to_thread(post, url, body, content_type, policy, timeout_s)
            if 200 <= status < 300:
                return True
            reason = f"HTTP {status}"
        except UrlNotAllowed:
            logger.warning("callback refused: the URL now points to a non-public address")
            return False
        except (ServiceError, urllib3.exceptions.HTTPError, OSError) as exc:
            reason = type(exc).__name__
        logger.warning("callback attempt %d/%d failed: %s", attempt + 1, attempts, reason)
        if attempt + 1 < attempts:
            await asyncio.sleep(backoff_s * 2**attempt)
    return False
