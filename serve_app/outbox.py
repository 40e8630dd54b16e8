"""The outbox: callbacks not yet delivered, kept in the usage store's backend (the same SQLite file or
the same Redis, in a table / key prefix of their own) so that a replica restart delivers them
instead of losing them. callback.py decides what goes in and when; this module only stores.

A row is `running` while its replica transcribes, then `ready` with the body to POST. One time
field, `due_at`, drives everything: it is when another replica may take the row (the end of the
current lease, or the time of the next attempt). `claim` hands the rows that are due to one owner
and leases them to it in the same atomic step (SQLite `BEGIN IMMEDIATE`, a Redis Lua script), so
two replicas never hold one row at once. Every change but `add` and `claim` requires the caller to
still hold the row's lease (`owner`). Times are passed in by the caller (an injected clock).

The Redis scripts touch the row hashes they name, so they need a single Redis (as the usage store
does), not Redis Cluster.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import redis

from .licensing.usage import RedisStore, SqliteStore, UsageStore
from .sqlite_file import SqliteFile

RUNNING, READY = "running", "ready"


@dataclass(frozen=True)
class Pending:
    """A claimed row: what its new owner needs to deliver it."""

    request_id: str
    key_id: str
    url: str
    state: str  # RUNNING: its replica never finished it (the lease ran out); READY: body is the result
    body: bytes
    content_type: str
    attempts: int  # deliveries tried so far


class OutboxStore(Protocol):
    def add(self, request_id: str, key_id: str, url: str, owner: str, lease_until: float, per_key: int) -> bool:
        """Store a `running` row leased to `owner`, unless `key_id` already has `per_key` rows."""

    def renew(self, owner: str, request_ids: list[str], lease_until: float) -> None:
        """Extend the leases of `owner`'s running rows among `request_ids`."""

    def ready(
        self, request_id: str, owner: str, body: bytes | None, content_type: str | None, attempts: int, due_at: float
    ) -> bool:
        """Make the row ready for an attempt at `due_at` and release its lease (body None: keep the
        stored one); False when `owner` no longer holds it."""

    def claim(self, owner: str, now: float, lease_until: float, limit: int) -> list[Pending]:
        """Lease up to `limit` rows due by `now` to `owner` until `lease_until`, earliest first."""

    def delete(self, request_id: str, key_id: str, owner: str) -> None:
        """Drop the row if `owner` holds it (delivered, or given up)."""


def beside(store: UsageStore) -> OutboxStore:
    """The outbox in the usage store's backend: the same Redis, or else the same SQLite file."""
    if isinstance(store, RedisStore):
        return RedisOutbox(store.url)
    if isinstance(store, SqliteStore):
        return SqliteOutbox(store.path)
    raise TypeError(f"no outbox for a {type(store).__name__}: pass one to the ingress")


class SqliteOutbox(SqliteFile):
    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS callback_outbox (
        request_id TEXT PRIMARY KEY, key_id TEXT NOT NULL, url TEXT NOT NULL, state TEXT NOT NULL,
        body BLOB NOT NULL DEFAULT x'', content_type TEXT NOT NULL DEFAULT '',
        attempts INTEGER NOT NULL DEFAULT 0, owner TEXT NOT NULL, due_at REAL NOT NULL);
    CREATE INDEX IF NOT EXISTS callback_outbox_due ON callback_outbox (due_at);
    CREATE INDEX IF NOT EXISTS callback_outbox_key ON callback_outbox (key_id);
    """

    def add(self, request_id: str, key_id: str, url: str, owner: str, lease_until: float, per_key: int) -> bool:
        def run(db: sqlite3.Connection) -> bool:
            (count,) = db.execute("SELECT COUNT(*) FROM callback_outbox WHERE key_id = ?", (key_id,)).fetchone()
            if count >= per_key:
                return False
            db.execute(
                "INSERT INTO callback_outbox (request_id, key_id, url, state, owner, due_at) VALUES (?, ?, ?, ?, ?, ?)",
                (request_id, key_id, url, RUNNING, owner, lease_until),
            )
            return True

        return self._transaction(run)

    def renew(self, owner: str, request_ids: list[str], lease_until: float) -> None:
        rows = [(lease_until, rid, owner, RUNNING) for rid in request_ids]
        self._transaction(
            lambda db: db.executemany(
                "UPDATE callback_outbox SET due_at = ? WHERE request_id = ? AND owner = ? AND state = ?", rows
            )
        )

    def ready(
        self, request_id: str, owner: str, body: bytes | None, content_type: str | None, attempts: int, due_at: float
    ) -> bool:
        def run(db: sqlite3.Connection) -> bool:
            changed = db.execute(
                "UPDATE callback_outbox SET state = ?, body = COALESCE(?, body), content_type = COALESCE(?, content_type),"
                " attempts = ?, owner = '', due_at = ? WHERE request_id = ? AND owner = ?",
                (READY, body, content_type, attempts, due_at, request_id, owner),
            )
            return changed.rowcount == 1

        return self._transaction(run)

    def claim(self, owner: str, now: float, lease_until: float, limit: int) -> list[Pending]:
        # Every replica looks every poll_s: with nothing due, it reads without taking the write lock.
        if self._connect().execute("SELECT 1 FROM callback_outbox WHERE due_at <= ? LIMIT 1", (now,)).fetchone() is None:
            return []

        def run(db: sqlite3.Connection) -> list[Pending]:
            rows = db.execute(
                "SELECT request_id, key_id, url, state, body, content_type, attempts FROM callback_outbox"
                " WHERE due_at <= ? ORDER BY due_at LIMIT ?",
                (now, limit),
            ).fetchall()
            db.executemany(
                "UPDATE callback_outbox SET owner = ?, due_at = ? WHERE request_id = ?",
                [(owner, lease_until, row[0]) for row in rows],
            )
            return [
                Pending(rid, kid, url, state, bytes(body), ctype, attempts)
                for rid, kid, url, state, body, ctype, attempts in rows
            ]

        return self._transaction(run)

    def delete(self, request_id: str, key_id: str, owner: str) -> None:
        self._transaction(
            lambda db: db.execute("DELETE FROM callback_outbox WHERE request_id = ? AND owner = ?", (request_id, owner))
        )


# KEYS: row, due, key set; ARGV: request_id, key_id, url, owner, lease_until, per_key
_ADD = """
if redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[6]) then return 0 end
redis.call('HSET', KEYS[1], 'key_id', ARGV[2], 'url', ARGV[3], 'state', 'running', 'body', '',
           'content_type', '', 'attempts', 0, 'owner', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
"""

# KEYS: due, then one row per request id; ARGV: owner, lease_until, then the request ids
_RENEW = """
for i = 2, #KEYS do
  if redis.call('HGET', KEYS[i], 'owner') == ARGV[1] and redis.call('HGET', KEYS[i], 'state') == 'running' then
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i + 1])
  end
