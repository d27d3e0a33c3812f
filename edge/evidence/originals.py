"""Unblurred originals, for a site that must answer police requests: kept on the node, encrypted at rest.

Only where the site turns it on (``evidence.originals.enabled``). The frame a snapshot was made from,
before any blur, is JPEG-encoded and sealed with Fernet (AES-128-CBC with HMAC-SHA256) under a key
that lives in a file on the node (created 0600 on first use) and nowhere else: the server never holds
it, so a breach of the server or of its backups exposes no face. A stolen disk without the key file
exposes nothing either; keep the key file on a separate medium where the threat model needs it.

Each original is named by the sha256 of the blurred snapshot it belongs to, so the ticket's evidence
leads to it. Opening one (:meth:`OriginalsVault.reveal`) goes through the node's ``gridwatch edge
original`` command, which writes the access to the server's evidence access log first. Retention is
bounded by a file count, and an original goes when its snapshot goes.
"""

from __future__ import annotations

import os
import uuid
from collections import deque
from pathlib import Path

import cv2
import numpy as np
from cryptography.fernet import Fernet, InvalidToken

SUFFIX = ".jpg.enc"


class OriginalNotFound(KeyError):
    """No original is kept for that snapshot (never sealed, or past retention)."""


def load_or_create_key(path: Path) -> bytes:
    """The node's originals key; a new one (file mode 0600) when the file does not exist yet."""
    if path.is_file():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


class OriginalsVault:
    """Encrypted originals in ``directory``, at most ``max_files``, named by their snapshot's sha256."""

    def __init__(self, directory: Path, key: bytes, max_files: int = 500, jpeg_quality: int = 90) -> None:
        self.directory = directory
        self.fernet = Fernet(key)
        self.max_files = max_files
        self.jpeg_quality = jpeg_quality
        directory.mkdir(parents=True, exist_ok=True)
        self.kept = deque(sorted(directory.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime))

    def path_of(self, snapshot_sha256: str) -> Path:
        if len(snapshot_sha256) != 64 or any(c not in "0123456789abcdef" for c in snapshot_sha256):
            raise ValueError("a snapshot id is 64 lowercase hex digits")
        return self.directory / f"{snapshot_sha256}{SUFFIX}"

    def seal(self, snapshot_sha256: str, image: np.ndarray) -> Path:
        """Encrypt the unblurred ``image`` as the original of snapshot ``snapshot_sha256``."""
        path = self.path_of(snapshot_sha256)
        if path.exists():
            return path
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        tmp = path.with_suffix(f".{uuid.uuid4().hex}.part")
        tmp.write_bytes(self.fernet.encrypt(encoded.tobytes()))
        tmp.replace(path)
        self.kept.append(path)
        while len(self.kept) > self.max_files:
            self.kept.popleft().unlink(missing_ok=True)
        return path

    def forget(self, snapshot_sha256: str) -> None:
        """Delete the original of a snapshot that left retention."""
        self.path_of(snapshot_sha256).unlink(missing_ok=True)

    def reveal(self, snapshot_sha256: str) -> bytes:
        """The original's JPEG bytes. Call only after the access has been logged (``gridwatch edge original``)."""
        path = self.path_of(snapshot_sha256)
        if not path.is_file():
            raise OriginalNotFound(snapshot_sha256)
        try:
            return self.fernet.decrypt(path.read_bytes())
        except InvalidToken:
            raise ValueError(f"{path} was not sealed with this node's key (or was altered)") from None
