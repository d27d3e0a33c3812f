// The gate: courier entries by company (the uniform recognised) and time, each with the courier's
// crop; opening a gate by hand, with a reason, recorded with who did it.
import { get, post, query } from "../api.js";
import { clear, data, h } from "../dom.js";
import { formatTime, t } from "../i18n.js";
import { onLive } from "../live.js";
import { snapshotFigure } from "./evidence.js";

function openForm(gates, onOpened) {
  const [first] = gates;
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "gate-open" },
    h("label", {}, t("gate.site"), h("input", { name: "site_id", required: true, value: first ? first.site_id : "" })),
    h("label", {}, t("gate.node"), h("input", { name: "node_id", required: true, value: first ? first.node_id : "" })),
    h("label", {}, t("gate.gate"), h("input", { name: "gate_id", required: true, value: first ? first.gate_id : "" })),
    h("label", {}, t("field.reason"), h("input", { name: "reason", required: true, maxlength: 200, size: 30 })),
    h("button", { type: "submit", class: "primary" }, t("gate.open")), error);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = form.elements;
    try {
      await post(`/api/gates/${encodeURIComponent(f.site_id.value)}/${encodeURIComponent(f.node_id.value)}/${encodeURIComponent(f.gate_id.value)}/open`,
        { reason: f.reason.value.trim() });
      f.reason.value = "";
      error.textContent = "";
      onOpened();
    } catch (err) {
      error.textContent = err.message;
    }
  });
  return form;
}

// What the edge did at the gate for this entry: the open command it sent, or why it did not.
function gateOutcome(attributes) {
  const gate = attributes.gate_id;
  if (!gate) return null;
  const params = { gate, reason: attributes.gate_reason || attributes.gate_decision };
  const key = attributes.gate === "sent" ? "gate.command_sent" : attributes.gate === "not_sent" ? "gate.command_not_sent" : "gate.refused";
  return h("span", { class: `gate-outcome ${attributes.gate || "refused"}`, dataset: { commandId: attributes.gate_command_id || "" } },
    h("br"), t(key, params));
}

export async function gateView(root) {
  const entries = h("div", { class: "gate" });
  const openings = h("ol", { class: "openings" });
  const formSlot = h("div");
  root.append(h("h2", {}, t("gate.heading")), entries, h("h3", {}, t("gate.manual")), formSlot,
    h("h3", {}, t("gate.openings")), openings);
  const loadOpenings = async () => {
    const rows = await get("/api/gates/openings");
    clear(openings).append(...(rows.length ? rows.map((row) => h("li", { dataset: { commandId: row.command_id } },
      formatTime(row.at), " · ", data(row.gate_id), " · ", data(row.actor), " · ", data(row.reason),
      row.published ? "" : [" · ", t("gate.not_sent")])) : [h("li", { class: "muted" }, t("gate.no_openings"))]));
  };
  const load = async () => {
    const page = await get(`/api/events${query({ type: "courier_entry", limit: 200 })}`);
    const starts = page.items.filter((e) => e.phase === "start");
    const byCompany = new Map();
    for (const e of starts) {
      const company = (e.payload.attributes || {}).uniform_id || t("gate.unknown_company");
      byCompany.set(company, [...(byCompany.get(company) || []), e]);
    }
    entries.replaceChildren(...(byCompany.size ? [...byCompany].map(([company, list]) => h("section", { class: "company" },
      h("h3", {}, data(company), " ", h("span", { class: "count" }, String(list.length))),
      h("div", { class: "crops" }, list.map((e) => h("figure", {},
        e.snapshot_sha256 && e.payload.object
          ? snapshotFigure(e.snapshot_sha256, e.payload.snapshot, { box: e.payload.object.box, crop: true, cls: "shot crop", ticketId: e.ticket_id }) : null,
        h("figcaption", {}, formatTime(e.observed_at), " · ", data(e.camera_id), gateOutcome(e.payload.attributes || {}))))))) : [h("p", { class: "muted" }, t("gate.none"))]));
    const gates = [];
    for (const e of starts) {
      const gate = (e.payload.attributes || {}).gate_id;
      if (gate && !gates.some((g) => g.gate_id === gate && g.node_id === e.node_id)) gates.push({ site_id: e.site_id, node_id: e.node_id, gate_id: gate });
    }
    if (!formSlot.firstChild) formSlot.append(openForm(gates, loadOpenings));
  };
  await Promise.all([load(), loadOpenings()]);
  return onLive("event", (e) => { if (e.type === "courier_entry") load(); });
}
