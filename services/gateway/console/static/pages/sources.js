// Data sources: an index's web crawlers (Kendra's WEBCRAWLER data sources), their settings,
// syncs and sync history, updated live from the crawler's events.
//
// Routes: #/sources, #/sources/<indexId>            the index's data sources
//         #/sources/new/<indexId>                   a new web crawler
//         #/sources/<indexId>/<sourceId>            a data source: syncs, history, settings

import {
  act, api, badge, errorBox, field, formatNumber, formatTime, h, live, show, throttle,
} from "../lib.js";
import { credentialsPanel } from "./credentials.js";

const RUNNING = new Set(["SYNCING", "SYNCING_INDEXING", "STOPPING"]);
const SCOPES = [
  ["HOST_ONLY", "This host only"],
  ["SUBDOMAINS", "This host and its subdomains"],
  ["EVERYTHING", "Everything linked (any host)"],
];
const EDITIONS = ["DEVELOPER_EDITION", "ENTERPRISE_EDITION", "GEN_AI_ENTERPRISE_EDITION"];
const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_-]*$/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// Service defaults (services/crawler/domain/settings.py), shown as placeholders.
const DEFAULTS = { depth: 2, links: 100, size: 50, rate: 300, agent: "TrellisCrawler/1.0" };
const SKIPPED = ["skipped_robots", "skipped_pattern", "skipped_size", "skipped_scope", "skipped_duplicate"];

export async function render(root, params) {
  const [first, second] = params;
  if (first === "new") return renderNew(root, second);
  if (first && second) return renderSource(root, first, second);
  return renderList(root, first);
}

const path = (...parts) => `#/sources/${parts.map(encodeURIComponent).join("/")}`;
const sourceUrl = (sourceId, suffix = "") => `/v1/data-sources/${encodeURIComponent(sourceId)}${suffix}`;

// -- the list -----------------------------------------------------------------------------------

async function renderList(root, indexParam) {
  const { Indexes: indexes = [] } = await api("GET", "/v1/indexes");
  const index = indexes.find((ix) => ix.Id === indexParam) || indexes[0];
  const createIndex = createIndexForm(!indexes.length);
  if (!index) {
    show(root, h("h1", {}, "Data sources"),
      h("p", { class: "empty", id: "sources-no-index" }, "No indexes yet. Create an index, then add a web crawler to fill it."),
      createIndex);
    return;
  }
  const select = h("select", { id: "sources-index", "aria-label": "Index" },
    indexes.map((ix) => h("option", { value: ix.Id, selected: ix.Id === index.Id }, `${ix.Name} (${ix.Status})`)));
  select.addEventListener("change", () => { location.hash = path(select.value); });
  const list = h("div", { id: "sources-list" }, h("p", { class: "loading" }, "Loading…"));
  show(root,
    h("h1", {}, "Data sources"),
    h("div", { class: "row" },
      field("Index", select),
      h("a", { class: "button", id: "sources-new", href: path("new", index.Id) }, "New web crawler"),
      h("a", { class: "button secondary", href: `#/search/${encodeURIComponent(index.Id)}` }, "Search this index")),
    list,
    createIndex,
    credentialsPanel());

  let shown = new Set();
  const load = async () => {
    try {
      const { element, ids } = await sourcesTable(index);
      shown = ids;
      show(list, element);
    } catch (err) {
      show(list, errorBox(err));
    }
  };
  await load();
  const refresh = throttle(() => load(), 1000);
  live("sources", { change: refresh });
  // Sync job keys are "<source id>.<execution id>": only this index's sources matter here.
  live("syncs", { change: (event) => { if (shown.has(String(event.key).split(".")[0])) refresh(); } });
}

async function sourcesTable(index) {
  const { SummaryItems: items = [] } = await api("GET", `/v1/data-sources?index_id=${encodeURIComponent(index.Id)}`);
  if (!items.length) {
    return { ids: new Set(), element: h("p", { class: "empty", id: "sources-empty" }, `No data sources in ${index.Name} yet. Add a web crawler to crawl a site into it.`) };
  }
  // The summary has neither schedule nor last sync: describe each source and read its history.
  const rows = await Promise.all(items.map(async (item) => {
    const q = `?index_id=${encodeURIComponent(index.Id)}`;
    const [described, history] = await Promise.all([
      api("GET", sourceUrl(item.Id, q)).catch(() => ({})),
      api("GET", sourceUrl(item.Id, `/sync-jobs${q}`)).catch(() => ({ History: [] })),
    ]);
    return { ...item, Schedule: described.Schedule, Description: described.Description, last: (history.History || [])[0] };
  }));
  const table = h("table", { id: "sources-table" },
    h("caption", {}, `Data sources of ${index.Name}`),
    h("thead", {}, h("tr", {}, ["Name", "Type", "Status", "Schedule", "Last sync", "Added / modified / deleted / failed", "Updated"]
      .map((label) => h("th", { scope: "col" }, label)))),
    h("tbody", {}, rows.map((s) => {
      const m = s.last?.Metrics || {};
      return h("tr", { dataset: { sourceId: s.Id } },
        h("td", {}, h("a", { class: "source-link", id: `source-link-${s.Id}`, href: path(index.Id, s.Id) }, s.Name),
          s.Description ? h("div", { class: "hint" }, s.Description) : null),
        h("td", {}, s.Type),
        h("td", { class: "source-status" }, badge(s.Status)),
        h("td", { class: "source-schedule" }, s.Schedule || h("span", { class: "hint" }, "on demand")),
        h("td", { class: "source-last-sync" }, s.last ? [badge(s.last.Status), " ", formatTime(s.last.StartTime)] : h("span", { class: "hint" }, "never")),
        h("td", { class: "num" }, s.last ? [m.DocumentsAdded, m.DocumentsModified, m.DocumentsDeleted, m.DocumentsFailed].map((n) => formatNumber(n)).join(" / ") : "—"),
        h("td", {}, formatTime(s.UpdatedAt)));
    })));
  return { ids: new Set(items.map((s) => s.Id)), element: table };
}

