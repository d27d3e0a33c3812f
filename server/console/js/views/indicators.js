// Indicators drawn with a little SVG of our own (no chart library to fetch): events per hour,
// tickets by stage, closing and on-time rates per group and period; CSV export of the same rows;
// and the weekly false-alarm rate per rule, camera or zone, which tells a supervisor where to redraw.
import { get, query } from "../api.js";
import { clear, data, h, svg } from "../dom.js";
import { label, t } from "../i18n.js";
import { STAGES } from "./tickets.js";

const W = 640;
const H = 220;
const PAD = 32;

// Vertical bars; values >= 0; labels under every nth bar.
function barChart(title, points, { max = null, format = String, every = 1 } = {}) {
  const top = max ?? Math.max(1, ...points.map((p) => p.value));
  const step = (W - 2 * PAD) / Math.max(1, points.length);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title },
    svg("line", { x1: PAD, y1: H - PAD, x2: W - PAD, y2: H - PAD, class: "axis" }));
  points.forEach((p, i) => {
    const height = (p.value / top) * (H - 2 * PAD);
    const x = PAD + i * step + step * 0.15;
    chart.append(svg("rect", { x, y: H - PAD - height, width: step * 0.7, height, class: "bar" },
      svg("title", {}, `${p.label}: ${format(p.value)}`)));
    if (p.value) chart.append(svg("text", { x: x + step * 0.35, y: H - PAD - height - 4, class: "value" }, format(p.value)));
    if (i % every === 0) chart.append(svg("text", { x: x + step * 0.35, y: H - PAD + 14, class: "tick" }, p.label));
  });
  return h("figure", { class: "chart-box" }, h("figcaption", {}, title), chart);
}

const percent = (v) => `${Math.round(v * 100)}%`;

export async function indicatorsView(root) {
  const form = h("form", { class: "filters" },
    h("label", {}, t("ind.by"), " ", h("select", { name: "by" }, ["grid", "community", "street", "type", "none"].map((v) => h("option", { value: v }, t(`ind.by.${v}`))))),
    h("label", {}, t("ind.period"), " ", h("select", { name: "period" }, ["none", "day", "month"].map((v) => h("option", { value: v }, t(`ind.period.${v}`))))));
  const csv = h("a", { class: "button", download: "indicators.csv" }, t("ind.csv"));
  const charts = h("div", { class: "charts" });
  root.append(h("h2", {}, t("ind.heading")), form, csv, charts);

  const draw = async () => {
    const params = { by: form.elements.by.value, period: form.elements.period.value };
    csv.setAttribute("href", `/api/indicators.csv${query(params)}`);
    const [hourly, rows, ...stageTotals] = await Promise.all([
      get("/api/events/hourly?hours=24"), get(`/api/indicators${query(params)}`),
      ...STAGES.map((stage) => get(`/api/tickets${query({ stage, limit: 1 })}`))]);
    clear(charts);
    charts.append(barChart(t("ind.events_per_hour"), hourly.map((p) => ({ label: String(new Date(p.hour).getHours()).padStart(2, "0"), value: p.events })), { every: 3 }));
    charts.append(barChart(t("ind.by_stage"), STAGES.map((stage, i) => ({ label: label("stage", stage), value: stageTotals[i].total }))));
    // null: tickets from a camera the registry does not place (no grid, community or street).
    const group = (r) => (r.group === "all" ? t("ind.all") : r.group === null ? t("ind.unplaced") : String(r.group));
    const name = (r) => (r.period && r.period !== "all" ? `${group(r)} ${r.period}` : group(r));
    charts.append(barChart(t("ind.closing_rate"), rows.map((r) => ({ label: name(r), value: r.closing_rate || 0 })), { max: 1, format: percent }));
    charts.append(barChart(t("ind.on_time_rate"), rows.map((r) => ({ label: name(r), value: r.on_time_rate || 0 })), { max: 1, format: percent }));
  };
  form.addEventListener("change", draw);
  await draw();
  root.append(await falseAlarms());
  return null;
}

// 误报率 per week: the latest week as bars, every week as a table with the reasons counted.
async function falseAlarms() {
  const by = h("select", { name: "fa_by" }, ["camera", "zone", "rule"].map((v) => h("option", { value: v }, t(`fa.by.${v}`))));
  const body = h("div", { class: "false-alarms-body" });
  const section = h("section", { class: "false-alarms" }, h("h3", {}, t("fa.heading")),
    h("form", { class: "filters" }, h("label", {}, t("ind.by"), " ", by)), body);
  const draw = async () => {
    const rows = await get(`/api/indicators/false-alarms${query({ by: by.value })}`);
    clear(body);
    if (!rows.length) {
      body.append(h("p", { class: "muted" }, t("fa.none")));
      return;
    }
    const groupName = (r) => (by.value === "rule" ? label("type", r.group) : data(r.group));
    const latest = rows[rows.length - 1].week;
    body.append(h("div", { class: "charts" }, barChart(t("fa.latest_week", { week: latest }), rows.filter((r) => r.week === latest)
      .map((r) => ({ label: by.value === "rule" ? label("type", r.group) : String(r.group), value: r.false_alarm_rate })), { max: 1, format: percent })));
    const reasons = (r) => Object.entries(r.reasons).map(([code, n]) => `${label("false_alarm", code)} ${n}`).join(" · ");
    body.append(h("table", { class: "audit false-alarm-rates" },
      h("thead", {}, h("tr", {}, ["fa.week", "fa.group", "fa.tickets", "fa.false_alarms", "fa.rate", "fa.reasons"].map((k) => h("th", {}, t(k))))),
      h("tbody", {}, [...rows].reverse().map((r) => h("tr", { dataset: { group: r.group, week: r.week, rate: r.false_alarm_rate } },
        h("td", {}, r.week), h("td", {}, groupName(r)), h("td", {}, String(r.tickets)), h("td", {}, String(r.false_alarms)),
        h("td", { class: "rate" }, percent(r.false_alarm_rate)), h("td", {}, reasons(r) || "—"))))));
  };
  by.addEventListener("change", draw);
  await draw();
  return section;
}
