"""The REST API, snapshots, the console and the live stream, on a real app with a real database."""

from __future__ import annotations

import hashlib
import io
import json
import re
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image

from gridwatch.broker import topics
from gridwatch.broker.contract import Event, EventType, Phase, SnapshotRef
from gridwatch.server.api.routers.console import CONSOLE_DIR as CONSOLE
from gridwatch.server.ingest.snapshots import MAX_SNAPSHOT_BYTES
from gridwatch.server.ingest.store import Batch, IngestStatus, store_message, store_messages
from gridwatch.server.runner import ServerRunner
from gridwatch.server.settings import ServerSettings
from tests.auth_helpers import PASSWORD, login

SITE, NODE = "site-a", "node-1"
T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


def image_bytes(fmt: str = "JPEG", color: tuple[int, int, int] = (200, 30, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 18), color).save(buffer, format=fmt)
    return buffer.getvalue()


def make_event(camera: str = "cam-1", phase: Phase = Phase.START, incident_id: str | None = None,
               seconds: float = 0, event_type: EventType = EventType.LOITERING,
               snapshot: str | None = None) -> Event:
    return Event(
        incident_id=incident_id or uuid.uuid4().hex,
        type=event_type,
        phase=phase,
        site_id=SITE,
        node_id=NODE,
        camera_id=camera,
        zone_id="gate",
        started_at=T0 + timedelta(minutes=len(camera)),
        observed_at=T0 + timedelta(seconds=seconds),
        attributes={"dwell_s": 90.0 + seconds},
        snapshot=SnapshotRef(sha256=snapshot, width=32, height=18) if snapshot else None,
    )


def ingest(client: Client, event: Event):
    with client.app.state.sessions() as session:
        return store_message(session, topics.events_topic(event.site_id, event.node_id, event.camera_id),
                             event.to_json().encode())


class Client(httpx.Client):
    """An HTTP client for a running server that can also reach its app (to ingest directly)."""

    app: FastAPI


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    """A real server without MQTT, on SQLite (the REST shape does not depend on the backend)."""
    runner = ServerRunner(ServerSettings(data_dir=tmp_path / "data", port=0, admin_password=PASSWORD),
                          start_ingest=False)
    runner.start()
    try:
        with Client(base_url=runner.url, timeout=10) as http:
            http.app = runner.app
            me = http.post("/api/auth/login", json={"username": "admin", "password": PASSWORD})
            http.headers["X-CSRF-Token"] = me.json()["csrf_token"]
            yield http
    finally:
        runner.stop()


def assert_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["status"] == status
    assert body["error"]["code"] and body["error"]["message"]
    return body["error"]


# -- snapshots ------------------------------------------------------------------------------------


def test_snapshot_round_trip_is_content_addressed_and_idempotent(client: Client, tmp_path: Path) -> None:
    jpeg = image_bytes()
    digest = hashlib.sha256(jpeg).hexdigest()

    created = client.put(f"/api/snapshots/{digest}", content=jpeg, headers={"Content-Type": "image/jpeg"})
    assert created.status_code == 201, created.text
    assert created.json() == {"sha256": digest, "size": len(jpeg), "content_type": "image/jpeg",
                              "created": True, "url": f"/api/snapshots/{digest}"}
    assert (tmp_path / "data" / "snapshots" / digest[:2] / f"{digest}.jpg").read_bytes() == jpeg

    again = client.put(f"/api/snapshots/{digest}", content=jpeg)
    assert again.status_code == 200 and again.json()["created"] is False

    fetched = client.get(f"/api/snapshots/{digest}")
    assert fetched.status_code == 200
    assert fetched.content == jpeg
    assert fetched.headers["content-type"] == "image/jpeg"
    assert fetched.headers["cache-control"] == "private, no-cache"  # each view reaches the evidence access log
    assert Image.open(io.BytesIO(fetched.content)).size == (32, 18)


def test_png_snapshots_are_accepted(client: Client) -> None:
    png = image_bytes("PNG")
    digest = hashlib.sha256(png).hexdigest()
    assert client.put(f"/api/snapshots/{digest}", content=png).status_code == 201
    fetched = client.get(f"/api/snapshots/{digest}")
    assert fetched.headers["content-type"] == "image/png" and fetched.content == png


