// Tuning: hyperparameter tuning jobs (Syne Tune-class) — the jobs, a new-job form, and one job's
// live trial table, best-so-far chart and (multi-objective) Pareto front, with a Stop button.

import {
  table,
  serial,
  act, api, badge, chart, color, errorBox, formatNumber, formatTime, h, live, show, throttle,
} from "../lib.js";

const JOB_NAME = /^[a-zA-Z0-9][a-zA-Z0-9-]{0,62}$/;
const ACTIVE = new Set(["InProgress", "Stopping"]);
const TIME_KEY = "st_tuner_time"; // seconds since the job started, stamped on each report
// A script the `local` pool's workers can read: a relative path resolves against the worker's
// working directory (the repository root under `trellis up`).
const EXAMPLE_ENTRY_POINT = "services/tuner/scripts/quadratic.py";
const MAX_LISTED = 50; // jobs described for the list's scheduler / trial / best columns

export async function render(root, params) {
  if (params[0]) return renderJob(root, params[0]);
  return renderList(root);
}

// -- helpers this page needs beyond lib.js -----------------------------------------------------



// Replaces a chart, keeping its data table open if the user opened it.
function replaceChart(holder, figure) {
  const wasOpen = holder.querySelector("details.chart-data")?.open;
  show(holder, figure);
  if (wasOpen && figure instanceof Element) {
    const details = figure.querySelector("details.chart-data");
    if (details) details.open = true;
  }
}

function configText(config) {
  return Object.entries(config || {})
    .map(([k, v]) => `${k}=${typeof v === "number" ? formatNumber(v, 4) : v}`)
    .join(", ");
}

function metricLabel(m) {
  return `${m.name} (${m.mode})`;
}

function schedulerText(spec) {
  const s = spec.scheduler || {};
  const parts = [s.type];
  if (s.max_resource) parts.push(`${s.resource_attr} ≤ ${s.max_resource}`);
  return parts.join(", ");
}

function finished(counts) {
  return (counts.completed || 0) + (counts.stopped || 0);
}

function started(counts) {
  return Object.values(counts || {}).reduce((n, c) => n + c, 0);
}

function bestText(job) {
  const metric = job.spec?.metrics?.[0];
  if (!job.best || !metric) return "—";
  return `${metric.name} ${formatNumber(job.best.metrics[metric.name], 4)} (trial ${job.best.trial_id})`;
}

// -- the jobs list and the new-job form -------------------------------------------------------

function exampleSpec() {
  return {
    name: `quad-${Date.now().toString(36)}`,
    entry_point: EXAMPLE_ENTRY_POINT,
    config_space: {
      x: { type: "uniform", lower: 0, upper: 1 },
      epochs: 3,
      delay: 0.5,
    },
    metrics: [{ name: "loss", mode: "min" }],
    scheduler: { type: "asha", resource_attr: "epoch", max_resource: 3, grace_period: 1, reduction_factor: 3 },
    stop: { max_num_trials_started: 8 },
    n_workers: 2,
    pool: "local",
  };
}

// Obvious mistakes found before the server is asked (it checks everything again).
function checkSpec(text) {
  let spec;
  try {
    spec = JSON.parse(text);
  } catch (err) {
    throw new Error(`The spec is not valid JSON: ${err.message}`);
  }
  if (!spec || typeof spec !== "object" || Array.isArray(spec)) throw new Error("The spec must be a JSON object.");
  if (typeof spec.name !== "string" || !JOB_NAME.test(spec.name)) {
    throw new Error("name: 1-63 letters, digits or '-', starting with a letter or digit.");
  }
  if (spec.backend?.type === "simulator") {
    // The tuner fills in the benchmark's space and metrics, and refuses what does not apply.
    if (typeof spec.backend.benchmark !== "string" || !spec.backend.benchmark) {
      throw new Error("backend.benchmark: the name of one of the tuner's simulated benchmarks.");
    }
    return spec;
  }
  if (typeof spec.entry_point !== "string" || !spec.entry_point.trim()) {
    throw new Error("entry_point: the path of a training script the pool's workers can read.");
  }
  if (!spec.config_space || typeof spec.config_space !== "object" || !Object.keys(spec.config_space).length) {
    throw new Error("config_space: an object with at least one hyperparameter.");
  }
  if (!Array.isArray(spec.metrics) || !spec.metrics.length || spec.metrics.some((m) => !m || typeof m.name !== "string" || !m.name)) {
    throw new Error("metrics: a list like [{\"name\": \"loss\", \"mode\": \"min\"}].");
  }
  return spec;
}

