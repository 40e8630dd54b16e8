"""Python client for the self-hosted speech-to-text server.

from smallest import Client
client = Client(api_url="http://localhost:7100", license_key="...")  # or LICENSE_KEY in the environment
result = client.transcribe_url("https://example.com/audio.wav")
print(result.text)

with client.stream_file("call.wav", interim_results=True) as stream:  # live: WS /v1/listen
    for message in stream:
        print(message)
"""

from .audio import microphone
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
from .live_async import AsyncLiveStream
from .live_sync import LiveStream
from .retry import RateLimiter, RetryPolicy
from .types import Accepted, LiveMessage, LiveMetadata, LiveResult, SpeechStarted, TranscriptionResult, UtteranceEnd, Word

__version__ = "0.1.0"
__all__ = [
    "Accepted",
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncLiveStream",
    "BadRequestError",
    "Client",
    "InternalServerError",
    "InvalidLicenseError",
    "LicenseExpiredError",
    "LiveMessage",
    "LiveMetadata",
    "LiveResult",
    "LiveStream",
    "microphone",
    "NotFoundError",
    "PayloadTooLargeError",
    "QuotaExceededError",
    "RateLimiter",
    "RateLimitError",
    "RetryPolicy",
    "ServiceUnavailableError",
    "SmallestError",
    "SpeechStarted",
    "TranscriptionResult",
    "UnsupportedFormatError",
    "UtteranceEnd",
    "Word",
]
