// Images: SageMaker-style custom images — builds with their live logs, images and what validation
// found in each version, app image configs, and domains with their attached images and launcher.

import {
  serial,
  act, api, ApiError, badge, errorBox, field, formatNumber, formatTime, h, live, onLeave, show, table, throttle,
} from "../lib.js";

const FINISHED = new Set(["SUCCEEDED", "FAILED", "CANCELLED"]);
// UserSettings members that carry CustomImages, and the app each launches (attachments.py).
const APP_SETTINGS = {
  RSession: "RSessionAppSettings",
  KernelGateway: "KernelGatewayAppSettings",
  JupyterLab: "JupyterLabAppSettings",
  CodeEditor: "CodeEditorAppSettings",
};
const CONFIG_KEYS = ["KernelGatewayImageConfig", "JupyterLabAppImageConfig", "CodeEditorAppImageConfig"];
const REPOSITORY = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$/;
const CONSOLE_HEADER = "X-Trellis-Console";
const BUILDS_SHOWN = 15; // the newest builds listed until "Show all"

export async function render(root, params) {
  const [kind, id] = params;
  if (kind === "build" && id) return renderBuild(root, id);
  if (kind === "image" && id) return renderImage(root, id);
  if (kind === "domain" && id) return renderDomain(root, id);
  return renderIndex(root);
}

// -- helpers this page needs beyond lib.js -----------------------------------------------------



// Shows what make() builds unless `data` is what the box already shows: live refreshes that
// change nothing keep the DOM (and what the user opened or selected in it) as it is.
const shown = new WeakMap();
function showData(box, data, make) {
  const key = JSON.stringify(data);
  if (shown.get(box) === key) return;
  shown.set(box, key);
  show(box, make());
}

function statusBadge(status) {
  const el = badge(status);
  if (status === "CANCELLED" || status === "MISSING") el.className = "badge neutral";
  return el;
}

function kv(rows, attrs = {}) {
  return h("dl", { class: "kv", ...attrs },
    rows.filter((r) => r).map(([k, v, id]) => [h("dt", {}, k), h("dd", { id }, v ?? "—")]));
}

function seconds(from, to) {
  if (!from) return null;
  const end = to ? new Date(to) : new Date();
  return Math.max(0, (end - new Date(from)) / 1000);
}

