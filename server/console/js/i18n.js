// Message catalogues: zh-CN first, English second, loaded from /console/i18n/<lang>.json. Every
// string the console shows comes from t(); a key missing from the catalogue is shown as the key and
// recorded in window.gridwatchI18n.misses, which the browser tests read.
const LANGS = ["zh-CN", "en"];
const STORAGE_KEY = "gridwatch.lang";
let lang = LANGS[0];
let timeZone;  // the compound's (from its category table calendar), not the viewing machine's
let messages = {};
const misses = new Set();
window.gridwatchI18n = { misses };

export function currentLang() {
  return lang;
}

export async function loadLang(wanted) {
  lang = LANGS.includes(wanted) ? wanted : (localStorage.getItem(STORAGE_KEY) || LANGS[0]);
  if (!LANGS.includes(lang)) lang = LANGS[0];
  const response = await fetch(`/console/i18n/${lang}.json`, { cache: "no-cache" });
  messages = await response.json();
  localStorage.setItem(STORAGE_KEY, lang);
  document.documentElement.lang = lang;
  misses.clear();
}

export function otherLang() {
  return lang === LANGS[0] ? LANGS[1] : LANGS[0];
}

// t("grid.open", {n: 3}) -> "3条未办结"
export function t(key, params = {}) {
  const template = messages[key];
  if (template === undefined) {
    misses.add(key);
    return key;
  }
  return template.replace(/\{(\w+)\}/g, (_, name) => (name in params ? String(params[name]) : `{${name}}`));
}

// The catalogue's text for ``key`` if it has one, else ``fallback`` (not a miss): for names that come
// from a schema (a rule setting added on the edge), shown by their schema title until translated.
export function tOr(key, fallback) {
  return key in messages ? t(key) : fallback;
}

// A label for a value from the server (type, stage, action, role): the catalogue's, else the value
// itself recorded as a miss so an unlabelled new value is noticed.
export function label(kind, value) {
  return t(`${kind}.${value}`);
}

export function setTimeZone(zone) {
  timeZone = zone || undefined;
}

export function formatTime(iso) {
  if (!iso) return "—";
  return new Date(iso).toLocaleString(lang, { hour12: false, timeZone });
}

export function formatDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h) return t("duration.hm", { h, m });
  if (m) return t("duration.ms", { m, s: s % 60 });
  return t("duration.s", { s });
}
