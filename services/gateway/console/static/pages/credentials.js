// Credentials for web crawlers (basic auth, form login, proxies): secrets whose values are
// written here and never shown again; the data-source form refers to them by name.

import { act, api, errorBox, field, formatTime, h, show, table } from "../lib.js";

const SECRET_NAME = /^[A-Za-z0-9/_+=.@-]{1,128}$/;

// A panel listing the secrets, with a form to add one and a Delete button per secret.
export function credentialsPanel() {
  const list = h("div", { id: "secrets-list" }, h("p", { class: "loading" }, "Loading…"));
  const name = h("input", { type: "text", id: "secret-name", autocomplete: "off", placeholder: "e.g. intranet-login" });
  const username = h("input", { type: "text", id: "secret-username", autocomplete: "off" });
  const password = h("input", { type: "password", id: "secret-password", autocomplete: "new-password" });
  const create = h("button", { type: "submit", id: "secret-create" }, "Add credentials");
  const form = h("form", { id: "secret-form" },
    h("div", { class: "row" },
      field("Name", name), field("User name", username), field("Password", password), create));

  const load = async () => {
    try {
      const { SecretList: secrets = [] } = await api("GET", "/v1/secrets");
      show(list, table(
        [
          { label: "Name", value: (s) => s.Name },
          { label: "ARN (use in a data source)", value: (s) => h("code", {}, s.ARN) },
          { label: "Changed", value: (s) => formatTime(s.LastChangedDate) },
          { label: "", value: (s) => deleteButton(s, load) },
        ],
        secrets,
        { caption: "Stored credentials (values are never shown)", empty: "No credentials yet." },
      ));
    } catch (err) {
      show(list, errorBox(err));
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(create, async () => {
      if (!SECRET_NAME.test(name.value)) {
        throw new Error("Name: 1-128 letters, digits or / _ + = . @ -");
      }
      if (!username.value || !password.value) throw new Error("Give a user name and a password.");
      await api("POST", "/v1/secrets", {
        Name: name.value,
        SecretString: JSON.stringify({ username: username.value, password: password.value }),
      });
      form.reset();
      await load();
    });
  });
  load();
  return h("details", { class: "panel", id: "secrets" },
    h("summary", {}, "Credentials for crawling behind a login or a proxy"),
    h("p", { class: "hint" }, "Refer to them by name or ARN in a data source's authentication and proxy settings. Deleting one is refused while a data source uses it."),
    list, form);
}

function deleteButton(secret, reload) {
  const button = h("button", { type: "button", class: "danger", dataset: { secret: secret.Name } }, "Delete");
  button.addEventListener("click", () =>
    act(button, async () => {
      await api("DELETE", `/v1/secrets/${encodeURIComponent(secret.Name)}`);
      await reload();
    }),
  );
  return button;
}
