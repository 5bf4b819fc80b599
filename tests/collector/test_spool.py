"""The spool on real SQLite files: order, idempotency, quarantine, bounds, kill -9, full disk."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from collector.errors import CollectorError, SpoolError, SpoolFullError
from collector.spool import AsyncSpool, Spool
from probes.models import ResultBase, parse_result, unbounded_limits
from tests.collector.results import bandwidth_result, latency_result, mixed_results

REPO_ROOT = Path(__file__).resolve().parents[2]


def size_of(result: ResultBase) -> int:
    return len(result.model_dump_json().encode("utf-8"))


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    with Spool(tmp_path / "spool" / "results.db") as opened:
        yield opened


# -- order, idempotency, acknowledgement ---------------------------------------------------------


def test_batches_come_oldest_first_and_leave_only_when_acknowledged(spool: Spool) -> None:
    results = mixed_results(5)
    assert all(spool.add(result) for result in results)

    batch = spool.oldest(3)
    assert [item.result_id for item in batch] == [str(r.result_id) for r in results[:3]]
    assert [item.seq for item in batch] == sorted(item.seq for item in batch)
    for item, result in zip(batch, results, strict=False):
        assert item.kind == result.model_dump()["kind"]
        assert item.measured_at == result.measured_at
        assert item.payload == result.model_dump_json()
        assert parse_result(json.loads(item.payload), unbounded_limits()) == result

    # Reading is not acknowledging: the same batch comes back until the server has answered.
    assert spool.oldest(3) == batch
    acked_at = datetime.now(UTC)
    assert spool.ack([batch[0].result_id, batch[1].result_id, str(uuid.uuid4())], now=acked_at) == 2
    assert [item.result_id for item in spool.oldest(10)] == [str(r.result_id) for r in results[2:]]
    assert spool.stats().last_ack_at == acked_at
    # An upper-case id from a server still matches the stored one.
    assert spool.ack([batch[2].result_id.upper()]) == 1
    assert spool.ack([]) == 0
    assert spool.stats().depth == 2


def test_the_same_result_is_stored_once_even_across_reopen(tmp_path: Path) -> None:
    result = latency_result()
    path = tmp_path / "results.db"
    with Spool(path) as spool:
        assert spool.add(result) is True
        assert spool.add(result) is False
    with Spool(path) as spool:
        assert spool.add(result) is False
        assert [item.result_id for item in spool.oldest(10)] == [str(result.result_id)]
        assert spool.stats().bytes == size_of(result)


def test_a_batch_stays_within_max_bytes_but_is_never_empty(spool: Spool) -> None:
    results = [latency_result(rtts=20) for _ in range(4)]
    for result in results:
        spool.add(result)
    size = size_of(results[0])
    assert len(spool.oldest(10, max_bytes=2 * size + size // 2)) == 2
    assert len(spool.oldest(10, max_bytes=1)) == 1
    assert len(spool.oldest(3, max_bytes=100 * size)) == 3
    with pytest.raises(ValueError, match="limit must be at least 1"):
        spool.oldest(0)


# -- quarantine -----------------------------------------------------------------------------------


def test_quarantine_keeps_the_reason_and_takes_the_result_out_of_the_queue(spool: Spool) -> None:
    kept, refused = bandwidth_result(), latency_result()
    spool.add(kept)
    spool.add(refused)
    reason = "target: String should match pattern (a backslash in a tag)"
    at = datetime.now(UTC)

    moved = spool.quarantine([(str(refused.result_id), reason), (str(uuid.uuid4()), "x")], now=at)

    assert moved == 1
    assert [item.result_id for item in spool.oldest(10)] == [str(kept.result_id)]
    [rejected] = spool.rejected()
    assert rejected.result_id == str(refused.result_id)
    assert rejected.kind == "latency"
    assert rejected.reason == reason
    assert rejected.payload == refused.model_dump_json()
    assert rejected.rejected_at == at
    # A rejected result is never queued again, so it cannot be retried forever.
    assert spool.add(refused) is False
    stats = spool.stats()
    assert (stats.depth, stats.rejected_count, stats.bytes) == (1, 1, size_of(kept))


def test_the_rejected_table_keeps_the_newest_and_counts_what_falls_off(tmp_path: Path) -> None:
    results = [latency_result() for _ in range(5)]
    with Spool(tmp_path / "results.db", max_rejected=3) as spool:
        for result in results:
            spool.add(result)
        for i, result in enumerate(results):
            spool.quarantine([(str(result.result_id), f"reason {i}")])
        assert [item.reason for item in spool.rejected()] == ["reason 4", "reason 3", "reason 2"]
        assert [item.reason for item in spool.rejected(limit=1)] == ["reason 4"]
    with Spool(tmp_path / "results.db", max_rejected=3) as spool:
        stats = spool.stats()
        assert (stats.depth, stats.rejected_count, stats.rejected_dropped_count) == (0, 3, 2)


# -- stats and bounds -----------------------------------------------------------------------------


def test_stats_report_depth_bytes_and_the_oldest_measurement(spool: Spool) -> None:
    now = datetime.now(UTC)
    empty = spool.stats(now=now)
    assert (empty.depth, empty.bytes, empty.oldest_measured_at, empty.oldest_age_s) == (
        0,
        0,
        None,
        None,
    )
    assert (empty.evicted_count, empty.rejected_count, empty.last_ack_at) == (0, 0, None)

    newer = latency_result(ago=timedelta(minutes=2))
    older = bandwidth_result(ago=timedelta(minutes=9))  # spooled after, measured before
    spool.add(newer)
    spool.add(older)
    stats = spool.stats(now=now)
    assert stats.depth == 2
    assert stats.bytes == size_of(newer) + size_of(older)
    assert stats.oldest_measured_at == older.measured_at
    assert stats.oldest_age_s == (now - older.measured_at).total_seconds()
    # A clock stepped back never yields a negative age (the heartbeat field is non-negative).
    assert spool.stats(now=now - timedelta(hours=1)).oldest_age_s == 0.0


def test_eviction_by_age_drops_what_the_server_would_refuse(tmp_path: Path) -> None:
    old = latency_result(ago=timedelta(minutes=50))
    middle = bandwidth_result(ago=timedelta(minutes=40))
    fresh = latency_result(ago=timedelta(minutes=5))
    now = datetime.now(UTC)
    with Spool(tmp_path / "results.db", max_age=timedelta(hours=1)) as spool:
        for result in (fresh, old, middle):
            spool.add(result, now=now)
        assert spool.evict(now=now) == 0
        assert spool.evict(now=now + timedelta(minutes=15)) == 1  # old is 65 minutes old now
        assert {item.result_id for item in spool.oldest(10)} == {
            str(fresh.result_id),
            str(middle.result_id),
        }
        # add() applies the bound too, with its own clock.
        spool.add(latency_result(), now=now + timedelta(minutes=25))
        assert str(middle.result_id) not in {item.result_id for item in spool.oldest(10)}
        assert spool.stats().evicted_count == 2


def test_eviction_by_size_is_oldest_first_and_counted_across_reopen(tmp_path: Path) -> None:
    results = [latency_result(rtts=30) for _ in range(6)]
    size = size_of(results[0])
    assert all(size_of(result) == size for result in results)
    path = tmp_path / "results.db"
    with Spool(path, max_bytes=3 * size + size // 2) as spool:
        for result in results:
            spool.add(result)
            assert spool.stats().bytes <= 3 * size + size // 2
        assert [item.result_id for item in spool.oldest(10)] == [
            str(r.result_id) for r in results[3:]
        ]
    with Spool(path, max_bytes=size) as spool:
        assert spool.stats().evicted_count == 3
        assert spool.evict() == 2
        stats = spool.stats()
        assert (stats.evicted_count, stats.depth, stats.bytes) == (5, 1, size)
        assert spool.oldest(10)[0].result_id == str(results[-1].result_id)


def test_held_results_wait_apart_and_are_released_into_the_queue_once(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    queued, waiting = latency_result(), latency_result()
    with Spool(path) as spool:
        spool.add(queued)
        assert spool.hold(waiting, "boot-1", 42.5)
        assert not spool.hold(waiting, "boot-1", 42.5)  # once
        assert [i.result_id for i in spool.oldest(10)] == [str(queued.result_id)]
        assert (spool.stats().depth, spool.stats().held) == (1, 1)
    with Spool(path) as spool:  # held survives a reopen (an agent restart)
        (held,) = spool.held()
        assert (held.boot_id, held.boot_s) == ("boot-1", 42.5)
        assert held.measured_at == waiting.measured_at
        restamped = waiting.model_copy(update={"clock_restamped": True})
        assert spool.release([restamped]) == 1
        assert spool.release([restamped]) == 0
        assert spool.held() == []
        ids = [i.result_id for i in spool.oldest(10)]
        assert ids == [str(queued.result_id), str(waiting.result_id)]
        assert json.loads(spool.oldest(10)[1].payload)["clock_restamped"] is True


def test_a_layout_1_spool_is_upgraded_keeping_its_results(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    kept = latency_result()
    with Spool(path) as spool:
        spool.add(kept)
    with sqlite3.connect(path) as conn:  # what an agent before the held table left behind
        conn.execute("DROP TABLE held")
        conn.execute("PRAGMA user_version = 1")
    with Spool(path) as spool:
        assert [i.result_id for i in spool.oldest(10)] == [str(kept.result_id)]
        assert spool.hold(latency_result(), "boot-1", 1.0)


def test_a_result_larger_than_the_whole_spool_is_refused_loudly(tmp_path: Path) -> None:
    with Spool(tmp_path / "results.db", max_bytes=200) as spool:
        with pytest.raises(SpoolError, match="raise the spool's max_bytes") as caught:
            spool.add(bandwidth_result())
        assert "200 bytes" in str(caught.value)
        assert spool.stats().depth == 0


# -- opening --------------------------------------------------------------------------------------


def test_open_makes_the_directories_and_sets_wal_with_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "var" / "lib" / "hamletnet" / "spool.db"
    with Spool(path) as spool:
        synchronous = spool._connection().execute("PRAGMA synchronous").fetchone()[0]
        assert synchronous == 2  # FULL: the WAL is fsynced at every commit
        assert spool.add(latency_result())
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # stored in the file
    finally:
        conn.close()
    assert integrity(path) == "ok"


def test_open_failures_name_the_path_and_the_fix(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(SpoolError, match=f"cannot create the spool directory {not_a_dir}"):
        Spool(not_a_dir / "spool.db").open()

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(SpoolError, match=f"spool {garbage}.*not a database"):
        Spool(garbage).open()

    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(SpoolError, match="not a hamletnet spool; move it aside"):
        Spool(foreign).open()

    newer = tmp_path / "newer.db"
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(SpoolError, match="newer than this agent understands"):
        Spool(newer).open()

    with pytest.raises(SpoolError, match="is not open: call open"):
        Spool(tmp_path / "closed.db").stats()
    assert issubclass(SpoolFullError, SpoolError) and issubclass(SpoolError, CollectorError)


# -- the asyncio facade ---------------------------------------------------------------------------


async def test_async_spool_runs_every_call_on_its_worker_thread(tmp_path: Path) -> None:
    results = mixed_results(20)
    spool = AsyncSpool(tmp_path / "results.db")
    with pytest.raises(SpoolError, match="not open"):
        await spool.stats()
    async with spool:
        # sqlite3 refuses a connection used from another thread than its own, so these
        # concurrent calls succeed only if they all run on the one worker thread.
        assert all(await asyncio.gather(*(spool.add(r) for r in results)))
        assert {item.result_id for item in await spool.oldest(50)} == {
            str(r.result_id) for r in results
        }
        batch = await spool.oldest(5)
        assert await spool.ack(item.result_id for item in batch[:4]) == 4
        assert await spool.quarantine(iter([(batch[4].result_id, "bad")])) == 1
        assert [item.reason for item in await spool.rejected()] == ["bad"]
        assert await spool.evict() == 0
        stats = await spool.stats()
        assert (stats.depth, stats.rejected_count) == (15, 1)
    async with spool:  # reopens on a fresh worker
        assert (await spool.stats()).depth == 15


# -- kill -9 --------------------------------------------------------------------------------------


def test_kill_9_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """A writer is killed at a random moment, five times over the same file.

    Every id it printed (after ``add`` returned) must be in the spool; at most one id per kill
    can be there unprinted (committed, then killed before the print).
    """
    path = tmp_path / "spool.db"
    rng = random.Random()
    printed: list[str] = []
    kills = 5
    for _ in range(kills):
        writer = subprocess.Popen(
            [sys.executable, "-m", "tests.collector.spool_writer", str(path)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert writer.stdout is not None
            first = writer.stdout.readline()  # the writer is in its loop
            assert first.endswith("\n"), writer.communicate(timeout=10)[1]
            delay = rng.uniform(0.0, 0.25)
            try:
                writer.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                pass
            assert writer.returncode is None, "the writer stopped by itself"
            writer.kill()  # SIGKILL
            rest, _ = writer.communicate(timeout=10)
        finally:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
        lines = (first + rest).split("\n")
        printed += lines[:-1]  # the last piece is an unfinished line or empty

        assert integrity(path) == "ok"
        with Spool(path) as spool:
            stored = [item.result_id for item in spool.oldest(1_000_000)]
            assert spool.stats().depth == len(stored)
        assert len(stored) == len(set(stored)), "a result was stored twice"
        missing = set(printed) - set(stored)
        assert not missing, f"lost after kill -9 (delay {delay:.3f}s): {sorted(missing)}"
        assert len(set(stored) - set(printed)) <= kills
    assert len(printed) >= kills


# -- full disk ------------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_MNT_DETACH = 2


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for this test (root only) and unmounted afterwards."""
    target = tmp_path / "disk"
    target.mkdir()
    if _libc.mount(b"tmpfs", bytes(target), b"tmpfs", 0, b"size=1m,mode=0755") != 0:
        code = ctypes.get_errno()
        if code == errno.EPERM:
            pytest.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN); the lab CI runs as root")
        raise OSError(code, f"mount -t tmpfs tmpfs {target}: {os.strerror(code)}")
    try:
        yield target
    finally:
        if _libc.umount2(bytes(target), 0) != 0:
            _libc.umount2(bytes(target), _MNT_DETACH)


