"""Issue 23, acceptance 2: a fire-lane incident on a derived clip with a rendered plate becomes a ticket that
shows the plate and the owner's unit from an imported vehicle list, and "notify owner" makes exactly one
webhook delivery to a local receiver.

Real parts throughout: the clip is written at run time (tests/test_edge_plate_reading.py's held car with
a plate rendered on it, as MJPEG in the test's temporary folder), ``gridwatch edge replay --publish`` runs
the ONNX detector and the OCR on it and publishes to a Mosquitto, and the server ingests into SQLite or
PostgreSQL and delivers the webhook over HTTP.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
import yaml

from gridwatch.server.integrations.webhooks import verify
from gridwatch.server.runner import ServerRunner
from gridwatch.server.settings import ServerSettings
from tests.auth_helpers import add_account, login
from tests.conftest import REPO, Mosquitto, free_port
from tests.reliability_helpers import wait_for
from tests.test_edge_plate_reading import PLATE, held_plated_clip
from tests.test_integrations_webhooks import SECRET, Receiver

pytest.importorskip("rapidocr_onnxruntime")

UNIT = "3栋2单元1502"
VEHICLES_CSV = (f"plate,unit,person,phone\n苏E·7K352,{UNIT},王先生,13800001234\n"
                "京AD12345,5栋1单元301,李女士,13900005678\n")


def write_clip(path: Path, samples: Path) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (768, 432))
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
    for _, image in held_plated_clip(samples, 18.0):
        writer.write(image)
    writer.release()


def edge_config(clip: Path, mqtt_url: str, api: str, evidence: Path) -> dict:
    return {
        "site_id": "demo-compound", "node_id": "lane-node", "mqtt": {"url": mqtt_url}, "server": {"url": api},
        "evidence": {"dir": str(evidence)},
        # the car appears at once over a fifth of the overhead view, which the tamper check would report (and
        # a camera incident inhibits the lane's): not what this test is about
        "cameras": [{"id": "lane-east-cam", "source": str(clip), "detect_fps": 5, "tamper": {"enabled": False},
                     "zones": [{
            "id": "lane", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]],
            "rules": [{"type": "fire_lane", "min_stationary_s": 10, "clutter": False, "read_plates": True,
                       "objects": ["car", "truck", "bus", "motorcycle", "cell phone"]}]}]}],
    }


@pytest.fixture
def receiver():
    r = Receiver(fail_first=0)
    r.start()
    yield r
    r.stop()


def test_fire_lane_ticket_shows_plate_and_owner_and_notifies_once(database_url: str, tmp_path: Path, samples: Path,
                                                                   mosquitto: Mosquitto, receiver: Receiver) -> None:
    settings = ServerSettings(data_dir=tmp_path / "server", database_url=database_url, mqtt_url=mosquitto.url,
                              port=free_port(), webhook_poll_s=0.1, webhook_allow_private_targets=True)
    with ServerRunner(settings) as runner:
        add_account(runner, "boss", "admin")
        add_account(runner, "guard", "security")
        admin, guard = login(runner.url, "boss"), login(runner.url, "guard")
        bad = admin.put("/api/registry/vehicles", content="plate,unit,person,phone\n京A1234,1栋,张,138\n",
                        headers={"Content-Type": "text/csv"})
        assert bad.status_code == 422 and "line 2: plate" in bad.text, bad.text
        imported = admin.put("/api/registry/vehicles", content=VEHICLES_CSV.encode(),
                             headers={"Content-Type": "text/csv"})
        assert imported.status_code == 200 and imported.json() == {"vehicles": 2}, imported.text
        assert "苏E7K352" in admin.get("/api/registry/vehicles.csv").text
        hook = admin.post("/api/webhooks", json={"url": receiver.url, "secret": SECRET, "events": ["notify_owner"]})
        assert hook.status_code == 201, hook.text

        clip = tmp_path / "lane-held-car.avi"
        write_clip(clip, samples)
        config_path = tmp_path / "edge.yaml"
        config_path.write_text(yaml.safe_dump(edge_config(clip, mosquitto.url, runner.url, tmp_path / "evidence"),
                                              allow_unicode=True), encoding="utf-8")
        events_out = tmp_path / "events.jsonl"
        result = subprocess.run([sys.executable, "-m", "gridwatch.deploy", "edge", "replay", "--config",
                                 str(config_path), "--events-out", str(events_out), "--publish"],
                                capture_output=True, text=True, timeout=600, cwd=REPO)
        assert result.returncode == 0, result.stderr
        published = [json.loads(line) for line in events_out.read_text().splitlines()]
        lane = [e for e in published if e["zone_id"] == "lane"]
        assert lane[0]["phase"] == "start" and lane[-1]["phase"] == "end", lane
        assert {e["plate"]["text"] for e in lane if e.get("plate")} == {PLATE}

        tickets = wait_for(lambda: guard.get("/api/tickets", params={"type": "fire_lane_blocked"}).json()["items"],
                           lambda items: any((t.get("plate") or {}).get("text") == PLATE for t in items), timeout=30)
        ticket = next(t for t in tickets if (t.get("plate") or {}).get("text") == PLATE)
        detail = guard.get(f"/api/tickets/{ticket['id']}").json()
        assert detail["plate"]["status"] == "read" and detail["plate"]["colour"] == "blue"
        assert detail["owner"] == {"unit": UNIT, "person": "王先生", "phone": "13800001234"}
        assert detail["owner_notified"] is False
        crop = guard.get(f"/api/snapshots/{detail['plate']['crop_sha256']}")
        assert crop.status_code == 200 and crop.content[:3] == b"\xff\xd8\xff"

        sent = guard.post(f"/api/tickets/{ticket['id']}/notify-owner")
        assert sent.status_code == 200, sent.text
        assert sent.json()["action"] == "notify_owner" and sent.json()["details"]["unit"] == UNIT
        assert not {"phone", "plate"} & set(sent.json()["details"]), "the audit trail keeps no plate or phone"
        again = guard.post(f"/api/tickets/{ticket['id']}/notify-owner")
        assert again.status_code == 409, again.text

        wait_for(lambda: list(receiver.received), lambda got: len(got) >= 1, timeout=30)
        deliveries = wait_for(lambda: admin.get(f"/api/webhooks/{hook.json()['id']}/deliveries").json()["items"],
                              lambda items: items and all(d["status"] == "delivered" for d in items), timeout=30)
        assert len(deliveries) == 1 and len(receiver.received) == 1
        _, headers, body, _ = receiver.received[0]
        assert verify(SECRET, headers["x-gridwatch-signature"], body, now=time.time())
        payload = json.loads(body)
        assert payload["action"] == "notify_owner" and payload["ticket_id"] == ticket["id"]
        assert payload["details"] | {"incident_id": None} == {"incident_id": None, "plate": PLATE, "unit": UNIT,
                                                               "person": "王先生", "phone": "13800001234"}
        trail = guard.get(f"/api/tickets/{ticket['id']}/transitions").json()
        assert [t["action"] for t in trail].count("notify_owner") == 1
        assert guard.get(f"/api/tickets/{ticket['id']}").json()["owner_notified"] is True
