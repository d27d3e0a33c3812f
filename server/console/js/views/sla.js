// The SLA countdown of a ticket's current stage, coloured: ok, warn (last fifth of the time), late.
import { h } from "../dom.js";
import { formatDuration, t } from "../i18n.js";

export function slaBadge(ticket, now = Date.now()) {
  if (!ticket.due_at) return h("span", { class: "sla none" }, t("sla.none"));
  const due = Date.parse(ticket.due_at);
  const entered = Date.parse(ticket.stage_entered_at);
  const left = (due - now) / 1000;
  let state = "ok";
  if (left <= 0 || ticket.overdue) state = "late";
  else if (left < 0.2 * ((due - entered) / 1000)) state = "warn";
  const text = left <= 0 ? t("sla.late", { d: formatDuration(-left) }) : t("sla.left", { d: formatDuration(left) });
  return h("span", { class: `sla ${state}`, title: t(`sla.state.${state}`), dataset: { sla: state } }, text);
}
