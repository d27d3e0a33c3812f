"""Snapshots: the full frame with the zone and the object's box drawn, stored by content hash.

The hash is the snapshot's name everywhere (file on the edge, upload path on the server, reference
in the event), so re-uploads are idempotent and an event can never point at the wrong image.
Retention is bounded by a file count: an edge box's disk must never fill up with evidence, and the
server keeps its own copy of every snapshot it received. Each image is stored with its blur manifest
beside it (``<sha256>.blur.json``), which the upload sends so the server can hold the edge to its policy.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from gridwatch.broker.blur import BlurManifest
from gridwatch.broker.contract import SnapshotRef
from gridwatch.edge.evidence.originals import OriginalsVault
from gridwatch.edge.perception.track import Track

ZONE_COLOUR = (0, 200, 255)  # BGR amber
BOX_COLOUR = (40, 40, 230)   # BGR red


@dataclass(frozen=True)
class Snapshot:
    ref: SnapshotRef
    path: Path


def annotate(image: np.ndarray, polygon: np.ndarray, track: Track | None, label: str) -> np.ndarray:
    """A copy of the frame with the zone outline, the object's box and a label."""
    canvas = image.copy()
    cv2.polylines(canvas, [polygon.astype(np.int32)], True, ZONE_COLOUR, 2)
    if track is not None:
        x1, y1, x2, y2 = (int(v) for v in track.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), BOX_COLOUR, 2)
        cv2.putText(canvas, f"{label} #{track.track_id}", (x1, max(14, y1 - 6)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, BOX_COLOUR, 1, cv2.LINE_AA)
    return canvas


def crop_box(image: np.ndarray, track: Track) -> tuple[int, int, int, int]:
    """The object's box in whole pixels, inside the frame and at least one pixel wide and high: the clean crop
    (nothing drawn, faces blurred) a guard recognises the person or vehicle by."""
    height, width = image.shape[:2]
    x1, y1 = (min(max(0, int(v)), limit - 1) for v, limit in zip(track.box[:2], (width, height), strict=True))
    x2, y2 = (min(limit, max(low + 1, int(v))) for v, low, limit in zip(track.box[2:], (x1, y1), (width, height),
                                                                        strict=True))
    return x1, y1, x2, y2


def manifest_path(image_path: Path) -> Path:
    """Where the blur manifest of a stored image lives: beside it, ``<sha256>.blur.json``."""
    return image_path.with_suffix(".blur.json")


class EvidenceStore:
    """Writes JPEG snapshots into a directory, named by their sha256, keeping at most ``max_files``."""

    def __init__(self, directory: Path, jpeg_quality: int = 85, max_files: int = 5000,
                 originals: OriginalsVault | None = None) -> None:
        self.directory = directory
        self.originals = originals  # where the site keeps unblurred originals (encrypted); None: nowhere
        self.jpeg_quality = jpeg_quality
        self.max_files = max_files
        directory.mkdir(parents=True, exist_ok=True)
        self.kept = deque(sorted(directory.glob("*.jpg"), key=lambda p: p.stat().st_mtime))

    def save(self, image: np.ndarray, manifest: BlurManifest | None = None,
             original: np.ndarray | None = None) -> Snapshot:
        """Store ``image`` (and its blur manifest, when it was blurred) under its sha256; ``original``, the
        frame before blur, is sealed in the originals vault when the site keeps one, and dropped otherwise."""
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        data = encoded.tobytes()
        digest = hashlib.sha256(data).hexdigest()
        path = self.directory / f"{digest}.jpg"
        if not path.exists():
            tmp = path.with_suffix(f".{uuid.uuid4().hex}.part")  # cameras may save the same image at once
            if manifest is not None:  # first, so an image on disk never lacks the manifest it was stored with
                sidecar = manifest_path(path).with_suffix(f".{uuid.uuid4().hex}.part")
                sidecar.write_text(manifest.model_dump_json(), encoding="utf-8")
                sidecar.replace(manifest_path(path))
            tmp.write_bytes(data)
            tmp.replace(path)
            self.kept.append(path)
            while len(self.kept) > self.max_files:
                old = self.kept.popleft()
                old.unlink(missing_ok=True)
                manifest_path(old).unlink(missing_ok=True)
                if self.originals is not None:
                    self.originals.forget(old.stem)
        if original is not None and self.originals is not None:
            self.originals.seal(digest, original)
        ref = SnapshotRef(sha256=digest, width=image.shape[1], height=image.shape[0])
        return Snapshot(ref, path)
