// One ticket: evidence, facts, occurrences, linked tickets, the audit trail, and the actions the
// logged-in person may take at this stage (the server says which, and checks again on submit).
import { api, get, post } from "../api.js";
import { clear, data, h } from "../dom.js";
import { formatTime, label, t } from "../i18n.js";
import { onLive } from "../live.js";
import { clips, evidence } from "./evidence.js";
import { slaBadge } from "./sla.js";

function fact(key, value) {
  return [h("dt", {}, t(key)), h("dd", {}, value)];
}

// Registry person id -> name, so the audit trail says who in words (ids stay in the title).
async function peopleNames() {
  const names = new Map();
  try {
    const doc = await get("/api/registry");
    for (const street of doc.streets) for (const community of street.communities) {
      if (community.leader) names.set(community.leader.id, community.leader.name);
      for (const grid of community.grids) for (const person of [grid.leader, ...grid.workers].filter(Boolean)) names.set(person.id, person.name);
    }
    for (const dept of doc.departments) for (const person of dept.members || []) names.set(person.id, person.name);
  } catch {
    // no registry imported yet: ids alone
  }
  return names;
}

async function assigneeOptions(ticket) {
  const doc = await get("/api/registry");
  const options = [];
  for (const street of doc.streets) for (const community of street.communities) for (const grid of community.grids) {
    if (grid.id !== ticket.grid_id) continue;
    for (const person of [grid.leader, ...grid.workers].filter(Boolean)) {
      options.push(h("option", { value: `worker:${person.id}` }, `${person.name} (${person.id})`));
    }
  }
  for (const dept of doc.departments) options.push(h("option", { value: `department:${dept.id}` }, dept.name));
  return options;
}

async function uploadPhoto(file) {
  const stored = await api("POST", "/api/snapshots", file, file.type || "image/jpeg");
  return stored.sha256;
}

// The form for one action: only the fields it needs.
async function actionForm(ticket, action, needs, choices, done, refused = null) {
  const form = h("form", { class: "action-form", dataset: { action } });
  const fields = new Set(needs);
  if (action === "feedback") fields.add("photo");
  if (fields.has("false_alarm_reason")) {
    // A fixed reason to count by, and words for the supervisor (needed when the reason is "other").
    form.append(h("label", {}, t("field.false_alarm_reason"), h("select", { name: "false_alarm_reason", required: true },
      choices.false_alarm_reason.map((code) => h("option", { value: code }, label("false_alarm", code))))));
    form.append(h("label", {}, t("field.reason_optional"), h("textarea", { name: "reason", rows: 2 })));
  }
  if (fields.has("reason")) form.append(h("label", {}, t("field.reason"), h("textarea", { name: "reason", rows: 2, required: true })));
  if (fields.has("assignee_id")) {
    form.append(h("label", {}, t("field.assignee"), h("select", { name: "assignee", required: true }, await assigneeOptions(ticket))));
  }
  if (fields.has("result")) form.append(h("label", {}, t("field.result"), h("textarea", { name: "result", rows: 2, required: true })));
  if (fields.has("photo")) {
    form.append(h("label", {}, t("field.photo"),
      h("input", { type: "file", name: "photo", accept: "image/*", capture: "environment" })));
  }
  if (fields.has("rating")) {
    form.append(h("label", {}, t("field.rating"), h("select", { name: "rating" },
      [5, 4, 3, 2, 1].map((n) => h("option", { value: n }, t("rating.stars", { n }))))));
  }
  if (fields.has("extension")) {
    form.append(h("label", {}, t("field.extension"), h("input", { type: "number", name: "limit", min: 1, value: 1, required: true }),
      h("select", { name: "limit_type" }, ["working_hours", "working_days", "urgent_minutes"].map((v) => h("option", { value: v }, t(`limit.${v}`))))));
  }
  const error = h("p", { class: "error", role: "alert" });
  form.append(h("button", { type: "submit", class: "primary" }, t("common.confirm", { action: label("action", action) })), error);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { action, expected_version: ticket.version };
    const el = form.elements;
    if (el.reason && el.reason.value.trim()) body.reason = el.reason.value.trim();
    if (el.false_alarm_reason) body.false_alarm_reason = el.false_alarm_reason.value;
    if (el.result) body.result = el.result.value.trim();
    if (el.rating) body.rating = Number(el.rating.value);
    if (el.assignee) [body.assignee_kind, body.assignee_id] = el.assignee.value.split(":");
    if (el.limit) body.extension = { limit: Number(el.limit.value), type: el.limit_type.value };
    form.querySelector("button").disabled = true;
    try {
      if (el.photo && el.photo.files.length) body.photo_sha256 = await uploadPhoto(el.photo.files[0]);
      await post(`/api/tickets/${ticket.id}/transitions`, body);
      done();
    } catch (err) {
      error.textContent = err.message;
      form.querySelector("button").disabled = false;
      if (refused) await refused();
    }
  });
  return form;
}

