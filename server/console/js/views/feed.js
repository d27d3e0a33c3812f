// The live event feed: newest first, filters, a sound and a highlight for urgent types, and the
// evidence of an event one click away.
import { get, query } from "../api.js";
import { clear, data, h } from "../dom.js";
import { formatTime, label, t } from "../i18n.js";
import { onLive } from "../live.js";
import { evidence, snapshotFigure } from "./evidence.js";

export const EVENT_TYPES = ["loitering", "fire_lane_blocked", "fire_lane_obstructed", "courier_entry",
  "courier_overstay", "camera_offline", "camera_tamper", "edge_outbox_overflow"];
const PHASES = ["start", "update", "end"];
const URGENT = new Set(["fire_lane_blocked", "fire_lane_obstructed"]);
const MAX_ROWS = 200;

function beep() {
  try {
    const audio = new AudioContext();
    const tone = audio.createOscillator();
    const gain = audio.createGain();
    tone.frequency.value = 880;
    gain.gain.value = 0.2;
    tone.connect(gain).connect(audio.destination);
    tone.start();
    tone.stop(audio.currentTime + 0.4);
    window.gridwatchBeeps = (window.gridwatchBeeps || 0) + 1;
  } catch {
    // no audio device (a kiosk without speakers): the highlight alone
  }
}

function select(name, options, labelOf) {
  return h("label", {}, t(`feed.filter.${name}`), " ",
    h("select", { name }, h("option", { value: "" }, t("feed.filter.any")),
      options.map((value) => h("option", { value }, labelOf(value)))));
}

export async function feedView(root, me) {
  const filters = h("form", { class: "filters", onsubmit: (e) => e.preventDefault() },
    h("label", {}, t("feed.filter.site"), " ", h("input", { name: "site_id", size: 14 })),
    h("label", {}, t("feed.filter.camera"), " ", h("input", { name: "camera_id", size: 14 })),
    select("type", EVENT_TYPES, (v) => label("type", v)),
    select("phase", PHASES, (v) => label("phase", v)));
  const list = h("ol", { class: "feed", "aria-live": "polite" });
  const detail = h("div", { class: "detail" });
  root.append(h("h2", {}, t("feed.heading")), filters, h("div", { class: "split" }, list, detail));

  const value = (name) => filters.elements[name].value.trim();
  const matches = (e) => (!value("site_id") || e.site_id === value("site_id"))
    && (!value("camera_id") || e.camera_id === value("camera_id"))
    && (!value("type") || e.type === value("type")) && (!value("phase") || e.phase === value("phase"));

  const row = (e, fresh) => {
    const urgent = URGENT.has(e.type);
    const item = h("li", { class: `event${urgent ? " urgent" : ""}${fresh ? " fresh" : ""}`, tabindex: 0,
      dataset: { eventId: e.event_id, type: e.type } },
    e.snapshot_sha256 ? snapshotFigure(e.snapshot_sha256, e.payload.snapshot, { cls: "thumb", ticketId: e.ticket_id })
      : h("span", { class: "thumb none" }, t("evidence.none")),
    h("span", { class: "what" }, h("strong", {}, label("type", e.type)), " ", h("span", { class: "phase" }, label("phase", e.phase))),
    h("span", { class: "where" }, data(e.camera_id), " / ", data(e.zone_id)),
    h("time", {}, formatTime(e.observed_at)));
    const open = async () => {
      for (const other of list.querySelectorAll(".selected")) other.classList.remove("selected");
      item.classList.add("selected");
      clear(detail).append(h("p", { class: "muted" }, t("common.loading")));
      clear(detail).append(await evidence(e, { me }));
    };
    item.addEventListener("click", open);
    item.addEventListener("keydown", (k) => { if (k.key === "Enter") open(); });
    return item;
  };

  const load = async () => {
    const params = { site_id: value("site_id"), camera_id: value("camera_id"), type: value("type"), limit: 100 };
    const page = await get(`/api/events${query(params)}`);
    clear(list).append(...page.items.filter(matches).map((e) => row(e, false)));
    if (!list.firstChild) list.append(h("li", { class: "empty" }, t("feed.empty")));
  };
  filters.addEventListener("change", load);
  await load();
  return onLive("event", (e) => {
    if (!matches(e)) return;
    const empty = list.querySelector(".empty");
    if (empty) empty.remove();
    list.prepend(row(e, true));
    while (list.children.length > MAX_ROWS) list.lastChild.remove();
    if (URGENT.has(e.type) && e.phase === "start") beep();
  });
}