def test_snapshot_upload_rejections(client: Client, tmp_path: Path) -> None:
    jpeg = image_bytes()
    other = hashlib.sha256(b"something else").hexdigest()
    error = assert_error(client.put(f"/api/snapshots/{other}", content=jpeg), 400)
    assert error["code"] == "sha256_mismatch"

    text = b"GIF89a? no: just text pretending to be a picture"
    error = assert_error(client.put(f"/api/snapshots/{hashlib.sha256(text).hexdigest()}", content=text), 415)
    assert error["code"] == "unsupported_media_type"

    huge = b"\xff\xd8\xff" + bytes(MAX_SNAPSHOT_BYTES)
    assert_error(client.put(f"/api/snapshots/{hashlib.sha256(huge).hexdigest()}", content=huge), 413)

    assert_error(client.put("/api/snapshots/not-a-hash", content=jpeg), 422)
    assert_error(client.put(f"/api/snapshots/{hashlib.sha256(jpeg).hexdigest().upper()}", content=jpeg), 422)
    snapshots = tmp_path / "data" / "snapshots"
    assert not snapshots.exists() or not any(p.is_file() for p in snapshots.rglob("*"))


def test_snapshot_reads_validate_the_hash(client: Client) -> None:
    missing = hashlib.sha256(b"never uploaded").hexdigest()
    assert_error(client.get(f"/api/snapshots/{missing}"), 404)
    assert_error(client.get("/api/snapshots/" + "g" * 64), 422)
    assert_error(client.get("/api/snapshots/" + "a" * 63), 422)
    # Traversal attempts never reach the file system: no route (404) or a refused id (422).
    for path in ("/api/snapshots/..%2F..%2Fgridwatch.db", "/api/snapshots/..", "/api/snapshots/%2e%2e"):
        assert client.get(path).status_code in (404, 422)
    assert client.get("/api/snapshots/../../gridwatch.db").status_code == 404


# -- REST listings ---------------------------------------------------------------------------------


def test_listings_filters_and_detail(client: Client) -> None:
    older = make_event("cam-1")
    newer = make_event("cam-22", event_type=EventType.COURIER_ENTRY)
    ingest(client, older)
    end = make_event("cam-1", Phase.END, older.incident_id, seconds=40)
    ingest(client, end)
    ingest(client, newer)

    tickets = client.get("/api/tickets").json()
    assert tickets["total"] == 2
    assert [t["incident_id"] for t in tickets["items"]] == [newer.incident_id, older.incident_id]
    assert client.get("/api/tickets", params={"type": "courier_entry"}).json()["total"] == 1
    # Courier entries register at once; daytime loitering that ended is no case (立案条件: at night).
    assert [t["id"] for t in client.get("/api/tickets", params={"stage": "registered"}).json()["items"]] == [
        tickets["items"][0]["id"]]
    assert [t["id"] for t in client.get("/api/tickets", params={"stage": "voided"}).json()["items"]] == [
        tickets["items"][1]["id"]]
    assert client.get("/api/tickets", params={"stage": "closed"}).json()["total"] == 0
    page = client.get("/api/tickets", params={"limit": 1, "offset": 1}).json()
    assert [t["incident_id"] for t in page["items"]] == [older.incident_id] and page["total"] == 2

    ticket_id = tickets["items"][1]["id"]
    detail = client.get(f"/api/tickets/{ticket_id}").json()
    assert detail["event_count"] == 2 and detail["ended_at"] is not None
    assert [e["phase"] for e in detail["events"]] == ["start", "end"]

    events = client.get("/api/events").json()
    assert events["total"] == 3
    assert events["items"][0]["event_id"] == end.event_id  # newest observation first
    assert client.get("/api/events", params={"camera_id": "cam-22"}).json()["total"] == 1
    assert client.get("/api/events", params={"type": "loitering"}).json()["total"] == 2
    assert client.get("/api/events", params={"ticket_id": ticket_id}).json()["total"] == 2
    one = client.get(f"/api/events/{older.event_id}").json()
    assert one["payload"] == older.to_dict() and one["ticket_id"] == ticket_id

    assert_error(client.get("/api/tickets/999999"), 404)
    assert_error(client.get(f"/api/events/{uuid.uuid4().hex}"), 404)
    assert_error(client.get("/api/tickets", params={"limit": 0}), 422)
    assert_error(client.get("/api/tickets/not-a-number"), 422)
    assert_error(client.get("/api/nothing-here"), 404)


def test_dead_letters_show_text_or_base64(client: Client) -> None:
    topic = topics.events_topic(SITE, NODE, "cam-1")
    with client.app.state.sessions() as session:
        assert store_message(session, topic, b"not json").status is IngestStatus.DEAD_LETTERED
        assert store_message(session, topic, b"\xff\xd8 binary").status is IngestStatus.DEAD_LETTERED
    letters = client.get("/api/dead-letters").json()
    assert letters["total"] == 2
    binary, text = letters["items"]
    assert text["payload_text"] == "not json" and text["payload_base64"] is None
    assert binary["payload_text"] is None and binary["payload_base64"] == "/9ggYmluYXJ5"
    assert "UTF-8" in binary["reason"]