function createIndexForm(open) {
  const name = h("input", { type: "text", id: "index-name", maxlength: 1000, placeholder: "e.g. support-site", autocomplete: "off" });
  const edition = h("select", { id: "index-edition" }, EDITIONS.map((e) => h("option", { value: e, selected: e === "DEVELOPER_EDITION" }, e)));
  const description = h("input", { type: "text", id: "index-description", maxlength: 1000 });
  const button = h("button", { type: "submit", id: "index-create" }, "Create index");
  const form = h("form", { class: "row", id: "index-form" },
    field("Name", name), field("Edition", edition), field("Description (optional)", description), button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await act(button, async () => {
      const value = name.value.trim();
      if (!NAME.test(value)) throw new Error("An index name starts with a letter or digit and has only letters, digits, '_' and '-'.");
      const body = { Name: value, Edition: edition.value };
      if (description.value.trim()) body.Description = description.value.trim();
      const { Id } = await api("POST", "/v1/indexes", body);
      location.hash = path(Id);
    });
  });
  return h("details", { class: "panel create-index", id: "sources-create-index", open },
    h("summary", {}, "Create an index"), form);
}

// -- a new source -------------------------------------------------------------------------------

async function renderNew(root, indexId) {
  if (!indexId) {
    location.hash = "#/sources";
    return;
  }
  const index = await api("GET", `/v1/indexes/${encodeURIComponent(indexId)}`);
  show(root,
    h("p", {}, h("a", { href: path(indexId) }, `← Data sources of ${index.Name}`)),
    h("h1", {}, "New web crawler"),
    sourceForm(indexId, null, (id) => { location.hash = path(indexId, id); }));
}

// -- one source ---------------------------------------------------------------------------------

