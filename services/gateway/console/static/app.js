// The console's shell: hash routes to page modules, the navigation, the signed-in key.

import { api, errorBox, h, leave, show } from "./lib.js";

const PAGES = {
  overview: { title: "Overview", load: () => import("./pages/overview.js") },
  search: { title: "Search", load: () => import("./pages/search.js") },
  sources: { title: "Data sources", load: () => import("./pages/sources.js") },
  fraud: { title: "Fraud", load: () => import("./pages/fraud.js") },
  tuning: { title: "Tuning", load: () => import("./pages/tuning.js") },
  images: { title: "Images", load: () => import("./pages/images.js") },
  models: { title: "Models", load: () => import("./pages/models.js") },
};

const main = document.getElementById("page");
const nav = document.getElementById("nav");

function route() {
  const [name = "overview", ...rest] = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  return { name: PAGES[name] ? name : "overview", params: rest };
}

let rendering = 0;
async function render() {
  leave();
  const { name, params } = route();
  const ticket = ++rendering;
  for (const link of nav.querySelectorAll("a")) {
    link.toggleAttribute("aria-current", link.dataset.page === name);
  }
  document.title = `${PAGES[name].title} · Trellis`;
  show(main, h("p", { class: "loading" }, "Loading…"));
  try {
    const page = await PAGES[name].load();
    if (ticket !== rendering) return;
    const root = h("section", { class: "page", dataset: { page: name } });
    show(main, root);
    await page.render(root, params);
    main.dataset.ready = name;
  } catch (err) {
    if (ticket === rendering) show(main, errorBox(err));
  }
}

async function start() {
  show(
    nav,
    Object.entries(PAGES).map(([name, page]) => h("a", { href: `#/${name}`, dataset: { page: name } }, page.title)),
  );
  try {
    const me = await api("GET", "/v1/whoami");
    show(document.getElementById("who"), h("span", {}, `${me.name || me.key_id}`), " ",
      h("button", { class: "link", id: "sign-out", onclick: signOut }, "Sign out"));
  } catch {
    return;
  }
  window.addEventListener("hashchange", render);
  await render();
}

async function signOut() {
  await fetch("/console/session", { method: "DELETE", credentials: "same-origin", headers: { "X-Trellis-Console": "1" } });
  location.assign("/console/login");
}

start();