def test_health_reports_the_database_and_counts(client: Client) -> None:
    ingest(client, make_event())
    health = client.get("/api/health").json()
    assert health["database"] == {"ok": True, "backend": "sqlite", "error": None}
    assert health["counts"] == {"events": 1, "tickets": 1, "dead_letters": 0}
    assert health["mqtt"]["enabled"] is False
    assert health["status"] == "ok"


def test_the_api_works_on_each_backend(database_url: str, tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path / "data", database_url=database_url, port=0,
                              admin_password=PASSWORD)
    with ServerRunner(settings, start_ingest=False) as runner, \
            Client(base_url=runner.url, timeout=10) as client:
        client.app = runner.app
        client.post("/api/auth/login", json={"username": "admin", "password": PASSWORD})
        event = make_event()
        ingest(client, event)
        ingest(client, event)  # duplicate
        tickets = client.get("/api/tickets").json()
        assert tickets["total"] == 1 and tickets["items"][0]["event_count"] == 1
        assert datetime.fromisoformat(tickets["items"][0]["opened_at"]) == event.started_at
        backend = client.get("/api/health").json()["database"]["backend"]
        assert backend == database_url.split(":")[0].split("+")[0]


# -- console -------------------------------------------------------------------------------------


def test_console_page_and_its_assets_are_served_locally(client: Client) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<html lang="zh-CN">' in html and "网格工单" in html
    assert "http://" not in html and "https://" not in html  # no CDN: works on an offline LAN
    assets = ["/console/console.css", "/console/js/app.js", "/console/i18n/zh-CN.json", "/console/i18n/en.json",
              *(f"/console/js/{p.relative_to(CONSOLE / 'js').as_posix()}" for p in (CONSOLE / "js").rglob("*.js"))]
    assert '"/console/js/app.js"' in html and '"/console/console.css"' in html
    for asset in assets:
        response = httpx.get(f"{client.base_url}{asset}")  # static assets need no login
        assert response.status_code == 200, asset
        # The only URL allowed is the SVG namespace name, which is never fetched.
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", response.text), asset
    assert "EventSource" in client.get("/console/js/live.js").text


# -- live stream -----------------------------------------------------------------------------------


def read_sse(lines: Iterator[str]) -> dict[str, str]:
    """The next complete SSE message (comment-only blocks skipped)."""
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "event" in fields:
                return fields
            fields = {}
        elif not line.startswith(":") and ":" in line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
    raise AssertionError("the stream ended")


def test_stream_announces_created_and_updated_tickets(tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path / "data", port=0, admin_password=PASSWORD)
    runner = ServerRunner(settings, start_ingest=False)
    runner.start()
    try:
        with closing(login(runner.url, "admin")) as http, http.stream("GET", "/api/stream") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            assert next(lines) == "retry: 3000"  # subscribed from here on

            start = make_event("cam-7", snapshot="ab" * 32)
            outcome = ingest_via(runner, start)
            stored = read_sse(lines)  # the live feed's camera event comes first
            assert stored["event"] == "event"
            assert json.loads(stored["data"])["event_id"] == start.event_id
            message = read_sse(lines)
            assert message["event"] == "ticket"
            data = json.loads(message["data"])
            opened = read_sse(lines)  # then the audit entry of the ticket's opening
            assert opened["event"] == "transition"
            assert json.loads(opened["data"])["action"] == "open"
            assert data["action"] == "created"
            assert data["ticket"]["id"] == outcome.ticket_id
            assert data["ticket"]["incident_id"] == start.incident_id
            assert data["ticket"]["snapshot_sha256"] == "ab" * 32
            assert data["ticket"]["attributes"] == {"dwell_s": 90.0}

            ingest_via(runner, make_event("cam-7", Phase.UPDATE, start.incident_id, seconds=12))
            assert read_sse(lines)["event"] == "event"
            data = json.loads(read_sse(lines)["data"])
            assert data["action"] == "updated"
            assert data["ticket"]["event_count"] == 2 and data["ticket"]["attributes"] == {"dwell_s": 102.0}
            # The REST view agrees with what was streamed.
            assert http.get(f"/api/tickets/{outcome.ticket_id}").json()["event_count"] == 2
    finally:
        runner.stop()
    assert runner.app.state.broadcaster.subscriber_count == 0


def ingest_via(runner: ServerRunner, event: Event):
    """What the MQTT worker does for each batch: store, then announce after the commit."""
    with runner.app.state.sessions() as session:
        batch: Batch = store_messages(
            session, [(topics.events_topic(event.site_id, event.node_id, event.camera_id), event.to_json().encode())])
    [outcome] = batch.outcomes
    assert outcome.status is IngestStatus.STORED
    runner.app.state.on_batch(batch)
    return outcome
