"""A durable outbox for MQTT messages on the edge box: SQLite in WAL mode, fsync on every append.

paho-mqtt keeps unacknowledged QoS 1 messages only in memory, so a power cut or a restart loses
them. Every message is written here before it is handed to paho and deleted only after the broker's
PUBACK; after a restart whatever is left is sent again (the server's ``event_id`` constraint makes a
resend harmless). ``seq`` is an AUTOINCREMENT key: it never goes back, even across restarts and
deletions, so it serves as the order of sending and as the node's event sequence number: the
publisher writes it into the event (``Event.seq``) in the same transaction that stores it, and the
server reports a gap in a node's numbers as lost (or late) events. A dropped event leaves its gap on
purpose: that is how the server learns of the loss. A new outbox file (a wiped disk, a reinstall)
numbers from 1 again, so each file has an ``epoch`` made with it, sent beside ``seq``: the server
tells a node that started over from one that lost thousands of events.

The outbox is bounded, because a gate box's disk is small and an uplink can be down for days.
Overflow policy, applied after every append:

1. by age: messages older than ``max_age_s`` expire, except incident ``start`` events (an incident
   the server never heard of is the one loss that matters most);
2. by size: while the stored bytes exceed ``max_bytes``, drop the oldest ``update``, then the oldest
   ``end``, then the oldest ``start`` (so the newest starts are the last to go), then anything else.

Every drop is counted per phase and persisted, with the time range of the dropped messages;
``take_drop_report()`` hands the counts since the last report to the caller, who reports them as a
metric and an ``edge_outbox_overflow`` event. Unreported counts survive a restart.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    phase TEXT NOT NULL,
    created_at REAL NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_phase_seq ON outbox (phase, seq);
CREATE TABLE IF NOT EXISTS dropped (phase TEXT PRIMARY KEY, total INTEGER NOT NULL, unreported INTEGER NOT NULL);
-- When the unreported drops were created (a separate table: outbox files from before it keep working).
CREATE TABLE IF NOT EXISTS dropped_span (id INTEGER PRIMARY KEY CHECK (id = 1), first_at REAL, last_at REAL);
-- The outbox's identity (its epoch), made once with the file; a new file numbers from 1 under a new one.
CREATE TABLE IF NOT EXISTS identity (id INTEGER PRIMARY KEY CHECK (id = 1), epoch TEXT NOT NULL);
"""

# Drop order under the size bound: the first phase with queued messages loses its oldest one.
DROP_ORDER = ("update", "end", "start")
KEEP_PAST_AGE = ("start",)


@dataclass(frozen=True)
class OutboxMessage:
    seq: int
    topic: str
    payload: bytes
    phase: str
    created_at: float


@dataclass(frozen=True)
class DropReport:
    """Drops since the last report: counts per phase and when the dropped messages were stored."""

    phases: dict[str, int]
    first_at: float | None = None
    last_at: float | None = None

    def __bool__(self) -> bool:
        return bool(self.phases)

    @property
    def total(self) -> int:
        return sum(self.phases.values())


@dataclass(frozen=True)
class OutboxDepth:
    messages: int
    bytes: int
    oldest_age_s: float


