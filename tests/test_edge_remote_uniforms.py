"""Issue 15, item 4, the edge half: an example a supervisor adds to a uniform reaches a running node
over the retained examples topic; the node fetches the crop from the server with its token, refits the
enrolled profile, and swaps it into the live matcher without a restart.

Real Mosquitto, real server on PostgreSQL, the real OSNet appearance model; the uniform is enrolled
here from drawn people (a yellow jacket against the site's assorted clothes) so the test owns its data.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import cv2
import httpx
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gridwatch.broker import topics
from gridwatch.broker.contract import UniformExample, UniformExamples
from gridwatch.edge.config import Uniform
from gridwatch.edge.node.remote_uniforms import RemoteUniforms, describe_crop
from gridwatch.edge.perception.appearance import AppearanceEmbedder
from gridwatch.edge.perception.enrol import train
from gridwatch.edge.perception.uniforms import UniformMatcher
from gridwatch.server.registry.accounts import issue_token
from gridwatch.server.runner import ServerRunner
from tests import test_server_uniform_examples as api
from tests.auth_helpers import login
from tests.test_server_mqtt import Publisher

server = api.server  # the API test's server (PostgreSQL, Mosquitto, a supervisor "chen"), found by name
SITE, NODE, CAMERA = api.SITE, api.NODE, api.CAMERA


def person(jacket: tuple[int, int, int], trousers: tuple[int, int, int] = (40, 40, 50), seed: int = 0) -> np.ndarray:
    """A drawn person crop (BGR): head, jacket on the torso, trousers, on a little grey noise."""
    rng = np.random.default_rng(seed)
    image = np.clip(rng.normal(120, 12, (160, 64, 3)), 0, 255).astype(np.uint8)
    cv2.circle(image, (32, 18), 12, (150, 170, 200), -1)
    cv2.rectangle(image, (10, 32), (54, 95), tuple(int(c) for c in jacket), -1)
    cv2.rectangle(image, (14, 95), (50, 158), tuple(int(c) for c in trousers), -1)
    return image


def jpeg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return data.tobytes()


@pytest.fixture(scope="module")
def embedder() -> AppearanceEmbedder:
    return AppearanceEmbedder()


def enrolled_matcher(tmp_path: Path, embedder: AppearanceEmbedder) -> UniformMatcher:
    """meituan enrolled from yellow jackets (BGR) against a site of blue, green, grey and white ones."""
    yellows = [(0, 200 + 10 * i, 240) for i in range(5)]
    others = [(200, 60, 30), (60, 160, 40), (128, 128, 128), (230, 230, 230), (90, 60, 40), (180, 120, 60),
              (50, 120, 50), (100, 100, 110), (210, 200, 190), (140, 40, 20), (70, 90, 70), (160, 160, 170)]
    positives = [describe_crop(person(c, seed=i), embedder) for i, c in enumerate(yellows)]
    negatives = [describe_crop(person(c, seed=100 + i), embedder) for i, c in enumerate(others)]
    profile, _ = train("meituan", positives, negatives, max_false_accept=0.1)
    path = tmp_path / "meituan.json"
    profile.save(path)
    uniform = Uniform.model_validate({"id": "meituan", "name": {"en": "Meituan"}, "profile": str(path)})
    return UniformMatcher([uniform], embedder)


def upload_crop(server: ServerRunner, image: np.ndarray) -> str:
    import hashlib

    data = jpeg(image)
    sha = hashlib.sha256(data).hexdigest()
    assert httpx.put(f"{server.url}/api/snapshots/{sha}", content=data).status_code in (200, 201)
    return sha


def node_client(url: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{NODE}-{uuid.uuid4().hex[:6]}")
    host, port = url.removeprefix("mqtt://").split(":")
    client.connect(host, int(port))
    client.loop_start()
    deadline = time.monotonic() + 10
    while not client.is_connected():
        assert time.monotonic() < deadline, "the node did not connect"
        time.sleep(0.05)
    return client


def test_a_negative_example_from_the_console_refits_the_running_matcher(
        server: ServerRunner, tmp_path: Path, embedder: AppearanceEmbedder) -> None:
    matcher = enrolled_matcher(tmp_path, embedder)
    enrolled = matcher.profiles["meituan"]
    orange_coat = person((0, 140, 250), seed=7)  # a resident in an orange coat: close to the yellow jacket
    with server.app.state.sessions() as session:
        token = issue_token(session, "gate-1 node", ["read", "snapshots:write"], server.app.state.clock.now())
        session.commit()
    client = node_client(server.settings.mqtt_url)
    remote = RemoteUniforms(client, SITE, server.url, token, lambda: [matcher]).start()
    publisher, chen = Publisher(server.settings.mqtt_url), login(server.url, "chen")
    try:
        event = api.courier_event(server.url, (0, 0, 0), with_crop=False)
        event = event.model_copy(update={"attributes": {"uniform_id": "meituan", "score": 0.7,
                                                        "crop_sha256": upload_crop(server, orange_coat)}})
        publisher.publish(topics.events_topic(SITE, NODE, CAMERA), event.to_json())
        api.ingested(chen, event)
        added = chen.post(f"/api/events/{event.event_id}/uniform-examples",
                          json={"uniform_id": "meituan", "label": "negative"})
        assert added.status_code == 201 and added.json()["published"], added.text

        deadline = time.monotonic() + 60
        while remote.applied.get("meituan") != added.json()["id"]:
            assert time.monotonic() < deadline, "the node did not refit from the published example"
            time.sleep(0.1)
        refitted = matcher.profiles["meituan"]
        assert refitted is not enrolled and refitted is remote.refitted["meituan"]
        assert len(refitted.negatives) == len(enrolled.negatives) + 1
        assert len(refitted.positives) == len(enrolled.positives)
        coat = refitted.negatives[-1]  # the crop as the node fetched and described it
        before, after = enrolled.score(coat), refitted.score(coat)
        assert after < before, f"the counter-example did not lower its own score: {before:.3f} -> {after:.3f}"
        print(f"orange coat scored {before:.3f} as meituan before the example, {after:.3f} after")

        # The retained list again (a reconnect): same version, nothing refitted twice.
        payload = UniformExamples(site_id=SITE, uniform_id="meituan", version=added.json()["id"], examples=[
            UniformExample(crop_sha256=event.attributes["crop_sha256"], label="negative",
                           url=f"/api/snapshots/{event.attributes['crop_sha256']}", event_id=event.event_id,
                           added_at=event.observed_at)]).to_json().encode()
        assert not remote.apply(topics.uniform_examples_topic(SITE, "meituan"), payload)
        # Another site's list, and a uniform no rule here uses with a profile: ignored.
        assert not remote.apply(topics.uniform_examples_topic("other-site", "meituan"), payload)
        unused = payload.replace(b'"meituan"', b'"jd"')
        assert not remote.apply(topics.uniform_examples_topic(SITE, "jd"), unused)
        assert matcher.profiles["meituan"] is refitted

        # A zone reload rebuilds the courier rule: its new matcher loads the enrolled file, then gets the refit.
        rebuilt = UniformMatcher(matcher.uniforms, embedder)
        matchers = [matcher, rebuilt]
        remote.matchers = lambda: matchers
        assert rebuilt.profiles["meituan"] is not refitted
        assert remote.reapply() == 1 and rebuilt.profiles["meituan"] is refitted
        assert remote.reapply() == 0
    finally:
        remote.stop()
        client.disconnect()
        client.loop_stop()
        publisher.close()
        chen.close()
