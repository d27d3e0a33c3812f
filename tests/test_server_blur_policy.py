"""The server enforces the site's blur policy on uploads (issue 19, acceptance 3), with a real frame.

face-demographics-walking-and-pause.gif frame 0 shows three faces plainly. Uploaded as it is, a server
that requires blur refuses it with a reason and stores nothing; the same frame redacted by the edge's
:class:`Redactor` and sent the way the edge sends it (``upload_image``, manifest header) is stored.
Both kinds of server are tried: one that looks for sharp faces itself (OpenCV and YuNet installed),
and one that has only the manifest to go by (``privacy_face_check`` off, as on a server without OpenCV).
"""

from __future__ import annotations

import hashlib
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from gridwatch.broker.blur import HEADER, BlurManifest
from gridwatch.edge.delivery.publish import upload_image
from gridwatch.edge.evidence.privacy import Redactor
from gridwatch.edge.evidence.snapshots import EvidenceStore
from gridwatch.models.faces import FaceDetector
from gridwatch.server.runner import ServerRunner
from gridwatch.server.settings import ServerSettings

CLIP, FRAME = "face-demographics-walking-and-pause.gif", 0


def real_frame(samples: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(samples / CLIP))
    for _ in range(FRAME + 1):
        ok, image = capture.read()
        assert ok
    return image


@pytest.fixture(params=["server looks too", "manifest only"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path, bool]]:
    """A real server that requires blurred faces; anonymous uploads allowed, as for a node without a token."""
    looks = request.param == "server looks too"
    settings = ServerSettings(data_dir=tmp_path / "data", port=0, anonymous_snapshot_upload=True,
                              privacy_require_face_blur=True, privacy_face_check=looks)
    runner = ServerRunner(settings, start_ingest=False)
    runner.start()
    try:
        yield runner.url, tmp_path / "data" / "snapshots", looks
    finally:
        runner.stop()


def put(url: str, data: bytes, manifest: BlurManifest | None = None) -> httpx.Response:
    headers = {"Content-Type": "image/jpeg"} | ({HEADER: manifest.to_header()} if manifest else {})
    return httpx.put(f"{url}/api/snapshots/{hashlib.sha256(data).hexdigest()}", content=data, headers=headers)


def stored(root: Path, data: bytes) -> bool:
    digest = hashlib.sha256(data).hexdigest()
    return (root / digest[:2] / f"{digest}.jpg").is_file()


def test_unblurred_frame_refused_blurred_frame_stored(server: tuple[str, Path, bool], samples: Path,
                                                      tmp_path: Path) -> None:
    url, root, looks = server
    frame = real_frame(samples)
    detector = FaceDetector()
    assert len(detector.detect(frame)) == 3, "the frame shows three faces"
    store = EvidenceStore(tmp_path / "edge")

    sharp = store.save(frame)  # no manifest: a node that did not blur
    refused = put(url, sharp.path.read_bytes())
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == ("sharp_face" if looks else "blur_manifest_missing")
    assert not stored(root, sharp.path.read_bytes())

    blurred, manifest = Redactor(detector).redact(frame, [], [], faces=True, plates=False)
    assert sum(r.kind == "face" for r in manifest.regions) == 3
    # A manifest that claims blur on the sharp frame is caught by a server that looks, not by one that can't.
    lying = put(url, sharp.path.read_bytes(), manifest)
    assert lying.status_code == (422 if looks else 201), lying.text

    good = store.save(blurred, manifest)
    upload_image(url, good.ref.sha256, good.path)  # the edge's own upload: the manifest rides as a header
    assert stored(root, good.path.read_bytes())


def test_manifest_must_name_our_model_and_blurred_faces(server: tuple[str, Path, bool], samples: Path,
                                                        tmp_path: Path) -> None:
    url, root, _ = server
    blurred, manifest = Redactor().redact(real_frame(samples), [], [], faces=True, plates=False)
    data = EvidenceStore(tmp_path / "edge").save(blurred, manifest).path.read_bytes()
    for forged, code in ((manifest.model_copy(update={"model_sha256": "0" * 64}), "blur_model_unknown"),
                         (manifest.model_copy(update={"faces_blurred": False}), "faces_not_blurred")):
        response = put(url, data, forged)
        assert response.status_code == 422 and response.json()["error"]["code"] == code, response.text
    garbled = httpx.put(f"{url}/api/snapshots/{hashlib.sha256(data).hexdigest()}", content=data,
                        headers={HEADER: "{not json"})
    assert garbled.status_code == 422 and garbled.json()["error"]["code"] == "blur_manifest_invalid"
    assert not stored(root, data)
    assert put(url, data, manifest).status_code == 201


def test_policy_off_stores_uploads_as_before(tmp_path: Path, samples: Path) -> None:
    runner = ServerRunner(ServerSettings(data_dir=tmp_path / "data", port=0, anonymous_snapshot_upload=True),
                          start_ingest=False)
    runner.start()
    try:
        sharp = EvidenceStore(tmp_path / "edge").save(real_frame(samples))
        upload_image(runner.url, sharp.ref.sha256, sharp.path)  # no manifest, no blur: accepted as before
        assert stored(tmp_path / "data" / "snapshots", sharp.path.read_bytes())
    finally:
        runner.stop()


def test_refusal_reaches_the_edge_as_an_http_error(server: tuple[str, Path, bool], samples: Path,
                                                   tmp_path: Path) -> None:
    url, _, _ = server
    sharp = EvidenceStore(tmp_path / "edge").save(real_frame(samples))
    with pytest.raises(urllib.error.HTTPError) as refused:
        upload_image(url, sharp.ref.sha256, sharp.path)
    assert refused.value.code == 422


WITHOUT_OPENCV = """
import sys, json
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("cv2", "numpy", "onnxruntime"):
            raise ImportError(name)
sys.meta_path.insert(0, Block())
from gridwatch.server.privacy import blur_policy
data, manifest = open(sys.argv[1], "rb").read(), open(sys.argv[2]).read()
assert blur_policy.server_detector() is None
try:
    blur_policy.enforce(data, None, True)
except blur_policy.BlurRefused as exc:
    print(json.dumps({"refused": exc.code}))
print(json.dumps({"accepted": blur_policy.enforce(data, manifest, True).model}))
"""


def test_a_server_without_opencv_goes_by_the_manifest(tmp_path: Path, samples: Path) -> None:
    """The server extra has no OpenCV or numpy: the policy module still loads and decides by the manifest."""
    import json
    import subprocess
    import sys

    blurred, manifest = Redactor().redact(real_frame(samples), [], [], faces=True, plates=False)
    snapshot = EvidenceStore(tmp_path / "edge").save(blurred, manifest)
    (tmp_path / "manifest.json").write_text(manifest.to_header())
    result = subprocess.run([sys.executable, "-c", WITHOUT_OPENCV, str(snapshot.path), str(tmp_path / "manifest.json")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"refused": "blur_manifest_missing"}, {"accepted": "face_detection_yunet"}]
