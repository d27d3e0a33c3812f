"""Gaps in each edge node's event sequence numbers: how the server learns that events were lost.

Every event a node publishes through its outbox carries the node's next ``seq`` (edge/delivery/outbox.py),
kept on disk across restarts. QoS 1 and the outbox make a loss rare, but not impossible: the
outbox drops events when an outage outlasts its bounds (and says so with an
``edge_outbox_overflow`` event), a disk can be replaced. A number the server never received is
such a loss, or an event still on its way; a gap is recorded when a higher number arrives first,
logged, listed at ``GET /api/sequence-gaps``, and closed when late deliveries fill all of it.

The first number seen from a node is its baseline (a server that joins late does not report the
node's history as lost). Called once per ingest batch with the batch's newly stored events, the
work is set-based: a constant handful of statements per batch, whatever its size. The node rows
are locked (``FOR UPDATE`` on PostgreSQL), so replicas sharing the stream serialise per node.

A node whose outbox file is wiped (new disk, reinstall) numbers from 1 again. Each outbox has an
``epoch`` (Event.epoch) made with it, so an epoch the server has not seen from the node is a **reset**,
not a gap: one log line, the node's ``resets``/``reset_at``/``seq_before_reset`` (``GET
/api/node-sequences`` shows ``status: reset``), the new numbering starting from 0 (a lost event 1 is
still a gap), and the old numbering's open gaps closed as they are (what they miss went with the old
outbox; ``missing`` keeps the count). Late events of a past epoch are logged and otherwise ignored. The
first epoch seen from a node is adopted without a reset (a server that joins late, an edge upgraded
from before epochs). Events without an epoch are numbered as before: a number at or below the highest
that falls in no open gap is logged as out of range and otherwise ignored.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gridwatch.broker.contract import Event
from gridwatch.server.models import NodeSequence, SequenceGap

log = logging.getLogger(__name__)

NodeKey = tuple[str, str]
PAST_EPOCHS_KEPT = 20  # late events of an older epoch than these would be taken for a new reset


def observe(session: Session, events: Iterable[Event], now: datetime) -> list[dict[str, Any]]:
    """Record the sequence numbers of newly stored events; return the gaps this batch opened (as rows)."""
    seen: dict[NodeKey, dict[str | None, set[int]]] = defaultdict(lambda: defaultdict(set))
    for event in events:
        if event.seq is not None:
            seen[(event.site_id, event.node_id)][event.epoch].add(event.seq)
    if not seen:
        return []
    nodes = _lock_nodes(session, sorted(seen), now)
    opened: list[dict[str, Any]] = []
    late: dict[NodeKey, list[int]] = {}
    for key, epochs in seen.items():
        node = nodes[key]
        for epoch, seqs in sorted(epochs.items(), key=lambda item: item[0] != node.epoch):  # current epoch first
            if _numbering(session, node, epoch, seqs, now):
                _number(node, key, seqs, opened, late, now)
    if late:
        _fill(session, late, now)
    if opened:
        session.execute(sa.insert(SequenceGap), opened)  # one executemany, however many gaps
        _log_opened(opened)
    session.flush()
    return opened


def _numbering(session: Session, node: NodeSequence, epoch: str | None, seqs: set[int], now: datetime) -> bool:
    """Whether ``seqs`` count in the node's current numbering; a new epoch resets it first."""
    if epoch is None or epoch == node.epoch:
        return True
    if node.epoch is None:
        node.epoch = epoch  # the first epoch this server sees from the node: nothing to compare with
        return True
    if epoch in node.past_epochs:
        log.info("node %s/%s: %d late events of a past outbox epoch %s; not numbered", node.site_id, node.node_id,
                 len(seqs), epoch)
        return False
    closed = session.execute(
        sa.update(SequenceGap)
        .where(SequenceGap.site_id == node.site_id, SequenceGap.node_id == node.node_id,
               SequenceGap.closed_at.is_(None))
        .values(closed_at=now)
    ).rowcount
    log.warning("node %s/%s: sequence reset (new outbox epoch %s after seq %s of %s): the node numbers from 1 "
                "again; %d open gaps of the old numbering closed", node.site_id, node.node_id, epoch,
                node.last_seq, node.epoch, closed)
    node.past_epochs = [*node.past_epochs, node.epoch][-PAST_EPOCHS_KEPT:]
    node.epoch, node.seq_before_reset, node.last_seq = epoch, node.last_seq, 0
    node.resets, node.reset_at, node.updated_at = node.resets + 1, now, now
    return True


