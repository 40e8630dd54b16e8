"""The usage store, embedded (SQLite) and Redis, through the same tests: sliding-window rate limits
with an honest retry time, concurrency leases, counters per day/month/total, durability across a
new store object (what a restarted replica makes), and atomicity across processes."""

from __future__ import annotations

import multiprocessing
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from serve_app.licensing.usage import STORE_ERRORS, QuotaCaps, RedisStore, SqliteStore, UsageStore

T0 = datetime(2026, 3, 31, 23, 59, 0, tzinfo=timezone.utc).timestamp()


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        return lambda: SqliteStore(tmp_path / "usage.sqlite3")
    url = request.getfixturevalue("redis_url")
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    return lambda: RedisStore(url, prefix=prefix)


def test_ping_names_the_store_and_fails_when_it_cannot_answer(make_store, tmp_path: Path) -> None:
    store = make_store()
    assert store.ping() == type(store).__name__.removesuffix("Store").lower()
    with pytest.raises(STORE_ERRORS):
        RedisStore("redis://127.0.0.1:1/0").ping()  # nothing listens on port 1 of loopback
    path = tmp_path / "usage.sqlite3"
    SqliteStore(path)
    path.unlink()
    path.mkdir()  # a folder where the database was
    broken = SqliteStore.__new__(SqliteStore)
    broken.__setstate__({"path": path})  # as in another replica: no connection open yet
    with pytest.raises(STORE_ERRORS):
        broken.ping()


def test_rate_limit_sliding_window_and_retry_time(make_store) -> None:
    store: UsageStore = make_store()
    for i in range(5):
        assert store.hit_rate("k", 5, 60, T0 + i) is None
    assert store.hit_rate("k", 5, 60, T0 + 10) == pytest.approx(50)  # the first hit leaves at T0+60
    assert store.hit_rate("other", 5, 60, T0 + 10) is None  # per key
    assert store.hit_rate("k", 5, 60, T0 + 60.5) is None  # one slot freed
    assert store.hit_rate("k", 5, 60, T0 + 60.6) == pytest.approx(0.4)


def test_concurrency_slots_leases_and_release(make_store) -> None:
    store = make_store()
    assert store.acquire_slot("k", "a", 2, T0 + 60, T0)
    assert store.acquire_slot("k", "b", 2, T0 + 60, T0)
    assert not store.acquire_slot("k", "c", 2, T0 + 60, T0)
    assert store.acquire_slot("k", "a", 2, T0 + 120, T0 + 30)  # renewing a held lease always works
    store.release_slot("k", "b")
    assert store.acquire_slot("k", "c", 2, T0 + 60, T0)
    assert store.acquire_slot(
        "k", "d", 2, T0 + 200, T0 + 130
    )  # a's and c's leases expired: a dead replica's slots free themselves


def test_counters_by_day_month_total_survive_a_new_store(make_store) -> None:
    store = make_store()
    store.add("k", T0, requests=1, audio_seconds=11.5)
    store.add("k", T0 + 120, requests=1, audio_seconds=3.0)  # 00:01 on April 1st: new day, new month
    store.add("unknown", T0, auth_failures=1)
    reopened = make_store()  # what a restarted application sees
    april = reopened.usage("k", T0 + 120)
    assert (april.requests_today, april.requests_month, april.requests_total) == (1, 1, 2)
    assert (april.audio_seconds_today, april.audio_seconds_month, april.audio_seconds_total) == (3.0, 3.0, 14.5)
    assert reopened.usage("unknown", T0).auth_failures_total == 1
    assert reopened.usage("k", T0).audio_seconds_today == 11.5


def _hammer(store: UsageStore, results: multiprocessing.Queue[bool]) -> None:
    for _ in range(10):
        results.put(store.hit_rate("shared", 25, 60, T0) is None)


def test_limit_holds_across_processes(make_store) -> None:
    """Four processes (as four ingress replicas would) race for 25 slots: exactly 25 win."""
    store = make_store()
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(store, results)) for _ in range(4)]
    for p in procs:
        p.start()
    wins = sum(results.get(timeout=60) for _ in range(40))
    for p in procs:
        p.join(timeout=30)
    assert wins == 25


def _reserve_many(store: UsageStore, results: multiprocessing.Queue[float]) -> None:
    for _ in range(4):
        results.put(store.reserve("quota", 11.0, QuotaCaps(day_s=36.0), T0))


def test_quota_reservations_hold_across_processes(make_store) -> None:
    """Four processes reserve 11 s sixteen times against a 36 s day: three fit, the rest are refused."""
    store = make_store()
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_reserve_many, args=(store, results)) for _ in range(4)]
    for p in procs:
        p.start()
    granted = sorted(results.get(timeout=60) for _ in range(16))
    for p in procs:
        p.join(timeout=30)
    assert granted == [0.0] * 13 + [11.0] * 3
    assert store.usage("quota", T0).audio_seconds_today == 33.0


def test_reservation_checks_day_and_month_and_can_be_partial(make_store) -> None:
    store = make_store()
    caps = QuotaCaps(day_s=100.0, month_s=30.0)
    assert store.reserve("k", 20.0, caps, T0) == 20.0
    assert store.reserve("k", 20.0, caps, T0) == 0.0  # the month has 10 s left
    assert store.reserve("k", 20.0, caps, T0, partial=True) == pytest.approx(10.0)  # a stream's last block
    assert store.reserve("k", 1.0, caps, T0, partial=True) == 0.0
    assert store.reserve("k", 5.0, QuotaCaps(), T0) == 5.0  # no caps: billed, never refused
    assert store.usage("k", T0).audio_seconds_month == pytest.approx(35.0)
    store.add("k", T0, audio_seconds=-5.0)  # a settlement's refund
    assert store.usage("k", T0).audio_seconds_total == pytest.approx(30.0)
