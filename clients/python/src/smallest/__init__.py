"""Python client for the self-hosted speech-to-text server.

from smallest import Client
client = Client(api_url="http://localhost:7100", license_key="...")  # or LICENSE_KEY in the environment
result = client.transcribe_url("https://example.com/audio.wav")
print(result.text)
"""

from .client import AsyncClient, Client
from .errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    BadRequestError,
    InternalServerError,
    InvalidLicenseError,
    LicenseExpiredError,
    NotFoundError,
    PayloadTooLargeError,
    QuotaExceededError,
    RateLimitError,
    ServiceUnavailableError,
    SmallestError,
    UnsupportedFormatError,
)
from .retry import RateLimiter, RetryPolicy
from .types import Accepted, TranscriptionResult, Word

__version__ = "0.1.0"
__all__ = [
    "Accepted",
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AsyncClient",
    "BadRequestError",
    "Client",
    "InternalServerError",
    "InvalidLicenseError",
    "LicenseExpiredError",
    "NotFoundError",
    "PayloadTooLargeError",
    "QuotaExceededError",
    "RateLimiter",
    "RateLimitError",
    "RetryPolicy",
    "ServiceUnavailableError",
    "SmallestError",
    "TranscriptionResult",
    "UnsupportedFormatError",
    "Word",
]