function duration(build) {
  const s = seconds(build.started_at, build.finished_at);
  if (s === null) return "—";
  const text = s < 90 ? `${formatNumber(s, 1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return build.finished_at ? text : `${text} so far`;
}

function shortDigest(digest) {
  return digest ? `${digest.slice(0, 19)}…` : "—";
}

function backLink() {
  return h("p", {}, h("a", { href: "#/images" }, "← Images, builds and domains"));
}

// A streamed GET (lib.api reads the whole body before it returns, which a live log never ends
// until the build does): calls onText with each decoded chunk; ends when the server ends it or
// the page is left.
async function streamText(path, onText) {
  const controller = new AbortController();
  onLeave(() => controller.abort());
  let response;
  try {
    response = await fetch(path, {
      credentials: "same-origin", headers: { [CONSOLE_HEADER]: "1" }, signal: controller.signal,
    });
  } catch (err) {
    if (controller.signal.aborted) return false;
    throw err;
  }
  if (response.status === 401) {
    location.assign(`/console/login?next=${encodeURIComponent(location.hash)}`);
    throw new ApiError(401, "signed out");
  }
  if (!response.ok) {
    const type = response.headers.get("content-type") || "";
    const body = type.includes("json") ? await response.json() : await response.text();
    throw new ApiError(response.status, (body && (body.detail || body.message)) || `HTTP ${response.status}`, body);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      onText(decoder.decode(value, { stream: true }));
    }
    const rest = decoder.decode();
    if (rest) onText(rest);
  } catch (err) {
    if (controller.signal.aborted) return false;
    throw err;
  }
  return true;
}

function uploadName(file) {
  const stem = file.name.replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "").slice(0, 120) || "context";
  return `${stem}-${Date.now().toString(36)}`;
}

// -- index: builds, images, app image configs, domains ----------------------------------------

async function renderIndex(root) {
  const buildsBox = h("div", { id: "builds" });
  const imagesBox = h("div", { id: "images-list" });
  const configsBox = h("div", { id: "app-image-configs" });
  const domainsBox = h("div", { id: "domains" });

  // Start a build: upload a context tar, then build it.
  const file = h("input", { id: "build-context-file", type: "file", accept: ".tar,.tar.gz,.tgz,application/x-tar,application/gzip" });
  const repository = h("input", { id: "build-repository", type: "text", placeholder: "my-image:1", autocomplete: "off" });
  const dockerfile = h("input", { id: "build-dockerfile", type: "text", value: "Dockerfile" });
  const start = h("button", { id: "build-start", type: "submit" }, "Upload and build");
  const buildForm = h("form", { id: "build-form", class: "panel" },
    h("h3", {}, "Start a build"),
    h("p", { class: "hint" }, "A build context as a tar (optionally gzipped) holding the Dockerfile; the image is pushed to the stack's registry."),
    h("div", { class: "row" },
      field("Context (.tar, .tar.gz)", file),
      field("Repository[:tag]", repository),
      field("Dockerfile", dockerfile),
      start));
  buildForm.addEventListener("submit", (event) => {
    event.preventDefault();
    act(start, async () => {
      const chosen = file.files[0];
      if (!chosen) throw new Error("Choose a build context (.tar or .tar.gz).");
      if (!REPOSITORY.test(repository.value.trim())) {
        throw new Error("Repository: lower-case path components, optionally ':tag' (e.g. my-image:1).");
      }
      if (!dockerfile.value.trim()) throw new Error("Dockerfile: the path of the Dockerfile in the context.");
      const name = uploadName(chosen);
      await api("PUT", `/v1/build-contexts/${encodeURIComponent(name)}`, chosen);
      const build = await api("POST", "/v1/builds", {
        context: name, repository: repository.value.trim(), dockerfile: dockerfile.value.trim(),
      });
      location.hash = `#/images/build/${encodeURIComponent(build.id)}`;
    });
  });

  show(root,
    h("h1", {}, "Images"),
    h("section", {}, h("h2", {}, "Builds"), buildsBox, buildForm),
    h("section", {}, h("h2", {}, "Images"), imagesBox),
    h("div", { class: "grid2" },
      h("section", {}, h("h2", {}, "App image configs"), configsBox),
      h("section", {}, h("h2", {}, "Domains"), domainsBox)));

  let allBuilds = false;
  const moreBuilds = h("button", { id: "builds-more", type: "button", class: "link", hidden: true });
  let lastBuilds = [];
  const drawBuilds = () => {
    const builds = allBuilds ? lastBuilds : lastBuilds.slice(0, BUILDS_SHOWN);
    showData(buildsBox, builds, () => buildsTable(builds));
    moreBuilds.hidden = lastBuilds.length <= BUILDS_SHOWN;
    moreBuilds.textContent = allBuilds ? `Show the ${BUILDS_SHOWN} newest` : `Show all ${lastBuilds.length} builds`;
  };
  moreBuilds.addEventListener("click", () => {
    allBuilds = !allBuilds;
    drawBuilds();
  });
  buildsBox.after(moreBuilds);
  const ticker = setInterval(() => {
    for (const el of buildsBox.querySelectorAll(".ticking")) el.textContent = duration({ started_at: el.dataset.started });
  }, 1000);
  onLeave(() => clearInterval(ticker));
  const loadBuilds = serial(async () => {
    try {
      ({ builds: lastBuilds } = await api("GET", "/v1/builds?max_results=100"));
      drawBuilds();
    } catch (err) {
      shown.delete(buildsBox);
      show(buildsBox, errorBox(err));
    }
  });
  const loadResources = serial(async () => {
    const settle = async (box, load) => {
      try {
        await load(box);
      } catch (err) {
        shown.delete(box);
        show(box, errorBox(err));
      }
    };
    await Promise.all([
      settle(imagesBox, imagesTable),
      settle(configsBox, configsTable),
      settle(domainsBox, domainsTable),
    ]);
  });
  await Promise.all([loadBuilds(), loadResources()]);

  const buildsSoon = throttle(() => loadBuilds(), 1000);
  const resourcesSoon = throttle(() => loadResources(), 1000);
  // `ready` comes when a stream (re)connects: what changed before it was watched is read again.
  live("builds", { ready: () => buildsSoon(), change: () => buildsSoon() });
  live("images", { ready: () => resourcesSoon(), change: ({ key }) => { if (!key.startsWith("build.")) resourcesSoon(); } });
}