async function renderList(root) {
  const jobsBox = h("div", { id: "tuning-jobs" });
  const textarea = h("textarea", {
    id: "tuning-spec", rows: 22, spellcheck: "false", "aria-label": "Tuning job spec (JSON)",
  });
  textarea.value = JSON.stringify(exampleSpec(), null, 2);
  const start = h("button", { id: "tuning-start", type: "submit" }, "Start");
  const reset = h("button", { id: "tuning-example", type: "button", class: "secondary" }, "Reset to example");
  reset.addEventListener("click", () => { textarea.value = JSON.stringify(exampleSpec(), null, 2); });
  const form = h(
    "form", { id: "tuning-new", class: "panel" },
    h("h2", {}, "New job"),
    h("p", { class: "hint" },
      "A TuningJobSpec as JSON (the same body as POST /v1/tuning-jobs or `trellis tune run`). ",
      "entry_point must be a script the pool's workers can read; it reports with ",
      h("code", {}, "trellis.reporter.Reporter"), " or Syne Tune's Reporter. ",
      "A simulator job names a benchmark instead: ",
      h("code", {}, '"backend": {"type": "simulator", "benchmark": "learning-curves"}'), "."),
    textarea,
    h("div", { class: "row tuning-actions" }, start, reset),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(start, async () => {
      const spec = checkSpec(textarea.value);
      const created = await api("POST", "/v1/tuning-jobs", spec);
      location.hash = `#/tuning/${encodeURIComponent(created.name || spec.name)}`;
    });
  });

  show(root, h("h1", {}, "Tuning"),
    h("div", { class: "tuning-layout" },
      h("section", { class: "tuning-jobs-section" }, h("h2", {}, "Jobs"), jobsBox),
      form));

  const described = new Map(); // name -> describe output
  let listed = [];
  let lastShown = null;
  const draw = () => {
    const key = JSON.stringify([listed, [...described]]);
    if (key === lastShown) return; // nothing changed
    lastShown = key;
    show(jobsBox, table(
      [
        { label: "Name", class: "nowrap", value: (j) => h("a", { href: `#/tuning/${encodeURIComponent(j.name)}`, class: "job-link" }, j.name) },
        { label: "Status", value: (j) => [badge(j.status), j.stop_reason ? h("div", { class: "hint small" }, j.stop_reason) : null] },
        { label: "Scheduler", value: (j) => (described.get(j.name) ? schedulerText(described.get(j.name).spec) : "—") },
        { label: "Trials started", class: "num", value: (j) => formatNumber(described.get(j.name) ? started(described.get(j.name).trial_counts) : j.trials) },
        { label: "Trials completed", class: "num", value: (j) => (described.get(j.name) ? formatNumber(finished(described.get(j.name).trial_counts)) : "—") },
        { label: "Best", value: (j) => (described.get(j.name) ? bestText(described.get(j.name)) : "—") },
        { label: "Created", value: (j) => formatTime(j.created_at) },
      ],
      listed,
      { caption: "Tuning jobs, newest first", empty: "No tuning jobs yet.", rowAttrs: (j) => ({ id: `job-${j.name}` }) },
    ));
  };
  const describe = async (name) => {
    try {
      described.set(name, await api("GET", `/v1/tuning-jobs/${encodeURIComponent(name)}`));
    } catch {
      described.delete(name);
    }
  };
  const loadAll = async () => {
    ({ jobs: listed } = await api("GET", "/v1/tuning-jobs"));
    await Promise.all(listed.slice(0, MAX_LISTED).map((j) => describe(j.name)));
    draw();
  };
  try {
    await loadAll();
  } catch (err) {
    lastShown = null;
    show(jobsBox, errorBox(err));
  }

  // Live: a changed job is described again; a new or deleted one re-reads the list.
  const changed = new Set();
  let relist = false;
  const flush = serial(async () => {
    const names = [...changed];
    changed.clear();
    const again = relist;
    relist = false;
    try {
      if (again) {
        await loadAll();
        return;
      }
      await Promise.all(names.map(describe));
      for (const name of names) {
        const job = described.get(name);
        const row = listed.find((j) => j.name === name);
        if (job && row) Object.assign(row, { status: job.status, stop_reason: job.stop_reason, trials: started(job.trial_counts) });
      }
      draw();
    } catch (err) {
      lastShown = null;
      show(jobsBox, errorBox(err));
    }
  });
  const soon = throttle(() => flush(), 1000);
  // `ready` comes when the stream (re)connects: what changed before it was watched is read again.
  live("tuning", {
    ready: () => {
      relist = true;
      soon();
    },
    change: ({ key, deleted }) => {
      if (deleted || !listed.some((j) => j.name === key)) relist = true;
      else changed.add(key);
      soon();
    },
  });
}

