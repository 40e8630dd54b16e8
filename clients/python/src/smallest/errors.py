"""One exception type per error code the server answers with, all under `SmallestError`."""

from __future__ import annotations

from typing import Any, Dict, Optional


class SmallestError(Exception):
    """Everything this client raises."""


class APIConnectionError(SmallestError):
    """The server could not be reached (refused, reset, DNS); retried before it is raised."""


class APITimeoutError(APIConnectionError):
    """No answer within the client's timeout."""


class APIError(SmallestError):
    """The server answered with an error: `status`, its stable `code`, its `message` and the whole `body`."""

    def __init__(self, status: int, code: str, message: str, body: Dict[str, Any], retry_after: Optional[float] = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.body = status, code, message, body
        self.retry_after = retry_after


class BadRequestError(APIError):
    """400 and other client errors: the request itself is wrong; retrying cannot help."""


class InvalidLicenseError(APIError):
    """401 INVALID_LICENSE: missing, malformed, unknown or revoked key."""


class LicenseExpiredError(APIError):
    """403 LICENSE_EXPIRED; `expires_at` says when it ran out."""

    @property
    def expires_at(self) -> Optional[str]:
        return self.body.get("expires_at")


class QuotaExceededError(APIError):
    """403 QUOTA_EXCEEDED: the key's daily or monthly audio allowance is used up."""


class NotFoundError(APIError):
    """404."""


class PayloadTooLargeError(APIError):
    """413 FILE_TOO_LARGE: the body or the audio is over the server's limit."""


class UnsupportedFormatError(APIError):
    """415 UNSUPPORTED_FORMAT: audio the server cannot decode."""


class RateLimitError(APIError):
    """429 RATE_LIMIT_EXCEEDED; `retry_after` seconds until a retry may pass."""


class InternalServerError(APIError):
    """500 and other server errors."""


class ServiceUnavailableError(APIError):
    """503 SERVICE_UNAVAILABLE: overloaded or starting; `retry_after` when the server says."""


_BY_CODE = {
    "INVALID_LICENSE": InvalidLicenseError,
    "LICENSE_EXPIRED": LicenseExpiredError,
    "QUOTA_EXCEEDED": QuotaExceededError,
    "RATE_LIMIT_EXCEEDED": RateLimitError,
    "FILE_TOO_LARGE": PayloadTooLargeError,
    "UNSUPPORTED_FORMAT": UnsupportedFormatError,
    "SERVICE_UNAVAILABLE": ServiceUnavailableError,
}
_BY_STATUS = {
    401: InvalidLicenseError,
    403: QuotaExceededError,
    404: NotFoundError,
    413: PayloadTooLargeError,
    415: UnsupportedFormatError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def retry_after_of(body: Dict[str, Any], header: Optional[str]) -> Optional[float]:
    """The body's `retry_after`, else the `Retry-After` header (seconds); None when neither says."""
    for value in (body.get("retry_after"), header):
        try:
            if value is not None:
                return max(0.0, float(value))
        except (TypeError, ValueError):
            continue
    return None


def error_from_response(status: int, body: Any, retry_after_header: Optional[str] = None) -> APIError:
    body = body if isinstance(body, dict) else {"error": str(body)[:500]}
    code = str(body.get("code") or f"HTTP_{status}")
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status) or (InternalServerError if status >= 500 else BadRequestError)
    return cls(
        status, code, str(body.get("error") or body.get("message") or "error"), body, retry_after_of(body, retry_after_header)
    )
