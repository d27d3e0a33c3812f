"""Uniform examples from the console: the node refits an enrolled profile and swaps it in, live.

A supervisor who adds an event's person crop as a positive or negative example of a uniform makes the
server publish the site's whole example list for that uniform, retained, on
``gridwatch/v1/<site>/_uniforms/<uniform>/examples``. A node whose courier rules use that uniform with
an enrolled profile fetches the crops over HTTP from ``server.url`` (with ``server.token``, which then
needs the ``read`` scope besides ``snapshots:write``), describes each person as enrolment does, and
refits the profile with :func:`gridwatch.edge.perception.enrol.refit` — always from the enrolled file's
own rows plus the whole list, so a message replayed gives the same profile. The matchers then get the
new profile by rebinding their ``profiles`` dict: a camera thread mid-match keeps the dict it started
with, and the stream is never reopened.

Not applied (and logged): a colour-only uniform (it has no classifier to refit), a uniform no rule
of this node uses, a message for another site, or one whose version is not newer than the last
applied. A crop that cannot be fetched fails the whole refit: half a list would silently teach less
than the supervisor asked for; the retained message is retried on the next reconnect.

Like :mod:`remote_config`, it is a :class:`~gridwatch.edge.node.subscription.NodeSubscription`: the
work (downloads, OSNet, fitting) runs on its worker thread, never on paho's network thread.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as paho
from pydantic import ValidationError

from gridwatch.broker import topics
from gridwatch.broker.contract import UniformExamples
from gridwatch.edge.node.subscription import NodeSubscription
from gridwatch.edge.perception.enrol import refit
from gridwatch.edge.perception.uniforms import Person, Profile, UniformMatcher, describe

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 10.0


def fetch_crop(server_url: str, path: str, token: str | None) -> np.ndarray:
    """One crop from the server (``path`` is the example's ``/api/snapshots/<sha256>``), decoded BGR."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"{server_url.rstrip('/')}{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:
        data = np.frombuffer(response.read(), np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not a decodable image")
    return image


def describe_crop(image: np.ndarray, embedder: Any) -> Person:
    """A person crop described as enrolment describes a person box: the box is the whole crop. The
    illuminant is estimated from the crop alone (the scene around it is not sent)."""
    box = np.array([0, 0, image.shape[1], image.shape[0]], np.float32)
    return describe(image, box, embedder)


class RemoteUniforms(NodeSubscription):
    """Refits enrolled uniform profiles from console examples and swaps them into the live matchers."""

    def __init__(self, client: paho.Client, site_id: str, server_url: str | None, token: str | None,
                 matchers: Callable[[], list[UniformMatcher]]) -> None:
        super().__init__(client, topics.site_uniform_examples_filter(site_id), what="uniform examples",
                         stop_timeout_s=30.0)
        self.site_id, self.server_url, self.token = site_id, server_url, token
        self.matchers = matchers  # called per message: a zone reload may have rebuilt the courier rules
        self.applied: dict[str, int] = {}     # uniform id -> version applied by this process
        self.base: dict[str, Profile] = {}    # uniform id -> the enrolled profile, before any refit
        self.refitted: dict[str, Profile] = {}

    def apply(self, topic: str, payload: bytes) -> bool:
        """Refit and swap for one examples message; False (and a log line naming why) when nothing changed."""
        try:
            site_id, uniform_id = topics.parse_uniform_examples_topic(topic)
            message = UniformExamples.model_validate_json(payload)
        except (topics.TopicError, ValidationError) as exc:
            log.error("uniform examples on %s ignored: %s", topic, str(exc).replace("\n", "; "))
            return False
        if (message.site_id, message.uniform_id) != (site_id, uniform_id) or site_id != self.site_id:
            log.error("uniform examples on %s ignored: they are for %s/%s", topic, message.site_id, message.uniform_id)
            return False
        if message.version <= self.applied.get(uniform_id, 0):
            return False
        users = [m for m in self.matchers() if uniform_id in m.profiles]
        if not users:
            log.info("uniform examples for %s ignored: no courier rule here uses it with an enrolled profile",
                     uniform_id)
            return False
        if self.server_url is None:
            log.error("uniform examples for %s ignored: server.url is not configured, the crops cannot be fetched",
                      uniform_id)
            return False
        embedder = users[0].embedder
        people = {"positive": [], "negative": []}  # type: dict[str, list[Person]]
        for example in message.examples:
            image = fetch_crop(self.server_url, example.url, self.token)
            people[example.label].append(describe_crop(image, embedder))
        base = self.base.setdefault(uniform_id, users[0].profiles[uniform_id])
        profile, separation = refit(base, people["positive"], people["negative"])
        for matcher in users:
            matcher.profiles = {**matcher.profiles, uniform_id: profile}
        self.refitted[uniform_id] = profile
        self.applied[uniform_id] = message.version
        log.info("uniform %s refitted with %d examples from the console (v%d), threshold %.3f: %s", uniform_id,
                 len(message.examples), message.version, profile.threshold, separation.line())
        return True

    def reapply(self) -> int:
        """Give refitted profiles to matchers built since (a zone reload rebuilds a courier rule, whose new
        matcher loads the enrolled file again); returns how many matchers changed. Cheap, no I/O: the
        runner calls it from its monitor loop. A matcher whose file profile is not the one refitted
        from (the file was re-enrolled) keeps the file's: a new enrolment outranks old examples."""
        changed = 0
        for uniform_id, profile in list(self.refitted.items()):
            base = self.base[uniform_id]
            for matcher in self.matchers():
                current = matcher.profiles.get(uniform_id)
                if current is None or current is profile:
                    continue
                if current.bias == base.bias and np.array_equal(current.weights, base.weights):
                    matcher.profiles = {**matcher.profiles, uniform_id: profile}
                    changed += 1
        return changed


def courier_matchers(pipelines: list[Any]) -> list[UniformMatcher]:
    """The uniform matchers of the courier rules the pipelines run now."""
    return [detector.matcher for pipeline in pipelines for _, _, detector in pipeline.rules
            if isinstance(getattr(detector, "matcher", None), UniformMatcher)]
