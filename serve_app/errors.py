"""The one error family. Each failure is classified (4xx vs 5xx) where it is detected and rendered as
JSON `{"error", "code", ...}` in one place (`ServiceError.response`)."""

from __future__ import annotations

from typing import Any, ClassVar

from starlette.responses import JSONResponse


class ServiceError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_ERROR"
    default_message: ClassVar[str] = "Internal server error"

    def __init__(self, message: str | None = None, **extra: Any) -> None:
        self.message = message or self.default_message
        self.extra = extra
        super().__init__(self.message)

    def __reduce__(self) -> tuple:
        # Plain pickling would drop `extra`: these errors cross Ray calls between deployments.
        return (_rebuild, (type(self), self.message, self.extra))

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "code": self.code, **self.extra}

    def headers(self) -> dict[str, str]:
        retry_after = self.extra.get("retry_after")
        return {"Retry-After": str(retry_after)} if retry_after is not None else {}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers())


def _rebuild(cls: type[ServiceError], message: str, extra: dict[str, Any]) -> ServiceError:
    return cls(message, **extra)


class InvalidRequest(ServiceError):
    status, code, default_message = 400, "INVALID_REQUEST", "Invalid request"


class MissingParameter(ServiceError):
    status, code, default_message = 400, "MISSING_PARAMETER", "Missing required parameter"


class UrlNotAllowed(ServiceError):
    """The URL points at an address the operator has not opened (non-public by default)."""

    status, code, default_message = 400, "URL_NOT_ALLOWED", "URL not allowed"


class UrlFetchFailed(ServiceError):
    status, code, default_message = 400, "URL_FETCH_FAILED", "Could not fetch audio from URL"


class InvalidLicense(ServiceError):
    status, code, default_message = 401, "INVALID_LICENSE", "Invalid license key"


class LicenseExpired(ServiceError):
    status, code, default_message = 403, "LICENSE_EXPIRED", "License expired"


class QuotaExceeded(ServiceError):
    status, code, default_message = 403, "QUOTA_EXCEEDED", "Quota exceeded"


class RateLimited(ServiceError):
    status, code, default_message = 429, "RATE_LIMIT_EXCEEDED", "Rate limit exceeded"


class StreamIdle(ServiceError):
    """A live stream sent neither audio nor KeepAlive within the idle timeout (Deepgram's NET-0001)."""

    status, code, default_message = 408, "STREAM_IDLE_TIMEOUT", "No audio or KeepAlive received within the timeout"


class RequestTimeout(ServiceError):
    """A request body stalled or arrived too slowly: a slow sender may not hold a slot."""

    status, code, default_message = 408, "REQUEST_TIMEOUT", "Request body not received in time"


class HeadersTooLarge(ServiceError):
    status, code, default_message = 431, "HEADERS_TOO_LARGE", "Request headers too large"


class NotFound(ServiceError):
    status, code, default_message = 404, "NOT_FOUND", "Not found"


class MethodNotAllowed(ServiceError):
    status, code, default_message = 405, "METHOD_NOT_ALLOWED", "Method not allowed"


class FileTooLarge(ServiceError):
    status, code, default_message = 413, "FILE_TOO_LARGE", "File too large"


class UnsupportedFormat(ServiceError):
    status, code, default_message = 415, "UNSUPPORTED_FORMAT", "Unsupported audio format"


class ServiceUnavailable(ServiceError):
    status, code, default_message = 503, "SERVICE_UNAVAILABLE", "Service temporarily unavailable"


class ServerRestarting(ServiceUnavailable):
    """This ingress replica is being replaced (a config deployed, a scale-down): its live streams end
    after the finals of the audio they took (close 1012), and a new stream that reaches it is refused."""

    code, default_message = "SERVER_RESTARTING", "This server is restarting: reconnect to go on"


class EngineBusy(ServiceUnavailable):
    """The engine's queue is full: a new request is shed; a request already under way waits."""

    default_message = "Server busy: the transcription queue is full"