function buildsTable(builds) {
  return table(
    [
      { label: "Build", value: (b) => h("a", { href: `#/images/build/${encodeURIComponent(b.id)}`, class: "mono" }, b.id) },
      { label: "Repository", value: (b) => b.request.repository },
      { label: "Status", value: (b) => [statusBadge(b.status), b.failure_reason ? h("div", { class: "hint small" }, b.failure_reason) : null] },
      { label: "Started", value: (b) => formatTime(b.started_at || b.created_at) },
      {
        label: "Duration",
        class: "num",
        // A running build's time ticks locally (see renderIndex), nothing is asked of the server.
        value: (b) => (b.started_at && !b.finished_at
          ? h("span", { class: "ticking", dataset: { started: b.started_at } }, duration(b))
          : duration(b)),
      },
      { label: "Digest", value: (b) => h("span", { class: "mono", title: b.digest || "" }, shortDigest(b.digest)) },
    ],
    builds,
    { caption: "Builds, newest first", empty: "No builds yet.", rowAttrs: (b) => ({ id: `build-${b.id}`, dataset: { status: b.status } }) },
  );
}

async function imagesTable(box) {
  const { Images: images } = await api("GET", "/v1/images");
  const versions = await Promise.all(images.map((i) => api("GET", `/v1/images/${encodeURIComponent(i.ImageName)}/versions`)
    .then((r) => r.ImageVersions).catch(() => [])));
  const rows = images.map((image, i) => ({ image, versions: versions[i] }));
  showData(box, rows, () => table(
    [
      { label: "Image", value: (r) => h("a", { href: `#/images/image/${encodeURIComponent(r.image.ImageName)}` }, r.image.ImageName) },
      { label: "Display name", value: (r) => r.image.DisplayName || "—" },
      { label: "Status", value: (r) => statusBadge(r.image.ImageStatus) },
      {
        label: "Versions",
        value: (r) => (r.versions.length
          ? h("ul", { class: "plain versions" }, r.versions.map((v) => h("li", {}, `v${v.Version} `, statusBadge(v.ImageVersionStatus))))
          : h("span", { class: "hint" }, "no versions yet")),
      },
      { label: "Modified", value: (r) => formatTime(r.image.LastModifiedTime) },
    ],
    rows,
    { caption: "Images, newest first", empty: "No images yet.", rowAttrs: (r) => ({ id: `image-${r.image.ImageName}` }) },
  ));
}

function configSummary(config) {
  const parts = [];
  for (const key of CONFIG_KEYS) {
    const body = config[key];
    if (!body) continue;
    const kernels = (body.KernelSpecs || []).map((k) => k.Name).join(", ");
    const fs = body.FileSystemConfig || {};
    const uid = fs.DefaultUid ?? 1000;
    const gid = fs.DefaultGid ?? 100;
    parts.push(`${key.replace("AppImageConfig", "").replace("ImageConfig", "")}: UID ${uid}, GID ${gid}${kernels ? `, kernels ${kernels}` : ""}`);
  }
  return parts.length ? parts.join("; ") : "no app settings (any app, UID 1000 / GID 100)";
}

async function configsTable(box) {
  const { AppImageConfigs: configs } = await api("GET", "/v1/app-image-configs");
  showData(box, configs, () => table(
    [
      { label: "Name", value: (c) => c.AppImageConfigName },
      { label: "Settings", value: (c) => configSummary(c) },
      { label: "Modified", value: (c) => formatTime(c.LastModifiedTime) },
    ],
    configs,
    { caption: "App image configs", empty: "No app image configs yet.", rowAttrs: (c) => ({ id: `config-${c.AppImageConfigName}` }) },
  ));
}

function attachedOf(settings) {
  const out = [];
  for (const [app, key] of Object.entries(APP_SETTINGS)) {
    for (const entry of settings?.[key]?.CustomImages || []) out.push({ app, key, ...entry });
  }
  return out;
}

async function domainsTable(box) {
  const { Domains: domains } = await api("GET", "/v1/domains");
  const described = await Promise.all(domains.map((d) => api("GET", `/v1/domains/${encodeURIComponent(d.DomainId)}`).catch(() => d)));
  showData(box, described, () => table(
    [
      { label: "Domain", value: (d) => h("a", { href: `#/images/domain/${encodeURIComponent(d.DomainId)}` }, d.DomainName) },
      { label: "Id", value: (d) => h("span", { class: "mono" }, d.DomainId) },
      { label: "Status", value: (d) => statusBadge(d.Status) },
      { label: "Attached images", class: "num", value: (d) => `${attachedOf(d.DefaultUserSettings).length}` },
    ],
    described,
    { caption: "Domains", empty: "No domains yet.", rowAttrs: (d) => ({ id: `domain-${d.DomainId}` }) },
  ));
}