// -- one job ----------------------------------------------------------------------------------

async function renderJob(root, name) {
  const base = `/v1/tuning-jobs/${encodeURIComponent(name)}`;
  const status = h("span", { id: "tuning-status" });
  const stop = h("button", { id: "tuning-stop", class: "danger", type: "button" }, "Stop job");
  const summary = h("div", { id: "tuning-summary" });
  const bestChart = h("div", { id: "tuning-best-chart" });
  const paretoSection = h("section", { id: "tuning-pareto", hidden: true });
  const paretoChart = h("div", { id: "tuning-pareto-chart" });
  const trialsBox = h("div", { id: "tuning-trials" });
  const problem = h("div", { id: "tuning-error" });
  show(paretoSection, h("h2", {}, "Pareto front"), paretoChart);

  const links = h("p", { class: "tuning-links" },
    h("a", { id: "tuning-csv", href: `${base}/trials.csv`, download: `${name}-trials.csv` }, "Trials as CSV"),
    " · ",
    h("a", { id: "tuning-best-svg", href: `${base}/charts/best.svg`, target: "_blank", rel: "noopener" }, "Best-so-far chart (SVG)"),
    " · ",
    h("a", { id: "tuning-best-png", href: `${base}/charts/best.png`, target: "_blank", rel: "noopener" }, "PNG"),
  );
  const paretoLinks = h("span", { hidden: true },
    " · ",
    h("a", { id: "tuning-pareto-svg", href: `${base}/charts/pareto.svg`, target: "_blank", rel: "noopener" }, "Pareto chart (SVG)"),
    " · ",
    h("a", { id: "tuning-pareto-png", href: `${base}/charts/pareto.png`, target: "_blank", rel: "noopener" }, "PNG"));
  links.append(paretoLinks);

  show(root,
    h("p", {}, h("a", { href: "#/tuning" }, "← All tuning jobs")),
    h("div", { class: "tuning-head" }, h("h1", {}, `Tuning job ${name}`), status, stop),
    problem,
    summary,
    links,
    h("div", { class: "grid2" },
      h("section", {}, h("h2", {}, "Best so far"), bestChart),
      paretoSection),
    h("h2", {}, "Trials"),
    trialsBox,
  );

  let job = null;
  stop.addEventListener("click", () => act(stop, async () => {
    job = await api("POST", `${base}/stop`);
    draw(job, null);
  }));

  let trials = [];
  let lastShown = null;
  const draw = (described, rows) => {
    if (rows) trials = rows;
    show(status, badge(described.status));
    stop.disabled = described.status !== "InProgress";
    stop.hidden = !ACTIVE.has(described.status);
    show(summary, summaryPanel(described));
    drawBest(bestChart, described, trials);
    const multi = (described.spec.metrics || []).length > 1;
    paretoSection.hidden = !multi;
    paretoLinks.hidden = !multi;
    if (multi) drawPareto(paretoChart, described, trials);
    // Keep the trial errors the user opened open across live refreshes.
    const opened = [...trialsBox.querySelectorAll("tr[id] details[open]")].map((d) => d.closest("tr").id);
    show(trialsBox, trialTable(described, trials));
    for (const id of opened) {
      const details = document.getElementById(id)?.querySelector("details");
      if (details) details.open = true;
    }
  };

  const refresh = serial(async () => {
    try {
      const described = await api("GET", base);
      const listed = await api("GET", `${base}/trials`);
      job = described;
      show(problem);
      const key = JSON.stringify([described, listed.trials]);
      if (key === lastShown) return; // nothing changed: the DOM stays as it is
      lastShown = key;
      draw(described, listed.trials);
    } catch (err) {
      show(problem, errorBox(err));
    }
  });
  await refresh();
  if (!job) {
    // No such job (or no access): only the problem and the way back.
    for (const el of [...root.children].slice(3)) el.hidden = true; // after back link, head, problem
    stop.hidden = true;
    return;
  }
  const soon = throttle(() => refresh(), 1000);
  live(`tuning:${name}`, { ready: () => soon(), change: () => soon() }); // ready: changes before the watch
}

