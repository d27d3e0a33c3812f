"""A gate that never opens late: gate commands expire, are never queued, and replays are refused.

Everything runs against a real Mosquitto and the reference controller (``gridwatch gate-controller``'s
classes). The outage test keeps the broker down for 30 s, as in the issue: long enough for paho's
reconnect loop to retry several times, so a command it had queued would surely be delivered on return.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gridwatch.broker import topics
from gridwatch.broker.contract import GateAck, GateAckStatus, GateCommand, now_utc
from gridwatch.broker.zones import GatePolicy
from gridwatch.deploy.gate_controller import EXPIRED, REPLAYED, GateControllerClient, GateDecider
from gridwatch.edge.delivery.gate import NOT_SENT, SENT, GateClient
from gridwatch.edge.node import runner
from tests.conftest import Mosquitto
from tests.test_rules_courier import courier_config, replay

SITE, NODE, GATE = "demo", "gate-north", "gate-north"
OUTAGE_S = 30.0


def wait_until(done, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(0.05)
    return done()


def start_controller(url: str) -> GateControllerClient:
    controller = GateControllerClient(url, SITE, NODE, GateDecider(), client_id="test-gate-controller")
    controller.start()
    assert controller.subscribed.wait(10)
    return controller


class AckListener:
    """Collects acks as the edge or server would, from a plain subscriber."""

    def __init__(self, port: int) -> None:
        self.acks: list[GateAck] = []
        ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="test-ack-listener")
        self.client.on_connect = lambda c, *_: c.subscribe(topics.node_command_ack_topic(SITE, NODE), qos=1)
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_message = lambda c, u, m: self.acks.append(GateAck.model_validate_json(m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert ready.wait(10)

    def of(self, command_id: str) -> list[GateAck]:
        return [a for a in self.acks if a.command_id == command_id]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_command_carries_its_validity_from_the_gate_policy() -> None:
    policy = GatePolicy(gate_id=GATE, allowed=("hivis",), command_ttl_s=3)
    command = GateCommand.open_gate(GATE, "courier", ttl_s=policy.command_ttl_s)
    assert command.expires_at - command.issued_at == timedelta(seconds=3)
    assert "expires_at" in json.loads(command.to_json())
    assert GatePolicy(gate_id=GATE, allowed=("hivis",)).command_ttl_s == 5.0
    with pytest.raises(ValueError, match="expires_at must be after issued_at"):
        GateCommand.model_validate({**command.to_dict(), "expires_at": command.to_dict()["issued_at"]})


def test_no_gate_opens_after_a_broker_outage(mosquitto: Mosquitto, samples: Path, tmp_path: Path) -> None:
    config = courier_config(samples / "worker-zone-detection.gif", url=mosquitto.url,
                            gate={"gate_id": GATE, "allowed": ["hivis"]})
    detector = runner.build_detector(config)
    controller = start_controller(mosquitto.url)
    gate = GateClient(SITE, NODE, mosquitto.url)
    try:
        assert gate.subscribed.wait(10)
        sent = gate.open_and_log(GATE, None, "courier_entry hivis (score 1.0)", timeout_s=5)
        assert sent["gate"] == SENT
        assert gate.wait_ack(sent["gate_command_id"], 10).status is GateAckStatus.DONE  # the link works

        controller.subscribed.clear()
        mosquitto.stop()
        assert wait_until(lambda: not gate.client.is_connected(), 10)
        # A courier is recognised on real footage while the broker is down: the event says why no gate opened.
        started = time.monotonic()
        events = replay(config, tmp_path, detector, gate=gate)
        entries = [e for e in events if e.phase.value == "start" and e.type.value == "courier_entry"]
        assert len(entries) == 1, events
        attributes = entries[0].attributes
        assert attributes["gate"] == NOT_SENT and attributes["gate_reason"] == "broker unavailable"
        assert gate.client._out_messages == {}, "nothing queued in paho for later"
        # The plain call refuses at once: a courier must not wait on a dead broker.
        plain_started = time.monotonic()
        assert gate.open_and_log(GATE, None, "courier_entry hivis", 5)["gate"] == NOT_SENT
        assert time.monotonic() - plain_started < 1.0
        print(f"courier recognised during the outage after {time.monotonic() - started:.1f} s: "
              f"gate {attributes['gate']} ({attributes['gate_reason']})")

        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - started)))
        mosquitto.start()
        assert controller.subscribed.wait(10)
        assert wait_until(lambda: gate.client.is_connected() and controller.client.is_connected(), 30)
        time.sleep(3.0)  # paho resends its queue right after CONNACK; give it every chance
        late = [c for c in controller.decider.opened if c.command_id == attributes["gate_command_id"]]
        print(f"late opens {len(late)}")
        assert late == []
        assert [c.command_id for c in controller.decider.opened] == [sent["gate_command_id"]]
        # Afterwards the gate works again.
        again = gate.open_and_log(GATE, None, "after the outage", timeout_s=5)
        assert again["gate"] == SENT and gate.wait_ack(again["gate_command_id"], 10).status is GateAckStatus.DONE
    finally:
        gate.close()
        controller.close()


def test_controller_refuses_expired_and_replayed_commands(mosquitto: Mosquitto) -> None:
    controller = start_controller(mosquitto.url)
    acks = AckListener(mosquitto.port)
    sender = paho.Client(CallbackAPIVersion.VERSION2, client_id="test-replayer")
    sender.connect("127.0.0.1", mosquitto.port)
    sender.loop_start()
    commands = topics.node_commands_topic(SITE, NODE)
    try:
        # Issued a minute ago, valid 5 s: delivered (by a broker that held it, say) after expires_at.
        stale = GateCommand.open_gate(GATE, "held by a broker", issued_at=now_utc() - timedelta(minutes=1))
        # A command from a sender older than expires_at: no stated validity counts as expired.
        legacy = {k: v for k, v in GateCommand.open_gate(GATE, "old sender").to_dict().items() if k != "expires_at"}
        fresh = GateCommand.open_gate(GATE, "courier", ttl_s=30)
        for payload in (stale.to_json(), json.dumps(legacy), fresh.to_json(), fresh.to_json()):
            sender.publish(commands, payload, qos=1).wait_for_publish(5)
        assert wait_until(lambda: len(acks.acks) == 4, 10), acks.acks
        assert [(a.status, a.detail) for a in acks.of(stale.command_id)] == [(GateAckStatus.REFUSED, EXPIRED)]
        assert [(a.status, a.detail) for a in acks.of(legacy["command_id"])] == [(GateAckStatus.REFUSED, EXPIRED)]
        assert [(a.status, a.detail) for a in acks.of(fresh.command_id)] == [
            (GateAckStatus.DONE, None), (GateAckStatus.REFUSED, REPLAYED)]
        assert [c.command_id for c in controller.decider.opened] == [fresh.command_id]
        print(f"opened {len(controller.decider.opened)} refused {controller.decider.refused}")
    finally:
        sender.disconnect()
        sender.loop_stop()
        acks.close()
        controller.close()


def test_console_open_answers_503_while_the_broker_is_down(tmp_path, mosquitto: Mosquitto) -> None:
    from gridwatch.server.runner import ServerRunner
    from gridwatch.server.settings import ServerSettings
    from tests.auth_helpers import PASSWORD, login

    runner = ServerRunner(ServerSettings(data_dir=tmp_path / "data", port=0, admin_password=PASSWORD,
                                         mqtt_url=mosquitto.url))
    runner.start()
    controller = start_controller(mosquitto.url)
    admin = login(runner.url, "admin")
    path = f"/api/gates/{SITE}/{NODE}/{GATE}/open"
    try:
        assert wait_until(lambda: runner.app.state.publisher.connected, 10)
        opened = admin.post(path, json={"reason": "water delivery van"})
        assert opened.status_code == 201 and opened.json()["published"], opened.text
        assert wait_until(lambda: len(controller.decider.opened) == 1, 10)
        first = controller.decider.opened[0]
        assert first.expires_at - first.issued_at == timedelta(seconds=5)

        controller.subscribed.clear()
        mosquitto.stop()
        assert wait_until(lambda: not runner.app.state.publisher.connected, 10)
        refused = admin.post(path, json={"reason": "during the outage"})
        assert refused.status_code == 503, refused.text
        assert "broker unavailable" in refused.text
        # The audit trail keeps the attempt, marked unpublished.
        openings = admin.get("/api/gates/openings").json()
        assert [(o["reason"], o["published"]) for o in openings] == [
            ("during the outage", False), ("water delivery van", True)]

        mosquitto.start()
        assert controller.subscribed.wait(10)
        assert wait_until(lambda: runner.app.state.publisher.connected, 30)
        time.sleep(2.0)
        assert [c.command_id for c in controller.decider.opened] == [first.command_id]
    finally:
        admin.close()
        controller.close()
        runner.stop()