export async function ticketView(root, me, id) {
  // Outside the body that every live update redraws: a lost grab-order race must stay said.
  const notice = h("p", { class: "notice", role: "status" });
  const body = h("div", { class: "ticket" });
  root.append(notice, body);
  const lostClaim = async () => {
    const [ticket, names] = await Promise.all([get(`/api/tickets/${id}`), peopleNames()]);
    if (ticket.assignee_id && ticket.assignee_id !== (me.unit || me.person_id)) {
      notice.textContent = t("ticket.taken_by", { name: names.get(ticket.assignee_id) || ticket.assignee_id });
      await render();  // the ticket as it is now: its new handler, and no claim left to try
    }
  };
  const render = async () => {
    const [ticket, trail, actions, names] = await Promise.all([
      get(`/api/tickets/${id}`), get(`/api/tickets/${id}/transitions`), get(`/api/tickets/${id}/actions`), peopleNames()]);
    const who = (personId) => data(names.get(personId) || personId, "span", { title: personId });
    clear(body);
    body.append(h("h2", {}, t("ticket.heading", { id: ticket.id }), " ", label("type", ticket.type), " ",
      h("span", { class: `stage stage-${ticket.stage}`, "data-stage": ticket.stage }, label("stage", ticket.stage)), " ", slaBadge(ticket)));
    const buttons = h("div", { class: "actions" });
    const formSlot = h("div", { class: "form-slot" });
    for (const { action, needs, choices = {} } of actions) {
      buttons.append(h("button", { type: "button", dataset: { action }, onclick: async () => {
        clear(formSlot).append(await actionForm(ticket, action, needs, choices, render, action === "claim" ? lostClaim : null));
      } }, label("action", action)));
    }
    if (!actions.length) buttons.append(h("p", { class: "muted" }, t("ticket.no_actions")));
    body.append(h("section", { class: "act" }, h("h3", {}, t("ticket.actions")), buttons, formSlot));
    body.append(h("dl", { class: "facts" },
      fact("ticket.category", data(`${ticket.category} / ${ticket.subcategory}`)),
      fact("ticket.place", [data(ticket.camera_id), " / ", data(ticket.zone_id)]),
      fact("ticket.grid", data(ticket.grid_id)),
      fact("ticket.assignee", ticket.assignee_id ? who(ticket.assignee_id) : "—"),
      fact("ticket.opened", formatTime(ticket.opened_at)),
      fact("ticket.incidents", String(ticket.incident_count)),
      fact("ticket.events", String(ticket.event_count)),
      fact("ticket.rework", String(ticket.rework_count)),
      fact("ticket.rating", ticket.rating ? t("rating.stars", { n: ticket.rating }) : "—"),
      fact("ticket.false_alarm", ticket.false_alarm_reason
        ? h("span", { class: "false-alarm", dataset: { reason: ticket.false_alarm_reason } }, label("false_alarm", ticket.false_alarm_reason)) : "—"),
      fact("ticket.linked", ticket.previous_ticket_id
        ? h("a", { href: `#/ticket/${ticket.previous_ticket_id}` }, t("ticket.previous", { id: ticket.previous_ticket_id })) : "—"),
      ...(ticket.plate ? plateFacts(ticket, me, render) : [])));
    const first = ticket.events[0];
    if (first) body.append(await evidence(first, { linkTicket: false, me }));
    const videos = await clips(ticket.id);
    if (videos) body.append(videos);
    body.append(h("h3", {}, t("ticket.audit")), h("table", { class: "audit" },
      h("thead", {}, h("tr", {}, ["audit.at", "audit.action", "audit.from_to", "audit.actor", "audit.details"].map((k) => h("th", {}, t(k))))),
      h("tbody", {}, trail.map((entry) => h("tr", { dataset: { action: entry.action } },
        h("td", {}, formatTime(entry.at)), h("td", {}, label("action", entry.action)),
        h("td", {}, entry.from_stage ? label("stage", entry.from_stage) : "—", " → ", label("stage", entry.to_stage)),
        h("td", { dataset: { actor: entry.actor } }, entry.role === "system" ? label("role", "system") : [who(entry.actor), " (", label("role", entry.role), ")"]),
        h("td", {}, details(entry.details)))))));
  };
  await render();
  return onLive("ticket", (message) => { if (message.ticket.id === Number(id)) render(); });
}