// -- one build: its status and its live log ----------------------------------------------------

async function renderBuild(root, id) {
  const base = `/v1/builds/${encodeURIComponent(id)}`;
  const status = h("span", { id: "build-status" });
  const cancel = h("button", { id: "build-cancel", type: "button", class: "danger", hidden: true }, "Cancel build");
  const details = h("div", { id: "build-details" });
  const problem = h("div", { id: "build-error" });
  const log = h("pre", { id: "build-log", class: "log", tabindex: "0", "aria-label": "Build log" });
  const logState = h("p", { id: "build-log-state", class: "hint" }, "Connecting to the log…");
  const versionBox = h("div", { id: "build-version" });

  show(root,
    backLink(),
    h("div", { class: "images-head" }, h("h1", {}, `Build ${id}`), status, cancel),
    problem,
    details,
    h("h2", {}, "Log"),
    logState,
    log,
    versionBox);

  let build = null;
  const draw = () => {
    show(status, statusBadge(build.status));
    const open = !FINISHED.has(build.status);
    cancel.hidden = !open;
    cancel.disabled = build.cancel_requested;
    cancel.textContent = build.cancel_requested ? "Cancel requested…" : "Cancel build";
    const r = build.request;
    show(details, kv([
      ["Repository", r.repository, "build-repository-name"],
      ["Image", build.image_uri || "—", "build-image-uri"],
      ["Digest", build.digest ? h("span", { class: "mono" }, build.digest) : "—", "build-digest"],
      build.failure_reason ? ["Failure", h("span", { class: "bad-text" }, build.failure_reason), "build-failure"] : null,
      ["Context", r.context],
      ["Dockerfile", r.dockerfile],
      Object.keys(r.build_args || {}).length ? ["Build args", Object.entries(r.build_args).map(([k, v]) => `${k}=${v}`).join(", ")] : null,
      Object.keys(r.labels || {}).length ? ["Labels", Object.entries(r.labels).map(([k, v]) => `${k}=${v}`).join(", ")] : null,
      r.target ? ["Target", r.target] : null,
      r.platform ? ["Platform", r.platform] : null,
      ["Created", formatTime(build.created_at)],
      ["Started", formatTime(build.started_at)],
      ["Finished", formatTime(build.finished_at)],
      ["Duration", duration(build), "build-duration"],
      open ? null : ["Log lines", formatNumber(build.log_lines)],
    ]));
    if (build.status === "SUCCEEDED" && !versionBox.childElementCount) versionForm(versionBox, build);
  };
  const refresh = serial(async () => {
    try {
      const fresh = await api("GET", base);
      show(problem);
      if (JSON.stringify(fresh) === JSON.stringify(build)) return; // nothing changed
      build = fresh;
      draw();
    } catch (err) {
      show(problem, errorBox(err));
    }
  });
  await refresh();
  if (!build) {
    for (const el of [...root.children].slice(3)) el.hidden = true; // after back link, head, problem
    return;
  }
  cancel.addEventListener("click", () => act(cancel, async () => {
    build = await api("POST", `${base}/cancel`);
    draw();
  }));
  const soon = throttle(() => refresh(), 500);
  live(`builds:${id}`, { ready: () => soon(), change: () => soon() }); // ready: changes before the watch
  // The running time ticks locally (nothing is asked of the server for it).
  const ticker = setInterval(() => {
    const cell = document.getElementById("build-duration");
    if (cell && build && build.started_at && !build.finished_at) cell.textContent = duration(build);
  }, 1000);
  onLeave(() => clearInterval(ticker));

  // The log, from its first line; followed live until the build ends. Not awaited: the page is
  // ready once the build is described.
  const followLog = async (attempt) => {
    show(log);
    show(logState, FINISHED.has(build.status) ? "The stored log:" : "Following the log live…");
    let stuck = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
    log.addEventListener("scroll", () => { stuck = log.scrollHeight - log.scrollTop - log.clientHeight < 24; });
    try {
      const complete = await streamText(`${base}/logs?follow=true`, (text) => {
        log.append(text);
        if (stuck) log.scrollTop = log.scrollHeight;
      });
      if (!complete) return; // the page was left
      await refresh();
      if (!FINISHED.has(build.status) && attempt < 5) {
        show(logState, "The log stream ended early; reconnecting…");
        setTimeout(() => followLog(attempt + 1), 2000);
        return;
      }
      show(logState, `Log complete (${build.status}).`);
      logState.dataset.done = "true";
    } catch (err) {
      show(logState, errorBox(err));
    }
  };
  followLog(0);
}

