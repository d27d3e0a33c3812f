"""The edge node's own numbers in Prometheus text format (``/metrics``) and a liveness check (``/healthz``).

A gate box with a dead uplink cannot report through MQTT, so the numbers that explain it (outbox
depth and age, drops, reconnects) are served locally for a Prometheus agent or a technician's curl.
Values are read from the live parts at scrape time: nothing is copied, nothing can go stale. The
server is the standard library's, on a daemon thread: no dependency for a few lines of text.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from gridwatch.broker.contract import NodeState
from gridwatch.edge.delivery.outbox import DROP_ORDER
from gridwatch.edge.delivery.publish import MqttPublisher
from gridwatch.edge.node.health import CameraHealth

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _family(name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        label_text = ",".join(f'{key}="{val}"' for key, val in labels.items())
        lines.append(f"{name}{{{label_text}}} {value:g}" if label_text else f"{name} {value:g}")
    return lines


def render(publisher: MqttPublisher, cameras: list[CameraHealth]) -> str:
    """Every metric of the node, as one Prometheus text exposition."""
    lines: list[str] = []
    per_camera = [
        ("gridwatch_edge_frames_in_total", "counter", "Frames read from the camera.",
         lambda h: h.reader.frames_read),
        ("gridwatch_edge_frames_processed_total", "counter", "Frames taken by the pipeline.",
         lambda h: h.pipeline.frames_in),
        ("gridwatch_edge_frames_detected_total", "counter", "Frames the detector ran on.",
         lambda h: h.pipeline.frames_detected),
        ("gridwatch_edge_frames_dropped_total", "counter", "Frames replaced by a newer one before processing.",
         lambda h: h.slot.dropped),
        ("gridwatch_edge_camera_up", "gauge", "1 while the camera delivers frames.",
         lambda h: float(h.state == NodeState.ONLINE)),
    ]
    for name, kind, help_text, value in per_camera:
        lines += _family(name, kind, help_text, (({"camera": h.camera.id}, value(h)) for h in cameras))
    if cameras:
        lines += _family("gridwatch_edge_inference_ms", "gauge", "Duration of the latest detector inference.",
                         [({}, cameras[0].detector.last_inference_ms)])
    lines += _family("gridwatch_edge_mqtt_connected", "gauge", "1 while the broker connection is up.",
                     [({}, float(publisher.connected.is_set()))])
    lines += _family("gridwatch_edge_mqtt_reconnects_total", "counter", "Broker connections after the first.",
                     [({}, publisher.reconnects)])
    if publisher.outbox is not None:
        depth = publisher.outbox.depth()
        dropped = publisher.outbox.dropped_totals()
        lines += _family("gridwatch_edge_outbox_messages", "gauge", "Events stored, not yet acknowledged.",
                         [({}, depth.messages)])
        lines += _family("gridwatch_edge_outbox_bytes", "gauge", "Size of the stored events.", [({}, depth.bytes)])
        lines += _family("gridwatch_edge_outbox_oldest_age_seconds", "gauge", "Age of the oldest stored event.",
                         [({}, depth.oldest_age_s)])
        phases = sorted(set(DROP_ORDER) | set(dropped))
        lines += _family("gridwatch_edge_outbox_dropped_total", "counter",
                         "Events dropped by the outbox bounds, per incident phase (persisted across restarts).",
                         [({"phase": phase}, dropped.get(phase, 0)) for phase in phases])
    return "\n".join(lines) + "\n"


def health(publisher: MqttPublisher, cameras: list[CameraHealth]) -> tuple[int, dict[str, object]]:
    """200 while the node can keep events (the outbox answers); a lost uplink alone is not unhealthy,
    because the outbox covers it: the body says so for whoever looks."""
    body: dict[str, object] = {
        "mqtt_connected": publisher.connected.is_set(),
        "cameras": {h.camera.id: (h.state or NodeState.OFFLINE).value for h in cameras},
    }
    if publisher.outbox is not None:
        try:
            body["outbox_messages"] = publisher.outbox.depth().messages
        except sqlite3.Error as exc:  # a full disk or a broken file: exactly what /healthz is for
            return 503, {**body, "error": f"outbox: {exc}"}
    return 200, body


class MetricsServer:
    """``/metrics`` and ``/healthz`` on a daemon thread; ``port`` 0 asks the OS for a free one."""

    def __init__(self, host: str, port: int, metrics: Callable[[], str],
                 healthz: Callable[[], tuple[int, dict[str, object]]]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # a scrape every 15 s is not news
                pass

            def do_GET(self) -> None:
                if self.path == "/metrics":
                    status, body, content_type = 200, metrics().encode(), CONTENT_TYPE
                elif self.path == "/healthz":
                    status, report = healthz()
                    body, content_type = json.dumps(report).encode(), "application/json"
                else:
                    status, body, content_type = 404, b"not found: try /metrics or /healthz\n", "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="edge-metrics", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve_node_metrics(host: str, port: int, publisher: MqttPublisher,
                       cameras: list[CameraHealth]) -> MetricsServer | None:
    """The live node's endpoint, or None when turned off (port 0) or the port is taken: metrics must
    never keep a node from detecting."""
    if port == 0:
        return None
    try:
        server = MetricsServer(host, port, lambda: render(publisher, cameras), lambda: health(publisher, cameras))
    except OSError as exc:
        log.warning("metrics endpoint %s:%d not started: %s", host, port, exc)
        return None
    log.info("metrics at http://%s:%d/metrics", host, server.port)
    return server