// A fire-lane ticket's plate as the edge read it, the owner from the residents' vehicle list, and the
// one "notify owner" a security guard sends to the site's SMS/WeChat gateway (server: once per ticket).
const NOTIFIERS = new Set(["admin", "supervisor", "security"]);

function plateFacts(ticket, me, done) {
  const plate = ticket.plate;
  const read = plate.status === "read"
    ? [h("strong", { class: "plate", dataset: { plate: plate.text } }, `${plate.text.slice(0, 2)}·${plate.text.slice(2)}`), " ",
      plate.colour ? t("ticket.plate_colour", { colour: t(`colour.${plate.colour}`) }) : "",
      plate.crop_sha256 ? [" ", h("img", { class: "plate-crop", src: `/api/snapshots/${plate.crop_sha256}`, alt: plate.text })] : ""]
    : h("span", { class: "muted" }, t("ticket.plate_unreadable"));
  const facts = [...fact("ticket.plate", read)];
  if (plate.status !== "read") return facts;
  if (!ticket.owner) return [...facts, ...fact("ticket.owner", h("span", { class: "muted" }, t("ticket.owner_unknown")))];
  const error = h("p", { class: "error", role: "alert" });
  const owner = [data(ticket.owner.unit, "span", { class: "owner-unit" }), " · ", data(ticket.owner.person), " · ", data(ticket.owner.phone)];
  if (ticket.owner_notified) owner.push(" ", h("span", { class: "muted notified" }, t("ticket.owner_notified")));
  else if (NOTIFIERS.has(me.role)) {
    owner.push(" ", h("button", { type: "button", class: "primary notify-owner", onclick: async (e) => {
      e.target.disabled = true;
      try { await post(`/api/tickets/${ticket.id}/notify-owner`); await done(); } catch (err) { error.textContent = err.message; e.target.disabled = false; }
    } }, t("ticket.notify_owner")), error);
  }
  return [...facts, ...fact("ticket.owner", owner)];
}

function details(d) {
  const parts = [];
  if (d.false_alarm_reason) parts.push(h("span", {}, t("field.false_alarm_reason"), ": ", label("false_alarm", d.false_alarm_reason), " "));
  for (const key of ["reason", "result", "assignee_id", "rating", "unit"]) if (d[key] !== undefined) parts.push(h("span", {}, t(`field.${key}`), ": ", data(d[key]), " "));
  if (d.photo_sha256) parts.push(h("a", { href: `/api/snapshots/${d.photo_sha256}`, target: "_blank", class: "photo-link" }, t("field.photo")));
  return parts;
}
