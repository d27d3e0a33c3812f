// Accounts (admin): who can log in, with which role and registry person; add one.
import { get, post } from "../api.js";
import { clear, data, h } from "../dom.js";
import { label, t } from "../i18n.js";

const ROLES = ["security", "grid_worker", "supervisor", "department", "admin"];

export async function accountsView(root) {
  const table = h("tbody");
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "filters account-form" },
    h("label", {}, t("login.username"), h("input", { name: "username", required: true, pattern: "[A-Za-z0-9_.\\-]{1,64}" })),
    h("label", {}, t("accounts.name"), h("input", { name: "display_name" })),
    h("label", {}, t("accounts.role"), h("select", { name: "role" }, ROLES.map((r) => h("option", { value: r }, label("role", r))))),
    h("label", {}, t("accounts.person"), h("input", { name: "person_id", required: true })),
    h("label", {}, t("accounts.unit"), h("input", { name: "unit" })),
    h("label", {}, t("login.password"), h("input", { name: "password", type: "password", minlength: 8, required: true, autocomplete: "new-password" })),
    h("button", { type: "submit", class: "primary" }, t("accounts.add")), error);
  root.append(h("h2", {}, t("accounts.heading")), form, h("table", { class: "audit" },
    h("thead", {}, h("tr", {}, ["login.username", "accounts.name", "accounts.role", "accounts.person", "accounts.unit"].map((k) => h("th", {}, t(k))))),
    table));
  const load = async () => {
    clear(table).append(...(await get("/api/accounts")).map((a) => h("tr", { dataset: { username: a.username } },
      h("td", {}, data(a.username)), h("td", {}, data(a.display_name)), h("td", {}, label("role", a.role)),
      h("td", {}, data(a.person_id)), h("td", {}, data(a.unit)))));
  };
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = form.elements;
    try {
      await post("/api/accounts", { username: f.username.value.trim(), display_name: f.display_name.value.trim(),
        role: f.role.value, person_id: f.person_id.value.trim(), unit: f.unit.value.trim() || null, password: f.password.value });
      form.reset();
      error.textContent = "";
      await load();
    } catch (err) {
      error.textContent = err.message;
    }
  });
  await load();
  return null;
}
