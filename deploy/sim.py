"""``gridwatch sim``: a district's edge nodes and cameras from one machine, bounded in time.

Thousands of simulated cameras (the seed district: 6,700 cameras on 1,188 grid nodes) publish what
real edge boxes publish, built from the real contract: a retained camera status every
``heartbeat_s`` and incidents (loitering, blocked fire lane, courier) as ``start``, ``update`` every
``update_s``, ``end``, plus bursts (several cameras of one node at once). Simulated time runs
``time_factor`` times faster than the wall clock. A few paho clients multiplex all node ids: a
broker does not care which connection a topic comes from, and one machine cannot hold thousands
of sockets and threads for nothing.

Like the edge outbox, a publisher keeps every event until the broker acknowledges it (PUBACK):
when its node dies it moves to the next node of the cluster and paho resends what was in flight,
and at the end anything still unacknowledged is published again; ``event_id`` makes the repeats
harmless. The report compares what was sent and acknowledged with what the server's database
holds: stored, lost (acknowledged but never stored), ticketed, and duplicate tickets. Each
incident has its own fingerprint (its own zone), so one incident = one ticket exactly, and any
fingerprint with two tickets is a duplicate.
"""

from __future__ import annotations

import heapq
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import click
import paho.mqtt.client as mqtt

from gridwatch.broker import topics
from gridwatch.broker.contract import CameraStatus, DetectedObject, Event, EventType, NodeState, Phase
from gridwatch.broker.mqtt_url import connect_client, new_client, parse_mqtt_url

log = logging.getLogger(__name__)

SEED_CAMERAS = 6700
SEED_NODES = 1188
NODES_PER_SITE = 12  # a compound (site) has about a dozen grid nodes
# (type, share of incidents, object class, zone kind, duration range in simulated seconds)
MIX = (
    (EventType.LOITERING, 0.5, "person", "lobby", (60.0, 400.0)),
    (EventType.FIRE_LANE_BLOCKED, 0.3, "car", "lane", (120.0, 500.0)),
    (EventType.COURIER_ENTRY, 0.2, "person", "gate", (5.0, 30.0)),
)
RESEND_ROUNDS = 5


@dataclass
class SimConfig:
    """What to simulate; every count is validated with the option's name in the message."""

    mqtt_urls: list[str]
    cameras: int = SEED_CAMERAS
    nodes: int = SEED_NODES
    duration_s: float = 60.0  # wall clock
    time_factor: float = 10.0  # simulated seconds per wall second
    heartbeat_s: float = 30.0  # simulated
    update_s: float = 10.0  # simulated
    incidents_per_hour: float = 3000 / 24  # simulated; the seed's ~3,000 cases a day
    burst_every_s: float = 600.0  # simulated; 0 = no bursts
    burst_size: int = 8
    clients: int = 8
    seed: int = 1
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    def __post_init__(self) -> None:
        checks = {
            "mqtt_urls": bool(self.mqtt_urls), "cameras": self.cameras >= 1, "nodes": 1 <= self.nodes <= self.cameras,
            "duration_s": self.duration_s > 0, "time_factor": self.time_factor > 0,
            "heartbeat_s": self.heartbeat_s > 0, "update_s": self.update_s > 0,
            "incidents_per_hour": self.incidents_per_hour >= 0, "burst_every_s": self.burst_every_s >= 0,
            "burst_size": self.burst_size >= 1, "clients": 1 <= self.clients <= self.nodes,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name}: invalid value {getattr(self, name)!r}")
        for url in self.mqtt_urls:
            parse_mqtt_url(url)  # raises naming the URL

    @property
    def sim_duration_s(self) -> float:
        return self.duration_s * self.time_factor


@dataclass(frozen=True)
class Camera:
    site_id: str
    node_id: str
    camera_id: str


@dataclass
class Incident:
    """One planned incident: its events are generated as simulated time reaches them."""

    camera: Camera
    type: EventType
    object_class: str
    zone_id: str
    start_s: float
    end_s: float
    incident_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    track_id: int = 1


