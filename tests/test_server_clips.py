"""The server's clip store over real HTTP: an edge's clip upload (its own ``upload_clip``) is checked, filed
under its event, idempotent, never silently replaced, listed for the event's ticket, and served with byte
ranges (what a browser's <video> asks for when it seeks)."""

from __future__ import annotations

import hashlib
import urllib.error
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest

from gridwatch.broker.contract import CLIP_SHA256_HEADER
from gridwatch.edge.delivery.publish import upload_clip
from gridwatch.edge.evidence.clips import Clip, encode_mp4
from gridwatch.server.runner import ServerRunner
from gridwatch.server.settings import ServerSettings
from tests.auth_helpers import add_account, login
from tests.test_server_api import ingest_via
from tests.test_server_api import make_event as api_event


def clip_file(tmp_path: Path, name: str, shade: int) -> Path:
    path = tmp_path / f"{name}.mp4"
    encode_mp4([np.full((72, 128, 3), shade + i, np.uint8) for i in range(10)], 5.0, path)
    return path


def test_a_clip_upload_is_checked_filed_by_event_and_served_in_ranges(tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path / "data", port=0)
    with ServerRunner(settings, start_ingest=False) as runner:
        add_account(runner, "guard", "security")
        event = api_event()
        outcome = ingest_via(runner, event)
        path = clip_file(tmp_path, "a", 40)
        data = path.read_bytes()
        clip = Clip(event.event_id, path, hashlib.sha256(data).hexdigest(), 10, 2.0)
        upload_clip(runner.url, clip)  # the edge's upload, anonymous as a node without a token
        upload_clip(runner.url, clip)  # a retry: a no-op
        url = f"{runner.url}/api/clips/{event.event_id}"

        def put(body: bytes, sha256: str, event_id: str = event.event_id) -> httpx.Response:
            return httpx.put(f"{runner.url}/api/clips/{event_id}", content=body, headers={CLIP_SHA256_HEADER: sha256})

        assert put(data, clip.sha256).status_code == 200
        other = clip_file(tmp_path, "b", 160).read_bytes()
        refused = put(other, hashlib.sha256(other).hexdigest())
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "clip_exists"
        assert put(data, "0" * 64).json()["error"]["code"] == "sha256_mismatch"
        missing = httpx.put(url, content=data)
        assert missing.status_code == 422 and CLIP_SHA256_HEADER.lower() in missing.text.lower(), missing.text
        jpeg = b"\xff\xd8\xff" + bytes(100)
        assert put(jpeg, hashlib.sha256(jpeg).hexdigest(), uuid.uuid4().hex).status_code == 415
        assert put(data, clip.sha256, "not-an-event").status_code == 422
        with pytest.raises(urllib.error.HTTPError) as bad:
            upload_clip(runner.url, Clip(uuid.uuid4().hex, path, "f" * 64, 10, 2.0))
        assert bad.value.code == 400

        strict = ServerSettings(data_dir=tmp_path / "strict", port=0, privacy_require_face_blur=True,
                                privacy_face_check=False)
        with ServerRunner(strict, start_ingest=False) as blurring_site:
            with pytest.raises(urllib.error.HTTPError) as unblurred:  # a rule with blur_faces off
                upload_clip(blurring_site.url, Clip(uuid.uuid4().hex, path, clip.sha256, 10, 2.0, faces_blurred=False))
            assert unblurred.value.code == 422 and b"faces_not_blurred" in unblurred.value.read()
            upload_clip(blurring_site.url, Clip(uuid.uuid4().hex, path, clip.sha256, 10, 2.0))  # blurred: stored

        guard = login(runner.url, "guard")
        assert httpx.get(url).status_code == 401  # viewing needs a login
        whole = guard.get(url)
        assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4" and whole.content == data
        part = guard.get(url, headers={"Range": "bytes=0-99"})
        assert part.status_code == 206 and part.content == data[:100]
        assert guard.get(url, headers={"Range": "bytes=100-"}).status_code == 206  # the same view, playing on
        add_account(runner, "boss", "admin")
        log = login(runner.url, "boss").get("/api/evidence-access", params={"sha256": clip.sha256}).json()
        assert [(a["actor"], a["ticket_id"]) for a in log["items"]] == [("guard", outcome.ticket_id)] * 2, log
        listed = guard.get("/api/clips", params={"ticket_id": outcome.ticket_id}).json()
        assert [(c["event_id"], c["phase"], c["url"]) for c in listed] == [
            (event.event_id, "start", f"/api/clips/{event.event_id}")]
        assert guard.get(f"/api/clips/{uuid.uuid4().hex}").status_code == 404
