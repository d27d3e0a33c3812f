// Uniform examples from an event: a supervisor says the person the edge cut out of this event is
// (positive) or is not (negative) someone in a uniform. The server publishes the uniform's examples
// to the site's edge nodes, which refit the profile; the list below is what they will learn from.
import { ApiError, get, post } from "../api.js";
import { clear, data, h } from "../dom.js";
import { formatTime, t } from "../i18n.js";

const MANAGERS = new Set(["supervisor", "admin"]);

const cropUrl = (sha) => `/api/snapshots/${sha}`;

function exampleRow(example) {
  return h("li", { class: `example ${example.label}`, dataset: { label: example.label, event: example.event_id } },
    h("img", { src: cropUrl(example.crop_sha256), alt: t("examples.crop"), class: "thumb", loading: "lazy" }),
    h("strong", {}, example.label === "positive" ? t("examples.positive") : t("examples.negative")),
    " ", data(example.added_by), " ", h("time", {}, formatTime(example.added_at)));
}

// The form for one event, or null when the viewer may not add examples or the event has no crop.
export async function exampleForm(event, me) {
  if (!me || !MANAGERS.has(me.role)) return null;
  const attributes = (event.payload && event.payload.attributes) || {};
  const section = h("section", { class: "uniform-examples" }, h("h4", {}, t("examples.heading")));
  if (!attributes.crop_sha256) {
    section.append(h("p", { class: "muted" }, t("examples.no_crop")));
    return section;
  }
  const known = await get("/api/uniforms");
  const input = h("input", { name: "uniform_id", list: "uniform-ids", size: 16, required: true,
    pattern: "[A-Za-z0-9][A-Za-z0-9_.\\-]{0,63}", value: attributes.uniform_id || known[0] || "" });
  const status = h("p", { class: "example-status", role: "status", "aria-live": "polite" });
  const list = h("ol", { class: "examples" });

  const load = async () => {
    const uniform = input.value.trim();
    clear(list);
    if (!uniform || !input.checkValidity()) return;
    const examples = await get(`/api/uniforms/${encodeURIComponent(uniform)}/examples?site_id=${encodeURIComponent(event.site_id)}`);
    list.append(...examples.map(exampleRow));
    if (!examples.length) list.append(h("li", { class: "empty muted" }, t("examples.none", { uniform })));
  };
  const add = async (labelValue) => {
    if (!input.reportValidity()) return;
    const uniform = input.value.trim();
    try {
      await post(`/api/events/${event.event_id}/uniform-examples`, { uniform_id: uniform, label: labelValue });
      clear(status).append(t(labelValue === "positive" ? "examples.added_positive" : "examples.added_negative", { uniform }));
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      clear(status).append(h("span", { class: "error" }, t("examples.refused"), " ", data(error.message)));
    }
    await load();
  };
  const form = h("form", { class: "example-form", onsubmit: (e) => e.preventDefault() },
    h("label", {}, t("examples.uniform"), " ", input),
    h("datalist", { id: "uniform-ids" }, known.map((id) => h("option", { value: id }))),
    h("button", { type: "button", class: "positive", onclick: () => add("positive") }, t("examples.add_positive")),
    h("button", { type: "button", class: "negative", onclick: () => add("negative") }, t("examples.add_negative")));
  input.addEventListener("change", load);
  section.append(form, status, list);
  await load();
  return section;
}
