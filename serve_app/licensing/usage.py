"""The usage store: sliding-window rate limits, concurrency leases and usage counters per key id,
shared by every ingress replica and durable across restarts.

Two implementations of one protocol:
- `SqliteStore`, the embedded default: one file on local disk, shared by all replicas on the
  machine through SQLite's own locking (`BEGIN IMMEDIATE` serialises each check-and-update).
- `RedisStore`, for multi-node clusters: each check-and-update is one Lua script, so it is atomic
  across every replica that talks to the same Redis.
Times are passed in by the caller (an injected clock), never read here.
"""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import Protocol

import redis
from redis.commands.core import Script

from ..sqlite_file import SqliteFile

COUNTERS = ("requests", "audio_seconds", "auth_failures")
# What a store raises when it cannot answer (server down, disk locked): a 503, not a bug.
STORE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, redis.RedisError, OSError)


@dataclass(frozen=True)
class Usage:
    requests_today: int
    requests_month: int
    requests_total: int
    audio_seconds_today: float
    audio_seconds_month: float
    audio_seconds_total: float
    auth_failures_total: int


def periods(now: float) -> tuple[str, str, str]:
    """Counter buckets a moment belongs to: its UTC day, its UTC month, and all time."""
    dt = datetime.fromtimestamp(now, timezone.utc)
    return f"d:{dt:%Y-%m-%d}", f"m:{dt:%Y-%m}", "total"


def _usage(values: dict[tuple[str, str], float], now: float) -> Usage:
    day, month, total = periods(now)
    get = lambda period, name: values.get((period, name), 0)  # noqa: E731
    return Usage(
        int(get(day, "requests")),
        int(get(month, "requests")),
        int(get(total, "requests")),
        round(get(day, "audio_seconds"), 3),
        round(get(month, "audio_seconds"), 3),
        round(get(total, "audio_seconds"), 3),
        int(get(total, "auth_failures")),
    )


@dataclass(frozen=True)
class QuotaCaps:
    """Audio seconds a key may use per UTC day and month (None: no cap)."""

    day_s: float | None = None
    month_s: float | None = None

    def room(self, used_day: float, used_month: float) -> float:
        caps = [cap - used for cap, used in ((self.day_s, used_day), (self.month_s, used_month)) if cap is not None]
        return max(0.0, min(caps)) if caps else float("inf")


def granted(room: float, seconds: float, partial: bool) -> float:
    # A hair of tolerance: float sums of billed seconds must not refuse an exact fit.
    if room + 1e-6 >= seconds:
        return seconds
    return room if partial else 0.0


class UsageStore(Protocol):
    def hit_rate(self, key_id: str, limit: int, window_s: float, now: float) -> float | None:
        """Count one request if fewer than `limit` fell in the last `window_s`; otherwise return the
        seconds until the oldest of them leaves the window (when a retry would succeed)."""

    def acquire_slot(self, key_id: str, lease_id: str, limit: int, expires: float, now: float) -> bool:
        """Take (or renew) one of `limit` concurrent slots until `expires`; False when all are taken."""

    def release_slot(self, key_id: str, lease_id: str) -> None: ...

    def add(self, key_id: str, now: float, **amounts: float) -> None:
        """Add to the counters (`COUNTERS`) of the day, the month and all time."""

    def reserve(self, key_id: str, seconds: float, caps: QuotaCaps, now: float, partial: bool = False) -> float:
        """Bill `seconds` of audio now if they fit under the caps of the day and the month, in one
        atomic step (so parallel requests cannot all see the same room). With `partial`, bill as much
        as fits. Returns the seconds billed: `seconds`, part of it, or 0 when nothing fits."""

    def usage(self, key_id: str, now: float) -> Usage: ...

    def ping(self) -> str:
        """Raise if the store cannot answer; else its kind, for /health?detailed=true."""