async function renderSource(root, indexId, sourceId) {
  const q = `?index_id=${encodeURIComponent(indexId)}`;
  const [index, source] = await Promise.all([
    api("GET", `/v1/indexes/${encodeURIComponent(indexId)}`).catch(() => ({ Name: indexId })),
    api("GET", sourceUrl(sourceId, q)),
  ]);
  const heading = h("h1", {});
  const facts = h("p", { class: "hint", id: "source-facts" });
  const state = h("p", { id: "source-sync-state", "aria-live": "polite" });
  const history = h("div", { id: "sync-history" }, h("p", { class: "loading" }, "Loading…"));
  const mode = h("select", { id: "source-sync-mode", "aria-label": "Sync mode" },
    h("option", { value: "FULL_CRAWL" }, "Changed pages (FULL_CRAWL)"),
    h("option", { value: "FORCED_FULL_CRAWL" }, "Refetch everything (FORCED_FULL_CRAWL)"));
  const syncNow = h("button", { type: "button", id: "source-sync-now" }, "Sync now");
  const stop = h("button", { type: "button", id: "source-stop", class: "secondary" }, "Stop");
  const remove = h("button", { type: "button", id: "source-delete", class: "danger" }, "Delete");
  const confirm = h("div", { class: "panel confirm", id: "source-delete-panel", hidden: true });
  const settings = h("div", { id: "source-settings" });
  let current = source;
  let jobs = [];
  let deleting = false;

  const showSource = () => {
    show(heading, current.Name, " ", badge(current.Status));
    show(facts,
      `${current.Type} data source ${current.Id} of index `, h("a", { href: path(indexId) }, index.Name || indexId),
      ` · language ${current.LanguageCode || "—"} · schedule ${current.Schedule || "on demand"}`,
      ` · created ${formatTime(current.CreatedAt)} · updated ${formatTime(current.UpdatedAt)}`);
  };
  const updateButtons = () => {
    const running = jobs.find((j) => RUNNING.has(j.Status));
    syncNow.disabled = Boolean(running);
    stop.disabled = !running || running.Status === "STOPPING";
    if (running) {
      const p = running.Progress || {};
      show(state, badge(running.Status), ` since ${formatTime(running.StartTime)}: ${formatNumber(p.Done ?? 0)} of ${formatNumber(p.Queued ?? 0)} URLs done`);
    } else if (jobs[0]) {
      show(state, "Idle. Last sync ", badge(jobs[0].Status), ` ended ${formatTime(jobs[0].EndTime)}.`);
    } else {
      show(state, "Never synced.");
    }
    state.dataset.status = running ? running.Status : jobs[0]?.Status || "";
  };
  const loadHistory = async () => {
    try {
      const reply = await api("GET", sourceUrl(sourceId, `/sync-jobs${q}`));
      jobs = reply.History || [];
      show(history, historyTable(jobs, Boolean(reply.NextToken)));
    } catch (err) {
      show(history, errorBox(err));
    }
    updateButtons();
  };
  const loadSource = async () => {
    try {
      current = await api("GET", sourceUrl(sourceId, q));
      showSource();
    } catch (err) {
      if (err.status === 404) show(root, errorBox(`Data source ${sourceId} no longer exists.`), h("a", { href: path(indexId) }, "Back to the data sources"));
    }
  };

  syncNow.addEventListener("click", async () => {
    await act(syncNow, async () => {
      const body = { IndexId: indexId };
      if (mode.value !== "FULL_CRAWL") body.SyncMode = mode.value;
      await api("POST", sourceUrl(sourceId, "/sync-jobs"), body);
      await loadHistory();
    });
    updateButtons();
  });
  stop.addEventListener("click", async () => {
    await act(stop, async () => {
      await api("POST", sourceUrl(sourceId, "/sync-jobs/stop"), { IndexId: indexId });
      await loadHistory();
    });
    updateButtons();
  });
  remove.addEventListener("click", () => {
    const yes = h("button", { type: "button", class: "danger", id: "source-delete-confirm" }, `Delete ${current.Name}`);
    const no = h("button", { type: "button", class: "secondary", id: "source-delete-cancel" }, "Cancel");
    yes.addEventListener("click", () => act(yes, async () => {
      deleting = true;
      try {
        await api("DELETE", sourceUrl(sourceId, q));
      } catch (err) {
        deleting = false;
        throw err;
      }
      location.hash = path(indexId);
    }));
    no.addEventListener("click", () => { confirm.hidden = true; });
    show(confirm,
      h("p", {}, `Delete the data source ${current.Name}? A running sync is stopped. `,
        "The documents it already indexed stay in the index until you delete them or the index."),
      h("div", { class: "row" }, yes, no));
    confirm.hidden = false;
    yes.focus();
  });

  showSource();
  show(settings, sourceForm(indexId, source, async () => {
    await loadSource();
  }));
  show(root,
    h("p", {}, h("a", { href: path(indexId) }, `← Data sources of ${index.Name || indexId}`)),
    heading,
    facts,
    h("div", { class: "row source-actions" }, field("Sync mode", mode), syncNow, stop, remove),
    confirm,
    state,
    h("h2", {}, "Sync history"),
    history,
    h("h2", {}, "Settings"),
    settings);
  await loadHistory();
  live(`syncs:${sourceId}`, { change: throttle(() => loadHistory(), 500) });
  const reloadSource = throttle(() => loadSource(), 500);
  live("sources", {
    change: (event) => {
      if (event.key !== sourceId || deleting) return;
      if (event.deleted) {
        show(root, h("p", { class: "empty", id: "source-deleted" }, `The data source ${current.Name} was deleted.`),
          h("a", { href: path(indexId) }, "Back to the data sources"));
      } else {
        reloadSource();
      }
    },
  });
}

function historyTable(jobs, more) {
  if (!jobs.length) return h("p", { class: "empty", id: "sync-history-empty" }, "No syncs yet. Sync now to crawl the site.");
  const metric = (job, name, kendra) => {
    const trellis = job.TrellisMetrics || {};
    return trellis[name] ?? job.Metrics?.[kendra];
  };
  const num = (cls, value) => h("td", { class: `num ${cls}` }, formatNumber(value ?? 0));
  const columns = ["Started", "Status", "Scanned", "Added", "Modified", "Deleted", "Unchanged", "Failed", "Skipped", "Done / queued", "Errors"];
  const rows = jobs.flatMap((job) => {
    const trellis = job.TrellisMetrics || {};
    const skipped = SKIPPED.reduce((n, k) => n + (trellis[k] || 0), 0);
    const why = SKIPPED.filter((k) => trellis[k]).map((k) => `${k.replace("skipped_", "")} ${trellis[k]}`);
    const errors = job.Errors || [];
    const end = job.EndTime;
    const progress = job.Progress || {};
    const problems = errors.length + (job.ErrorMessage ? 1 : 0);
    const row = h("tr", { class: "sync-row", dataset: { executionId: job.ExecutionId, status: job.Status } },
      h("td", { class: "sync-start" }, formatTime(job.StartTime),
        h("div", { class: "hint" },
          h("span", { class: "mono", title: `Execution ${job.ExecutionId}` }, job.ExecutionId.slice(0, 8)), " · ",
          h("span", { class: "sync-duration", title: end ? `ended ${formatTime(end)}` : "running" },
            end ? `took ${duration(end - job.StartTime)}` : "running"))),
      h("td", { class: "sync-status" }, badge(job.Status)),
      num("metric-scanned", metric(job, "scanned", "DocumentsScanned")),
      num("metric-added", metric(job, "added", "DocumentsAdded")),
      num("metric-modified", metric(job, "modified", "DocumentsModified")),
      num("metric-deleted", metric(job, "deleted", "DocumentsDeleted")),
      num("metric-unchanged", trellis.unchanged),
      num("metric-failed", metric(job, "failed", "DocumentsFailed")),
      h("td", { class: "num metric-skipped", title: why.join(", ") || "nothing skipped" },
        formatNumber(skipped), why.length ? h("div", { class: "hint" }, why.join(", ")) : null),
      h("td", { class: "num sync-progress" }, `${formatNumber(progress.Done ?? 0)} / ${formatNumber(progress.Queued ?? 0)}`),
      h("td", { class: "num sync-errors" }, problems ? `${formatNumber(problems)} error${problems === 1 ? "" : "s"}` : h("span", { class: "hint" }, "none")));
    if (!problems) return [row];
    // The errors of a sync on a full-width row under it: URLs are long.
    const detail = h("tr", { class: "sync-error-row", dataset: { executionId: job.ExecutionId } },
      h("td", { colspan: columns.length },
        job.ErrorMessage ? h("div", { class: "sync-error-message" }, `${job.ErrorCode || "Error"}: ${job.ErrorMessage}`) : null,
        errors.length
          ? h("ul", { class: "plain sync-error-list" }, errors.map((e) => h("li", {}, h("span", { class: "mono" }, e.url), " — ", e.message)))
          : null));
    return [row, detail];
  });
  return [
    h("table", { id: "sync-history-table", class: "sync-history" },
      h("caption", {}, "Most recent syncs first"),
      h("thead", {}, h("tr", {},
        columns.map((label, i) => h("th", { scope: "col", class: i >= 2 ? "num" : null }, label)))),
      h("tbody", {}, rows)),
    more ? h("p", { class: "hint" }, "Showing the 10 most recent syncs.") : null,
  ];
}

