// The console shell: who is logged in, the navigation their role needs, the language switch, the
// live connection, and a hash router (#/feed, #/tickets, #/ticket/12, #/mine, #/cameras, ...).
import { get, post, setCsrf, whenUnauthorized } from "./api.js";
import { clear, data, h } from "./dom.js";
import { renderFootage } from "./footage.js";
import { currentLang, label, loadLang, otherLang, setTimeZone, t } from "./i18n.js";
import { connect, disconnect, onLiveStatus } from "./live.js";
import { accountsView } from "./views/accounts.js";
import { camerasView } from "./views/cameras.js";
import { feedView } from "./views/feed.js";
import { gateView } from "./views/gate.js";
import { gridView } from "./views/grid.js";
import { indicatorsView } from "./views/indicators.js";
import { loginView } from "./views/login.js";
import { ticketView } from "./views/ticket.js";
import { boardView, mineView } from "./views/tickets.js";

const VIEWS = {
  feed: feedView, tickets: boardView, mine: mineView, cameras: camerasView, gate: gateView, grid: gridView,
  indicators: indicatorsView, accounts: accountsView,
};
// What each role finds in its navigation, first entry = its home.
const NAV = {
  admin: ["feed", "tickets", "cameras", "gate", "grid", "indicators", "accounts"],
  supervisor: ["tickets", "feed", "cameras", "gate", "grid", "indicators"],
  security: ["feed", "tickets", "gate", "cameras"],
  grid_worker: ["mine"],
  department: ["mine"],
};

const header = document.getElementById("bar");
const main = document.getElementById("main");
const footer = document.getElementById("credits");
let me = null;
let stopView = null;
let liveUp = false;

function renderHeader() {
  clear(header);
  header.append(h("h1", {}, h("span", { class: "brand" }, "GridWatch"), " ", t("app.title")));
  if (me) {
    header.append(h("nav", {}, NAV[me.role].map((name) => h("a", { href: `#/${name}`, dataset: { nav: name } }, t(`nav.${name}`)))));
  }
  const right = h("div", { class: "bar-right" });
  if (me) {
    right.append(h("span", { class: `live ${liveUp ? "live-open" : "live-connecting"}`, id: "live" }, t(liveUp ? "live.open" : "live.connecting")),
      h("span", { class: "user" }, data(me.display_name), " · ", label("role", me.role)),
      h("button", { type: "button", id: "logout", onclick: logout }, t("app.logout")));
  }
  right.append(h("button", { type: "button", id: "lang", lang: otherLang(), onclick: switchLang }, t("app.switch_lang")));
  header.append(right);
}

async function switchLang() {
  await loadLang(otherLang());
  renderHeader();
  renderFootage(footer);
  await route();
}

async function logout() {
  await post("/api/auth/logout");
  me = null;
  disconnect();
  showLogin();
}

function showLogin() {
  if (stopView) stopView();
  stopView = null;
  me = null;
  disconnect();
  renderHeader();
  loginView(clear(main), (who) => { start(who); });
}

async function route() {
  if (!me) return;
  if (stopView) stopView();
  stopView = null;
  const [, name = "", id] = location.hash.split("/");
  const home = NAV[me.role][0];
  clear(main);
  for (const link of header.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.nav === name);
  try {
    if (name === "ticket" && id) stopView = await ticketView(main, me, id);
    else if (NAV[me.role].includes(name)) stopView = await VIEWS[name](main, me);
    else location.hash = `#/${home}`;
  } catch (error) {
    main.append(error.status === 404 ? h("p", { class: "error", role: "alert" }, t("app.not_found"))
      : h("p", { class: "error", role: "alert" }, t("app.error"), " ", data(error.message)));
  }
  document.body.dataset.view = name;
  document.body.dataset.ready = "1";
}

async function start(who) {
  me = who;
  setCsrf(who.csrf_token);
  try {
    setTimeZone((await get("/api/categories")).table.calendar.timezone);
  } catch {
    setTimeZone(null);  // no category table: the browser's own zone
  }
  connect();
  renderHeader();
  renderFootage(footer);
  route();
}

async function boot() {
  await loadLang();
  whenUnauthorized(showLogin);
  onLiveStatus((up) => {
    liveUp = up;
    const badge = document.getElementById("live");
    if (badge) {
      badge.className = `live ${up ? "live-open" : "live-connecting"}`;
      badge.textContent = t(up ? "live.open" : "live.connecting");
    }
  });
  window.addEventListener("hashchange", route);
  try {
    start(await get("/api/auth/me"));
  } catch {
    showLogin();
  }
}

document.documentElement.lang = currentLang();
boot();