class SqliteStore(SqliteFile):
    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS hits (key_id TEXT NOT NULL, ts REAL NOT NULL);
    CREATE INDEX IF NOT EXISTS hits_key_ts ON hits (key_id, ts);
    CREATE TABLE IF NOT EXISTS slots (key_id TEXT NOT NULL, lease_id TEXT PRIMARY KEY, expires REAL NOT NULL);
    CREATE TABLE IF NOT EXISTS counters (
        key_id TEXT NOT NULL, period TEXT NOT NULL, name TEXT NOT NULL, value REAL NOT NULL,
        PRIMARY KEY (key_id, period, name));
    """

    def ping(self) -> str:
        self._connect().execute("SELECT 1 FROM counters LIMIT 1").fetchall()
        return "sqlite"

    def hit_rate(self, key_id: str, limit: int, window_s: float, now: float) -> float | None:
        def run(db: sqlite3.Connection) -> float | None:
            db.execute("DELETE FROM hits WHERE key_id = ? AND ts <= ?", (key_id, now - window_s))
            count, oldest = db.execute("SELECT COUNT(*), MIN(ts) FROM hits WHERE key_id = ?", (key_id,)).fetchone()
            if count >= limit:
                return oldest + window_s - now
            db.execute("INSERT INTO hits VALUES (?, ?)", (key_id, now))
            return None

        return self._transaction(run)

    def acquire_slot(self, key_id: str, lease_id: str, limit: int, expires: float, now: float) -> bool:
        def run(db: sqlite3.Connection) -> bool:
            db.execute("DELETE FROM slots WHERE expires <= ?", (now,))
            held = db.execute("SELECT 1 FROM slots WHERE lease_id = ?", (lease_id,)).fetchone()
            (count,) = db.execute("SELECT COUNT(*) FROM slots WHERE key_id = ?", (key_id,)).fetchone()
            if not held and count >= limit:
                return False
            db.execute("INSERT OR REPLACE INTO slots VALUES (?, ?, ?)", (key_id, lease_id, expires))
            return True

        return self._transaction(run)

    def release_slot(self, key_id: str, lease_id: str) -> None:
        self._transaction(lambda db: db.execute("DELETE FROM slots WHERE lease_id = ?", (lease_id,)))

    def add(self, key_id: str, now: float, **amounts: float) -> None:
        self._transaction(lambda db: self._add(db, key_id, now, amounts))

    @staticmethod
    def _add(db: sqlite3.Connection, key_id: str, now: float, amounts: dict[str, float]) -> None:
        rows = [(key_id, p, name, value) for name, value in amounts.items() if value for p in periods(now)]
        db.executemany(
            "INSERT INTO counters VALUES (?, ?, ?, ?) "
            "ON CONFLICT (key_id, period, name) DO UPDATE SET value = value + excluded.value",
            rows,
        )

    def reserve(self, key_id: str, seconds: float, caps: QuotaCaps, now: float, partial: bool = False) -> float:
        day, month, _ = periods(now)

        def run(db: sqlite3.Connection) -> float:
            used = dict(
                db.execute(
                    "SELECT period, value FROM counters WHERE key_id = ? AND name = 'audio_seconds' AND period IN (?, ?)",
                    (key_id, day, month),
                ).fetchall()
            )
            billed = granted(caps.room(used.get(day, 0.0), used.get(month, 0.0)), seconds, partial)
            if billed > 0:
                self._add(db, key_id, now, {"audio_seconds": billed})
            return billed

        return self._transaction(run)

    def usage(self, key_id: str, now: float) -> Usage:
        rows = (
            self._connect()
            .execute("SELECT period, name, value FROM counters WHERE key_id = ? AND period IN (?, ?, ?)", (key_id, *periods(now)))
            .fetchall()
        )
        return _usage({(p, n): v for p, n, v in rows}, now)


_RATE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3] - ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tostring(oldest[2] + ARGV[2] - ARGV[3])
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], math.ceil(ARGV[2]) + 1)
return false
"""

_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
return 1
"""

# KEYS: the day, month and total usage hashes; ARGV: seconds, day cap, month cap (-1: none), partial.
_RESERVE = """
local room = math.huge
for i, cap in ipairs({tonumber(ARGV[2]), tonumber(ARGV[3])}) do
  if cap >= 0 then
    local used = tonumber(redis.call('HGET', KEYS[i], 'audio_seconds') or '0')
    room = math.min(room, math.max(0, cap - used))
  end
end
local seconds = tonumber(ARGV[1])
local billed = 0
if room + 1e-6 >= seconds then billed = seconds elseif ARGV[4] == '1' then billed = room end
if billed > 0 then
  for i = 1, 3 do redis.call('HINCRBYFLOAT', KEYS[i], 'audio_seconds', billed) end
end
return tostring(billed)
"""


class RedisStore:
    def __init__(self, url: str, prefix: str = "stt") -> None:
        self.url, self.prefix = url, prefix

    def __getstate__(self) -> dict:
        # Connections are made in the process that uses the store (it crosses into Serve replicas).
        return {"url": self.url, "prefix": self.prefix}

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)

    def ping(self) -> str:
        self.redis.ping()
        return "redis"

    @cached_property
    def _rate(self) -> Script:
        return self.redis.register_script(_RATE)

    @cached_property
    def _slot(self) -> Script:
        return self.redis.register_script(_SLOT)

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def hit_rate(self, key_id: str, limit: int, window_s: float, now: float) -> float | None:
        wait = self._rate(keys=[self._key("hits", key_id)], args=[limit, window_s, now, f"{now}:{uuid.uuid4().hex}"])
        return None if wait is None else float(wait)

    def acquire_slot(self, key_id: str, lease_id: str, limit: int, expires: float, now: float) -> bool:
        return bool(self._slot(keys=[self._key("slots", key_id)], args=[limit, lease_id, expires, now]))

    def release_slot(self, key_id: str, lease_id: str) -> None:
        self.redis.zrem(self._key("slots", key_id), lease_id)

    def add(self, key_id: str, now: float, **amounts: float) -> None:
        pipe = self.redis.pipeline(transaction=True)
        for period in periods(now):
            for name, value in amounts.items():
                if value:
                    pipe.hincrbyfloat(self._key("usage", key_id, period), name, value)
        pipe.execute()

    @cached_property
    def _reserve(self) -> Script:
        return self.redis.register_script(_RESERVE)

    def reserve(self, key_id: str, seconds: float, caps: QuotaCaps, now: float, partial: bool = False) -> float:
        keys = [self._key("usage", key_id, period) for period in periods(now)]
        cap = lambda value: -1 if value is None else value  # noqa: E731
        return float(self._reserve(keys=keys, args=[seconds, cap(caps.day_s), cap(caps.month_s), int(partial)]))

    def usage(self, key_id: str, now: float) -> Usage:
        pipe = self.redis.pipeline(transaction=False)
        for period in periods(now):
            pipe.hgetall(self._key("usage", key_id, period))
        values = {}
        for period, fields in zip(periods(now), pipe.execute()):
            values.update({(period, k.decode()): float(v) for k, v in fields.items()})
        return _usage(values, now)