def district(config: SimConfig) -> list[Camera]:
    """Cameras spread over nodes (as evenly as counts allow), nodes grouped into sites."""
    cameras = []
    for n in range(config.cameras):
        node = n % config.nodes
        cameras.append(Camera(f"sim{config.run_id}-site{node // NODES_PER_SITE:03d}", f"grid{node:04d}",
                              f"cam{n // config.nodes:02d}"))
    return cameras


def plan_incidents(config: SimConfig, cameras: list[Camera], rng: random.Random) -> list[Incident]:
    """Poisson-ish arrivals at ``incidents_per_hour`` plus bursts; every incident ends within the run."""
    horizon = config.sim_duration_s * 0.85  # leave time for the last ends and their acknowledgements
    incidents: list[Incident] = []
    zone_counter = 0

    def add(camera: Camera, at: float, kind: tuple) -> None:
        nonlocal zone_counter
        event_type, _share, object_class, zone_kind, (low, high) = kind
        zone_counter += 1
        end = min(at + rng.uniform(low, high), horizon)
        incidents.append(Incident(camera, event_type, object_class, f"{zone_kind}-{zone_counter}", at, max(end, at)))

    weights = [k[1] for k in MIX]
    rate = config.incidents_per_hour / 3600.0
    t = rng.expovariate(rate) if rate > 0 else horizon
    while t < horizon:
        add(rng.choice(cameras), t, rng.choices(MIX, weights)[0])
        t += rng.expovariate(rate)
    if config.burst_every_s > 0:
        by_node: dict[str, list[Camera]] = {}
        for camera in cameras:
            by_node.setdefault(camera.node_id, []).append(camera)
        t = rng.uniform(0, config.burst_every_s)
        while t < horizon:
            kind = rng.choices(MIX, weights)[0]
            node_cameras = by_node[rng.choice(sorted(by_node))]
            for i in range(config.burst_size):
                add(node_cameras[i % len(node_cameras)], t + rng.uniform(0, 5), kind)
            t += config.burst_every_s
    return incidents


@dataclass
class Tally:
    """What one publisher sent; merged into the report."""

    events: dict[str, mqtt.MQTTMessageInfo] = field(default_factory=dict)  # event_id -> last publish
    payloads: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    heartbeats: list[mqtt.MQTTMessageInfo] = field(default_factory=list)
    publishes: int = 0
    failovers: int = 0


