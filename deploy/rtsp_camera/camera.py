"""The camera's process (``server.py`` under the system Python) and the clips it serves, encoded once by
Debian's ffmpeg from a shared sample clip.

Both tools are required: a machine without them gets :class:`RtspToolsMissing` with the apt-get line that
fixes it (the tests turn it into a failure, never a skip; CI installs them).
"""

from __future__ import annotations

import functools
import shutil
import signal
import subprocess
from pathlib import Path
from urllib.parse import quote

from gridwatch.deploy.cluster.rabbitmq import free_ports

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("server.py")
APT_PACKAGES = "ffmpeg gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad python3-gi"
CLIP_NAME = "one-by-one-person-detection.mp4"  # 768x432, 10 fps, H.264: what a compound camera's substream sends


class RtspToolsMissing(RuntimeError):
    """ffmpeg, the GStreamer RTSP server or the sample clip is not on this machine."""


def require_rtsp_tools(clip: Path) -> str:
    """The ffmpeg binary, once the GStreamer RTSP server and ``clip`` are known to be there."""
    ffmpeg = shutil.which("ffmpeg")
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                            "from gi.repository import GstRtspServer"], capture_output=True, text=True)
    if not clip.is_file():
        raise RtspToolsMissing(f"sample footage not found: {clip} (set GRIDWATCH_SHARED)")
    if ffmpeg is None or probe.returncode != 0:
        raise RtspToolsMissing(f"the RTSP camera needs Debian's ffmpeg and GStreamer RTSP server: apt-get install "
                               f"{APT_PACKAGES} ({probe.stderr.strip()[-200:]})")
    return ffmpeg


class Clips:
    """MPEG-TS clips for the camera, each made on first use: the shared clip as it is (H.264), in H.265, and one
    whose size changes mid-stream."""

    resize_sizes = ((432, 768), (216, 384))  # (height, width) before and after the change
    resize_at_s = 8

    def __init__(self, directory: Path, samples: Path) -> None:
        self.source = samples / CLIP_NAME
        self.ffmpeg = require_rtsp_tools(self.source)
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _run(self, *args: str) -> None:
        subprocess.run([self.ffmpeg, "-v", "error", "-y", *args], check=True, timeout=600)

    @functools.cached_property
    def h264(self) -> Path:
        """The sample's own H.264 stream, unchanged: what the camera's encoder sent."""
        path = self.directory / "h264.ts"
        self._run("-i", str(self.source), "-c", "copy", "-bsf:v", "h264_mp4toannexb", str(path))
        return path

    @functools.cached_property
    def h265(self) -> Path:
        """40 s re-encoded once, a key frame every 2 s as cameras default to; ultrafast keeps it cheap."""
        path = self.directory / "h265.ts"
        self._run("-i", str(self.source), "-t", "40", "-c:v", "libx265", "-preset", "ultrafast", "-g", "20",
                  "-x265-params", "log-level=error", str(path))
        return path

    def encoded(self, codec: str, width: int, height: int, seconds: float) -> Path:
        """The shared clip's first ``seconds`` at ``width``x``height`` in ``codec``, encoded once (ultrafast, a key
        frame every 2 s) and kept in the directory, so a benchmark's later runs skip it."""
        path = self.directory / f"{codec}-{width}x{height}-{seconds:g}s.ts"
        if not path.exists():
            encoder = {"h264": ("libx264",), "h265": ("libx265", "-x265-params", "log-level=error")}[codec]
            partial = path.with_suffix(".part.ts")
            self._run("-i", str(self.source), "-t", f"{seconds:g}", "-vf", f"scale={width}:{height}", "-an", "-c:v",
                      *encoder, "-preset", "ultrafast", "-g", "20", str(partial))
            partial.rename(path)
        return path

    @functools.cached_property
    def resize(self) -> Path:
        """The installer switches the main stream from 768x432 to 384x216: new SPS/PPS in band, same session."""
        first, second, path = (self.directory / name for name in ("big.ts", "small.ts", "resize.ts"))
        encode = ("-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-an")
        self._run("-i", str(self.source), "-t", str(self.resize_at_s), *encode, str(first))
        height, width = self.resize_sizes[1]
        self._run("-ss", str(self.resize_at_s), "-i", str(self.source), "-t", "30", "-vf", f"scale={width}:{height}",
                  *encode, "-output_ts_offset", str(self.resize_at_s), str(second))
        path.write_bytes(first.read_bytes() + second.read_bytes())
        return path


class RtspCamera:
    """One camera: an RTSP server on a fixed loopback port that can die, come back, and freeze."""

    def __init__(self, clip: Path, codec: str, user: str | None = None, password: str | None = None,
                 transport: str = "any") -> None:
        self.port = free_ports(1)[0]
        self.clip, self.codec, self.user, self.password, self.transport = clip, codec, user, password, transport
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f"{quote(self.user, safe='')}:{quote(self.password or '', safe='')}@" if self.user else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}/stream1"

    def start(self) -> RtspCamera:
        command = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port), "--clip", str(self.clip),
                   "--codec", self.codec, "--transport", self.transport]
        if self.user:
            command += ["--user", self.user, "--password", self.password or ""]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            raise RuntimeError(f"the RTSP camera did not start: {line}{self.proc.stdout.read()}")
        return self

    def stop(self) -> None:
        """The camera dies (power cut, reboot): every client is cut off and the port closes."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def freeze(self) -> None:
        """The encoder hangs: connections stay open, no packet comes."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
