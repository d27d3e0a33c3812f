"""The site's blur policy, enforced where images enter the server: an upload that breaks it is refused, not stored.

With ``privacy_require_face_blur`` on, an image is stored only when

* it carries the edge's blur manifest (``X-GridWatch-Blur``), naming the face model of our model
  manifest by name and sha256, with faces blurred by the rule's policy, or it carries none but the
  server can look for itself (below); and
* where OpenCV is installed on the server (optional: the server extra has none), YuNet, the model
  the edge blurred with, finds no face on it whose pixels are still sharp (variance of the
  Laplacian above :data:`~gridwatch.models.faces.SHARP_LAPLACIAN_VAR`, the measure the benchmark
  reports). A manifest is a claim; this is the check of it.

Without OpenCV the server trusts a well-formed manifest: the edge is an authenticated node of the
site, and the manifest records who vouched for the image. The refusal says why, so the edge's log
(and an integrator's) shows which policy an image broke.
"""

from __future__ import annotations

import functools
import logging

from gridwatch.broker.blur import BlurManifest
from gridwatch.models.faces import MODEL_NAME, SHARP_LAPLACIAN_VAR, FaceDetector, cv2_available, sharpness
from gridwatch.models.manifest import load_manifest
from gridwatch.models.resolver import ChecksumMismatch, ModelNotFound
from gridwatch.server.ingest.snapshots import SnapshotError

log = logging.getLogger(__name__)


class BlurRefused(SnapshotError):
    """An upload the site's blur policy does not allow (HTTP 422 with a ``code`` saying which rule)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(422, code, message)


@functools.cache
def server_detector() -> FaceDetector | None:
    """The server's own YuNet when OpenCV and the verified model are installed, else None (checked once)."""
    if not cv2_available():
        return None
    try:
        return FaceDetector()
    except (ModelNotFound, ChecksumMismatch) as exc:  # no verified model here: the manifest alone decides
        log.warning("face check on uploads unavailable (%s); blur manifests are trusted as sent", exc)
        return None


def parse_manifest(header: str | None) -> BlurManifest | None:
    """The upload's manifest, None when it sent none; a malformed one is refused."""
    if header is None:
        return None
    try:
        return BlurManifest.from_header(header)
    except ValueError as exc:
        raise BlurRefused("blur_manifest_invalid", f"the blur manifest is not valid: {exc}") from None


def check_manifest(manifest: BlurManifest) -> None:
    """The manifest names our face model (by name and checksum) and says faces were blurred."""
    spec = load_manifest().get(MODEL_NAME)
    if manifest.model != spec.name or manifest.model_sha256 != spec.sha256:
        raise BlurRefused("blur_model_unknown",
                          f"faces were found with {manifest.model} ({manifest.model_sha256[:12]}…), not this "
                          f"site's {spec.name} ({spec.sha256[:12]}…)")
    if not manifest.faces_blurred:
        raise BlurRefused("faces_not_blurred", "the image was stored by a rule with blur_faces off; this site "
                                               "requires faces blurred in every stored image")


def sharp_faces(data: bytes, detector: FaceDetector) -> list[tuple[tuple[float, float, float, float], float]]:
    """(face box, Laplacian variance) of every face YuNet finds on the encoded image whose pixels are sharp."""
    import cv2  # only reached where server_detector() found OpenCV (and with it numpy)
    import numpy as np

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise BlurRefused("undecodable_image", "the image cannot be decoded to check it for faces")
    found = [(face.box, sharpness(image, face.box)) for face in detector.detect(image)]
    return [(box, variance) for box, variance in found if variance > SHARP_LAPLACIAN_VAR]


def enforce(data: bytes, header: str | None, required: bool, look: bool = True) -> BlurManifest | None:
    """Refuse ``data`` (raise :class:`BlurRefused`) when the policy requires blur and the image breaks it;
    return the manifest it carried, if any. With the policy off nothing is checked (uploads as before).
    ``look`` False skips the server's own face check even where OpenCV is installed (a slow server)."""
    if not required:
        return parse_manifest(header)
    manifest = parse_manifest(header)
    detector = server_detector() if look else None
    if manifest is None and detector is None:
        raise BlurRefused("blur_manifest_missing", "this site requires faces blurred in stored images: the upload "
                                                   "needs the edge's blur manifest (X-GridWatch-Blur header)")
    if manifest is not None:
        check_manifest(manifest)
    if detector is not None and (sharp := sharp_faces(data, detector)):
        box, variance = sharp[0]
        raise BlurRefused("sharp_face", f"{len(sharp)} sharp face(s) on the image, e.g. at "
                                        f"{[round(v) for v in box]} (Laplacian variance {variance:.0f} > "
                                        f"{SHARP_LAPLACIAN_VAR:g})")
    return manifest
