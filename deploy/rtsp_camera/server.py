"""A simulated IP camera: GStreamer's RTSP server (Debian's gir1.2-gst-rtsp-server-1.0)
serving an encoded clip the way an IP camera does.

Why GStreamer's server and not ``ffmpeg -rtsp_flags listen`` or MediaMTX: ``ffmpeg`` only listens for a
*publisher* (one ANNOUNCE/RECORD client), so a reader cannot pull from it the way it pulls from a
camera; MediaMTX has no Debian package. gst-rtsp-server is the library many camera firmwares and NVRs
embed: it answers DESCRIBE/SETUP/PLAY, offers RTP over TCP (interleaved) and over UDP, asks for digest
credentials (Hikvision and Dahua default), sends SPS/PPS in band with every key frame, and paces the
clip on the clock like a live sensor. Nothing is re-encoded here: the clip's H.264/H.265 stream is
packetised as it is, so the server costs almost no CPU on a shared machine.

Run with the system Python (``/usr/bin/python3 deploy/rtsp_camera/server.py --port N --clip clip.ts --codec h264``);
it prints ``ready`` once it listens. SIGTERM stops it (a camera that dies), SIGSTOP freezes it (a camera
whose encoder hangs with the connection still open).
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

TRANSPORTS = {"tcp": GstRtsp.RTSPLowerTrans.TCP, "udp": GstRtsp.RTSPLowerTrans.UDP,
              "any": GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP}
PARSERS = {"h264": ("h264parse", "rtph264pay"), "h265": ("h265parse", "rtph265pay")}


def launch_line(clip: str, codec: str) -> str:
    """MPEG-TS in, RTP out; ``config-interval=-1`` repeats the parameter sets with each key frame as cameras do."""
    parse, pay = PARSERS[codec]
    return (f"( filesrc location={clip} ! tsdemux ! {parse} ! {pay} name=pay0 pt=96 config-interval=-1 )")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clip", required=True, help="an MPEG-TS file holding one H.264 or H.265 stream")
    parser.add_argument("--codec", choices=sorted(PARSERS), required=True)
    parser.add_argument("--path", default="/stream1")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--transport", choices=sorted(TRANSPORTS), default="any",
                        help="offer RTP over tcp only, udp only, or both (a camera's setting)")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args.clip, args.codec))
    factory.set_protocols(TRANSPORTS[args.transport])
    factory.set_shared(True)  # one encoder output for every client, as on a camera
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        auth.add_digest(args.user, args.password or "", token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        for permission in (GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS,
                           GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT):
            permissions.add_permission_for_role("viewer", permission, True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