// After a successful build: make it a version of an image (SageMaker CreateImageVersion).
async function versionForm(box, build) {
  let images = [];
  try {
    ({ Images: images } = await api("GET", "/v1/images"));
  } catch {
    return;
  }
  const image = h("select", { id: "version-image" },
    h("option", { value: "" }, images.length ? "Choose an image…" : "No images yet"),
    images.map((i) => h("option", { value: i.ImageName }, i.DisplayName ? `${i.ImageName} (${i.DisplayName})` : i.ImageName)));
  const lang = h("select", { id: "version-language" },
    h("option", { value: "" }, "(not set)"), h("option", { value: "R" }, "R"), h("option", { value: "Python" }, "Python"));
  const create = h("button", { id: "version-create", type: "submit" }, "Create version");
  const form = h("form", { class: "panel", id: "version-form" },
    h("h3", {}, "Use this image"),
    h("p", { class: "hint" }, `Create a version of an image from ${build.image_uri}; it is validated before it is CREATED.`),
    h("div", { class: "row" }, field("Image", image), field("Programming language", lang), create));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(create, async () => {
      if (!image.value) throw new Error("Choose the image this build becomes a version of.");
      const body = { BaseImage: build.image_uri };
      if (lang.value) body.ProgrammingLang = lang.value;
      await api("POST", `/v1/images/${encodeURIComponent(image.value)}/versions`, body);
      location.hash = `#/images/image/${encodeURIComponent(image.value)}`;
    });
  });
  show(box, form);
}

// -- one image: its versions and what validation found ----------------------------------------

async function renderImage(root, name) {
  const base = `/v1/images/${encodeURIComponent(name)}`;
  const title = h("h1", {}, `Image ${name}`);
  const details = h("div", { id: "image-details" });
  const versionsBox = h("div", { id: "image-versions" });
  const problem = h("div", { id: "image-error" });

  const baseImage = h("input", { id: "new-version-base", type: "text", placeholder: "127.0.0.1:5099/my-image:1", size: 40, autocomplete: "off" });
  const lang = h("select", { id: "new-version-language" },
    h("option", { value: "" }, "(not set)"), h("option", { value: "R" }, "R"), h("option", { value: "Python" }, "Python"));
  const create = h("button", { id: "new-version-create", type: "submit" }, "Create version");
  const form = h("form", { class: "panel", id: "new-version-form" },
    h("h3", {}, "New version"),
    h("div", { class: "row" }, field("Base image (pushed)", baseImage), field("Programming language", lang), create));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(create, async () => {
      const uri = baseImage.value.trim();
      if (!uri) throw new Error("Base image: the pushed image, e.g. 127.0.0.1:5099/my-image:1.");
      const body = { BaseImage: uri };
      if (lang.value) body.ProgrammingLang = lang.value;
      await api("POST", `${base}/versions`, body);
      baseImage.value = "";
      await refresh();
    });
  });

  show(root, backLink(), title, problem, details, h("h2", {}, "Versions"), versionsBox, form);

  let image = null;
  let lastShown = null;
  const refresh = serial(async () => {
    try {
      image = await api("GET", base);
      const { ImageVersions: listed } = await api("GET", `${base}/versions`);
      const versions = await Promise.all(listed.map((v) => api("GET", `${base}/versions/${v.Version}`)));
      show(problem);
      const key = JSON.stringify([image, versions]);
      if (key === lastShown) return; // nothing changed
      lastShown = key;
      show(title, `Image ${image.DisplayName ? `${image.DisplayName} (${name})` : name}`);
      show(details, kv([
        ["Name", image.ImageName, "image-name"],
        ["Display name", image.DisplayName],
        ["Description", image.Description],
        ["Status", statusBadge(image.ImageStatus), "image-status"],
        image.FailureReason ? ["Failure", image.FailureReason] : null,
        ["ARN", h("span", { class: "mono" }, image.ImageArn)],
        ["Role", h("span", { class: "mono" }, image.RoleArn)],
        ["Created", formatTime(image.CreationTime)],
        ["Modified", formatTime(image.LastModifiedTime)],
      ]));
      show(versionsBox, versions.length
        ? versions.map(versionPanel)
        : h("p", { class: "empty" }, "No versions yet."));
    } catch (err) {
      show(problem, errorBox(err));
    }
  });
  await refresh();
  if (!image) {
    for (const el of [...root.children].slice(3)) el.hidden = true;
    return;
  }
  const key = name.replaceAll(".", "_");
  const soon = throttle(() => refresh(), 1000);
  live("images", {
    ready: () => soon(), // changes made before the stream watched are read again
    change: ({ key: changed }) => {
      if (changed === `image.${key}` || changed.startsWith(`version.${key}.`)) soon();
    },
  });
}

