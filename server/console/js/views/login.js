// The login form. Errors (wrong password, too many attempts) are shown as the server words them.
import { post } from "../api.js";
import { h } from "../dom.js";
import { t } from "../i18n.js";

export function loginView(root, onLoggedIn) {
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "login", autocomplete: "on" },
    h("h2", {}, t("login.heading")),
    h("label", {}, t("login.username"), h("input", { name: "username", autocomplete: "username", required: true, autofocus: true })),
    h("label", {}, t("login.password"), h("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
    h("button", { type: "submit", class: "primary" }, t("login.submit")), error);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    try {
      const me = await post("/api/auth/login", { username: form.elements.username.value.trim(), password: form.elements.password.value });
      onLoggedIn(me);
    } catch (err) {
      error.textContent = err.status === 429 ? t("login.too_many") : err.status === 401 ? t("login.wrong") : err.message;
    }
  });
  root.append(form);
}