class Publisher(threading.Thread):
    """One paho client for a share of the district's nodes, failing over between broker nodes."""

    def __init__(self, index: int, config: SimConfig, cameras: list[Camera], incidents: list[Incident],
                 origin: datetime, stop: threading.Event) -> None:
        super().__init__(name=f"gridwatch-sim-{index}", daemon=True)
        self.config = config
        self.cameras = cameras
        self.origin = origin
        self.stop_event = stop
        self.tally = Tally()
        self._endpoints = [parse_mqtt_url(u) for u in config.mqtt_urls]
        self._node = index % len(self._endpoints)
        rng = random.Random(config.seed * 1000 + index)
        self._queue: list[tuple[float, int, str, object]] = []
        self._seq = 0
        for camera in cameras:
            self._push(rng.uniform(0, config.heartbeat_s), "heartbeat", camera)
        for incident in incidents:
            self._push(incident.start_s, Phase.START.value, incident)
        client = new_client(f"gridwatch-sim-{config.run_id}-{index}")
        client.max_inflight_messages_set(200)
        client.reconnect_delay_set(0.2, 2)
        client.on_connect = lambda *_a: None  # connect_client wraps these (MQTT 5 or 3.1.1)
        client.on_disconnect = lambda *_a: None
        client.on_connect_fail = self._on_connect_fail
        self.client = client
        self._closing = False

    def _push(self, at: float, kind: str, item: object) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind, item))

    # -- failover (paho's network thread) -----------------------------------------------------

    def _on_connect_fail(self, *_args: object) -> None:
        """Our node is unreachable (paho reconnects to the same host after a drop, and lands
        here when that fails): try the next node of the cluster."""
        if self._closing:
            return
        self._node = (self._node + 1) % len(self._endpoints)
        endpoint = self._endpoints[self._node]
        # paho's host/port setters refuse while it is (re)connecting, which is exactly when a failover
        # happens; its reconnect reads these fields, as use_mqtt311 relies on for the protocol.
        self.client._host, self.client._port = endpoint.host, endpoint.port
        self.tally.failovers += 1

    # -- publishing -----------------------------------------------------------------------------

    def start_client(self) -> None:
        connect_client(self.client, self._endpoints[self._node], keepalive=10)
        self.client.loop_start()

    def run(self) -> None:
        started = time.monotonic()
        while self._queue and not self.stop_event.is_set():
            now_s = (time.monotonic() - started) * self.config.time_factor
            if now_s >= self.config.sim_duration_s:
                break
            if self._queue[0][0] > now_s:
                wait = (self._queue[0][0] - now_s) / self.config.time_factor
                self.stop_event.wait(min(wait, 0.05))
                continue
            at, _seq, kind, item = heapq.heappop(self._queue)
            if kind == "heartbeat":
                self._heartbeat(at, item)  # type: ignore[arg-type]
            else:
                self._event(at, Phase(kind), item)  # type: ignore[arg-type]

    def _heartbeat(self, at: float, camera: Camera) -> None:
        status = CameraStatus(site_id=camera.site_id, node_id=camera.node_id, camera_id=camera.camera_id,
                              state=NodeState.ONLINE, at=self.origin + timedelta(seconds=at), frames_in=int(at * 25),
                              frames_detected=int(at * 5), inference_ms=18.0, fps_in=25.0, fps_processed=5.0,
                              fps_detected=2.0)
        topic = topics.camera_status_topic(camera.site_id, camera.node_id, camera.camera_id)
        self.tally.heartbeats.append(self._publish(topic, status.to_json().encode(), retain=True))
        self._push(at + self.config.heartbeat_s, "heartbeat", camera)

    def _event(self, at: float, phase: Phase, incident: Incident) -> None:
        observed = self.origin + timedelta(seconds=at)
        started = self.origin + timedelta(seconds=incident.start_s)
        event = Event(incident_id=incident.incident_id, type=incident.type, phase=phase,
                      site_id=incident.camera.site_id, node_id=incident.camera.node_id,
                      camera_id=incident.camera.camera_id, zone_id=incident.zone_id,
                      object=DetectedObject.model_validate({"class": incident.object_class,
                                                            "track_id": incident.track_id,
                                                            "box": (0.4, 0.5, 0.6, 0.9), "confidence": 0.8}),
                      started_at=started, observed_at=observed, ended_at=observed if phase is Phase.END else None,
                      attributes={"dwell_s": round(at - incident.start_s, 1)})
        topic = topics.events_topic(incident.camera.site_id, incident.camera.node_id, incident.camera.camera_id)
        payload = event.to_json().encode()
        self.tally.payloads[event.event_id] = (topic, payload)
        self.tally.events[event.event_id] = self._publish(topic, payload)
        if phase is not Phase.END:
            following = at + self.config.update_s
            if following < incident.end_s:
                self._push(following, Phase.UPDATE.value, incident)
            else:
                self._push(incident.end_s, Phase.END.value, incident)

    def _publish(self, topic: str, payload: bytes, retain: bool = False) -> mqtt.MQTTMessageInfo:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc == mqtt.MQTT_ERR_NO_CONN:
            # paho keeps a QoS 1 message published while disconnected and sends it on reconnect.
            info.rc = mqtt.MQTT_ERR_AGAIN
        self.tally.publishes += 1
        return info

    def unacknowledged(self) -> list[str]:
        return [event_id for event_id, info in self.tally.events.items() if not info.is_published()]

    def heartbeats_pending(self) -> bool:
        return any(not info.is_published() for info in self.tally.heartbeats)

    def resend(self) -> int:
        """Publish again every event the broker never acknowledged (same event_id)."""
        missing = self.unacknowledged()
        for event_id in missing:
            topic, payload = self.tally.payloads[event_id]
            self.tally.events[event_id] = self._publish(topic, payload)
        return len(missing)

    def close(self) -> None:
        self._closing = True
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class SimResult:
    """What the run sent and what the broker acknowledged; :func:`check_database` adds the rest."""

    incidents: list[Incident]
    sent: set[str]
    acknowledged: set[str]
    heartbeats_sent: int
    heartbeats_acknowledged: int
    publishes: int
    failovers: int
    wall_s: float
    report: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"sent {len(self.sent):,} events for {len(self.incidents):,} incidents in {self.wall_s:.0f} s "
               f"({len(self.sent) / max(self.wall_s, 1e-9):,.0f} events/s), acknowledged {len(self.acknowledged):,}; "
               f"heartbeats sent {self.heartbeats_sent:,}, acknowledged {self.heartbeats_acknowledged:,}; "
               f"publishes incl. resends {self.publishes:,}; failovers {self.failovers}"]
        if self.report:
            out.append(", ".join(f"{k} {v:,}" for k, v in self.report.items()))
        return out


