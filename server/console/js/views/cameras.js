// Cameras: status of each (online/offline, fps, last event) with its latest frame and zones, and the
// zone editor: drag a corner or a whole polygon on that frame, save, and the server publishes the new
// config retained to the edge.
import { get, put } from "../api.js";
import { clear, data, h, svg } from "../dom.js";
import { formatTime, label, t } from "../i18n.js";

function statusText(camera) {
  if (camera.online === null) return h("span", { class: "status unknown" }, t("cam.status.unknown"));
  return h("span", { class: `status ${camera.online ? "online" : "offline"}` }, t(camera.online ? "cam.status.online" : "cam.status.offline"));
}

export async function camerasView(root, me) {
  const list = h("div", { class: "cameras" });
  const editor = h("div", { class: "zone-editor-slot" });
  root.append(h("h2", {}, t("cam.heading")), list, editor);
  const cameras = await get("/api/cameras");
  if (!cameras.length) list.append(h("p", { class: "muted" }, t("cam.none")));
  for (const camera of cameras) {
    const frame = camera.latest_snapshot_sha256
      ? h("img", { src: `/api/snapshots/${camera.latest_snapshot_sha256}`, alt: t("cam.frame"), class: "thumb" })
      : h("span", { class: "thumb none" }, t("evidence.none"));
    const canEdit = (me.role === "admin" || me.role === "supervisor") && camera.node_id && camera.latest_snapshot_sha256;
    list.append(h("article", { class: "camera", dataset: { camera: camera.camera_id } }, frame,
      h("div", {}, h("strong", {}, data(camera.camera_id)), " ", statusText(camera),
        h("p", {}, t("cam.fps"), ": ", camera.fps === null ? "—" : camera.fps.toFixed(1), " · ", t("cam.last_event"), ": ",
          camera.last_event_at ? [formatTime(camera.last_event_at), " (", label("type", camera.last_event_type), ")"] : "—"),
        h("p", { class: "muted" }, data(camera.site_id), " / ", data(camera.node_id), " · ", t("cam.grid"), ": ", data(camera.grid_id)),
        canEdit ? h("button", { type: "button", class: "edit-zones", onclick: async () => {
          clear(editor).append(await zoneEditor(camera));
          editor.scrollIntoView();
        } }, t("cam.edit_zones")) : null)));
  }
  return null;
}

async function zoneEditor(camera) {
  const base = `/api/cameras/${camera.site_id}/${camera.node_id}/${camera.camera_id}/zones`;
  let config;
  try {
    config = await get(base);
  } catch {
    return h("p", { class: "muted" }, t("zones.none"));
  }
  const zones = structuredClone(config.zones);
  const width = camera.snapshot_width || 1280;
  const height = camera.snapshot_height || 720;
  const canvas = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "zone-canvas" },
    svg("image", { href: `/api/snapshots/${camera.latest_snapshot_sha256}`, width, height, preserveAspectRatio: "none" }));
  const layer = svg("g");
  canvas.append(layer);
  const status = h("p", { class: "message", role: "status" }, t("zones.version", { v: config.version }));

  const toNormalised = (event) => {
    const box = canvas.getBoundingClientRect();
    const clamp = (v) => Math.min(1, Math.max(0, v));
    return [clamp((event.clientX - box.left) / box.width), clamp((event.clientY - box.top) / box.height)];
  };
  let drag = null;  // {zone, point (index or -1 for the whole polygon), start, original}
  const draw = () => {
    while (layer.firstChild) layer.removeChild(layer.firstChild);
    zones.forEach((zone, z) => {
      const points = zone.polygon.map(([x, y]) => `${x * width},${y * height}`).join(" ");
      layer.append(svg("polygon", { points, class: "zone editable", "data-zone": zone.id, onpointerdown: (e) => {
        drag = { zone: z, point: -1, start: toNormalised(e), original: structuredClone(zone.polygon) };
        canvas.setPointerCapture(e.pointerId);
      } }));
      zone.polygon.forEach(([x, y], p) => layer.append(svg("circle", { cx: x * width, cy: y * height, r: Math.max(width, height) / 120,
        class: "handle", "data-zone": zone.id, "data-point": p, onpointerdown: (e) => {
          e.stopPropagation();
          drag = { zone: z, point: p };
          canvas.setPointerCapture(e.pointerId);
        } })));
      const [lx, ly] = zone.polygon[0];
      layer.append(svg("text", { x: lx * width + 6, y: ly * height - 6, class: "zone-label d" }, zone.name || zone.id));
    });
  };
  canvas.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const [x, y] = toNormalised(e);
    const polygon = zones[drag.zone].polygon;
    if (drag.point >= 0) polygon[drag.point] = [x, y];
    else {
      const dx = x - drag.start[0];
      const dy = y - drag.start[1];
      drag.original.forEach(([ox, oy], i) => { polygon[i] = [Math.min(1, Math.max(0, ox + dx)), Math.min(1, Math.max(0, oy + dy))]; });
    }
    draw();
  });
  canvas.addEventListener("pointerup", () => { drag = null; });
  draw();
  const round = (v) => Math.round(v * 1000) / 1000;
  const save = h("button", { type: "button", class: "primary save-zones", onclick: async () => {
    for (const zone of zones) zone.polygon = zone.polygon.map(([x, y]) => [round(x), round(y)]);
    try {
      const saved = await put(base, { zones });
      status.textContent = t(saved.published ? "zones.saved_published" : "zones.saved", { v: saved.version });
      status.dataset.version = saved.version;
    } catch (error) {
      status.textContent = `${t("zones.error")} ${error.message}`;
    }
  } }, t("zones.save"));
  return h("section", { class: "zone-editor" }, h("h3", {}, t("zones.heading"), " ", data(camera.camera_id)),
    h("p", { class: "muted" }, t("zones.help")), canvas, h("div", { class: "actions" }, save), status);
}
