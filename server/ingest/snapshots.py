"""Content-addressed storage of snapshot images (the claim-checked evidence of an event).

Events carry only a snapshot's sha256; the edge uploads the bytes over HTTP. Naming files by
their verified hash makes uploads idempotent (a retry writes nothing new), lets the server trust
the path it builds (the hash is validated to 64 hex digits, so no traversal), and lets browsers
cache a snapshot forever.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

MAX_SNAPSHOT_BYTES = 5 * 1024 * 1024
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

# Magic bytes of the formats the console can show; extension and media type follow from them.
_FORMATS: tuple[tuple[bytes, str, str], ...] = (
    (b"\xff\xd8\xff", ".jpg", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", ".png", "image/png"),
)


class SnapshotError(ValueError):
    """A rejected upload; ``status`` is the HTTP status that describes it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def sniff(data: bytes) -> tuple[str, str] | None:
    """(extension, media type) for a JPEG or PNG by its magic bytes, else None."""
    for magic, ext, media_type in _FORMATS:
        if data.startswith(magic):
            return ext, media_type
    return None


def is_sha256(value: str) -> bool:
    return bool(SHA256_RE.match(value))


@dataclass(frozen=True)
class StoredSnapshot:
    sha256: str
    path: Path
    media_type: str
    size: int
    created: bool


class SnapshotStore:
    """Files under ``root/ab/<sha256>.jpg`` (or ``.png``), written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _candidates(self, sha256: str) -> list[tuple[Path, str]]:
        if not is_sha256(sha256):
            raise SnapshotError(422, "invalid_sha256", "a snapshot id is 64 lowercase hex digits")
        folder = self.root / sha256[:2]
        return [(folder / f"{sha256}{ext}", media_type) for _magic, ext, media_type in _FORMATS]

    def find(self, sha256: str) -> tuple[Path, str] | None:
        """The stored file and its media type, or None."""
        for path, media_type in self._candidates(sha256):
            if path.is_file():
                return path, media_type
        return None

    def put(self, sha256: str, data: bytes) -> StoredSnapshot:
        """Verify and store; storing the same bytes again is a no-op (``created`` False)."""
        self._candidates(sha256)  # validates the id first
        if len(data) > MAX_SNAPSHOT_BYTES:
            raise SnapshotError(413, "too_large", f"snapshot is larger than {MAX_SNAPSHOT_BYTES} bytes")
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise SnapshotError(400, "sha256_mismatch", f"body sha256 is {actual}, not {sha256}")
        kind = sniff(data)
        if kind is None:
            raise SnapshotError(415, "unsupported_media_type", "a snapshot must be a JPEG or PNG image")
        ext, media_type = kind
        path = self.root / sha256[:2] / f"{sha256}{ext}"
        if path.is_file():
            return StoredSnapshot(sha256, path, media_type, len(data), created=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)  # atomic: readers never see half a file
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return StoredSnapshot(sha256, path, media_type, len(data), created=True)
