// Evidence of one event: the full snapshot with the object's box and the zone drawn over it, the
// crop of the object, the after-snapshot (the incident's latest), the incident's timeline, and the
// ticket's event clips (the seconds around each incident's start and end, faces blurred on the edge).
import { get, query } from "../api.js";
import { data, h, svg } from "../dom.js";
import { formatTime, label, t } from "../i18n.js";
import { exampleForm } from "./examples.js";

// The ticket the picture is shown as evidence of goes along for the server's evidence access log.
const snapshotUrl = (sha, ticketId) => `/api/snapshots/${sha}` + (ticketId ? `?ticket_id=${ticketId}` : "");

// The snapshot as an <svg> in pixel units so boxes and crops keep the picture's proportions.
export function snapshotFigure(sha, size, { box = null, zones = [], crop = false, cls = "shot", ticketId = null } = {}) {
  const width = (size && size.width) || 1280;
  const height = (size && size.height) || 720;
  let viewBox = `0 0 ${width} ${height}`;
  if (crop && box) {
    const [x1, y1, x2, y2] = box;
    const pad = 0.02;
    const x = Math.max(0, x1 - pad) * width;
    const y = Math.max(0, y1 - pad) * height;
    viewBox = `${x} ${y} ${(Math.min(1, x2 + pad) * width) - x} ${(Math.min(1, y2 + pad) * height) - y}`;
  }
  const picture = svg("svg", { viewBox, class: cls, role: "img", "aria-label": t(crop ? "evidence.crop" : "evidence.snapshot") },
    svg("image", { href: snapshotUrl(sha, ticketId), x: 0, y: 0, width, height, preserveAspectRatio: "none" }));
  if (!crop) {
    for (const zone of zones) {
      const points = zone.polygon.map(([px, py]) => `${px * width},${py * height}`).join(" ");
      picture.append(svg("polygon", { points, class: "zone" }));
    }
    if (box) {
      const [x1, y1, x2, y2] = box;
      picture.append(svg("rect", { x: x1 * width, y: y1 * height, width: (x2 - x1) * width,
        height: (y2 - y1) * height, class: "box" }));
    }
  }
  return picture;
}

async function cameraZones(event) {
  try {
    const config = await get(`/api/cameras/${event.site_id}/${event.node_id}/${event.camera_id}/zones`);
    return config.zones.filter((zone) => zone.id === event.zone_id);
  } catch {
    return [];  // no zone config stored for this camera yet: the box alone
  }
}

// ``linkTicket``: offer to open the event's ticket (not when the ticket is what is on screen);
// ``me``: who is looking (a supervisor may add the event's person crop as a uniform example).
export async function evidence(event, { linkTicket = true, me = null } = {}) {
  const payload = event.payload || {};
  const size = payload.snapshot || null;
  const box = payload.object ? payload.object.box : null;
  const zones = await cameraZones(event);
  const panel = h("section", { class: "evidence", "data-event": event.event_id });
  panel.append(h("h3", {}, label("type", event.type), " · ", data(event.camera_id), " / ", data(event.zone_id)));
  const row = h("div", { class: "shots" });
  if (event.snapshot_sha256) {
    row.append(h("figure", {}, snapshotFigure(event.snapshot_sha256, size, { box, zones, ticketId: event.ticket_id }),
      h("figcaption", {}, t("evidence.snapshot"))));
    if (box) {
      row.append(h("figure", { class: "crop" }, snapshotFigure(event.snapshot_sha256, size, { box, crop: true, cls: "shot crop", ticketId: event.ticket_id }),
        h("figcaption", {}, t("evidence.crop"))));
    }
  } else {
    row.append(h("p", { class: "muted" }, t("evidence.none")));
  }
  panel.append(row);
  const examples = await exampleForm(event, me);
  if (examples) panel.append(examples);
  if (event.ticket_id !== null && event.ticket_id !== undefined) {
    const ticket = await get(`/api/tickets/${event.ticket_id}`);
    const after = ticket.latest_snapshot_sha256;
    if (after && after !== event.snapshot_sha256) {
      row.append(h("figure", {}, snapshotFigure(after, size, { zones, ticketId: ticket.id }), h("figcaption", {}, t("evidence.after"))));
    }
    const incident = ticket.events.filter((e) => e.incident_id === event.incident_id);
    panel.append(h("h4", {}, t("evidence.timeline")), timeline(incident));
    if (linkTicket) {
      panel.append(h("p", {}, h("a", { href: `#/ticket/${ticket.id}`, class: "button" }, t("evidence.open_ticket", { id: ticket.id }))));
    }
  }
  return panel;
}

export function timeline(events) {
  return h("ol", { class: "timeline" }, events.map((e) => h("li", {},
    h("time", {}, formatTime(e.observed_at)), " ", label("phase", e.phase),
    e.payload && e.payload.attributes && e.payload.attributes.dwell_s !== undefined
      ? [" · ", t("evidence.dwell", { s: Math.round(e.payload.attributes.dwell_s) })] : null)));
}

export async function eventsOf(ticketId) {
  return (await get(`/api/events${query({ ticket_id: ticketId, limit: 500 })}`)).items;
}

// The ticket's clips as <video> players, start and end captioned; null while none is uploaded
// (a clip reaches the server seconds after its event: the seconds after it must be recorded first).
export async function clips(ticketId) {
  const found = await get(`/api/clips${query({ ticket_id: ticketId })}`);
  if (!found.length) return null;
  return h("section", { class: "clips" }, h("h3", {}, t("evidence.clips")), h("div", { class: "shots" },
    found.map((clip) => h("figure", { dataset: { event: clip.event_id, phase: clip.phase } },
      h("video", { src: clip.url, controls: true, muted: true, playsinline: true, preload: "metadata", class: "clip" }),
      h("figcaption", {}, label("phase", clip.phase), " · ", formatTime(clip.observed_at))))));
}