function duration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "—";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

// -- the settings form ------------------------------------------------------------------------

// One labelled control with Kendra's name for it.
function knob(label, kendra, input, hint) {
  return h("label", { class: "field knob" },
    h("span", {}, label, kendra ? [" ", h("code", { class: "kendra" }, kendra)] : null),
    input,
    hint ? h("small", { class: "hint" }, hint) : null);
}

function lines(text) {
  return text.split("\n").map((l) => l.trim()).filter(Boolean);
}

function sourceForm(indexId, existing, onSaved) {
  const config = existing?.Configuration || {};
  const web = config.WebCrawlerConfiguration || {};
  const seedConfig = web.Urls?.SeedUrlConfiguration || {};
  const sitemapConfig = web.Urls?.SiteMapsConfiguration || {};
  const auth = web.AuthenticationConfiguration || {};
  const login = auth.FormAuthentication || {};
  const proxy = web.ProxyConfiguration || {};
  const number = (id, value, attrs) => h("input", { type: "number", id, value: value ?? "", ...attrs });
  const area = (id, list, rows, placeholder) => h("textarea", { id, rows, placeholder, spellcheck: "false" }, (list || []).join("\n"));

  const f = {
    name: h("input", { type: "text", id: "source-name", value: existing?.Name ?? "", maxlength: 1000, required: true, autocomplete: "off", placeholder: "e.g. docs-site" }),
    description: h("input", { type: "text", id: "source-description", value: existing?.Description ?? "", maxlength: 1000 }),
    language: h("input", { type: "text", id: "source-language", value: existing?.LanguageCode ?? "en", maxlength: 10, list: "source-languages" }),
    schedule: h("input", { type: "text", id: "source-schedule", value: existing?.Schedule ?? "", maxlength: 200, placeholder: "cron(0 3 * * ? *) or 0 3 * * *" }),
    seeds: area("source-seed-urls", seedConfig.SeedUrls, 4, "https://docs.example.com/\nhttps://example.com/blog/"),
    sitemaps: area("source-sitemap-urls", sitemapConfig.SiteMaps, 2, "https://example.com/sitemap.xml"),
    scope: h("select", { id: "source-scope" }, SCOPES.map(([value, label]) => h("option", { value, selected: value === (seedConfig.WebCrawlerMode || "HOST_ONLY") }, label))),
    depth: number("source-depth", web.CrawlDepth, { min: 0, max: 10, step: 1, placeholder: DEFAULTS.depth }),
    links: number("source-max-links", web.MaxLinksPerPage, { min: 1, max: 1000, step: 1, placeholder: DEFAULTS.links }),
    size: number("source-max-size", web.MaxContentSizePerPageInMegaBytes, { min: 0, max: 50, step: "any", placeholder: DEFAULTS.size }),
    rate: number("source-rate", web.MaxUrlsPerMinuteCrawlRate, { min: 0, max: 300, step: 1, placeholder: DEFAULTS.rate }),
    crawlInclude: area("source-crawl-include", web.UrlInclusionPatterns, 2, "https://example\\.com/docs/.*"),
    crawlExclude: area("source-crawl-exclude", web.UrlExclusionPatterns, 2, ".*\\.pdf$"),
    indexInclude: area("source-index-include", web.IndexInclusionPatterns, 2),
    indexExclude: area("source-index-exclude", web.IndexExclusionPatterns, 2, ".*/tag/.*"),
    robots: h("input", { type: "checkbox", id: "source-robots", checked: web.RespectRobotsTxt !== false }),
    agent: h("input", { type: "text", id: "source-user-agent", value: web.UserAgent ?? "", maxlength: 200, placeholder: DEFAULTS.agent }),
    headers: h("textarea", { id: "source-headers", rows: 2, spellcheck: "false", placeholder: "Accept-Language: en\nX-Token: …" },
      Object.entries(web.CustomHeaders || {}).map(([k, v]) => `${k}: ${v}`).join("\n")),
    basicAuth: h("textarea", { id: "source-basic-auth", rows: 2, spellcheck: "false", placeholder: "intranet.example.com:443 intranet-login" },
      (auth.BasicAuthentication || []).map((b) => `${hostPort(b.Host, b.Port)} ${b.Credentials ?? ""}`).join("\n")),
    loginUrl: h("input", { type: "url", id: "source-login-url", value: login.LoginUrl ?? "", placeholder: "https://example.com/login" }),
    loginUser: h("input", { type: "text", id: "source-login-username-field", value: login.UsernameField ?? "", maxlength: 256, placeholder: "username" }),
    loginPassword: h("input", { type: "text", id: "source-login-password-field", value: login.PasswordField ?? "", maxlength: 256, placeholder: "password" }),
    loginCredentials: h("input", { type: "text", id: "source-login-credentials", value: login.Credentials ?? "", maxlength: 1284, list: "source-secrets" }),
    loginExtra: h("textarea", { id: "source-login-extra-fields", rows: 2, spellcheck: "false", placeholder: "remember=1" },
      Object.entries(login.ExtraFields || {}).map(([k, v]) => `${k}=${v}`).join("\n")),
    proxyHost: h("input", { type: "text", id: "source-proxy-host", value: proxy.Host ?? "", maxlength: 253, placeholder: "proxy.example.com" }),
    proxyPort: h("input", { type: "number", id: "source-proxy-port", value: proxy.Port ?? "", min: 1, max: 65535, step: 1 }),
    proxyCredentials: h("input", { type: "text", id: "source-proxy-credentials", value: proxy.Credentials ?? "", maxlength: 1284, list: "source-secrets" }),
    roleArn: h("input", { type: "text", id: "source-role-arn", value: existing?.RoleArn ?? "", maxlength: 1284 }),
    tags: h("textarea", { id: "source-tags", rows: 2, spellcheck: "false", placeholder: "team=docs" }),
  };
  const secrets = h("datalist", { id: "source-secrets" });
  const hasAuth = Boolean(auth.BasicAuthentication?.length || auth.FormAuthentication || web.ProxyConfiguration);
  const authSection = h("details", { class: "panel", id: "source-auth", open: hasAuth },
    h("summary", {}, "Authentication and proxy"),
    h("p", { class: "hint" }, "Credentials name a secret holding {\"username\", \"password\"} (its name or ARN). ",
      "Create secrets with POST /v1/secrets or Secrets Manager's CreateSecret; the crawler never returns their values."),
    secrets,
    knob("Basic authentication: one 'host:port secret' per line (up to 10)", "AuthenticationConfiguration.BasicAuthentication", f.basicAuth,
      "Sent only to that host and port."),
    h("fieldset", { class: "sub" }, h("legend", {}, "Login form (posted once per sync; its cookies serve the sync)"),
      h("div", { class: "row" },
        knob("Login URL", "FormAuthentication.LoginUrl", f.loginUrl),
        knob("Username field", "UsernameField", f.loginUser),
        knob("Password field", "PasswordField", f.loginPassword),
        knob("Credentials (secret)", "Credentials", f.loginCredentials)),
      knob("Other form fields, one 'name=value' per line", "ExtraFields", f.loginExtra)),
    h("div", { class: "row" },
      knob("Proxy host", "ProxyConfiguration.Host", f.proxyHost),
      knob("Proxy port", "Port", f.proxyPort),
      knob("Proxy credentials (secret, optional)", "Credentials", f.proxyCredentials)));
  // The secrets are listed when the section is opened (the names complete the inputs).
  let secretsLoaded = false;
  const loadSecrets = async () => {
    if (secretsLoaded) return;
    secretsLoaded = true;
    try {
      const { SecretList = [] } = await api("GET", "/v1/secrets");
      show(secrets, SecretList.map((x) => h("option", { value: x.Name }, x.Description || x.ARN || "")));
    } catch {
      // Listing needs crawler read access; typing a name still works.
    }
  };
  authSection.addEventListener("toggle", () => { if (authSection.open) loadSecrets(); });
  const problems = h("div", { id: "source-form-errors", role: "alert" });
  const saved = h("p", { id: "source-saved", class: "hint", "aria-live": "polite" });
  const save = h("button", { type: "submit", id: "source-save" }, existing ? "Save changes" : "Create data source");

  const form = h("form", { id: "source-form", class: "source-form", novalidate: true },
    h("datalist", { id: "source-languages" }, ["en", "de", "fr", "es", "it", "pt", "nl", "ja", "ko", "zh"].map((c) => h("option", { value: c }))),
    h("fieldset", { class: "panel" }, h("legend", {}, "Data source"),
      h("div", { class: "grid2" },
        knob("Name", "Name", f.name, "Letters, digits, '_' and '-'; starts with a letter or digit."),
        knob("Description", "Description", f.description),
        knob("Language", "LanguageCode", f.language, "Of the pages; a page's own lang attribute wins."),
        knob("Sync schedule", "Schedule", f.schedule, "AWS cron(min hour day month weekday year) or 5-field cron, in UTC; empty: on demand only."))),
    h("fieldset", { class: "panel" }, h("legend", {}, "What to crawl"),
      h("div", { class: "grid2" },
        knob("Seed URLs, one per line (up to 100)", "SeedUrlConfiguration.SeedUrls", f.seeds),
        knob("Sitemap URLs, one per line (up to 3)", "SiteMapsConfiguration.SiteMaps", f.sitemaps)),
      h("div", { class: "row" },
        knob("Scope", "WebCrawlerMode", f.scope),
        knob("Crawl depth (0–10)", "CrawlDepth", f.depth, "0: the seeds only."),
        knob("Max links per page (1–1000)", "MaxLinksPerPage", f.links),
        knob("Max file size, MB (up to 50)", "MaxContentSizePerPageInMegaBytes", f.size),
        knob("Max URLs per host per minute (0–300)", "MaxUrlsPerMinuteCrawlRate", f.rate, "0: no limit (your own sites only)."))),
    h("fieldset", { class: "panel" }, h("legend", {}, "URL patterns (regular expressions, one per line, up to 100 each)"),
      h("div", { class: "grid2" },
        knob("Crawl only URLs matching", "UrlInclusionPatterns", f.crawlInclude),
        knob("Never crawl URLs matching", "UrlExclusionPatterns", f.crawlExclude),
        knob("Index only URLs matching (others are still followed)", "IndexInclusionPatterns", f.indexInclude),
        knob("Do not index URLs matching (still followed)", "IndexExclusionPatterns", f.indexExclude))),
    h("fieldset", { class: "panel" }, h("legend", {}, "Requests"),
      h("div", { class: "row" },
        h("label", { class: "check" }, f.robots, " Respect robots.txt ", h("code", { class: "kendra" }, "RespectRobotsTxt")),
        knob("User agent (1–200 characters)", "UserAgent", f.agent)),
      knob("Custom headers, one 'Name: value' per line", "CustomHeaders", f.headers),
    ),
    authSection,
    h("details", { class: "panel" }, h("summary", {}, "AWS compatibility"),
      h("div", { class: "grid2" },
        knob("Role ARN (kept, not used)", "RoleArn", f.roleArn),
        existing ? null : knob("Tags, one 'key=value' per line", "Tags", f.tags))),
    problems,
    h("div", { class: "row" }, save, existing ? null : h("a", { href: path(indexId), id: "source-cancel" }, "Cancel"), saved));

  const markInvalid = (bad) => {
    for (const input of Object.values(f)) input.removeAttribute("aria-invalid");
    for (const input of bad) input.setAttribute("aria-invalid", "true");
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    show(problems);
    show(saved);
    const { errors, bad, body } = collect(f, existing, indexId);
    markInvalid(bad);
    if (errors.length) {
      show(problems, h("div", { class: "error" }, h("b", {}, "Please fix: "), h("ul", {}, errors.map((e) => h("li", {}, e)))));
      bad[0]?.focus();
      return;
    }
    save.disabled = true;
    try {
      if (existing) {
        await api("PATCH", sourceUrl(existing.Id), body);
        show(saved, `Saved at ${new Date().toLocaleTimeString("en-GB")}.`);
        await onSaved(existing.Id);
      } else {
        const { Id } = await api("POST", "/v1/data-sources", body);
        await onSaved(Id);
      }
    } catch (err) {
      show(problems, errorBox(err));
    } finally {
      save.disabled = false;
    }
  });
  return form;
}

