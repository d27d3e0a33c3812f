// GridWatch console: the ticket list, live over Server-Sent Events. No build step, no CDN.
"use strict";

// ---- message catalogue (zh-CN first, English second) ---------------------------------------
const MESSAGES = {
  "zh-CN": {
    "title": "网格工单",
    "live.open": "实时",
    "live.connecting": "连接中…",
    "tickets.heading": "工单",
    "tickets.count": (n) => `共 ${n} 条`,
    "tickets.empty": "暂无工单。边缘设备上报事件后，工单会实时出现在这里。",
    "tickets.error": "无法加载工单：",
    "col.snapshot": "快照",
    "col.type": "类型",
    "col.place": "摄像头 / 区域",
    "col.opened": "发生时间",
    "col.events": "事件数",
    "col.dwell": "停留时长",
    "col.stage": "状态",
    "snapshot.none": "无快照",
    "zone": "区域",
    "ended": "已结束",
    "ongoing": "进行中",
    "switch": "English",
    "duration": (m, s) => (m ? `${m}分${s}秒` : `${s}秒`),
    "type.loitering": "徘徊逗留",
    "type.fire_lane_blocked": "消防通道占用",
    "type.fire_lane_obstructed": "消防通道堆物",
    "type.courier_entry": "快递员进入",
    "type.courier_overstay": "快递员滞留",
    "type.camera_offline": "摄像头离线",
    "type.camera_tamper": "摄像头遮挡/移位",
    "stage.reported": "已上报",
    "stage.registered": "已立案",
    "stage.voided": "已作废",
    "stage.dispatched": "已派遣",
    "stage.handling": "处置中",
    "stage.feedback": "已反馈",
    "stage.verified": "已核查",
    "stage.closed": "已结案",
    "stage.evaluated": "已评价",
    "stage.parked": "挂账",
  },
  "en": {
    "title": "Grid tickets",
    "live.open": "Live",
    "live.connecting": "Connecting…",
    "tickets.heading": "Tickets",
    "tickets.count": (n) => `${n} total`,
    "tickets.empty": "No tickets yet. They appear here live as edge boxes report events.",
    "tickets.error": "Could not load tickets: ",
    "col.snapshot": "Snapshot",
    "col.type": "Type",
    "col.place": "Camera / zone",
    "col.opened": "Opened",
    "col.events": "Events",
    "col.dwell": "Dwell",
    "col.stage": "Stage",
    "snapshot.none": "No snapshot",
    "zone": "Zone",
    "ended": "Ended",
    "ongoing": "Ongoing",
    "switch": "中文",
    "duration": (m, s) => (m ? `${m}m ${s}s` : `${s}s`),
    "type.loitering": "Loitering",
    "type.fire_lane_blocked": "Fire lane blocked",
    "type.fire_lane_obstructed": "Fire lane obstructed",
    "type.courier_entry": "Courier entry",
    "type.courier_overstay": "Courier overstay",
    "type.camera_offline": "Camera offline",
    "type.camera_tamper": "Camera tampered",
    "stage.reported": "Reported",
    "stage.registered": "Registered",
    "stage.voided": "Voided",
    "stage.dispatched": "Dispatched",
    "stage.handling": "Handling",
    "stage.feedback": "Feedback",
    "stage.verified": "Verified",
    "stage.closed": "Closed",
    "stage.evaluated": "Evaluated",
    "stage.parked": "Parked",
  },
};

const LANG_KEY = "gridwatch.lang";
let lang = MESSAGES[localStorage.getItem(LANG_KEY)] ? localStorage.getItem(LANG_KEY) : "zh-CN";

function t(key, ...args) {
  const value = MESSAGES[lang][key] ?? MESSAGES["zh-CN"][key];
  if (value === undefined) return key.includes(".") ? key.slice(key.indexOf(".") + 1) : key;
  return typeof value === "function" ? value(...args) : value;
}

// ---- state ------------------------------------------------------------------------------------
const tickets = new Map(); // id -> ticket as the API returns it
let total = 0;
const LIST_LIMIT = 200;

function newestFirst(a, b) {
  return b.opened_at.localeCompare(a.opened_at) || b.id - a.id;
}

// ---- rendering (DOM nodes and textContent only: ticket data never becomes markup) ---------------
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function formatTime(iso) {
  const date = new Date(iso);
  return new Intl.DateTimeFormat(lang, { dateStyle: "short", timeStyle: "medium" }).format(date);
}

