"""Open311 GeoReport v2 against a real server (uvicorn on a free port, SQLite and PostgreSQL), driven
by Open311 client libraries from PyPI: ``civicbot`` (JSON reads, creating a request) and
``georeport`` (public reads in XML). A created request must become a ticket the REST API shows.
Nothing is readable without a token unless the site turns public reading on, and then never a
security category."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import xmltodict
from civicbot.http import HttpError, HttpTransport, RateLimiter
from civicbot.open311 import Open311Client
from civicbot.registry import Endpoint
from georeport import GeoReport

from gridwatch.broker.contract import EventType
from gridwatch.server.db import create_engine, session_factory, upgrade
from gridwatch.server.ingest.store import store_message
from gridwatch.server.integrations.open311 import create_request
from gridwatch.server.models import EventRecord, Ticket, TicketTransition
from gridwatch.server.runner import ServerRunner
from gridwatch.server.settings import ServerSettings
from gridwatch.server.tickets.categories import NEVER_PUBLIC, CategoryTable, load_sample
from tests.auth_helpers import add_account, login
from tests.test_server_ingest import TOPIC, make_event

SITE = "site-a"


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerRunner]:
    runner = ServerRunner(ServerSettings(data_dir=tmp_path, database_url=database_url, port=0), start_ingest=False)
    runner.start()
    add_account(runner, "boss", "admin")
    yield runner
    runner.stop()


def _token(runner: ServerRunner, name: str, scopes: list[str]) -> str:
    admin = login(runner.url, "boss")
    response = admin.post("/api/tokens", json={"name": name, "scopes": scopes})
    admin.close()
    assert response.status_code == 201, response.text
    return response.json()["token"]


class _TokenClient(Open311Client):
    """civicbot sends ``api_key`` only on writes; GeoReport allows it on reads too, and a site that is
    not public needs it there."""

    def __init__(self, *args: Any, api_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.api_key = api_key

    def _params(self, lat: float | None = None, lng: float | None = None, **extra: Any) -> dict[str, Any]:
        return super()._params(lat, lng, api_key=self.api_key, **extra)


def _client(runner: ServerRunner, api_key: str | None = None) -> Open311Client:
    endpoint = Endpoint(id="gridwatch", name="GridWatch", base_url=f"{runner.url}/open311/v2", write=True)
    return _TokenClient(endpoint, HttpTransport(rate_limiter=RateLimiter(min_interval=0)), jurisdiction_id=SITE,
                        api_key=api_key)


def test_an_open311_client_lists_services_and_requests_and_creates_a_ticket(server: ServerRunner) -> None:
    token = _token(server, "civic-app", ["read", "open311:write"])
    with server.app.state.sessions() as session:  # a camera ticket, through the real ingest
        camera = store_message(session, TOPIC, make_event(observed_at=datetime.now(UTC),
                                                          started_at=datetime.now(UTC)).to_json())
    client = _client(server, token)

    services = client.list_services()
    assert sorted(s["service_code"] for s in services) == sorted(t.value for t in EventType)
    fire = next(s for s in services if s["service_code"] == "fire_lane_blocked")
    assert fire["service_name"] == "街面秩序 / 占用消防通道" and fire["metadata"] is False

    prepared = client.create_request("fire_lane_blocked", dry_run=False, confirm="SEND", api_key=token,
                                     validate_remote=True, lat=31.2304, lng=121.4737,
                                     address_string="3号楼北侧消防通道", description="一辆白色轿车停在消防通道上",
                                     media_url="https://example.org/p/1.jpg")
    created_id = prepared.response[0]["service_request_id"]
    assert created_id.isdigit() and created_id != str(camera.ticket_id)

    admin = login(server.url, "boss")  # the request is a ticket like any other
    ticket = admin.get(f"/api/tickets/{created_id}").json()
    admin.close()
    assert ticket["source"] == "open311" and ticket["stage"] == "reported"
    assert (ticket["site_id"], ticket["type"], ticket["camera_id"]) == (SITE, "fire_lane_blocked", None)
    assert (ticket["latitude"], ticket["longitude"], ticket["address"]) == (31.2304, 121.4737, "3号楼北侧消防通道")
    assert ticket["category"] == "街面秩序" and ticket["responsible_unit"] == "dept-fire-safety"
    with server.app.state.sessions() as session:
        trail = session.scalars(sa.select(TicketTransition).where(TicketTransition.ticket_id == int(created_id)))
        assert [(t.action, t.actor, t.details) for t in trail] == [("open", "civic-app", {"source": "open311"})]

    listed = client.list_requests(status="open")
    assert {r["service_request_id"] for r in listed} == {created_id, str(camera.ticket_id)}
    only_fire = client.list_requests(service_code="fire_lane_blocked")
    assert [r["service_request_id"] for r in only_fire] == [created_id]
    one = client.get_request(created_id)
    assert one["status"] == "open" and one["status_notes"] == "reported"
    assert one["description"] == "一辆白色轿车停在消防通道上" and one["lat"] == 31.2304
    assert one["media_url"] == "https://example.org/p/1.jpg"
    assert client.list_requests(status="closed") == []
    assert [r["service_request_id"] for r in client.list_requests(service_request_ids=[created_id, 999])] == [
        created_id]
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert client.list_requests(start_date=later) == []

    def xml(path: str) -> list[dict[str, Any]]:  # georeport sends no api_key on reads: the same GETs by hand
        response = httpx.get(f"{server.url}/open311/v2/{path}.xml", params={"jurisdiction_id": SITE, "api_key": token})
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/xml")
        root = xmltodict.parse(response.content)
        return next(iter(root.values()))[path.rstrip("s") if path == "services" else "request"]

    xml_services = xml("services")
    assert {s["service_code"] for s in xml_services} == {s["service_code"] for s in services}
    assert {s["metadata"] for s in xml_services} == {"false"}
    xml_requests = xml("requests")
    assert {r["service_request_id"] for r in xml_requests} == {created_id, str(camera.ticket_id)}
    camera_row = next(r for r in xml_requests if r["service_request_id"] == str(camera.ticket_id))
    assert camera_row["service_code"] == "loitering" and camera_row["lat"] is None


def test_bad_open311_requests_get_georeport_errors_naming_the_field(server: ServerRunner) -> None:
    writer = _token(server, "civic-app", ["open311:write"])
    reader = _token(server, "reader", ["read"])
    client = _client(server, reader)
    base = f"{server.url}/open311/v2"
    good = {"api_key": writer, "service_code": "loitering", "lat": "31.2", "long": "121.4", "jurisdiction_id": SITE}

    def post(fmt: str = "json", **changes: str | None) -> httpx.Response:
        form = {k: v for k, v in (good | changes).items() if v is not None}
        return httpx.post(f"{base}/requests.{fmt}", data=form)

    for changes, status, field in [
        ({"api_key": None}, 403, "api_key"),
        ({"api_key": reader}, 403, "api_key"),
        ({"service_code": "graffiti"}, 400, "service_code"),
        ({"service_code": None}, 400, "service_code"),
        ({"lat": None, "long": None}, 400, "location is required"),
        ({"long": None}, 400, "lat, long"),
        ({"lat": "91"}, 400, "lat"),
        ({"long": "nan"}, 400, "long"),
        ({"jurisdiction_id": "a/b"}, 400, "jurisdiction_id"),
        ({"jurisdiction_id": None}, 400, "jurisdiction_id"),
        ({"media_url": "javascript:alert(1)"}, 400, "media_url"),
        ({"description": "x" * 4001}, 400, "description"),
    ]:
        response = post(**changes)
        assert response.status_code == status, (changes, response.text)
        [error] = response.json()
        assert error["code"] == status and field in error["description"], (changes, error)

    xml_error = post("xml", api_key="nope")
    assert xml_error.status_code == 403 and xml_error.headers["content-type"].startswith("text/xml")
    assert b"<errors><error><code>403</code><description>api_key: unknown" in xml_error.content

    with pytest.raises(HttpError) as missing:
        client.get_request("424242")
    assert missing.value.status == 404 and "service_request_id" in missing.value.body
    for query, field in [("start_date=yesterday", "start_date"), ("status=pending", "status"),
                         ("service_request_id=1,x", "service_request_id"),
                         ("start_date=2025-01-01T00:00:00Z&end_date=2025-06-01T00:00:00Z", "end_date")]:
        response = httpx.get(f"{base}/requests.json?{query}&api_key={reader}")
        assert response.status_code == 400 and field in response.json()[0]["description"], (query, response.text)
    assert httpx.get(f"{base}/services/loitering.json", params={"api_key": reader}).status_code == 404
    assert httpx.get(f"{base}/requests.yaml", params={"api_key": reader}).status_code == 422
    with server.app.state.sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Ticket)) == 0


def test_on_a_default_install_every_read_needs_a_read_token(server: ServerRunner) -> None:
    reader = _token(server, "reader", ["read"])
    writer = _token(server, "writer", ["open311:write"])
    base = f"{server.url}/open311/v2"
    for path in ["services.json", "services/fire_lane_blocked.json", "requests.json", "requests/1.json",
                 "requests.xml"]:
        refused = httpx.get(f"{base}/{path}")
        assert refused.status_code == 401, (path, refused.text)
        assert b"api_key" in refused.content, path
        for wrong in [writer, "nope"]:  # a token without read, or none at all
            assert httpx.get(f"{base}/{path}", params={"api_key": wrong}).status_code == 403, path
    assert httpx.get(f"{base}/services.json", params={"api_key": reader}).status_code == 200
    assert httpx.get(f"{base}/requests.json", params={"api_key": reader}).status_code == 200


def test_public_reading_shows_no_security_category_and_only_the_hour(database_url: str, tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path, database_url=database_url, port=0, open311_public_read=True)
    table = load_sample()
    with ServerRunner(settings, start_ingest=False) as runner:
        add_account(runner, "boss", "admin")
        reader = _token(runner, "reader", ["read"])
        opened = datetime(2026, 3, 2, 9, 47, 31, tzinfo=UTC)
        ids: dict[str, str] = {}
        with runner.app.state.sessions() as session:  # one ticket of every category in the shipped table
            for category in table.categories:
                code = category.event_type.value
                entry = create_request(session, table, 0, service_code=code, site=SITE, reporter="t",
                                       latitude=31.2, longitude=121.4, address=None, description=None,
                                       media_url=None, now=opened)
                ids[code] = str(entry.ticket_id)
            session.commit()
        public = {c.event_type.value for c in table.categories if c.public}
        assert public and not public & {t.value for t in NEVER_PUBLIC}

        anonymous = GeoReport(f"{runner.url}/open311/v2", jurisdiction=SITE, output_format="xml")
        assert {s["service_code"] for s in anonymous.get_service_list()} == public
        window = {"start_date": "2026-03-01T00:00:00Z", "end_date": "2026-03-03T00:00:00Z"}
        listed = anonymous.get_service_requests(**window)
        listed = listed if isinstance(listed, list) else [listed]
        assert {r["service_code"] for r in listed} == public
        assert {r["requested_datetime"] for r in listed} == {"2026-03-02T09:00:00Z"}
        base = f"{runner.url}/open311/v2"
        for code, ticket_id in ids.items():
            one = httpx.get(f"{base}/requests/{ticket_id}.json")
            assert one.status_code == (200 if code in public else 404), (code, one.text)
            filtered = httpx.get(f"{base}/requests.json", params={"service_code": code, **window})
            assert filtered.status_code == (200 if code in public else 400), (code, filtered.text)
        # a read token still sees everything, to the second
        full = httpx.get(f"{base}/requests.json", params={"api_key": reader, **window}).json()
        assert {r["service_code"] for r in full} == set(ids)
        assert {r["requested_datetime"] for r in full} == {"2026-03-02T09:47:31Z"}


def test_a_table_cannot_make_a_security_category_public() -> None:
    table = load_sample().model_dump(mode="json")
    for security in NEVER_PUBLIC:
        changed = [{**c, "public": True} if c["event_type"] == security.value else c for c in table["categories"]]
        with pytest.raises(ValueError, match="cannot be public"):
            CategoryTable.model_validate({**table, "categories": changed})


def _filled(table: sa.Table, **given: object) -> dict[str, object]:
    """A value for every required column of a reflected table (the schema of an older revision)."""
    fillers = {sa.Integer: 1, sa.String: "x", sa.Text: "x", sa.DateTime: datetime(2025, 3, 1, tzinfo=UTC),
               sa.Boolean: False, sa.JSON: {}, sa.LargeBinary: b"x", sa.Float: 0.0}
    row: dict[str, object] = {}
    for column in table.columns:
        if column.name in given or column.nullable or column.primary_key or column.server_default is not None:
            continue
        row[column.name] = next(v for t, v in fillers.items() if isinstance(column.type, t))
    return row | given


def test_the_ticket_migration_keeps_every_row_on_sqlite(tmp_path: Path) -> None:
    """0004 rebuilds ``tickets`` on SQLite; with foreign keys on, dropping the old table would
    cascade-delete the events and audit trail of every ticket. Upgraded on to the head, so the rows are
    read through today's model and every later migration of ``tickets`` keeps them too."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0003")
    engine = create_engine(url)
    try:
        old = sa.MetaData()
        old.reflect(engine, only=["tickets", "events", "ticket_transitions"])
        with engine.begin() as conn:
            conn.execute(old.tables["tickets"].insert().values(_filled(old.tables["tickets"], id=7, camera_id="cam")))
            conn.execute(old.tables["events"].insert().values(_filled(old.tables["events"], ticket_id=7)))
            conn.execute(old.tables["ticket_transitions"].insert().values(
                _filled(old.tables["ticket_transitions"], ticket_id=7)))
        upgrade(url)
        with session_factory(engine)() as session:
            ticket = session.get(Ticket, 7)
            assert ticket is not None and ticket.source == "camera" and ticket.camera_id == "cam"
            assert session.scalar(sa.select(sa.func.count()).select_from(EventRecord)) == 1
            assert session.scalar(sa.select(sa.func.count()).select_from(TicketTransition)) == 1
            assert session.execute(sa.text("PRAGMA foreign_key_check")).all() == []
    finally:
        engine.dispose()
