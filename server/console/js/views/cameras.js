// Cameras: status of each (online/offline, fps, last event) with its latest frame, and for the people
// who set cameras up the zone editor on that frame (../zones/editor.js).
import { get } from "../api.js";
import { clear, data, h } from "../dom.js";
import { formatTime, label, t } from "../i18n.js";
import { zoneEditor } from "../zones/editor.js";

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