def _number(node: NodeSequence, key: NodeKey, seqs: set[int], opened: list[dict[str, Any]],
            late: dict[NodeKey, list[int]], now: datetime) -> None:
    """Advance the node's highest number; open a gap for every number skipped, queue older ones as late."""
    high = node.last_seq
    fresh = sorted(s for s in seqs if high is None or s > high)
    if high is not None and (older := sorted(s for s in seqs if s <= high)):
        late.setdefault(key, []).extend(older)
    if not fresh:
        return
    previous = fresh[0] - 1 if high is None else high
    for seq in fresh:
        if seq > previous + 1:
            opened.append({"site_id": key[0], "node_id": key[1], "first_seq": previous + 1, "last_seq": seq - 1,
                           "missing": seq - 1 - previous, "filled": [], "detected_at": now, "closed_at": None})
        previous = seq
    node.last_seq, node.updated_at = fresh[-1], now


def _log_opened(opened: list[dict[str, Any]], shown: int = 5) -> None:
    """One line per node and batch: a burst of losses must not flood the log."""
    by_node: dict[NodeKey, list[dict[str, Any]]] = defaultdict(list)
    for gap in opened:
        by_node[(gap["site_id"], gap["node_id"])].append(gap)
    for (site, node), gaps in by_node.items():
        ranges = ", ".join(f"{g['first_seq']}..{g['last_seq']}" for g in gaps[:shown])
        more = f" and {len(gaps) - shown} more" if len(gaps) > shown else ""
        log.warning("node %s/%s skipped events %s%s (%d missing): lost, or still on their way", site, node,
                    ranges, more, sum(g["missing"] for g in gaps))


def _lock_nodes(session: Session, keys: list[NodeKey], now: datetime) -> dict[NodeKey, NodeSequence]:
    """The batch's node rows, locked; rows for nodes never seen are created first (race-free)."""
    nodes = _select_for_update(session, keys)
    if missing := [key for key in keys if key not in nodes]:
        insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        session.execute(
            insert(NodeSequence).on_conflict_do_nothing(index_elements=["site_id", "node_id"]),
            [{"site_id": site, "node_id": node, "last_seq": None, "updated_at": now} for site, node in missing],
        )
        nodes |= _select_for_update(session, missing)
    return nodes


def _select_for_update(session: Session, keys: list[NodeKey]) -> dict[NodeKey, NodeSequence]:
    query = (sa.select(NodeSequence).where(sa.tuple_(NodeSequence.site_id, NodeSequence.node_id).in_(keys))
             .order_by(NodeSequence.site_id, NodeSequence.node_id).with_for_update())
    return {(row.site_id, row.node_id): row for row in session.scalars(query)}


def _fill(session: Session, late: dict[NodeKey, list[int]], now: datetime) -> None:
    """Late deliveries fill the open gaps they fall in; a gap with nothing missing is closed."""
    gaps = session.scalars(
        sa.select(SequenceGap)
        .where(sa.tuple_(SequenceGap.site_id, SequenceGap.node_id).in_(list(late)), SequenceGap.closed_at.is_(None))
        .order_by(SequenceGap.id).with_for_update()
    ).all()
    by_node: dict[NodeKey, list[SequenceGap]] = defaultdict(list)
    for gap in gaps:
        by_node[(gap.site_id, gap.node_id)].append(gap)
    for key, seqs in late.items():
        for seq in seqs:
            gap = next((g for g in by_node[key] if g.first_seq <= seq <= g.last_seq), None)
            if gap is None:
                log.info("node %s/%s: seq %d is in no open gap (a resend, or the node's numbering restarted)",
                         *key, seq)
                continue
            if seq in gap.filled:
                continue
            gap.filled = [*gap.filled, seq]  # a new list: the JSON column sees the change
            gap.missing -= 1
            if gap.missing == 0:
                gap.closed_at = now
                log.info("node %s/%s: gap %d..%d closed, every event arrived late", *key, gap.first_seq,
                         gap.last_seq)


def gaps_query(site_id: str | None = None, node_id: str | None = None, open_only: bool = False) -> sa.Select:
    """Gaps, newest first, for the REST listing."""
    query = sa.select(SequenceGap).order_by(SequenceGap.id.desc())
    if site_id is not None:
        query = query.where(SequenceGap.site_id == site_id)
    if node_id is not None:
        query = query.where(SequenceGap.node_id == node_id)
    if open_only:
        query = query.where(SequenceGap.closed_at.is_(None))
    return query