function formatDuration(seconds) {
  if (typeof seconds !== "number" || !isFinite(seconds)) return "–";
  const s = Math.round(seconds);
  return t("duration", Math.floor(s / 60), s % 60);
}

function thumbnail(ticket) {
  const sha = ticket.snapshot_sha256 || ticket.latest_snapshot_sha256; // the evidence, not the after-view
  const placeholder = el("span", "thumb none", t("snapshot.none"));
  if (!sha) return placeholder;
  const img = el("img", "thumb");
  img.src = `/api/snapshots/${sha}`;
  img.alt = t(`type.${ticket.type}`);
  img.loading = "lazy";
  // The edge uploads the image after it publishes the event: show a placeholder until then.
  img.addEventListener("error", () => img.replaceWith(placeholder), { once: true });
  return img;
}

function renderRow(ticket, fresh) {
  const row = el("div", fresh ? "row fresh" : "row");
  row.setAttribute("role", "row");
  row.dataset.id = String(ticket.id);

  const snap = el("span");
  snap.appendChild(thumbnail(ticket));

  const type = el("span", `type type-${ticket.type}`, t(`type.${ticket.type}`));

  const place = el("span", "place", ticket.camera_id);
  place.appendChild(el("small", "", `${t("zone")} ${ticket.zone_id} · ${ticket.site_id}/${ticket.node_id}`));

  const opened = el("span", "opened", formatTime(ticket.opened_at));
  opened.appendChild(el("small", "", ticket.ended_at ? `${t("ended")} ${formatTime(ticket.ended_at)}`
    : t("ongoing")));

  const count = el("span", "num", String(ticket.event_count));
  const dwell = el("span", "num", formatDuration(ticket.attributes?.dwell_s));
  const stage = el("span", `stage stage-${ticket.ended_at ? "ended" : ticket.stage}`, t(`stage.${ticket.stage}`));

  for (const cell of [snap, type, place, opened, count, dwell, stage]) {
    cell.setAttribute("role", "cell");
    row.appendChild(cell);
  }
  return row;
}

function render(freshId) {
  const rows = document.getElementById("ticket-rows");
  const sorted = [...tickets.values()].sort(newestFirst).slice(0, LIST_LIMIT);
  rows.replaceChildren(...sorted.map((ticket) => renderRow(ticket, ticket.id === freshId)));
  document.getElementById("empty").hidden = sorted.length > 0;
  document.getElementById("count").textContent = t("tickets.count", total);
}

function applyLanguage() {
  document.documentElement.lang = lang;
  document.title = `GridWatch ${t("title")}`;
  for (const node of document.querySelectorAll("[data-i18n]")) {
    node.textContent = t(node.dataset.i18n);
  }
  document.getElementById("lang").textContent = t("switch");
  render();
}

// ---- data -------------------------------------------------------------------------------------
async function loadTickets() {
  const error = document.getElementById("error");
  try {
    const response = await fetch(`/api/tickets?limit=${LIST_LIMIT}`, { headers: { Accept: "application/json" } });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error?.message || response.statusText);
    tickets.clear();
    for (const ticket of body.items) tickets.set(ticket.id, ticket);
    total = body.total;
    error.hidden = true;
    render();
  } catch (err) {
    error.textContent = t("tickets.error") + err.message;
    error.hidden = false;
  }
}

function setLive(open) {
  const live = document.getElementById("live");
  live.className = open ? "live live-open" : "live live-connecting";
  live.dataset.i18n = open ? "live.open" : "live.connecting";
  live.textContent = t(live.dataset.i18n);
}

function connect() {
  const source = new EventSource("/api/stream");
  let lost = false;
  // After a reconnect reload the list, so nothing announced while away is missed.
  source.addEventListener("open", () => {
    setLive(true);
    if (lost) loadTickets();
    lost = false;
  });
  source.addEventListener("error", () => {
    lost = true;
    setLive(false);
  });
  source.addEventListener("ticket", (message) => {
    const { action, ticket } = JSON.parse(message.data);
    if (action === "created" && !tickets.has(ticket.id)) total += 1;
    tickets.set(ticket.id, ticket);
    render(ticket.id);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("lang").addEventListener("click", () => {
    lang = lang === "zh-CN" ? "en" : "zh-CN";
    localStorage.setItem(LANG_KEY, lang);
    applyLanguage();
  });
  applyLanguage();
  connect(); // subscribe first, then read the list: a ticket made in between is not lost
  loadTickets();
});
