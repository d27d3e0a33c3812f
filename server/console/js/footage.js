// The demo's footage credit line: which sample clip each camera plays (and how a derived clip was
// changed), with the authors and licence the CC BY licence asks us to name. Only `gridwatch demo`
// serves /api/demo/footage (to logged-in users); on a real site it is 404 and the footer stays empty.
import { clear, data, h } from "./dom.js";
import { t } from "./i18n.js";

let credits = null;  // fetched once logged in; re-rendered on a language switch

export async function renderFootage(footer) {
  if (credits === null) {
    try {
      const response = await fetch("/api/demo/footage", { cache: "no-cache" });
      if (response.ok) credits = await response.json();
      else if (response.status === 404) credits = [];
    } catch {
      // the server is unreachable: try again on the next render
    }
  }
  clear(footer);
  if (!credits || !credits.length) return;
  const [first] = credits;
  footer.append(h("strong", {}, t("footage.heading")), h("ul", {}, credits.map((c) => h("li", { dataset: { camera: c.camera_id } },
    data(c.camera_id), ": ", data(c.clip), c.change ? [" — ", t(`footage.${c.change}`, { s: c.held_s })] : null))),
  h("p", {}, t("footage.credit", { authors: first.authors, licence: first.licence }), " · ",
    h("a", { href: first.source_url, rel: "noopener" }, data(first.source_url)), " · ",
    h("a", { href: first.licence_url, rel: "noopener" }, data(first.licence_url))));
}