// What validation found, as a list with severities: the reasons a version failed are errors,
// what the inspection could not read is a warning.
function findingsOf(version) {
  const out = [];
  if (version.FailureReason) {
    for (const reason of version.FailureReason.split("; ")) out.push({ severity: "error", text: reason });
  }
  const f = version.Findings;
  if (f) {
    for (const p of f.problems || []) out.push({ severity: "warning", text: p });
    if (f.passwd_found === false) out.push({ severity: "warning", text: "the image has no /etc/passwd: no user can be checked" });
    if (f.group_found === false) out.push({ severity: "warning", text: "the image has no /etc/group: no group can be checked" });
  } else if (version.ImageVersionStatus === "CREATED") {
    out.push({ severity: "warning", text: "the version was never inspected" });
  }
  return out;
}

function versionPanel(v) {
  const n = v.Version;
  const f = v.Findings;
  const idOf = (what) => `version-${n}-${what}`;
  const ids = (map) => Object.entries(map || {}).map(([id, name]) => `${id} ${name}`).join(", ") || "none";
  const findings = findingsOf(v);
  return h("section", { class: "panel version", id: `version-${n}` },
    h("div", { class: "images-head" }, h("h3", {}, `Version ${n}`), h("span", { id: idOf("status") }, statusBadge(v.ImageVersionStatus))),
    kv([
      ["Base image", h("span", { class: "mono" }, v.BaseImage)],
      ["Pinned image", v.ContainerImage ? h("span", { class: "mono" }, v.ContainerImage) : "—", idOf("container")],
      v.Aliases ? ["Aliases", v.Aliases.join(", ")] : null,
      v.ProgrammingLang ? ["Language", v.ProgrammingLang] : null,
      v.JobType ? ["Job type", v.JobType] : null,
      v.Processor ? ["Processor", v.Processor] : null,
      v.MLFramework ? ["ML framework", v.MLFramework] : null,
      v.ReleaseNotes ? ["Release notes", v.ReleaseNotes] : null,
      ["Created", formatTime(v.CreationTime)],
      ["Modified", formatTime(v.LastModifiedTime)],
    ]),
    h("h4", {}, "Findings"),
    h("div", { id: idOf("findings") },
      findings.length
        ? table(
          [
            { label: "Severity", value: (x) => h("span", { class: `badge ${x.severity === "error" ? "bad" : "busy"}` }, x.severity) },
            { label: "Finding", value: (x) => x.text },
          ],
          findings)
        : h("p", { class: "ok-text" }, v.ImageVersionStatus === "CREATING" ? "Being validated…" : "No problems found.")),
    f ? [
      h("h4", {}, "What the image holds"),
      kv([
        ["Architecture", f.architecture || "unknown", idOf("arch")],
        ["OS", f.os || "unknown"],
        ["Users (UID)", ids(f.users), idOf("users")],
        ["Groups (GID)", ids(f.groups), idOf("groups")],
        ["R", f.r_installations.length
          ? f.r_installations.map((r) => `${r.version || "unknown version"} (${r.home})`).join(", ")
          : "none", idOf("r")],
        ["RStudio session", f.rstudio ? `${f.rstudio.version || "unknown version"} (${f.rstudio.rsession})` : "none", idOf("rstudio")],
        ["Jupyter kernels", f.kernels.length
          ? f.kernels.map((k) => `${k.name}${k.display_name ? ` “${k.display_name}”` : ""}${k.language ? ` [${k.language}]` : ""}`).join(", ")
          : "none", idOf("kernels")],
        ["Python", f.pythons.length ? f.pythons.join(", ") : "none"],
      ]),
    ] : null);
}

// -- one domain: attached images, attach / detach, the launcher --------------------------------