// A simulator job has no script or pool: its trials are evaluations of a benchmark in the tuner.
function backendRows(spec) {
  const backend = spec.backend || { type: "workers" };
  if (backend.type === "simulator") {
    const cost = backend.cost_per_hour ? `, ${formatNumber(backend.cost_per_hour, 4)} per simulated hour` : "";
    return [
      ["Backend", h("span", { id: "tuning-backend" }, `simulator: ${backend.benchmark}`)],
      ["Simulated workers", `${spec.n_workers} (time scale ${backend.time_scale}${cost})`],
    ];
  }
  return [
    ["Entry point", h("code", {}, spec.entry_point)],
    ["Pool", spec.pool_param ? `chosen by ${spec.pool_param} (default ${spec.pool})` : spec.pool],
    ["Workers", `${spec.n_workers}`],
  ];
}

function summaryPanel(job) {
  const spec = job.spec;
  const counts = job.trial_counts || {};
  const metrics = spec.metrics.map(metricLabel).join(", ");
  const stats = h("div", { class: "stats" },
    stat(`${started(counts)}`, "trials started", "tuning-started"),
    stat(`${finished(counts)}`, "trials completed", "tuning-completed"),
    stat(`${job.running}`, "queued or running", "tuning-running"),
    stat(bestText(job), "best", "tuning-best"),
    stat(formatNumber(job.total_cost, 4), "cost", "tuning-cost"),
  );
  const rows = [
    ["Scheduler", schedulerText(spec)],
    ["Metrics", metrics],
    ...backendRows(spec),
    ["Stop when", stopText(spec.stop) || "the search space is exhausted"],
    ["Created", formatTime(job.created_at)],
    ["Ended", formatTime(job.ended_at)],
    ["Stop reason", job.stop_reason || "—"],
    ["Trials by status", Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(", ") || "none yet"],
  ];
  if (job.failure_reason) rows.push(["Failure", h("span", { class: "bad-text", id: "tuning-failure" }, job.failure_reason)]);
  if (job.best) rows.push(["Best config", h("code", { id: "tuning-best-config" }, configText(job.best.config))]);
  if (job.pareto?.hypervolume != null) rows.push(["Hypervolume", formatNumber(job.pareto.hypervolume, 4)]);
  return [
    stats,
    h("dl", { class: "kv" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
  ];
}

function stat(value, label, id) {
  return h("div", { class: "stat" }, h("b", { id }, value), h("span", {}, label));
}

function stopText(stop) {
  if (!stop) return "";
  const names = {
    max_wallclock_time: (v) => `${formatNumber(v)} s elapsed`,
    max_num_trials_started: (v) => `${v} trials started`,
    max_num_trials_completed: (v) => `${v} trials completed`,
    max_cost: (v) => `cost ${formatNumber(v)}`,
    metric_threshold: (v) => `first metric reaches ${formatNumber(v)}`,
  };
  return Object.entries(stop)
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => (names[k] ? names[k](v) : `${k} ${v}`))
    .join(" or ");
}

function trialTable(job, trials) {
  const metrics = job.spec.metrics.map((m) => m.name);
  const attr = job.spec.scheduler.resource_attr;
  const bestId = job.best?.trial_id;
  const front = new Set((job.pareto?.trials || []).map((t) => t.trial_id));
  return table(
    [
      { label: "Trial", class: "num", value: (t) => `${t.trial_id}` },
      { label: "Config", value: (t) => h("code", {}, configText(t.config)) },
      { label: "Status", value: (t) => [badge(t.status), t.attempt > 1 ? h("span", { class: "hint small" }, ` attempt ${t.attempt}`) : null] },
      { label: "Pool", value: (t) => t.pool },
      ...metrics.map((m) => ({ label: `${m} (last)`, class: "num", value: (t) => formatNumber(t.last?.[m], 4) })),
      { label: `Rung (${attr})`, class: "num", value: (t) => formatNumber(t.resource) },
      { label: "Reports", class: "num", value: (t) => `${(t.reports || []).length}` },
      { label: "Elapsed (s)", class: "num", value: (t) => formatNumber(t.elapsed_s, 1) },
      { label: "Cost", class: "num", value: (t) => formatNumber(t.cost, 4) },
      { label: "Notes", value: (t) => trialNotes(t, bestId, front) },
    ],
    trials,
    {
      caption: `${trials.length} trials`,
      empty: "No trials yet.",
      rowAttrs: (t) => ({
        id: `trial-${t.trial_id}`,
        class: t.trial_id === bestId ? "best-trial" : undefined,
        dataset: { status: t.status },
      }),
    },
  );
}

function trialNotes(trial, bestId, front) {
  const notes = [];
  if (trial.trial_id === bestId) notes.push(h("span", { class: "badge good" }, "best"));
  if (front.has(trial.trial_id)) notes.push(h("span", { class: "badge good" }, "Pareto"));
  if (trial.error) notes.push(h("details", { class: "trial-error" }, h("summary", {}, "error"), h("pre", { class: "log" }, trial.error)));
  return notes.length ? notes : "";
}

// The best value of the first metric over time: a step line through every report.
function drawBest(holder, job, trials) {
  const metric = job.spec.metrics[0];
  const sign = metric.mode === "min" ? 1 : -1;
  const reports = trials
    .flatMap((t) => (t.reports || []).map((r) => ({ t: r[TIME_KEY], v: r[metric.name], trial: t.trial_id })))
    .filter((r) => typeof r.t === "number" && typeof r.v === "number")
    .sort((a, b) => a.t - b.t);
  if (!reports.length) {
    show(holder, h("p", { class: "empty", id: "tuning-best-empty" }, "No reports yet."));
    return;
  }
  const steps = [];
  let best = null;
  for (const r of reports) {
    if (best === null || sign * r.v < sign * best) {
      if (best !== null) steps.push([r.t, best]);
      best = r.v;
      steps.push([r.t, best, `trial ${r.trial}`]);
    }
  }
  const last = reports[reports.length - 1].t;
  if (steps[steps.length - 1][0] < last) steps.push([last, best]);
  const yLabel = metricLabel(metric);
  replaceChart(holder, chart({
    title: `Best ${metric.name} so far`,
    xLabel: "seconds since the job started",
    yLabel,
    series: [
      { name: "best so far", points: steps, dot: false, color: color(0) },
      { name: "reports", points: reports.map((r) => [r.t, r.v, `trial ${r.trial}`]), line: false, color: "#94a3b8" },
    ],
    marker: [steps[steps.length - 1][0], best],
  }));
}

// Each trial's best report (by the first metric), as the tuner's Pareto computation uses.
function finals(job, trials) {
  const names = job.spec.metrics.map((m) => m.name);
  const sign = job.spec.metrics[0].mode === "min" ? 1 : -1;
  const out = [];
  for (const t of trials) {
    const good = (t.reports || []).filter((r) => names.every((n) => typeof r[n] === "number"));
    if (!good.length) continue;
    const best = good.reduce((a, b) => (sign * b[names[0]] < sign * a[names[0]] ? b : a));
    out.push({ trial: t, metrics: best });
  }
  return out;
}

// The Pareto set from describe, one series per pool; the dominated trials in grey behind it.
function drawPareto(holder, job, trials) {
  const [mx, my] = job.spec.metrics;
  const front = job.pareto?.trials || [];
  const onFront = new Set(front.map((t) => t.trial_id));
  const others = finals(job, trials).filter((f) => !onFront.has(f.trial.trial_id));
  if (!front.length && !others.length) {
    show(holder, h("p", { class: "empty", id: "tuning-pareto-empty" }, "No completed reports yet."));
    return;
  }
  const pools = [...new Set(front.map((t) => t.pool))].sort();
  const series = pools.map((pool, i) => ({
    name: `Pareto front: ${pool}`,
    color: color(i),
    line: false,
    points: front
      .filter((t) => t.pool === pool)
      .map((t) => [t.metrics[mx.name], t.metrics[my.name], `trial ${t.trial_id}`])
      .sort((a, b) => a[0] - b[0]),
  }));
  if (others.length) {
    series.push({
      name: "dominated",
      color: "#cbd5e1",
      line: false,
      points: others.map((f) => [f.metrics[mx.name], f.metrics[my.name], `trial ${f.trial.trial_id} (${f.trial.pool})`]),
    });
  }
  replaceChart(holder, chart({
    title: `Pareto front: ${mx.name} vs ${my.name}`,
    xLabel: metricLabel(mx),
    yLabel: metricLabel(my),
    series,
  }));
}
