"""Event clips: the H.264 MP4 an edge node records around an incident's start or end, filed under the event.

A clip is uploaded after its event (the seconds after the event must be recorded first), so the event
cannot carry its hash; it is named by the event's id instead, beside the snapshots
(``<snapshots>/clips/ab/<event_id>.mp4``), where retention finds it. An upload is checked for the MP4
signature and the sha256 the edge declares; uploading the same clip again is a no-op, a different one
for the same event is refused (evidence is never silently replaced).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gridwatch.broker.contract import CLIP_SHA256_HEADER as SHA256_HEADER
from gridwatch.server.ingest.snapshots import SnapshotError, SnapshotStore, is_sha256

MAX_CLIP_BYTES = 40 * 1024 * 1024
EVENT_ID_RE = re.compile(r"^[0-9a-f]{32}$")
MEDIA_TYPE = "video/mp4"


@functools.lru_cache(maxsize=1024)
def _file_sha256(path: Path, size: int, mtime_ns: int) -> str:
    """Keyed by size and mtime too, so a file replaced under the same name is hashed again."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@dataclass(frozen=True)
class StoredClip:
    event_id: str
    path: Path
    size: int
    sha256: str
    created: bool


def is_mp4(data: bytes) -> bool:
    """An ISO base media file starts with its ``ftyp`` box."""
    return len(data) >= 12 and data[4:8] == b"ftyp"


class ClipStore:
    """Files under ``root/ab/<event_id>.mp4``, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def beside(cls, snapshots: SnapshotStore) -> ClipStore:
        """The clips kept with a snapshot store: one data folder for all evidence."""
        return cls(snapshots.root / "clips")

    def path(self, event_id: str) -> Path:
        if not EVENT_ID_RE.match(event_id):
            raise SnapshotError(422, "invalid_event_id", "an event id is 32 lowercase hex digits")
        return self.root / event_id[:2] / f"{event_id}.mp4"

    def find(self, event_id: str) -> Path | None:
        path = self.path(event_id)
        return path if path.is_file() else None

    @staticmethod
    def sha256_of(path: Path) -> str:
        """The stored clip's hash (the evidence log files each view under it). A stored clip never changes
        (a different one is refused), so it is hashed once per file, streamed, not on every view."""
        stat = path.stat()
        return _file_sha256(path, stat.st_size, stat.st_mtime_ns)

    def files(self) -> list[Path]:
        return [p for p in self.root.glob("??/*.mp4") if EVENT_ID_RE.match(p.stem)] if self.root.is_dir() else []

    def put(self, event_id: str, data: bytes, sha256: str) -> StoredClip:
        """Verify and store the clip of ``event_id``; ``sha256`` is the hash the uploader declares."""
        path = self.path(event_id)
        if not is_sha256(sha256):
            raise SnapshotError(422, "invalid_sha256", f"{SHA256_HEADER} must be 64 lowercase hex digits")
        if len(data) > MAX_CLIP_BYTES:
            raise SnapshotError(413, "too_large", f"clip is larger than {MAX_CLIP_BYTES} bytes")
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise SnapshotError(400, "sha256_mismatch", f"body sha256 is {actual}, not {sha256}")
        if not is_mp4(data):
            raise SnapshotError(415, "unsupported_media_type", "a clip must be an MP4 file")
        if path.is_file():
            if self.sha256_of(path) != sha256:
                raise SnapshotError(409, "clip_exists", f"event {event_id} already has a different clip")
            return StoredClip(event_id, path, len(data), sha256, created=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return StoredClip(event_id, path, len(data), sha256, created=True)