async function renderDomain(root, domainId) {
  const base = `/v1/domains/${encodeURIComponent(domainId)}`;
  const title = h("h1", {}, `Domain ${domainId}`);
  const status = h("span", { id: "domain-status" });
  const details = h("div", { id: "domain-details" });
  const attachedBox = h("div", { id: "domain-images" });
  const problem = h("div", { id: "domain-error" });
  const launcherBox = h("div", { id: "launcher" });

  const app = h("select", { id: "attach-app" }, Object.keys(APP_SETTINGS).map((a) => h("option", { value: a }, a)));
  const image = h("select", { id: "attach-image" });
  const config = h("select", { id: "attach-config" });
  const version = h("select", { id: "attach-version" }, h("option", { value: "" }, "latest"));
  const attach = h("button", { id: "attach-submit", type: "submit" }, "Attach");
  const attachForm = h("form", { id: "attach-form", class: "panel" },
    h("h3", {}, "Attach an image"),
    h("p", { class: "hint" }, "Added to the domain's DefaultUserSettings; the image is checked for what the app needs before it is attached."),
    h("div", { class: "row" },
      field("App", app), field("Image", image), field("Version", version), field("App image config", config), attach));

  const user = h("select", { id: "launcher-user" }, h("option", { value: "" }, "(domain defaults)"));
  const launcherSection = h("section", {},
    h("h2", {}, "Launcher"),
    h("div", { class: "row" }, field("What this user can launch", user)),
    launcherBox);

  show(root,
    backLink(),
    h("div", { class: "images-head" }, title, status),
    problem,
    details,
    h("h2", {}, "Attached images"),
    attachedBox,
    attachForm,
    launcherSection);

  let domain = null;
  let lastShown = null;
  let versionsByImage = new Map();

  const fillSelect = (select, options, placeholder) => {
    const keep = select.value;
    show(select, placeholder ? h("option", { value: "" }, placeholder) : null,
      options.map(([value, label]) => h("option", { value }, label)));
    if ([...select.options].some((o) => o.value === keep)) select.value = keep;
  };
  const fillVersions = () => {
    const versions = versionsByImage.get(image.value) || [];
    fillSelect(version, versions.map((v) => [String(v.Version), `${v.Version} (${v.ImageVersionStatus})`]), "latest");
  };
  image.addEventListener("change", fillVersions);

  const loadLauncher = serial(async () => {
    try {
      const query = user.value ? `?user=${encodeURIComponent(user.value)}` : "";
      const launch = await api("GET", `${base}/launcher${query}`);
      showData(launcherBox, launch, () => launcherTable(launch));
    } catch (err) {
      shown.delete(launcherBox);
      show(launcherBox, errorBox(err));
    }
  });
  user.addEventListener("change", () => loadLauncher());

  const patchSettings = async (appName, change) => {
    const key = APP_SETTINGS[appName];
    const section = { ...(domain.DefaultUserSettings?.[key] || {}) };
    section.CustomImages = change([...(section.CustomImages || [])]);
    // UpdateDomain replaces each top-level member given: the whole section is sent.
    await api("PATCH", base, { DefaultUserSettings: { [key]: section } });
  };

  const refresh = serial(async () => {
    try {
      const [described, images, configs, profiles, defaults] = await Promise.all([
        api("GET", base),
        api("GET", "/v1/images"),
        api("GET", "/v1/app-image-configs"),
        api("GET", `${base}/user-profiles`),
        api("GET", `${base}/launcher`),
      ]);
      domain = described;
      const versions = await Promise.all(images.Images.map((i) => api("GET", `/v1/images/${encodeURIComponent(i.ImageName)}/versions`)
        .then((r) => r.ImageVersions).catch(() => [])));
      versionsByImage = new Map(images.Images.map((i, n) => [i.ImageName, versions[n]]));
      show(problem);
      const key = JSON.stringify([described, images, configs, profiles, defaults, versions]);
      if (key === lastShown) return; // nothing changed
      lastShown = key;
      show(title, `Domain ${domain.DomainName}`);
      show(status, statusBadge(domain.Status));
      show(details, kv([
        ["Id", h("span", { class: "mono" }, domain.DomainId), "domain-id"],
        ["Auth mode", domain.AuthMode],
        ["Execution role", domain.DefaultUserSettings?.ExecutionRole ? h("span", { class: "mono" }, domain.DefaultUserSettings.ExecutionRole) : null],
        ["VPC", domain.VpcId],
        ["Subnets", (domain.SubnetIds || []).join(", ") || null],
        ["Url", domain.Url],
        ["Created", formatTime(domain.CreationTime)],
        ["Modified", formatTime(domain.LastModifiedTime)],
        domain.FailureReason ? ["Failure", domain.FailureReason] : null,
      ]));
      show(attachedBox, attachedTable(domain, defaults, (row, button) => act(button, async () => {
        await patchSettings(row.app, (list) => list.filter((e) => e.ImageName !== row.ImageName));
        await refresh();
      })));
      fillSelect(image, images.Images.map((i) => [i.ImageName, i.DisplayName ? `${i.ImageName} (${i.DisplayName})` : i.ImageName]), "Choose an image…");
      fillVersions();
      fillSelect(config, configs.AppImageConfigs.map((c) => [c.AppImageConfigName, c.AppImageConfigName]), "Choose a config…");
      fillSelect(user, profiles.UserProfiles.map((p) => [p.UserProfileName, p.UserProfileName]), "(domain defaults)");
    } catch (err) {
      show(problem, errorBox(err));
    }
  });

  attachForm.addEventListener("submit", (event) => {
    event.preventDefault();
    act(attach, async () => {
      if (!image.value) throw new Error("Choose an image to attach.");
      if (!config.value) throw new Error("Choose the app image config it runs with.");
      const already = attachedOf(domain.DefaultUserSettings).some((a) => a.app === app.value && a.ImageName === image.value);
      if (already) throw new Error(`${image.value} is already attached to ${app.value}: detach it first.`);
      const entry = { ImageName: image.value, AppImageConfigName: config.value };
      if (version.value) entry.ImageVersionNumber = Number(version.value);
      await patchSettings(app.value, (list) => [...list, entry]);
      await refresh();
      await loadLauncher();
    });
  });

  await refresh();
  if (!domain) {
    for (const el of [...root.children].slice(3)) el.hidden = true;
    return;
  }
  await loadLauncher();
  const soon = throttle(async () => {
    await refresh();
    await loadLauncher();
  }, 1000);
  live("images", { ready: () => soon(), change: ({ key }) => { if (!key.startsWith("build.")) soon(); } });
}

