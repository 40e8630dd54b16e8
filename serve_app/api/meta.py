"""What every answer says about its request besides the transcript."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class RequestMeta:
    request_id: str
    sha256: str
    model: str
    created: datetime
