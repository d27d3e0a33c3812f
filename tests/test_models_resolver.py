"""The resolver's search order and checksum checks, with the real shared model files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gridwatch.models.manifest import load_manifest
from gridwatch.models.resolver import ChecksumMismatch, ModelNotFound, resolve_model


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("GRIDWATCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GRIDWATCH_MODELS", raising=False)
    return tmp_path


def test_every_manifest_model_resolves_from_shared_with_matching_sha(isolated: Path) -> None:
    for spec in load_manifest().models:
        found = resolve_model(spec.name, allow_download=False)
        assert found.source == "shared" and found.path.name == spec.file


def test_env_dir_comes_before_shared(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = isolated / "mine"
    mine.mkdir()
    shutil.copy(resolve_model("yolox_nano", allow_download=False).path, mine / "yolox_nano.onnx")
    monkeypatch.setenv("GRIDWATCH_MODELS", str(mine))
    assert resolve_model("yolox_nano", allow_download=False).path == mine / "yolox_nano.onnx"


def test_wrong_bytes_are_refused(isolated: Path) -> None:
    fake = isolated / "yolox_nano.onnx"
    fake.write_bytes(b"not a model")
    with pytest.raises(ChecksumMismatch, match="sha256"):
        resolve_model("yolox_nano", explicit_path=fake)


def test_missing_model_says_where_to_put_it(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gridwatch.models.resolver.search_dirs", lambda: [("cache", isolated / "cache")])
    with pytest.raises(ModelNotFound) as info:
        resolve_model("yolox_nano")  # the download fails here: no network
    message = str(info.value)
    assert "download from https://github.com/Megvii-BaseDetection" in message
    assert "GRIDWATCH_MODELS" in message and "e8af0749" in message


def test_unknown_model_name() -> None:
    with pytest.raises(KeyError, match="yolox_nano"):
        resolve_model("yolov99")


def test_models_verify_command_checks_every_model(isolated: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "gridwatch.deploy", "models", "verify", "--no-download"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "ok   yolox_nano" in result.stdout and "ok   osnet_x0_25_msmt17" in result.stdout


def test_models_verify_fails_on_a_corrupt_copy(isolated: Path) -> None:
    corrupt = isolated / "models"
    corrupt.mkdir()
    (corrupt / "yolox_nano.onnx").write_bytes(b"truncated")
    result = subprocess.run([sys.executable, "-m", "gridwatch.deploy", "models", "verify", "yolox_nano"],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "GRIDWATCH_MODELS": str(corrupt)})
    assert result.returncode == 1
    assert "FAIL yolox_nano" in result.stderr and "sha256" in result.stderr