// The form as a CreateDataSource / UpdateDataSource body, with what is wrong in it.
function collect(f, existing, indexId) {
  const errors = [];
  const bad = [];
  const fail = (input, message) => {
    errors.push(message);
    if (!bad.includes(input)) bad.push(input);
  };

  const name = f.name.value.trim();
  if (!name) fail(f.name, "Name is required.");
  else if (!NAME.test(name) || name.length > 1000) fail(f.name, "Name: letters, digits, '_' and '-' only, starting with a letter or digit.");
  const description = f.description.value.trim();
  const language = f.language.value.trim();
  if (language && !/^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$/.test(language)) fail(f.language, `Language: ${language} is not a language code such as en or pt-BR.`);
  const schedule = f.schedule.value.trim();
  const cronProblem = schedule ? checkCron(schedule) : null;
  if (cronProblem) fail(f.schedule, `Schedule: ${cronProblem}`);

  const urls = (input, label, max) => {
    const list = lines(input.value);
    if (list.length > max) fail(input, `${label}: at most ${max}, got ${list.length}.`);
    for (const value of list) {
      let ok = false;
      try {
        const url = new URL(value);
        ok = (url.protocol === "http:" || url.protocol === "https:") && Boolean(url.hostname);
      } catch {
        ok = false;
      }
      if (!ok) fail(input, `${label}: ${value} is not an http(s) URL.`);
      else if (value.length > 2048) fail(input, `${label}: a URL is at most 2048 characters.`);
    }
    return [...new Set(list)];
  };
  const seeds = urls(f.seeds, "Seed URLs", 100);
  const sitemaps = urls(f.sitemaps, "Sitemap URLs", 3);
  if (!seeds.length && !sitemaps.length) fail(f.seeds, "Give at least one seed URL or sitemap URL.");

  const integer = (input, label, low, high) => {
    const raw = input.value.trim();
    if (raw === "") return undefined;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < low || n > high) fail(input, `${label} must be a whole number from ${low} to ${high}.`);
    return n;
  };
  const depth = integer(f.depth, "Crawl depth", 0, 10);
  const links = integer(f.links, "Max links per page", 1, 1000);
  const rate = integer(f.rate, "Max URLs per host per minute", 0, 300);
  let size;
  if (f.size.value.trim() !== "") {
    size = Number(f.size.value);
    if (!Number.isFinite(size) || size <= 0 || size > 50) fail(f.size, "Max file size must be above 0 and at most 50 MB.");
  }

  const patterns = (input, label) => {
    const list = lines(input.value);
    if (list.length > 100) fail(input, `${label}: at most 100 patterns.`);
    for (const pattern of list) {
      const problem = checkPattern(pattern);
      if (problem) fail(input, `${label}: ${pattern} — ${problem}`);
    }
    return list;
  };
  const crawlInclude = patterns(f.crawlInclude, "Crawl inclusion patterns");
  const crawlExclude = patterns(f.crawlExclude, "Crawl exclusion patterns");
  const indexInclude = patterns(f.indexInclude, "Index inclusion patterns");
  const indexExclude = patterns(f.indexExclude, "Index exclusion patterns");

  const agent = f.agent.value.trim();
  if (agent.length > 200) fail(f.agent, "User agent: at most 200 characters.");
  const headers = {};
  for (const line of lines(f.headers.value)) {
    const at = line.indexOf(":");
    const key = at > 0 ? line.slice(0, at).trim() : "";
    if (!key || !HEADER_NAME.test(key)) {
      fail(f.headers, `Custom headers: "${line}" is not "Name: value".`);
      continue;
    }
    headers[key] = line.slice(at + 1).trim();
  }
  const tags = [];
  for (const line of lines(f.tags.value)) {
    const at = line.indexOf("=");
    const key = at > 0 ? line.slice(0, at).trim() : "";
    const value = at > 0 ? line.slice(at + 1).trim() : "";
    if (!key || key.length > 128 || value.length > 256) fail(f.tags, `Tags: "${line}" is not key=value (key 1–128, value up to 256 characters).`);
    else tags.push({ Key: key, Value: value });
  }
  if (tags.length > 200) fail(f.tags, "Tags: at most 200.");

  // Start from the stored configuration so settings this form does not show are kept.
  const configuration = structuredClone(existing?.Configuration || {});
  const web = { ...(configuration.WebCrawlerConfiguration || {}) };
  const urlsConfig = { ...(web.Urls || {}) };
  const scope = f.scope.value;
  if (seeds.length || scope !== "HOST_ONLY") {
    urlsConfig.SeedUrlConfiguration = { ...(urlsConfig.SeedUrlConfiguration || {}), SeedUrls: seeds, WebCrawlerMode: scope };
  } else {
    delete urlsConfig.SeedUrlConfiguration;
  }
  if (sitemaps.length) urlsConfig.SiteMapsConfiguration = { SiteMaps: sitemaps };
  else delete urlsConfig.SiteMapsConfiguration;
  web.Urls = urlsConfig;
  const setOrDrop = (key, value) => {
    const empty = value === undefined || value === "" || (Array.isArray(value) && !value.length)
      || (value && typeof value === "object" && !Array.isArray(value) && !Object.keys(value).length);
    if (empty) delete web[key];
    else web[key] = value;
  };
  setOrDrop("CrawlDepth", depth);
  setOrDrop("MaxLinksPerPage", links);
  setOrDrop("MaxContentSizePerPageInMegaBytes", size);
  setOrDrop("MaxUrlsPerMinuteCrawlRate", rate);
  setOrDrop("UrlInclusionPatterns", crawlInclude);
  setOrDrop("UrlExclusionPatterns", crawlExclude);
  setOrDrop("IndexInclusionPatterns", indexInclude);
  setOrDrop("IndexExclusionPatterns", indexExclude);
  web.RespectRobotsTxt = f.robots.checked;
  setOrDrop("UserAgent", agent);
  setOrDrop("CustomHeaders", headers);
  const authentication = { ...(web.AuthenticationConfiguration || {}) };
  const basic = [];
  for (const line of lines(f.basicAuth.value)) {
    const [target, secret, ...rest] = line.split(/\s+/);
    const parsed = parseHostPort(target);
    if (!parsed || !secret || rest.length) fail(f.basicAuth, `Basic authentication: "${line}" is not "host:port secret".`);
    else if (!isSecretReference(secret)) fail(f.basicAuth, `Basic authentication: ${secret} is not a secret name or ARN.`);
    else basic.push({ Host: parsed.host, Port: parsed.port, Credentials: secret });
  }
  if (basic.length > 10) fail(f.basicAuth, "Basic authentication: at most 10 hosts.");
  if (basic.length) authentication.BasicAuthentication = basic;
  else delete authentication.BasicAuthentication;
  const loginParts = [f.loginUrl, f.loginUser, f.loginPassword, f.loginCredentials].map((i) => i.value.trim());
  const extra = {};
  for (const line of lines(f.loginExtra.value)) {
    const at = line.indexOf("=");
    if (at <= 0) fail(f.loginExtra, `Login form fields: "${line}" is not name=value.`);
    else extra[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  if (loginParts.some(Boolean) || Object.keys(extra).length) {
    const [loginUrl, userField, passwordField, credentials] = loginParts;
    if (!isWebUrl(loginUrl)) fail(f.loginUrl, "Login form: the login URL must be an http(s) URL.");
    if (!userField) fail(f.loginUser, "Login form: give the username field's name.");
    if (!passwordField) fail(f.loginPassword, "Login form: give the password field's name.");
    if (userField && userField === passwordField) fail(f.loginPassword, "Login form: the username and password fields must differ.");
    if (!isSecretReference(credentials)) fail(f.loginCredentials, "Login form: credentials must name a secret.");
    if (extra[userField] !== undefined || extra[passwordField] !== undefined) fail(f.loginExtra, "Login form: the other fields must not repeat the username or password field.");
    const form = { LoginUrl: loginUrl, UsernameField: userField, PasswordField: passwordField, Credentials: credentials };
    if (Object.keys(extra).length) form.ExtraFields = extra;
    authentication.FormAuthentication = form;
  } else {
    delete authentication.FormAuthentication;
  }
  setOrDrop("AuthenticationConfiguration", authentication);
  const proxyHost = f.proxyHost.value.trim();
  const proxyPort = f.proxyPort.value.trim();
  const proxyCredentials = f.proxyCredentials.value.trim();
  if (proxyHost || proxyPort || proxyCredentials) {
    const port = Number(proxyPort);
    if (!proxyHost || /[\/\\@?# ]/.test(proxyHost)) fail(f.proxyHost, "Proxy: give a host name or IP address.");
    if (!Number.isInteger(port) || port < 1 || port > 65535) fail(f.proxyPort, "Proxy: the port is a whole number from 1 to 65535.");
    if (proxyCredentials && !isSecretReference(proxyCredentials)) fail(f.proxyCredentials, "Proxy: credentials must name a secret.");
    web.ProxyConfiguration = { Host: proxyHost, Port: port, ...(proxyCredentials ? { Credentials: proxyCredentials } : {}) };
  } else {
    delete web.ProxyConfiguration;
  }
  configuration.WebCrawlerConfiguration = web;

  const roleArn = f.roleArn.value.trim();
  let body;
  if (existing) {
    // UpdateDataSource: an empty Schedule or Description clears it.
    body = { IndexId: indexId, Name: name, Configuration: configuration, Schedule: schedule, Description: description };
    if (language) body.LanguageCode = language;
    if (roleArn) body.RoleArn = roleArn;
  } else {
    body = { Name: name, IndexId: indexId, Type: "WEBCRAWLER", Configuration: configuration };
    if (description) body.Description = description;
    if (schedule) body.Schedule = schedule;
    if (language) body.LanguageCode = language;
    if (roleArn) body.RoleArn = roleArn;
    if (tags.length) body.Tags = tags;
  }
  return { errors, bad, body };
}

const SECRET_NAME = /^[A-Za-z0-9/_+=.@-]{1,128}$/;
const SECRET_ARN = /^arn:aws:secretsmanager:[a-z0-9-]{1,63}:\d{12}:secret:([A-Za-z0-9/_+=.@-]{1,128})$/;

function isSecretReference(text) {
  return Boolean(text) && (SECRET_NAME.test(text) || SECRET_ARN.test(text));
}

function isWebUrl(text) {
  try {
    const url = new URL(text);
    return (url.protocol === "http:" || url.protocol === "https:") && Boolean(url.hostname);
  } catch {
    return false;
  }
}

function hostPort(host, port) {
  return String(host).includes(":") && !String(host).startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`;
}

// "host:port" or "[v6]:port".
function parseHostPort(text) {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[^\s:/\\@?#\[\]]+):(\d{1,5})$/.exec(text || "");
  if (!match) return null;
  const port = Number(match[2]);
  if (port < 1 || port > 65535) return null;
  return { host: match[1].replace(/^\[|\]$/g, ""), port };
}

// Obvious cron mistakes; the crawler checks every field and names what is wrong.
function checkCron(text) {
  if (/^rate\(/i.test(text)) return "rate() expressions are not supported; use cron(...).";
  if (/^cron\(/i.test(text)) {
    if (!text.endsWith(")")) return "cron(...) is missing its closing parenthesis.";
    const fields = text.slice(5, -1).trim().split(/\s+/);
    if (fields.length !== 6) return `cron(...) needs 6 fields (minutes hours day-of-month month day-of-week year), got ${fields.length}.`;
    if ((fields[2] === "?") === (fields[4] === "?")) return "AWS cron needs '?' in exactly one of day-of-month and day-of-week.";
    return null;
  }
  if (text.startsWith("@")) {
    return ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"].includes(text.toLowerCase())
      ? null : `${text} is not a known macro (@hourly, @daily, @weekly, @monthly, @yearly).`;
  }
  const fields = text.split(/\s+/);
  if (fields.length !== 5) return `expected cron(...) or 5-field cron (minute hour day-of-month month day-of-week), got ${fields.length} fields.`;
  return null;
}

// The crawler uses Python regular expressions: translate the common differences, then let the
// browser's parser find unbalanced brackets and the like.
function checkPattern(pattern) {
  if (pattern.length > 1000) return "at most 1000 characters.";
  const js = pattern
    .replace(/^\(\?[aiLmsux]+\)/, "")
    .replace(/\(\?P</g, "(?<")
    .replace(/\(\?P=(\w+)\)/g, "\\k<$1>")
    .replace(/\\[AZ]/g, "");
  try {
    new RegExp(js);
    return null;
  } catch (err) {
    return err.message.replace(/^Invalid regular expression: /, "");
  }
}