def run(config: SimConfig, *, drain_s: float = 60.0) -> SimResult:
    """Publish the whole run, then wait (up to ``drain_s``) for every event to be acknowledged."""
    rng = random.Random(config.seed)
    cameras = district(config)
    incidents = plan_incidents(config, cameras, rng)
    nodes = sorted({c.node_id for c in cameras})
    share = {node: i % config.clients for i, node in enumerate(nodes)}
    origin = datetime.now(UTC)
    stop = threading.Event()
    publishers = [Publisher(i, config, [c for c in cameras if share[c.node_id] == i],
                            [x for x in incidents if share[x.camera.node_id] == i], origin, stop)
                  for i in range(config.clients)]
    started = time.monotonic()
    for publisher in publishers:
        publisher.start_client()
    for publisher in publishers:
        publisher.start()
    for publisher in publishers:
        publisher.join(config.duration_s + 30)
    stop.set()
    deadline = time.monotonic() + drain_s
    rounds = 0
    while any(p.unacknowledged() or p.heartbeats_pending() for p in publishers) and time.monotonic() < deadline:
        time.sleep(min(5.0, drain_s / 4))
        if rounds < RESEND_ROUNDS:
            rounds += 1
            resent = sum(p.resend() for p in publishers)
            log.info("resent %d unacknowledged events (round %d)", resent, rounds)
    wall = time.monotonic() - started
    for publisher in publishers:
        publisher.close()
    sent = {e for p in publishers for e in p.tally.events}
    acknowledged = {e for p in publishers for e, info in p.tally.events.items() if info.is_published()}
    heartbeats = [h for p in publishers for h in p.tally.heartbeats]
    return SimResult(incidents=incidents, sent=sent, acknowledged=acknowledged, heartbeats_sent=len(heartbeats),
                     heartbeats_acknowledged=sum(1 for h in heartbeats if h.is_published()),
                     publishes=sum(p.tally.publishes for p in publishers),
                     failovers=sum(p.tally.failovers for p in publishers), wall_s=wall)