@pytest.mark.lab
def test_a_full_disk_raises_spool_full_and_keeps_what_was_stored(small_disk: Path) -> None:
    filler = small_disk / "filler"
    filler.write_bytes(os.urandom(384 * 1024))  # room to free later
    path = small_disk / "spool" / "results.db"
    stored: list[ResultBase] = []
    with Spool(path) as spool:
        with pytest.raises(SpoolFullError) as caught:
            for _ in range(10_000):
                result = latency_result(rtts=100)
                assert spool.add(result)
                stored.append(result)
        message = str(caught.value)
        assert str(path) in message and "disk is full" in message
        assert stored, "the disk was full before the first result"

        items = spool.oldest(len(stored) + 10)
        assert [item.result_id for item in items] == [str(r.result_id) for r in stored]
        assert [parse_result(json.loads(i.payload), unbounded_limits()) for i in items] == stored

        filler.unlink()
        assert spool.ack([str(r.result_id) for r in stored[:5]]) == 5
        again = [latency_result(rtts=100) for _ in range(3)]
        assert all(spool.add(result) for result in again)
        assert spool.stats().depth == len(stored) - 5 + 3
    assert integrity(path) == "ok"


# -- properties -----------------------------------------------------------------------------------


class SpoolOperations(RuleBasedStateMachine):
    """Any sequence of add/ack/quarantine/evict keeps the spool's books balanced."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="spool-property-")
        self.spool = Spool(
            Path(self.directory) / "results.db",
            max_bytes=4_000,
            max_age=timedelta(hours=1),
            max_rejected=4,
        )
        self.spool.open()
        self.now = datetime.now(UTC)
        self.known: list[ResultBase] = []
        self.added = self.acked = self.quarantined = 0

    def teardown(self) -> None:
        self.spool.close()
        shutil.rmtree(self.directory)

    def pending(self) -> list[str]:
        return [item.result_id for item in self.spool.oldest(10_000)]

    def kept_rejected(self) -> set[str]:
        return {item.result_id for item in self.spool.rejected(10_000)}

    def store(self, result: ResultBase) -> None:
        before = set(self.pending())
        expected_new = str(result.result_id) not in before | self.kept_rejected()
        evicted_before = self.spool.stats().evicted_count
        assert self.spool.add(result, now=self.now) is expected_new
        self.added += expected_new
        after = set(self.pending())
        evicted = self.spool.stats().evicted_count - evicted_before
        event(f"add evicted {evicted if evicted < 2 else '2+'}")
        assert after <= before | {str(result.result_id)}
        assert (
            len(before | ({str(result.result_id)} if expected_new else set())) - len(after)
            == evicted
        )

    @rule(
        minutes_ago=st.integers(min_value=0, max_value=50),
        rtts=st.integers(min_value=0, max_value=40),
        bandwidth=st.booleans(),
    )
    def add_new(self, minutes_ago: int, rtts: int, bandwidth: bool) -> None:
        ago = timedelta(minutes=minutes_ago)
        result = bandwidth_result(ago=ago) if bandwidth else latency_result(ago=ago, rtts=rtts)
        self.known.append(result)
        self.store(result)

    @rule(data=st.data())
    def add_again(self, data: st.DataObject) -> None:
        if self.known:
            self.store(data.draw(st.sampled_from(self.known)))

    def draw_ids(self, data: st.DataObject) -> list[str]:
        ids = (
            st.sampled_from([str(r.result_id) for r in self.known]) if self.known else st.nothing()
        )
        return data.draw(st.lists(ids | st.uuids().map(str), max_size=6))

    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        ids = self.draw_ids(data)
        before = set(self.pending())
        acked = self.spool.ack(ids)
        assert acked == len(before & set(ids))
        assert set(self.pending()) == before - set(ids)
        self.acked += acked

    @rule(data=st.data())
    def quarantine(self, data: st.DataObject) -> None:
        ids = self.draw_ids(data)
        before = set(self.pending())
        moved = self.spool.quarantine([(result_id, "refused") for result_id in ids])
        event(f"quarantined {moved if moved < 2 else '2+'}")
        assert moved == len(before & set(ids))
        assert set(self.pending()) == before - set(ids)
        self.quarantined += moved

    @rule(minutes=st.integers(min_value=0, max_value=40))
    def time_passes(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)

    @rule()
    def evict(self) -> None:
        before = self.spool.stats().evicted_count
        evicted = self.spool.evict(now=self.now)
        event(f"evict() evicted {evicted if evicted < 2 else '2+'}")
        assert self.spool.stats().evicted_count == before + evicted
        cutoff = self.now - self.spool.max_age
        assert all(item.measured_at >= cutoff for item in self.spool.oldest(10_000))

    @invariant()
    def books_balance(self) -> None:
        stats = self.spool.stats()
        items = self.spool.oldest(10_000)
        assert stats.depth == self.added - self.acked - self.quarantined - stats.evicted_count
        assert stats.depth == len(items)
        assert [item.seq for item in items] == sorted({item.seq for item in items})
        assert stats.bytes == sum(len(item.payload.encode("utf-8")) for item in items)
        assert stats.bytes <= self.spool.max_bytes
        assert not {item.result_id for item in items} & self.kept_rejected()
        assert stats.rejected_count + stats.rejected_dropped_count == self.quarantined
        assert stats.rejected_count <= self.spool.max_rejected


SpoolOperations.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_spool_operations_keep_the_books_balanced = SpoolOperations.TestCase
