// The ticket board: one column per stage, SLA countdown colours, and bulk actions for supervisors.
import { get, post, query } from "../api.js";
import { append, clear, data, h } from "../dom.js";
import { label, t } from "../i18n.js";
import { onLive } from "../live.js";
import { slaBadge } from "./sla.js";

export const STAGES = ["reported", "registered", "dispatched", "handling", "feedback", "verified", "parked", "closed",
  "evaluated", "voided"];
// The board's columns: each open stage, then one column for everything finished (so it fits a screen).
const DONE = new Set(["closed", "evaluated", "voided"]);
const COLUMNS = [...STAGES.filter((stage) => !DONE.has(stage)), "done"];
// Bulk actions need nothing but an optional reason, so one form serves them all.
const BULK = ["register", "void", "verify", "close", "park"];

export function ticketCard(ticket, { selectable = false } = {}) {
  return h("article", { class: `card${ticket.overdue ? " overdue" : ""}`, dataset: { ticketId: ticket.id, stage: ticket.stage } },
    selectable ? h("input", { type: "checkbox", class: "pick", value: ticket.id, "aria-label": t("board.pick", { id: ticket.id }) }) : null,
    h("a", { href: `#/ticket/${ticket.id}`, class: "card-link" },
      h("strong", {}, `#${ticket.id} `, label("type", ticket.type)),
      h("span", { class: "where" }, data(ticket.camera_id), " / ", data(ticket.zone_id)),
      h("span", { class: "grid" }, data(ticket.grid_id))),
    h("div", { class: "card-foot" }, label("stage", ticket.stage), " ", slaBadge(ticket),
      ticket.incident_count > 1 ? h("span", { class: "count" }, t("ticket.occurrences", { n: ticket.incident_count })) : null));
}

export async function boardView(root, me) {
  const managers = me.role === "admin" || me.role === "supervisor";
  const board = h("div", { class: "board" });
  const message = h("p", { class: "message", role: "status" });
  const bulk = managers ? h("form", { class: "bulk" },
    h("label", {}, t("board.bulk"), " ", h("select", { name: "action" },
      BULK.map((a) => h("option", { value: a }, label("action", a))))),
    h("input", { name: "reason", placeholder: t("field.reason"), size: 24 }),
    h("button", { type: "submit" }, t("board.apply"))) : null;
  append(root, [h("h2", {}, t("board.heading")), bulk, message, board]);  // bulk is null for a guard

  const load = async () => {
    const page = await get(`/api/tickets${query({ limit: 500 })}`);
    clear(board);
    for (const stage of COLUMNS) {
      const cards = page.items.filter((ticket) => (stage === "done" ? DONE.has(ticket.stage) : ticket.stage === stage));
      board.append(h("section", { class: "column", dataset: { stage } },
        h("h3", {}, stage === "done" ? t("board.done") : label("stage", stage), h("span", { class: "count" }, String(cards.length))),
        cards.map((ticket) => ticketCard(ticket, { selectable: managers }))));
    }
  };
  if (bulk) {
    bulk.addEventListener("submit", async (e) => {
      e.preventDefault();
      const action = bulk.elements.action.value;
      const reason = bulk.elements.reason.value.trim();
      const picked = [...board.querySelectorAll(".pick:checked")].map((box) => Number(box.value));
      let done = 0;
      const failed = [];
      for (const id of picked) {
        try {
          await post(`/api/tickets/${id}/transitions`, reason ? { action, reason } : { action });
          done += 1;
        } catch (error) {
          failed.push(`#${id}: ${error.message}`);
        }
      }
      message.textContent = t("board.bulk_result", { done, failed: failed.length });
      if (failed.length) message.append(h("br"), data(failed.join("; ")));
      await load();
    });
  }
  await load();
  let pending = null;
  return onLive("ticket", () => {  // a burst of changes reloads the board once
    clearTimeout(pending);
    pending = setTimeout(load, 300);
  });
}

export async function mineView(root, me) {
  const mine = h("div", { class: "cards" });
  const claimable = h("div", { class: "cards" });
  root.append(h("h2", {}, t("mine.heading")), mine, h("h2", {}, t("mine.claimable")), claimable);
  const load = async () => {
    const [assigned, open] = await Promise.all([
      get(`/api/tickets${query({ assignee_id: me.unit || me.person_id, limit: 200 })}`),
      get(`/api/tickets${query({ stage: "registered", limit: 200 })}`),
    ]);
    const active = assigned.items.filter((ticket) => !["closed", "evaluated", "voided", "verified"].includes(ticket.stage));
    clear(mine).append(...(active.length ? active.map((ticket) => ticketCard(ticket)) : [h("p", { class: "muted" }, t("mine.none"))]));
    const free = me.role === "grid_worker" ? open.items : [];
    clear(claimable).append(...(free.length ? free.map((ticket) => ticketCard(ticket)) : [h("p", { class: "muted" }, t("mine.none_claimable"))]));
  };
  await load();
  return onLive("ticket", load);
}
