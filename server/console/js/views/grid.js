// The registry as a tree: district → street → community → grid, with each grid's open tickets and people.
import { get, query } from "../api.js";
import { data, h } from "../dom.js";
import { t } from "../i18n.js";

const OPEN = new Set(["reported", "registered", "dispatched", "handling", "feedback", "parked"]);

export async function gridView(root) {
  root.append(h("h2", {}, t("grid.heading")));
  let doc;
  try {
    doc = await get("/api/registry");
  } catch (error) {
    root.append(h("p", { class: "muted" }, t("grid.none")));
    return null;
  }
  const tickets = (await get(`/api/tickets${query({ limit: 500 })}`)).items;
  const open = new Map();
  for (const ticket of tickets) if (OPEN.has(ticket.stage)) open.set(ticket.grid_id, [...(open.get(ticket.grid_id) || []), ticket]);
  const gridNode = (grid) => h("li", { class: "grid-node", dataset: { grid: grid.id } },
    h("details", { open: true },
      h("summary", {}, data(grid.name), " ", h("span", { class: "count" }, t("grid.open", { n: (open.get(grid.id) || []).length }))),
      h("p", {}, t("grid.leader"), ": ", data(grid.leader ? grid.leader.name : null), " · ", t("grid.workers"), ": ",
        data((grid.workers || []).map((p) => p.name).join("、"))),
      h("ul", { class: "open-tickets" }, (open.get(grid.id) || []).map((ticket) => h("li", {},
        h("a", { href: `#/ticket/${ticket.id}` }, `#${ticket.id} `, t(`type.${ticket.type}`), " · ", t(`stage.${ticket.stage}`)))))));
  root.append(h("ul", { class: "tree" }, h("li", {}, h("strong", {}, data(doc.district.name)),
    h("ul", {}, doc.streets.map((street) => h("li", {}, data(street.name),
      h("ul", {}, street.communities.map((community) => h("li", {}, data(community.name),
        h("ul", {}, community.grids.map(gridNode)))))))))));
  return null;
}