class Outbox:
    """Thread-safe; one instance per node, shared by every camera's publishing path."""

    def __init__(self, path: Path, max_bytes: int = 256 * 1024 * 1024, max_age_s: float = 7 * 24 * 3600.0,
                 clock: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.max_age_s, self.clock = max_bytes, max_age_s, clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # WAL + FULL: each commit is fsynced
        self._db.executescript(SCHEMA)
        self._db.execute("INSERT OR IGNORE INTO identity (id, epoch) VALUES (1, ?)", (uuid.uuid4().hex,))
        self.epoch: str = self._db.execute("SELECT epoch FROM identity").fetchone()[0]
        # In memory, so a caller can ask "anything to report?" without a write transaction.
        self.unreported_drops = self._db.execute("SELECT 1 FROM dropped WHERE unreported > 0").fetchone() is not None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def append(self, topic: str, payload: bytes | Callable[[int], bytes], phase: str, enforce: bool = True) -> int:
        """Store durably, enforce the bounds, return the message's sequence number.

        ``payload`` may be a function of the sequence number, called inside the transaction that
        takes it: the number written into the message is then the one it is stored under.
        ``enforce=False`` stores without dropping anything (a drop report must not cause drops of
        its own); the next append enforces the bounds again."""
        now = self.clock()
        with self._lock, self._transaction():
            seq = self._db.execute(
                "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0), "
                "COALESCE((SELECT MAX(seq) FROM outbox), 0)) + 1"
            ).fetchone()[0]
            body = payload(seq) if callable(payload) else payload
            self._db.execute(
                "INSERT INTO outbox (seq, topic, payload, phase, created_at, size) VALUES (?, ?, ?, ?, ?, ?)",
                (seq, topic, body, phase, now, len(body) + len(topic)),
            )
            if enforce:
                self._enforce_bounds(now)
        return int(seq)

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[OutboxMessage]:
        """Messages in sending order, starting after ``after_seq``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload, phase, created_at FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [OutboxMessage(seq, topic, bytes(payload), phase, created) for seq, topic, payload, phase, created
                in rows]

    def remove(self, seq: int) -> None:
        """The broker acknowledged ``seq``: it no longer needs to survive a restart."""
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def depth(self) -> OutboxDepth:
        with self._lock:
            count, size, oldest = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(created_at) FROM outbox"
            ).fetchone()
        return OutboxDepth(count, size, max(0.0, self.clock() - oldest) if oldest is not None else 0.0)

    def dropped_totals(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT phase, total FROM dropped").fetchall())

    def take_drop_report(self) -> DropReport:
        """Drops since the last call (false when nothing was dropped)."""
        with self._lock, self._transaction():
            phases = dict(self._db.execute("SELECT phase, unreported FROM dropped WHERE unreported > 0").fetchall())
            span = self._db.execute("SELECT first_at, last_at FROM dropped_span").fetchone()
            self._db.execute("UPDATE dropped SET unreported = 0")
            self._db.execute("DELETE FROM dropped_span")
            self.unreported_drops = False
        return DropReport(phases, *(span or (None, None)))

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def _enforce_bounds(self, now: float) -> None:
        drops: Counter[str] = Counter()
        created: list[float] = []
        keep = ",".join("?" * len(KEEP_PAST_AGE))
        expired = self._db.execute(
            f"SELECT seq, phase, created_at FROM outbox WHERE created_at < ? AND phase NOT IN ({keep})",
            (now - self.max_age_s, *KEEP_PAST_AGE),
        ).fetchall()
        for seq, phase, created_at in expired:
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            drops[phase] += 1
            created.append(created_at)
        total = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM outbox").fetchone()[0]
        while total > self.max_bytes:
            victim = self._next_victim()
            if victim is None:
                break
            seq, phase, size, created_at = victim
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            drops[phase] += 1
            created.append(created_at)
            total -= size
        if created:
            self.unreported_drops = True
            self._db.execute(
                "INSERT INTO dropped_span (id, first_at, last_at) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "first_at = MIN(first_at, excluded.first_at), last_at = MAX(last_at, excluded.last_at)",
                (min(created), max(created)),
            )
        for phase, count in drops.items():
            self._db.execute(
                "INSERT INTO dropped (phase, total, unreported) VALUES (?, ?, ?) "
                "ON CONFLICT (phase) DO UPDATE SET total = total + excluded.total, "
                "unreported = unreported + excluded.unreported",
                (phase, count, count),
            )

    def _next_victim(self) -> tuple[int, str, int, float] | None:
        for phase in DROP_ORDER:
            row = self._db.execute(
                "SELECT seq, phase, size, created_at FROM outbox WHERE phase = ? ORDER BY seq LIMIT 1", (phase,)
            ).fetchone()
            if row:
                return row
        listed = ",".join("?" * len(DROP_ORDER))
        return self._db.execute(
            f"SELECT seq, phase, size, created_at FROM outbox WHERE phase NOT IN ({listed}) ORDER BY seq LIMIT 1",
            DROP_ORDER,
        ).fetchone()


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (or ROLLBACK on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