def check_database(result: SimResult, database_url: str, *, wait_s: float = 60.0) -> dict[str, int]:
    """Count against the server's database what became of the run: waits until every acknowledged
    event is stored, or until ``wait_s`` pass without one more event stored, then reports lost events
    and duplicate tickets. The window restarts on progress because a busy machine ingests slowly, and
    slow is not lost: only a stalled ingest ends the wait early."""
    import sqlalchemy as sa

    site_prefix = result.incidents[0].camera.site_id.split("-")[0] + "-%" if result.incidents else "%"
    engine = sa.create_engine(database_url)
    try:
        deadline = time.monotonic() + wait_s
        stored: set[str] = set()
        while True:
            with engine.connect() as conn:
                now_stored = set(conn.scalars(sa.text("SELECT event_id FROM events WHERE site_id LIKE :p"),
                                              {"p": site_prefix}))
            if len(now_stored) > len(stored):
                deadline = time.monotonic() + wait_s
            stored = now_stored
            if result.acknowledged <= stored or time.monotonic() > deadline:
                break
            time.sleep(1)
        incident_ids = [i.incident_id for i in result.incidents]
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT i.incident_id, i.ticket_id, i.suppressed_by, t.fingerprint FROM incidents i "
                "LEFT JOIN tickets t ON t.id = i.ticket_id WHERE i.site_id LIKE :p"), {"p": site_prefix}).all()
            tickets = conn.execute(sa.text(
                "SELECT fingerprint, count(*) FROM tickets WHERE site_id LIKE :p GROUP BY fingerprint"),
                {"p": site_prefix}).all()
    finally:
        engine.dispose()
    known = set(incident_ids)
    ticketed = sum(1 for r in rows if r.incident_id in known and r.ticket_id is not None)
    report = {
        "stored": len(stored & result.sent),
        "lost": len(result.acknowledged - stored),
        "never_acknowledged": len(result.sent - result.acknowledged),
        "incidents": len(known),
        "ticketed": ticketed,
        "tickets": sum(n for _f, n in tickets),
        "duplicate_tickets": sum(n - 1 for _f, n in tickets if n > 1),
        "unticketed": sum(1 for r in rows if r.incident_id in known and r.ticket_id is None and not r.suppressed_by),
    }
    result.report = report
    return report


@click.command("sim")
@click.option("--mqtt-url", "mqtt_urls", multiple=True, required=True,
              help="A broker node (repeat for every node of a cluster; publishers fail over between them).")
@click.option("--cameras", type=int, default=SEED_CAMERAS, show_default=True)
@click.option("--nodes", type=int, default=SEED_NODES, show_default=True, help="Edge nodes (one per grid).")
@click.option("--duration-s", type=float, default=60.0, show_default=True, help="Wall-clock length of the run.")
@click.option("--time-factor", type=float, default=10.0, show_default=True, help="Simulated seconds per second.")
@click.option("--heartbeat-s", type=float, default=30.0, show_default=True, help="Camera status period (simulated).")
@click.option("--incidents-per-hour", type=float, default=3000 / 24, show_default=True, help="Simulated time.")
@click.option("--burst-every-s", type=float, default=600.0, show_default=True, help="Simulated; 0 = none.")
@click.option("--clients", type=int, default=8, show_default=True, help="MQTT connections multiplexing the nodes.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--drain-s", type=float, default=60.0, show_default=True,
              help="After the run, how long to wait for acknowledgements (resending what is missing).")
@click.option("--db-url", default=None, help="The server's database: also report stored, lost, ticketed, duplicates.")
def sim(mqtt_urls: tuple[str, ...], cameras: int, nodes: int, duration_s: float, time_factor: float,
        heartbeat_s: float, incidents_per_hour: float, burst_every_s: float, clients: int, seed: int,
        drain_s: float, db_url: str | None) -> None:
    """Simulate a district's edge nodes and cameras publishing heartbeats and events."""
    try:
        config = SimConfig(list(mqtt_urls), cameras=cameras, nodes=nodes, duration_s=duration_s,
                           time_factor=time_factor, heartbeat_s=heartbeat_s, incidents_per_hour=incidents_per_hour,
                           burst_every_s=burst_every_s, clients=clients, seed=seed)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    result = run(config, drain_s=drain_s)
    if db_url:
        check_database(result, db_url)
    for line in result.lines():
        click.echo(line)
    if result.report.get("lost") or result.report.get("duplicate_tickets"):
        raise SystemExit(1)
