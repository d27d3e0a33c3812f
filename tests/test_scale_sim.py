"""``gridwatch sim`` planning and the cluster settings, without a broker: the district's shape, the
incident plan's bounds, and bad input named by its field."""

from __future__ import annotations

import random

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from gridwatch.deploy.cli import main
from gridwatch.deploy.sim import SimConfig, district, plan_incidents
from gridwatch.server.ingest.amqp_source import ROUTING_KEY, mqtt_topic
from gridwatch.server.settings import ServerSettings


def test_the_seed_district_has_6700_cameras_on_1188_nodes() -> None:
    config = SimConfig(["mqtt://127.0.0.1:1883"])
    cameras = district(config)
    assert len(cameras) == 6700 and len(set(cameras)) == 6700
    per_node: dict[str, int] = {}
    for camera in cameras:
        per_node[camera.node_id] = per_node.get(camera.node_id, 0) + 1
    assert len(per_node) == 1188 and set(per_node.values()) == {5, 6}


def test_incidents_end_within_the_run_and_each_has_its_own_fingerprint() -> None:
    config = SimConfig(["mqtt://127.0.0.1:1883"], duration_s=60, time_factor=10, incidents_per_hour=6000,
                       burst_every_s=120, burst_size=5)
    incidents = plan_incidents(config, district(config), random.Random(3))
    assert 700 < len(incidents) < 1050  # ~850 Poisson arrivals in the first 510 simulated s, 4-5 bursts of 5
    assert all(0 <= i.start_s <= i.end_s <= config.sim_duration_s * 0.85 for i in incidents)
    keys = {(i.camera, i.zone_id, i.type) for i in incidents}
    assert len(keys) == len(incidents)
    starts = sorted(i.start_s for i in incidents)
    bursts = sum(1 for a, b in zip(starts, starts[4:], strict=False) if b - a <= 5)
    assert bursts >= 5  # five incidents within 5 s: the bursts are there


@pytest.mark.parametrize(("field", "value"), [("cameras", 0), ("clients", 0), ("time_factor", -1.0),
                                              ("nodes", 10_000)])
def test_bad_sim_settings_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        SimConfig(["mqtt://127.0.0.1:1883"], **{field: value})


def test_the_sim_command_reports_a_bad_url_as_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["sim", "--mqtt-url", "http://nope", "--duration-s", "1"])
    assert result.exit_code == 2 and "mqtt" in result.output.lower()


def test_amqp_ingest_needs_amqp_urls() -> None:
    with pytest.raises(ValidationError, match="amqp_urls"):
        ServerSettings(ingest_source="amqp")
    with pytest.raises(ValidationError, match="amqp_urls: not an amqp"):
        ServerSettings(ingest_source="amqp", amqp_urls="mqtt://127.0.0.1:1883")
    settings = ServerSettings(ingest_source="amqp", amqp_urls=" amqp://a:b@h1:5672/%2F , amqp://h2 ")
    assert settings.amqp_url_list == ["amqp://a:b@h1:5672/%2F", "amqp://h2"]


def test_routing_keys_map_back_to_the_mqtt_topic() -> None:
    assert ROUTING_KEY == "gridwatch.v1.#.events"
    assert mqtt_topic("gridwatch.v1.site-1.gate-north.cam-1.events") == "gridwatch/v1/site-1/gate-north/cam-1/events"
