"""What per-node sequence tracking (server/ingest/sequence.py) costs ingest: the same batches stored with
and without ``seq``, interleaved, on PostgreSQL.

    .venv/bin/python bench/sequence_bench.py [--batch 1000] [--rounds 6] [--nodes 4] [--gap-every 50]

Each round stores one batch of numbered events and one of unnumbered ones (otherwise identical:
new incidents, ``start`` events, one node in ``--nodes`` per event) through ``store_messages``,
alternating which goes first; numbered batches skip one number every ``--gap-every`` events, so
gaps are opened too. The ratio numbered/unnumbered of the median batch times is the overhead.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa

from gridwatch.broker import topics
from gridwatch.broker.contract import Event
from gridwatch.server.db import create_engine, session_factory, upgrade
from gridwatch.server.ingest.store import store_messages

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def batch(size: int, nodes: int, numbered: bool, next_seq: dict[str, int], gap_every: int) -> list[tuple[str, bytes]]:
    now = datetime.now(UTC)
    messages = []
    for i in range(size):
        node = f"node-{i % nodes}"
        seq = None
        if numbered:
            next_seq[node] += 2 if i % gap_every == gap_every - 1 else 1
            seq = next_seq[node]
        event = Event(incident_id=uuid.uuid4().hex, type="camera_tamper", phase="start", site_id="bench",
                      node_id=node, camera_id=f"cam-{i % 7}", zone_id="camera", started_at=now, observed_at=now,
                      seq=seq)
        messages.append((topics.events_topic("bench", node, event.camera_id), event.to_json().encode()))
    return messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--gap-every", type=int, default=50)
    args = parser.parse_args()
    name = f"gridwatch_seqbench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(url)
        engine = create_engine(url)
        sessions = session_factory(engine)
        next_seq = {f"node-{n}": 0 for n in range(args.nodes)}
        times: dict[bool, list[float]] = {True: [], False: []}
        for round_ in range(args.rounds + 1):
            for numbered in ((True, False) if round_ % 2 else (False, True)):
                messages = batch(args.batch, args.nodes, numbered, next_seq, args.gap_every)
                started = time.perf_counter()
                with sessions() as session:
                    store_messages(session, messages)
                if round_:  # the first round warms caches and creates the node rows
                    times[numbered].append(time.perf_counter() - started)
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    with_seq, without = statistics.median(times[True]), statistics.median(times[False])
    print(f"{'batch':>8} {'numbered ms':>12} {'unnumbered ms':>14} {'ratio':>6}")
    print(f"{args.batch:>8} {with_seq * 1000:>12.1f} {without * 1000:>14.1f} {with_seq / without:>6.3f}")
    print(f"sequence tracking: {with_seq / without:.3f}x the ingest time of unnumbered events "
          f"({args.rounds} rounds of {args.batch}, {args.nodes} nodes, a gap every {args.gap_every} events)")


if __name__ == "__main__":
    main()