end
"""

# KEYS: row, due; ARGV: request_id, owner, attempts, due_at, has_body ('1'/'0'), body, content_type
_READY = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'ready', 'attempts', ARGV[3], 'owner', '')
if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'body', ARGV[6], 'content_type', ARGV[7]) end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return 1
"""

# KEYS: due; ARGV: row key prefix, owner, now, lease_until, limit. Returns id1, fields1, id2, fields2...
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[3], 'LIMIT', 0, tonumber(ARGV[5]))
local out = {}
for _, id in ipairs(ids) do
  local row = ARGV[1] .. id
  if redis.call('EXISTS', row) == 0 then
    redis.call('ZREM', KEYS[1], id)
  else
    redis.call('HSET', row, 'owner', ARGV[2])
    redis.call('ZADD', KEYS[1], ARGV[4], id)
    table.insert(out, id)
    table.insert(out, redis.call('HGETALL', row))
  end
end
return out
"""

# KEYS: row, due, key set; ARGV: request_id, owner
_DELETE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
"""


class RedisOutbox:
    """Rows are hashes `<prefix>:row:<id>`; `<prefix>:due` orders them by `due_at`; `<prefix>:key:<kid>`
    holds a key's request ids (its count is the per-key bound)."""

    def __init__(self, url: str, prefix: str = "stt:outbox") -> None:
        self.url, self.prefix = url, prefix

    def __getstate__(self) -> dict:
        return {"url": self.url, "prefix": self.prefix}  # connect in the process that uses it

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)

    @cached_property
    def _scripts(self) -> dict[str, Any]:
        sources = {"add": _ADD, "renew": _RENEW, "ready": _READY, "claim": _CLAIM, "delete": _DELETE}
        return {name: self.redis.register_script(source) for name, source in sources.items()}

    def _row(self, request_id: str) -> str:
        return f"{self.prefix}:row:{request_id}"

    def _of_key(self, key_id: str) -> str:
        return f"{self.prefix}:key:{key_id}"

    @property
    def _due(self) -> str:
        return f"{self.prefix}:due"

    def add(self, request_id: str, key_id: str, url: str, owner: str, lease_until: float, per_key: int) -> bool:
        keys = [self._row(request_id), self._due, self._of_key(key_id)]
        return bool(self._scripts["add"](keys=keys, args=[request_id, key_id, url, owner, repr(lease_until), per_key]))

    def renew(self, owner: str, request_ids: list[str], lease_until: float) -> None:
        if request_ids:
            keys = [self._due, *map(self._row, request_ids)]
            self._scripts["renew"](keys=keys, args=[owner, repr(lease_until), *request_ids])

    def ready(
        self, request_id: str, owner: str, body: bytes | None, content_type: str | None, attempts: int, due_at: float
    ) -> bool:
        args = [request_id, owner, attempts, repr(due_at), "0" if body is None else "1", body or b"", content_type or ""]
        return bool(self._scripts["ready"](keys=[self._row(request_id), self._due], args=args))

    def claim(self, owner: str, now: float, lease_until: float, limit: int) -> list[Pending]:
        flat = self._scripts["claim"](keys=[self._due], args=[f"{self.prefix}:row:", owner, repr(now), repr(lease_until), limit])
        return [_pending(rid.decode(), fields) for rid, fields in zip(flat[::2], flat[1::2])]

    def delete(self, request_id: str, key_id: str, owner: str) -> None:
        keys = [self._row(request_id), self._due, self._of_key(key_id)]
        self._scripts["delete"](keys=keys, args=[request_id, owner])


def _pending(request_id: str, flat: list[bytes]) -> Pending:
    fields = dict(zip((k.decode() for k in flat[::2]), flat[1::2]))
    text = lambda name: fields[name].decode()  # noqa: E731
    return Pending(
        request_id, text("key_id"), text("url"), text("state"), fields["body"], text("content_type"), int(text("attempts"))
    )