function attachedTable(domain, defaults, onDetach) {
  const launchable = new Map((defaults.Images || []).map((e) => [`${e.App}/${e.ImageName}`, e]));
  const rows = attachedOf(domain.DefaultUserSettings);
  return table(
    [
      { label: "App", value: (r) => r.app },
      { label: "Image", value: (r) => h("a", { href: `#/images/image/${encodeURIComponent(r.ImageName)}` }, r.ImageName) },
      {
        label: "Version",
        value: (r) => {
          const resolved = launchable.get(`${r.app}/${r.ImageName}`)?.ImageVersionNumber;
          if (r.ImageVersionNumber !== undefined && r.ImageVersionNumber !== null) return `${r.ImageVersionNumber}`;
          return resolved ? `latest (${resolved})` : "latest";
        },
      },
      { label: "App image config", value: (r) => r.AppImageConfigName },
      { label: "Status", value: (r) => statusBadge(launchable.get(`${r.app}/${r.ImageName}`)?.Status || "MISSING") },
      {
        label: "",
        value: (r) => {
          const button = h("button", { type: "button", class: "secondary detach", id: `detach-${r.app}-${r.ImageName}` }, "Detach");
          button.addEventListener("click", () => onDetach(r, button));
          return button;
        },
      },
    ],
    rows,
    {
      caption: "Custom images in DefaultUserSettings",
      empty: "No custom images attached yet.",
      rowAttrs: (r) => ({ id: `attached-${r.app}-${r.ImageName}` }),
    },
  );
}

function launcherTable(launch) {
  const who = launch.UserProfileName ? `user ${launch.UserProfileName}` : "the domain's default settings";
  return table(
    [
      { label: "Name", value: (e) => h("b", {}, e.DisplayName) },
      { label: "App", value: (e) => e.App },
      { label: "Image", value: (e) => e.ImageName },
      { label: "Version", class: "num", value: (e) => (e.ImageVersionNumber ?? "—") },
      { label: "R versions", value: (e) => e.RVersions.join(", ") || "—" },
      { label: "Kernels", value: (e) => e.Kernels.join(", ") || "—" },
      { label: "App image config", value: (e) => e.AppImageConfigName },
      { label: "Status", value: (e) => statusBadge(e.Status) },
    ],
    launch.Images || [],
    {
      caption: `What ${who} can launch`,
      empty: `Nothing to launch for ${who} yet.`,
      rowAttrs: (e) => ({ id: `launch-${e.App}-${e.ImageName}` }),
    },
  );
}
