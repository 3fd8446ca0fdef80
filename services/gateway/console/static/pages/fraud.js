// Fraud: Amazon Fraud Detector's console over the fraud service's AFD operations.
//   #/fraud                                          event types, variables, models, detectors
//   #/fraud/model/<modelId>/<modelType>/<version>    a model version: AUC, ROC, threshold, diagnostics
//   #/fraud/detector/<detectorId>                    versions, rules, rule tester, backtest

import {
  serial,
  ApiError, act, badge, bars, chart, errorBox, field, formatNumber, formatTime, fraud, h, live,
  onLeave, show, table, throttle,
} from "../lib.js";

const POPULATION = 100_000; // AFD's console shows outcomes per 100,000 events
const SCORE_MAX = 1000;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$/;
const MODEL_TYPES = ["ONLINE_FRAUD_INSIGHTS", "TRANSACTION_FRAUD_INSIGHTS", "ACCOUNT_TAKEOVER_INSIGHTS"];

export async function render(root, params) {
  const [view, ...rest] = params;
  if (view === "model" && rest.length >= 2) return modelVersionPage(root, rest);
  if (view === "detector" && rest[0]) return detectorPage(root, rest[0]);
  return overviewPage(root);
}

// -- helpers ------------------------------------------------------------------------------------

// Every page of a paged AFD list operation.
async function listAll(operation, body, key) {
  const items = [];
  let token;
  for (let i = 0; i < 200; i++) {
    const page = await fraud(operation, token ? { ...body, nextToken: token } : body);
    items.push(...(page[key] || []));
    token = page.nextToken;
    if (!token) break;
  }
  return items;
}


// A live refresh: bursts of change events become one re-read (serialized) at most every `ms`.
function liveRefresh(run, onError, ms = 1000) {
  return throttle(() => run().catch(onError), ms);
}

function pct(value, digits = 1) {
  if (value === undefined || value === null || !Number.isFinite(Number(value))) return "—";
  return `${(Number(value) * 100).toFixed(digits)}%`;
}

function bytes(n) {
  if (!Number.isFinite(n)) return "—";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

function idPart(text) {
  return String(text).replace(/[^A-Za-z0-9_-]/g, "_");
}

function versionKey(version) {
  const [major, minor = "0"] = String(version).split(".");
  return Number(major) * 1000 + Number(minor);
}

function modelHref(modelId, modelType, version) {
  return `#/fraud/model/${encodeURIComponent(modelId)}/${encodeURIComponent(modelType)}/${encodeURIComponent(version)}`;
}

function detectorHref(detectorId) {
  return `#/fraud/detector/${encodeURIComponent(detectorId)}`;
}

function severityBadge(level) {
  const tone = { CRITICAL: "bad", ERROR: "bad", WARNING: "busy" }[level] || "info";
  return h("span", { class: `badge ${tone}` }, level || "—");
}

function code(text) {
  return h("code", { class: "fraud-expr" }, text);
}

function stat(id, value, label) {
  return h("div", { class: "stat" }, h("b", { id }, value), h("span", {}, label));
}

function isoNow() {
  return new Date().toISOString().replace(/\.\d+Z$/, "Z");
}

function elapsed(since) {
  const seconds = Math.max(0, Math.round((Date.now() - new Date(since).getTime()) / 1000));
  return seconds < 120 ? `${seconds} s` : `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
}

// Training in progress: a local clock shows how long (no server polling; the status itself
// arrives through the live `fraud` topic).
function startElapsedClock() {
  const timer = setInterval(() => {
    for (const el of document.querySelectorAll(".fraud-elapsed[data-since]")) {
      el.textContent = `training for ${elapsed(el.dataset.since)}`;
    }
  }, 1000);
  onLeave(() => clearInterval(timer));
}

function trainingClock(version) {
  if (version.status !== "TRAINING_IN_PROGRESS") return null;
  return h("span", { class: "hint fraud-elapsed", dataset: { since: version.createdTime } },
    `training for ${elapsed(version.createdTime)}`);
}

function auc(version) {
  return version.trainingResult?.trainingMetrics?.auc;
}

function performance(version) {
  const metrics = version.trainingResultV2?.trainingMetricsV2 || {};
  const first = Object.values(metrics)[0];
  return first?.modelPerformance || {};
}

// -- overview -------------------------------------------------------------------------------------

async function overviewPage(root) {
  const stats = h("div", { class: "stats", id: "fraud-stats" });
  const problems = h("div", { id: "fraud-refresh-error" });
  const parts = {
    eventTypes: h("div", { id: "fraud-event-types" }),
    variables: h("div", { id: "fraud-variables" }),
    models: h("div", { id: "fraud-models" }),
    detectors: h("div", { id: "fraud-detectors" }),
    resources: h("div", { id: "fraud-resources" }),
    imports: h("div", { id: "fraud-imports" }),
  };
  show(
    root,
    h("h1", {}, "Fraud"),
    problems,
    stats,
    h("h2", {}, "Event types"), parts.eventTypes,
    h("h2", {}, "Variables"), parts.variables,
    h("h2", {}, "Models"), parts.models,
    h("h2", {}, "Detectors"), parts.detectors,
    h("h2", {}, "Labels, outcomes, entity types and lists"), parts.resources,
    h("h2", {}, "Batch imports"), parts.imports,
  );
  const forms = new Map(); // modelId -> its training form (kept across live refreshes)
  const refresh = serial(async () => {
    const data = await loadOverview();
    show(problems);
    show(stats,
      stat("fraud-count-event-types", formatNumber(data.eventTypes.length), "event types"),
      stat("fraud-count-variables", formatNumber(data.variables.length), "variables"),
      stat("fraud-count-models", formatNumber(data.models.length), "models"),
      stat("fraud-count-detectors", formatNumber(data.detectors.length), "detectors"),
      stat("fraud-count-events", formatNumber(data.eventTypes.reduce((n, e) => n + (e.ingestedEventStatistics?.numberOfEvents || 0), 0)), "stored events"));
    show(parts.eventTypes, eventTypesTable(data.eventTypes));
    show(parts.variables, variablesTable(data.variables));
    show(parts.models, modelsSection(data, forms, refresh));
    show(parts.detectors, detectorsTable(data.detectors, data.rules));
    show(parts.resources, resourcesTable(data));
    show(parts.imports, importsTable(data.imports));
  });
  await refresh();
  startElapsedClock();
  const again = liveRefresh(refresh, (err) => show(problems, errorBox(err)));
  live("fraud", { change: again });
}

async function loadOverview() {
  const [eventTypes, variables, models, versions, detectors, labels, outcomes, entityTypes, lists, imports] =
    await Promise.all([
      listAll("GetEventTypes", {}, "eventTypes"),
      listAll("GetVariables", {}, "variables"),
      listAll("GetModels", {}, "models"),
      listAll("DescribeModelVersions", {}, "modelVersionDetails"),
      listAll("GetDetectors", {}, "detectors"),
      listAll("GetLabels", {}, "labels"),
      listAll("GetOutcomes", {}, "outcomes"),
      listAll("GetEntityTypes", {}, "entityTypes"),
      listAll("GetListsMetadata", {}, "lists"),
      listAll("GetBatchImportJobs", {}, "batchImports"),
    ]);
  const rules = new Map(
    await Promise.all(detectors.map(async (d) => [d.detectorId, await listAll("GetRules", { detectorId: d.detectorId }, "ruleDetails")])),
  );
  return { eventTypes, variables, models, versions, detectors, labels, outcomes, entityTypes, lists, imports, rules };
}

function eventTypesTable(eventTypes) {
  return table(
    [
      { label: "Event type", value: (e) => h("span", { id: `fraud-event-type-${idPart(e.name)}` }, e.name) },
      { label: "Variables", value: (e) => e.eventVariables.join(", ") },
      { label: "Labels", value: (e) => e.labels.join(", ") || "—" },
      { label: "Entity types", value: (e) => e.entityTypes.join(", ") },
      { label: "Ingestion", value: (e) => badge(e.eventIngestion) },
      { label: "Stored events", value: (e) => h("span", { id: `fraud-events-${idPart(e.name)}` }, formatNumber(e.ingestedEventStatistics?.numberOfEvents ?? 0)), class: "num" },
      { label: "Size", value: (e) => bytes(e.ingestedEventStatistics?.eventDataSizeInBytes), class: "num" },
      { label: "Oldest event", value: (e) => formatTime(e.ingestedEventStatistics?.leastRecentEvent) },
      { label: "Newest event", value: (e) => formatTime(e.ingestedEventStatistics?.mostRecentEvent) },
    ],
    eventTypes,
    { caption: "Event types, their variables and stored events", empty: "No event types yet." },
  );
}

function variablesTable(variables) {
  return table(
    [
      { label: "Name", value: (v) => v.name },
      { label: "Data type", value: (v) => v.dataType },
      { label: "Data source", value: (v) => v.dataSource },
      { label: "Variable type", value: (v) => v.variableType || "—" },
      { label: "Default value", value: (v) => code(v.defaultValue) },
      { label: "Description", value: (v) => v.description || "" },
    ],
    variables,
    { caption: "Variables", empty: "No variables yet." },
  );
}

function modelsSection(data, forms, refresh) {
  if (!data.models.length) return h("p", { class: "empty" }, "No models yet.");
  return data.models.map((model) => {
    const versions = data.versions
      .filter((v) => v.modelId === model.modelId)
      .sort((a, b) => versionKey(b.modelVersionNumber) - versionKey(a.modelVersionNumber));
    const eventType = data.eventTypes.find((e) => e.name === model.eventTypeName);
    // The form is kept across live refreshes (it may be half edited); rebuilt when its defaults
    // change (a new version, new stored events) while its settings are closed.
    const stats = eventType?.ingestedEventStatistics || {};
    const key = JSON.stringify([versions[0]?.modelVersionNumber, stats.numberOfEvents, stats.mostRecentEvent, eventType?.eventVariables, eventType?.labels]);
    const kept = forms.get(model.modelId);
    if (!kept || (kept.key !== key && !kept.element.querySelector("details").open)) {
      const status = kept?.status || h("div", { id: `fraud-train-status-${idPart(model.modelId)}`, role: "status" });
      forms.set(model.modelId, { key, status, element: trainingForm(model, versions, eventType, status, refresh) });
    }
    return h("article", { class: "panel fraud-model", id: `fraud-model-${idPart(model.modelId)}` },
      h("h3", {}, model.modelId, " ", h("span", { class: "hint" }, model.modelType)),
      h("p", { class: "hint" }, `Event type ${model.eventTypeName}`, model.description ? ` · ${model.description}` : ""),
      versionsTable(model, versions),
      forms.get(model.modelId).element);
  });
}

function versionsTable(model, versions) {
  const mid = idPart(model.modelId);
  return table(
    [
      {
        label: "Version",
        value: (v) => h("a", { href: modelHref(model.modelId, model.modelType, v.modelVersionNumber), id: `fraud-version-link-${mid}-${idPart(v.modelVersionNumber)}` }, v.modelVersionNumber),
      },
      {
        label: "Status",
        value: (v) => [h("span", { id: `fraud-version-status-${mid}-${idPart(v.modelVersionNumber)}` }, badge(v.status)), " ", trainingClock(v),
          v.failureReason ? h("div", { class: "hint" }, v.failureReason) : null],
      },
      { label: "Training data", value: (v) => trainingSource(v) },
      { label: "Variables", value: (v) => (v.trainingDataSchema?.modelVariables || []).join(", ") },
      { label: "AUC", value: (v) => (auc(v) === undefined ? "—" : formatNumber(auc(v))), class: "num" },
      { label: "Created", value: (v) => formatTime(v.createdTime) },
    ],
    versions,
    { caption: `Versions of ${model.modelId}`, empty: "No versions yet: train the first one." },
  );
}

function trainingSource(version) {
  if (version.trainingDataSource === "INGESTED_EVENTS") {
    const w = version.ingestedEventsDetail?.ingestedEventsTimeWindow || {};
    return `stored events ${formatTime(w.startTime)} – ${formatTime(w.endTime)}`;
  }
  return `file ${version.externalEventsDetail?.dataLocation || "—"}`;
}

// "Train new version": the previous version's settings (or a minimal valid request), over the
// event type's stored events (INGESTED_EVENTS), editable before sending.
function trainingForm(model, versions, eventType, status, refresh) {
  const mid = idPart(model.modelId);
  const previous = versions.find((v) => !["ERROR", "TRAINING_CANCELLED"].includes(v.status)) || versions[0];
  const stats = eventType?.ingestedEventStatistics || {};
  const variables = eventType?.eventVariables || [];
  const labels = eventType?.labels || [];
  const schema = previous?.trainingDataSchema;
  const chosen = new Set(schema?.modelVariables || variables);
  const mapper = schema?.labelSchema?.labelMapper;
  const classOf = (label) => {
    if (mapper) return (mapper.FRAUD || []).includes(label) ? "FRAUD" : (mapper.LEGIT || []).includes(label) ? "LEGIT" : "";
    return /fraud|^1$|^true$|bad|chargeback/i.test(label) ? "FRAUD" : "LEGIT";
  };
  const checks = variables.map((name) => h("label", { class: "fraud-check" },
    h("input", { type: "checkbox", id: `fraud-train-var-${mid}-${idPart(name)}`, value: name, checked: chosen.has(name) }), ` ${name}`));
  const selects = labels.map((label) => field(`label “${label}”`,
    h("select", { id: `fraud-train-label-${mid}-${idPart(label)}`, dataset: { label } },
      ["FRAUD", "LEGIT", ""].map((c) => h("option", { value: c, selected: classOf(label) === c }, c || "not used")))));
  const unlabeled = h("select", { id: `fraud-train-unlabeled-${mid}` },
    ["IGNORE", "FRAUD", "LEGIT", "AUTO"].map((t) => h("option", { value: t, selected: (schema?.labelSchema?.unlabeledEventsTreatment || "IGNORE") === t }, t)));
  const start = h("input", { type: "text", id: `fraud-train-start-${mid}`, value: stats.leastRecentEvent || "", placeholder: "2023-01-01T00:00:00Z" });
  const end = h("input", { type: "text", id: `fraud-train-end-${mid}`, value: stats.mostRecentEvent || "", placeholder: "2023-12-31T23:59:59Z" });
  const external = !stats.numberOfEvents && previous?.trainingDataSource === "EXTERNAL_EVENTS" ? previous.externalEventsDetail : null;
  const button = h("button", { id: `fraud-train-${mid}`, type: "button" }, "Train new version");
  button.addEventListener("click", () => act(button, async () => {
    show(status);
    const request = {
      modelId: model.modelId,
      modelType: model.modelType,
      trainingDataSchema: {
        modelVariables: checks.map((c) => c.querySelector("input")).filter((i) => i.checked).map((i) => i.value),
        labelSchema: { labelMapper: { FRAUD: [], LEGIT: [] }, unlabeledEventsTreatment: unlabeled.value },
      },
    };
    for (const wrapper of selects) {
      const select = wrapper.querySelector("select");
      if (select.value) request.trainingDataSchema.labelSchema.labelMapper[select.value].push(select.dataset.label);
    }
    if (!request.trainingDataSchema.modelVariables.length) throw new Error("Choose at least one variable to train on.");
    const { FRAUD, LEGIT } = request.trainingDataSchema.labelSchema.labelMapper;
    if (!FRAUD.length || !LEGIT.length) throw new Error("Map at least one label to FRAUD and one to LEGIT.");
    if (external) {
      request.trainingDataSource = "EXTERNAL_EVENTS";
      request.externalEventsDetail = external;
    } else {
      if (!stats.numberOfEvents) throw new Error(`Event type ${model.eventTypeName} has no stored events: import events first.`);
      const [s, e] = [start.value.trim(), end.value.trim()];
      if (!ISO.test(s) || !ISO.test(e)) throw new Error("Start and end must be ISO 8601 UTC times like 2023-01-01T00:00:00Z.");
      if (new Date(s) > new Date(e)) throw new Error("The start of the training window is after its end.");
      request.trainingDataSource = "INGESTED_EVENTS";
      request.ingestedEventsDetail = { ingestedEventsTimeWindow: { startTime: s, endTime: e } };
    }
    const created = await fraud("CreateModelVersion", request);
    show(status, h("p", {}, `Training version ${created.modelVersionNumber} started (${created.status}); its status updates here as it changes.`));
    await refresh();
  }));
  const source = external
    ? h("p", { class: "hint" }, `Training file (EXTERNAL_EVENTS): ${external.dataLocation}`)
    : h("p", { class: "hint" }, `Stored events of ${model.eventTypeName} (INGESTED_EVENTS): ${formatNumber(stats.numberOfEvents || 0)} events`,
      stats.numberOfEvents ? ` from ${formatTime(stats.leastRecentEvent)} to ${formatTime(stats.mostRecentEvent)}` : "");
  return h("div", { class: "fraud-train" },
    h("details", { id: `fraud-train-settings-${mid}` },
      h("summary", {}, previous ? `Training settings (from version ${previous.modelVersionNumber})` : "Training settings"),
      source,
      h("fieldset", { class: "fraud-fieldset" }, h("legend", {}, "Model variables"), checks.length ? checks : h("p", { class: "empty" }, "The event type has no variables.")),
      h("div", { class: "row" }, selects, field("unlabeled events", unlabeled)),
      external ? null : h("div", { class: "row" }, field("window start (UTC)", start), field("window end (UTC)", end))),
    h("div", { class: "row" }, button),
    status);
}

function detectorsTable(detectors, rules) {
  return table(
    [
      { label: "Detector", value: (d) => h("a", { href: detectorHref(d.detectorId), id: `fraud-detector-link-${idPart(d.detectorId)}` }, d.detectorId) },
      { label: "Event type", value: (d) => d.eventTypeName },
      { label: "Rules", value: (d) => [...new Set((rules.get(d.detectorId) || []).map((r) => r.ruleId))].join(", ") || "—" },
      { label: "Description", value: (d) => d.description || "" },
      { label: "Updated", value: (d) => formatTime(d.lastUpdatedTime) },
    ],
    detectors,
    { caption: "Detectors (open one for its versions, rule tester and backtest)", empty: "No detectors yet." },
  );
}

function resourcesTable(data) {
  const rows = [
    { kind: "Labels", items: data.labels.map((l) => l.name) },
    { kind: "Outcomes", items: data.outcomes.map((o) => o.name) },
    { kind: "Entity types", items: data.entityTypes.map((e) => e.name) },
    { kind: "Lists", items: data.lists.map((l) => `${l.name}${l.variableType ? ` (${l.variableType})` : ""}`) },
  ];
  return table(
    [
      { label: "Kind", value: (r) => r.kind },
      { label: "Names", value: (r) => r.items.join(", ") || h("span", { class: "empty" }, "none yet") },
    ],
    rows,
  );
}

function importsTable(imports) {
  const sorted = [...imports].sort((a, b) => String(b.startTime).localeCompare(String(a.startTime)));
  return table(
    [
      { label: "Job", value: (j) => j.jobId },
      { label: "Event type", value: (j) => j.eventTypeName },
      { label: "Status", value: (j) => badge(j.status) },
      { label: "Imported / failed / total", value: (j) => `${formatNumber(j.processedRecordsCount)} / ${formatNumber(j.failedRecordsCount)} / ${formatNumber(j.totalRecordsCount)}`, class: "num" },
      { label: "Input", value: (j) => j.inputPath },
      { label: "Started", value: (j) => formatTime(j.startTime) },
      { label: "Failure", value: (j) => j.failureReason || "" },
    ],
    sorted.slice(0, 20),
    { empty: "No batch imports yet." },
  );
}

// -- model version ------------------------------------------------------------------------------

async function modelVersionPage(root, [modelId, second, third]) {
  let modelType = third === undefined ? undefined : second;
  const number = third === undefined ? second : third;
  const body = h("div", { id: "fraud-model-version" });
  show(root,
    h("p", {}, h("a", { href: "#/fraud" }, "← Fraud")),
    h("h1", {}, `Model ${modelId} · version ${number}`),
    body);
  if (!MODEL_TYPES.includes(modelType)) {
    const [model] = await listAll("GetModels", { modelId }, "models").catch(() => []);
    modelType = model?.modelType;
  }
  let threshold = 500;
  let lastShown = "";
  const refresh = serial(async () => {
    let version;
    try {
      [version] = (await fraud("DescribeModelVersions", { modelId, modelType, modelVersionNumber: number })).modelVersionDetails || [];
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 404) throw err;
    }
    if (!version) {
      show(body, h("p", { class: "empty", id: "fraud-version-missing" }, `Model ${modelId} has no version ${number}.`));
      return;
    }
    // Live events come for every write (training renews its lease): redraw only on a change.
    const signature = JSON.stringify([version.status, version.failureReason, auc(version)]);
    if (signature === lastShown) return;
    lastShown = signature;
    show(body, modelVersionView(version, refresh, () => threshold, (t) => { threshold = t; }));
  });
  await refresh();
  startElapsedClock();
  const again = liveRefresh(refresh, (err) => show(body, errorBox(err)));
  live("fraud", { change: ({ key }) => { if (key === `model_version.${modelId}.${number}`) again(); } });
}

function modelVersionView(version, refresh, getThreshold, setThreshold) {
  const schema = version.trainingDataSchema || {};
  const mapper = schema.labelSchema?.labelMapper || {};
  const ref = { modelId: version.modelId, modelType: version.modelType, modelVersionNumber: version.modelVersionNumber };
  const actions = h("div", { class: "row" });
  if (["TRAINING_COMPLETE", "INACTIVE"].includes(version.status)) {
    const b = h("button", { id: "fraud-model-activate", type: "button" }, "Activate (deploy for scoring)");
    b.addEventListener("click", () => act(b, async () => { await fraud("UpdateModelVersionStatus", { ...ref, status: "ACTIVE" }); await refresh(); }));
    actions.append(b);
  }
  if (version.status === "ACTIVE") {
    const b = h("button", { id: "fraud-model-deactivate", type: "button", class: "secondary" }, "Deactivate");
    b.addEventListener("click", () => act(b, async () => { await fraud("UpdateModelVersionStatus", { ...ref, status: "INACTIVE" }); await refresh(); }));
    actions.append(b);
  }
  if (version.status === "TRAINING_IN_PROGRESS") {
    const b = h("button", { id: "fraud-model-cancel", type: "button", class: "secondary" }, "Cancel training");
    b.addEventListener("click", () => act(b, async () => { await fraud("UpdateModelVersionStatus", { ...ref, status: "TRAINING_CANCELLED" }); await refresh(); }));
    actions.append(b);
  }
  const summary = h("section", { class: "panel" },
    h("p", {}, h("span", { id: "fraud-version-status" }, badge(version.status)), " ", trainingClock(version)),
    table(
      [{ label: "Setting", value: (r) => r[0] }, { label: "Value", value: (r) => r[1] }],
      [
        ["Model type", version.modelType],
        ["Training data", trainingSource(version)],
        ["Model variables", (schema.modelVariables || []).join(", ")],
        ["Fraud labels", (mapper.FRAUD || []).join(", ") || "—"],
        ["Legit labels", (mapper.LEGIT || []).join(", ") || "—"],
        ["Unlabeled events", schema.labelSchema?.unlabeledEventsTreatment || "IGNORE"],
        ["Created", formatTime(version.createdTime)],
      ],
      { caption: "Training settings" },
    ),
    version.failureReason ? h("div", { class: "error", id: "fraud-version-failure" }, version.failureReason) : null,
    actions);
  const parts = [summary];
  if (version.status === "TRAINING_IN_PROGRESS") {
    parts.push(h("p", { class: "hint", id: "fraud-training-wait" }, "Training… the results appear here by themselves when it completes."));
  }
  const points = version.trainingResult?.trainingMetrics?.metricDataPoints || [];
  if (points.length) parts.push(...performanceView(version, points, getThreshold, setThreshold));
  parts.push(findingsView(version));
  return parts;
}

// The training data's fraud rate: the data validation's label summary, else the holdout's
// (the precision of flagging every event, at threshold 0).
function fraudRate(version, points) {
  const summary = (version.dataFindings || []).find((f) => f.code === "LABEL_SUMMARY")?.details;
  if (summary && summary.fraud + summary.legit > 0) {
    return { rate: summary.fraud / (summary.fraud + summary.legit), fraud: summary.fraud, legit: summary.legit, source: "training data" };
  }
  const all = points.find((p) => p.threshold === 0 && p.precision !== undefined);
  if (all) return { rate: all.precision, source: "validation data" };
  return { rate: 0, source: "unknown" };
}

function nearestPoint(points, threshold) {
  let best = points[0];
  for (const p of points) if (Math.abs(p.threshold - threshold) < Math.abs(best.threshold - threshold)) best = p;
  return best;
}

function confusion(point, rate) {
  const fraudTotal = Math.round(POPULATION * rate);
  const legitTotal = POPULATION - fraudTotal;
  const tp = Math.round(fraudTotal * point.tpr);
  const fp = Math.round(legitTotal * point.fpr);
  return { tp, fp, fn: fraudTotal - tp, tn: legitTotal - fp, fraudTotal, legitTotal };
}

// Share of each class per score bucket, from the cumulative TPR/FPR at each threshold.
function scoreDistribution(points, width = 40) {
  const sorted = [...points].sort((a, b) => a.threshold - b.threshold);
  const at = (t) => (t > SCORE_MAX ? { tpr: 0, fpr: 0 } : nearestPoint(sorted, t));
  const buckets = [];
  for (let lo = 0; lo < SCORE_MAX; lo += width) {
    const hi = lo + width;
    const upper = hi >= SCORE_MAX ? { tpr: 0, fpr: 0 } : at(hi);
    buckets.push({ lo, hi, fraud: Math.max(0, at(lo).tpr - upper.tpr), legit: Math.max(0, at(lo).fpr - upper.fpr) });
  }
  return buckets;
}

function performanceView(version, points, getThreshold, setThreshold) {
  const perf = performance(version);
  const range = perf.uncertaintyRange;
  const rate = fraudRate(version, points);
  const scoreVariable = `${version.modelId}_insightscore`;
  const roc = [...points].sort((a, b) => a.fpr - b.fpr || a.tpr - b.tpr);
  const buckets = scoreDistribution(points);
  const width = range ? range.upperBoundValue - range.lowerBoundValue : undefined;

  const headline = h("div", { class: "stats" },
    stat("fraud-auc", formatNumber(auc(version), 3), "AUC (area under the ROC curve)"),
    stat("fraud-auc-range", range ? `${formatNumber(range.lowerBoundValue, 3)} – ${formatNumber(range.upperBoundValue, 3)}` : "—",
      width !== undefined && width > 0.1 ? "AUC range (95%): wide, the estimate is uncertain" : "AUC range (95%)"),
    stat("fraud-fraud-rate", pct(rate.rate, 2), `fraud rate of the ${rate.source}`),
    rate.fraud !== undefined ? stat("fraud-label-counts", `${formatNumber(rate.fraud)} / ${formatNumber(rate.legit)}`, "fraud / legit events") : null);

  // Threshold: the slider and its outputs.
  const slider = h("input", { type: "range", id: "fraud-threshold", min: 0, max: SCORE_MAX, step: 5, value: getThreshold(), "aria-describedby": "fraud-threshold-summary" });
  const number = h("input", { type: "number", id: "fraud-threshold-number", min: 0, max: SCORE_MAX, step: 5, value: getThreshold(), "aria-label": "Threshold (number)" });
  const out = (id) => h("output", { id, for: "fraud-threshold" });
  const outputs = {
    point: out("fraud-threshold-point"), tpr: out("fraud-tpr"), fpr: out("fraud-fpr"), precision: out("fraud-precision"),
    tp: out("fraud-cm-tp"), fp: out("fraud-cm-fp"), fn: out("fraud-cm-fn"), tn: out("fraud-cm-tn"),
    fraudTotal: out("fraud-cm-fraud-total"), legitTotal: out("fraud-cm-legit-total"),
    flagged: out("fraud-cm-flagged"), passed: out("fraud-cm-passed"), cmPrecision: out("fraud-cm-precision"),
  };
  const summaryText = h("p", { id: "fraud-threshold-summary", "aria-live": "polite" });
  const ruleText = h("p", { class: "hint" }, "As a rule: ", h("code", { id: "fraud-threshold-rule", class: "fraud-expr" }));
  const matrix = h("table", { class: "confusion fraud-confusion", id: "fraud-confusion" },
    h("caption", {}, `Outcomes per ${formatNumber(POPULATION)} events at the ${rate.source}'s fraud rate (${pct(rate.rate, 2)})`),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, ""), h("th", { scope: "col" }, "Flagged (score ≥ threshold)"), h("th", { scope: "col" }, "Not flagged"), h("th", { scope: "col" }, "Total"))),
    h("tbody", {},
      h("tr", {}, h("th", { scope: "row" }, "Actually fraud"), h("td", { class: "tp" }, "True positives ", outputs.tp), h("td", { class: "fn" }, "False negatives ", outputs.fn), h("td", {}, outputs.fraudTotal)),
      h("tr", {}, h("th", { scope: "row" }, "Actually legit"), h("td", { class: "fp" }, "False positives ", outputs.fp), h("td", { class: "tn" }, "True negatives ", outputs.tn), h("td", {}, outputs.legitTotal)),
      h("tr", {}, h("th", { scope: "row" }, "Total"), h("td", {}, outputs.flagged), h("td", {}, outputs.passed), h("td", {}, formatNumber(POPULATION)))),
    h("tfoot", {}, h("tr", {}, h("td", { colspan: 4 }, "Share of flagged events that are fraud at this fraud rate: ", outputs.cmPrecision))));
  const rocBox = h("div", { id: "fraud-roc" });
  const distBox = h("div", { id: "fraud-score-distribution" });

  const set = (el, text, value) => {
    el.textContent = text;
    el.dataset.value = String(value);
  };
  let frame = 0;
  const update = (raw, now = false) => {
    const t = Math.min(SCORE_MAX, Math.max(0, Number(raw) || 0));
    setThreshold(t);
    if (slider.value !== String(t)) slider.value = String(t);
    if (document.activeElement !== number) number.value = String(t);
    const p = nearestPoint(points, t);
    const m = confusion(p, rate.rate);
    set(outputs.point, formatNumber(p.threshold), p.threshold);
    set(outputs.tpr, pct(p.tpr), p.tpr);
    set(outputs.fpr, pct(p.fpr), p.fpr);
    set(outputs.precision, p.precision === undefined ? "— (nothing flagged)" : pct(p.precision), p.precision ?? "");
    for (const k of ["tp", "fp", "fn", "tn", "fraudTotal", "legitTotal"]) set(outputs[k], formatNumber(m[k]), m[k]);
    set(outputs.flagged, formatNumber(m.tp + m.fp), m.tp + m.fp);
    set(outputs.passed, formatNumber(m.fn + m.tn), m.fn + m.tn);
    const cmPrecision = m.tp + m.fp ? m.tp / (m.tp + m.fp) : null;
    set(outputs.cmPrecision, cmPrecision === null ? "— (nothing flagged)" : pct(cmPrecision), cmPrecision ?? "");
    summaryText.textContent = `At threshold ${formatNumber(p.threshold)}: ${pct(p.tpr)} of fraud is caught (true positive rate), `
      + `${pct(p.fpr)} of legitimate events are flagged (false positive rate), `
      + `and ${p.precision === undefined ? "no event is flagged" : `${pct(p.precision)} of flagged events are fraud (precision)`}. `
      + `Per ${formatNumber(POPULATION)} events: ${formatNumber(m.tp)} fraud caught, ${formatNumber(m.fn)} missed, `
      + `${formatNumber(m.fp)} legitimate flagged, ${formatNumber(m.tn)} legitimate passed.`;
    ruleText.querySelector("code").textContent = `$${scoreVariable} >= ${formatNumber(p.threshold)}`;
    const draw = () => {
      show(rocBox, chart({
        title: "ROC curve (validation data)",
        series: [
          { name: "model", points: roc.map((q) => [q.fpr, q.tpr, `threshold ${q.threshold}`]), color: "#2563eb" },
          { name: "random guess", points: [[0, 0], [1, 1]], color: "#94a3b8", dot: false },
        ],
        xLabel: "false positive rate", yLabel: "true positive rate",
        xDomain: [0, 1], yDomain: [0, 1], width: 460, height: 380,
        marker: [p.fpr, p.tpr],
      }));
      show(distBox, chart({
        title: "Score distribution (share of each class per score bucket)",
        series: [
          { name: "fraud", points: buckets.map((b) => [(b.lo + b.hi) / 2, b.fraud * 100, `scores ${b.lo}–${b.hi}`]), color: "#dc2626" },
          { name: "legit", points: buckets.map((b) => [(b.lo + b.hi) / 2, b.legit * 100, `scores ${b.lo}–${b.hi}`]), color: "#2563eb" },
        ],
        xLabel: "model score", yLabel: "% of the class",
        xDomain: [0, SCORE_MAX], yDomain: [0, Math.max(1, ...buckets.map((b) => Math.max(b.fraud, b.legit) * 100)) * 1.05],
        width: 560, height: 300,
        marker: [p.threshold, 0],
      }));
    };
    cancelAnimationFrame(frame);
    if (now) draw();
    else frame = requestAnimationFrame(draw);
  };
  slider.addEventListener("input", () => update(slider.value));
  number.addEventListener("input", () => { if (number.value !== "") update(number.value); });
  number.addEventListener("change", () => update(number.value));

  const thresholdPanel = h("section", { class: "panel fraud-threshold", id: "fraud-threshold-panel" },
    h("h2", {}, "Score threshold"),
    h("div", { class: "fraud-slider" },
      h("label", { for: "fraud-threshold" }, "Flag events whose score is at least"),
      slider, number),
    h("dl", { class: "fraud-outputs" },
      h("div", {}, h("dt", {}, "Threshold (nearest measured)"), h("dd", {}, outputs.point)),
      h("div", {}, h("dt", {}, "True positive rate"), h("dd", {}, outputs.tpr)),
      h("div", {}, h("dt", {}, "False positive rate"), h("dd", {}, outputs.fpr)),
      h("div", {}, h("dt", {}, "Precision (validation data)"), h("dd", {}, outputs.precision))),
    summaryText,
    matrix,
    ruleText);

  const importance = [
    ...(version.trainingResult?.variableImportanceMetrics?.logOddsMetrics || []).map((m) => ({ label: m.variableName, value: m.variableImportance, type: m.variableType })),
    ...(version.trainingResultV2?.aggregatedVariablesImportanceMetrics?.logOddsMetrics || []).map((m) => ({ label: m.variableNames.join(" + "), value: m.aggregatedVariablesImportance, type: "aggregated" })),
  ].sort((a, b) => b.value - a.value);

  const metricsTable = h("details", { class: "chart-data", id: "fraud-metric-points" },
    h("summary", {}, `Metrics at every threshold (${points.length})`),
    table(
      [
        { label: "threshold", value: (p) => formatNumber(p.threshold), class: "num" },
        { label: "TPR", value: (p) => pct(p.tpr), class: "num" },
        { label: "FPR", value: (p) => pct(p.fpr), class: "num" },
        { label: "precision", value: (p) => (p.precision === undefined ? "—" : pct(p.precision)), class: "num" },
      ],
      [...points].sort((a, b) => a.threshold - b.threshold),
    ));

  update(getThreshold(), true);
  const trained = ["TRAINING_COMPLETE", "ACTIVE", "INACTIVE", "ACTIVATE_REQUESTED", "ACTIVATE_IN_PROGRESS", "INACTIVATE_REQUESTED", "INACTIVATE_IN_PROGRESS"].includes(version.status);
  const chartPath = `/v1/fraud/models/${encodeURIComponent(version.modelId)}/versions/${encodeURIComponent(version.modelVersionNumber)}/charts/fraud_rate.svg`;
  return [
    h("h2", {}, "Model performance"),
    headline,
    thresholdPanel,
    h("div", { class: "grid2" }, rocBox, distBox),
    metricsTable,
    h("h2", {}, "Variable importance"),
    h("div", { id: "fraud-importance" },
      importance.length
        ? h("div", { class: "grid2" }, bars({ title: "Variable importance (log-odds)", items: importance, valueLabel: "importance" }),
          table([{ label: "Variable", value: (i) => i.label }, { label: "Type", value: (i) => i.type }, { label: "Importance", value: (i) => formatNumber(i.value), class: "num" }], importance, { caption: "Importance of each variable (higher: the model relies on it more)" }))
        : h("p", { class: "empty" }, "No variable importance was measured.")),
    trained
      ? h("figure", { class: "figure", id: "fraud-rate-over-time" },
        h("figcaption", {}, "Fraud rate per week of the training data (chart drawn by the service)"),
        h("img", { src: chartPath, alt: `Weekly fraud rate of the training data of ${version.modelId} version ${version.modelVersionNumber}`, class: "fraud-img" }),
        h("p", { class: "hint" }, h("a", { href: chartPath }, "SVG"), " · ", h("a", { href: chartPath.replace(/\.svg$/, ".png") }, "PNG")))
      : null,
  ];
}

function findingsView(version) {
  const diagnostics = version.diagnostics || [];
  const findings = version.dataFindings || [];
  return h("section", {},
    h("h2", {}, "Diagnostics"),
    h("div", { id: "fraud-diagnostics" },
      table(
        [
          { label: "Severity", value: (d) => severityBadge(d.severity) },
          { label: "Code", value: (d) => d.code },
          { label: "Finding", value: (d) => d.message },
          { label: "Advice", value: (d) => d.advice },
        ],
        diagnostics,
        { caption: "What the automatic diagnosis of the model found, and what to do", empty: version.status === "TRAINING_IN_PROGRESS" ? "Diagnostics come with the trained model."
          : version.trainingResult ? "No problems found." : "No diagnostics: the model was not trained." },
      )),
    h("h2", {}, "Data validation"),
    h("div", { id: "fraud-findings" },
      table(
        [
          { label: "Level", value: (f) => severityBadge(f.level) },
          { label: "Code", value: (f) => f.code },
          { label: "Message", value: (f) => f.message },
        ],
        findings,
        { caption: "Checks of the training data before training", empty: "No data checks reported yet." },
      )));
}

// -- detector -----------------------------------------------------------------------------------

// A detector's versions. AFD lists them with DescribeDetector (detectorVersionSummaries); the
// fraud service does not have it yet, so on "unknown operation" the versions, numbered 1, 2, ...,
// are read in order until one is missing (an expected 404). Later refreshes read only the
// versions known, plus those the live topic names.
let describeDetectorMissing = false;

async function detectorVersions(detectorId, known, probe) {
  const read = async (n) => {
    try {
      return await fraud("GetDetectorVersion", { detectorId, detectorVersionId: String(n) });
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return null;
      throw err;
    }
  };
  if (probe && !describeDetectorMissing) {
    try {
      const summaries = await listAll("DescribeDetector", { detectorId }, "detectorVersionSummaries");
      summaries.forEach((v) => known.add(Number(v.detectorVersionId)));
      probe = false;
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 404 || !/unknown operation/.test(err.message)) throw err;
      describeDetectorMissing = true;
    }
  }
  if (!probe) {
    const versions = await Promise.all([...known].sort((a, b) => a - b).map(read));
    return versions.filter(Boolean);
  }
  const found = [];
  for (let n = 1; n < 10000; n++) {
    const version = await read(n);
    if (!version) break;
    found.push(version);
  }
  return found;
}

async function detectorPage(root, detectorId) {
  const info = h("div", { id: "fraud-detector-info" });
  const versionsBox = h("div", { id: "fraud-detector-versions" });
  const rulesBox = h("div", { id: "fraud-rules" });
  const problems = h("div", { id: "fraud-refresh-error" });
  show(root,
    h("p", {}, h("a", { href: "#/fraud" }, "← Fraud")),
    h("h1", {}, `Detector ${detectorId}`),
    problems, info,
    h("h2", {}, "Versions"), versionsBox,
    h("h2", {}, "Rules"), rulesBox);
  // All detectors, then this one: the service filters GetDetectors by `name`, AFD by `detectorId`.
  const detector = (await listAll("GetDetectors", {}, "detectors")).find((d) => d.detectorId === detectorId);
  if (!detector) {
    show(info, h("p", { class: "empty", id: "fraud-detector-missing" }, `There is no detector ${detectorId}.`));
    show(versionsBox);
    show(rulesBox);
    return;
  }
  const [eventType] = await listAll("GetEventTypes", { name: detector.eventTypeName }, "eventTypes");
  const variables = new Map((await listAll("GetVariables", {}, "variables")).map((v) => [v.name, v]));
  show(info, h("p", {}, `Event type ${detector.eventTypeName}`, detector.description ? ` · ${detector.description}` : "",
    ` · updated ${formatTime(detector.lastUpdatedTime)}`));

  const known = new Set();
  const state = { versions: [], rules: [] };
  const tester = ruleTester(detectorId, eventType, variables, state);
  const backtest = backtester(detectorId, eventType, state);
  root.append(h("h2", {}, "Rule tester"), tester.element, h("h2", {}, "Backtest"), backtest.element);

  let probe = true;
  const refresh = serial(async () => {
    const [versions, rules] = await Promise.all([
      detectorVersions(detectorId, known, probe),
      listAll("GetRules", { detectorId }, "ruleDetails"),
    ]);
    probe = false;
    versions.forEach((v) => known.add(Number(v.detectorVersionId)));
    state.versions = versions;
    state.rules = rules;
    show(problems);
    show(versionsBox, detectorVersionsTable(detectorId, versions, refresh));
    show(rulesBox, rulesTable(rules, versions));
    tester.versionsChanged();
    backtest.versionsChanged();
  });
  await refresh();
  const again = liveRefresh(refresh, (err) => show(problems, errorBox(err)));
  live("fraud", {
    change: ({ key, deleted }) => {
      const version = key.match(/^detector_version\.(.+)\.(\d+)$/);
      if (version && version[1] === detectorId) known[deleted ? "delete" : "add"](Number(version[2]));
      if (version?.[1] === detectorId || key.startsWith(`rule.${detectorId}.`) || key.startsWith("model_version.")) again();
    },
  });
}

function detectorVersionsTable(detectorId, versions, refresh) {
  const setStatus = (button, v, status) => act(button, async () => {
    await fraud("UpdateDetectorVersionStatus", { detectorId, detectorVersionId: v.detectorVersionId, status });
    await refresh();
  });
  return table(
    [
      { label: "Version", value: (v) => v.detectorVersionId, class: "num" },
      { label: "Status", value: (v) => h("span", { id: `fraud-detector-status-${v.detectorVersionId}` }, badge(v.status)) },
      { label: "Rules (in order)", value: (v) => h("ol", { class: "fraud-list" }, v.rules.map((r) => h("li", {}, `${r.ruleId} v${r.ruleVersion}`))) },
      { label: "Models", value: (v) => (v.modelVersions.length ? h("ul", { class: "plain" }, v.modelVersions.map((m) => h("li", {}, h("a", { href: modelHref(m.modelId, m.modelType, m.modelVersionNumber) }, `${m.modelId} ${m.modelVersionNumber}`)))) : "—") },
      { label: "Execution", value: (v) => v.ruleExecutionMode },
      { label: "Description", value: (v) => v.description || "" },
      { label: "Updated", value: (v) => formatTime(v.lastUpdatedTime) },
      {
        label: "Actions",
        value: (v) => {
          const cell = h("div", { class: "row" });
          if (v.status !== "ACTIVE") {
            const b = h("button", { type: "button", id: `fraud-detector-activate-${v.detectorVersionId}` }, "Activate");
            b.addEventListener("click", () => setStatus(b, v, "ACTIVE"));
            cell.append(b);
          } else {
            const b = h("button", { type: "button", class: "secondary", id: `fraud-detector-deactivate-${v.detectorVersionId}` }, "Deactivate");
            b.addEventListener("click", () => setStatus(b, v, "INACTIVE"));
            cell.append(b);
          }
          return cell;
        },
      },
    ],
    [...versions].sort((a, b) => Number(b.detectorVersionId) - Number(a.detectorVersionId)),
    { caption: "Detector versions (activating one makes the previously active version inactive)", empty: "No detector versions yet." },
  );
}

function rulesTable(rules, versions) {
  const usedBy = (r) => versions
    .filter((v) => v.rules.some((x) => x.ruleId === r.ruleId && x.ruleVersion === r.ruleVersion))
    .map((v) => `v${v.detectorVersionId} (${v.status})`);
  return table(
    [
      { label: "Rule", value: (r) => r.ruleId },
      { label: "Version", value: (r) => r.ruleVersion, class: "num" },
      { label: "Expression", value: (r) => code(r.expression) },
      { label: "Outcomes", value: (r) => r.outcomes.join(", ") },
      { label: "Used by", value: (r) => usedBy(r).join(", ") || "—" },
      { label: "Description", value: (r) => r.description || "" },
    ],
    [...rules].sort((a, b) => a.ruleId.localeCompare(b.ruleId) || Number(a.ruleVersion) - Number(b.ruleVersion)),
    { caption: "Rules", empty: "No rules yet." },
  );
}

function versionSelect(id, state, prefer) {
  const select = h("select", { id });
  const refill = () => {
    const previous = select.value;
    const versions = [...state.versions].sort((a, b) => Number(b.detectorVersionId) - Number(a.detectorVersionId));
    show(select, versions.map((v) => h("option", { value: v.detectorVersionId }, `version ${v.detectorVersionId} (${v.status})`)));
    const keep = versions.find((v) => v.detectorVersionId === previous);
    const chosen = keep || prefer(versions);
    if (chosen) select.value = chosen.detectorVersionId;
  };
  return { select, refill };
}

// Evaluates a pasted event with GetEventPrediction on the chosen detector version.
function ruleTester(detectorId, eventType, variables, state) {
  const picker = versionSelect("fraud-test-version", state, (vs) => vs.find((v) => v.status === "ACTIVE") || vs[0]);
  const entityTypes = eventType?.entityTypes || [];
  const entityType = h("select", { id: "fraud-test-entity-type" }, entityTypes.map((e) => h("option", { value: e }, e)));
  const entityId = h("input", { type: "text", id: "fraud-test-entity-id", value: "console-test" });
  const example = Object.fromEntries((eventType?.eventVariables || []).map((name) => [name, variables.get(name)?.defaultValue ?? ""]));
  const textarea = h("textarea", { id: "fraud-test-event", rows: 8, spellcheck: "false", "aria-label": "Event variables (JSON)" }, JSON.stringify(example, null, 2));
  const result = h("div", { id: "fraud-test-result", role: "status" });
  const button = h("button", { type: "button", id: "fraud-test-run" }, "Evaluate event");
  button.addEventListener("click", () => act(button, async () => {
    show(result);
    let parsed;
    try {
      parsed = JSON.parse(textarea.value);
    } catch (err) {
      throw new Error(`The event is not valid JSON: ${err.message}`);
    }
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error('The event must be a JSON object of variable values, like {"ip_address": "1.2.3.4"}.');
    const eventVariables = {};
    for (const [name, value] of Object.entries(parsed)) {
      if (value === null || typeof value === "object") throw new Error(`Variable ${name}: give a text, number or boolean value.`);
      eventVariables[name] = String(value);
    }
    if (!Object.keys(eventVariables).length) throw new Error("Give at least one variable value.");
    const unknown = Object.keys(eventVariables).filter((n) => !(eventType?.eventVariables || []).includes(n));
    if (unknown.length) throw new Error(`Not variables of event type ${eventType?.name}: ${unknown.join(", ")}.`);
    if (!picker.select.value) throw new Error("The detector has no version to test.");
    if (!/^[0-9A-Za-z_.@+-]+$/.test(entityId.value)) throw new Error("The entity id may hold letters, digits and _ . @ + - only.");
    const prediction = await fraud("GetEventPrediction", {
      detectorId,
      detectorVersionId: picker.select.value,
      eventId: `console-test-${Date.now()}`,
      eventTypeName: eventType.name,
      eventTimestamp: isoNow(),
      entities: [{ entityType: entityType.value, entityId: entityId.value }],
      eventVariables,
    });
    show(result, predictionView(prediction));
  }));
  const element = h("section", { class: "panel", id: "fraud-tester" },
    h("p", { class: "hint" }, "Paste an event's variable values as JSON and see which rules match and what the models score (GetEventPrediction on the chosen version; any status can be tested). "
      + "As in AFD, a scored event is stored when the event type's ingestion is enabled."),
    h("div", { class: "row" }, field("detector version", picker.select), field("entity type", entityType), field("entity id", entityId)),
    field("event variables (JSON)", textarea),
    h("div", { class: "row" }, button),
    result);
  return { element, versionsChanged: picker.refill };
}

function predictionView(prediction) {
  const outcomes = [...new Set((prediction.ruleResults || []).flatMap((r) => r.outcomes))];
  const scores = (prediction.modelScores || []).flatMap((m) => Object.entries(m.scores).map(([name, score]) => ({ model: m.modelVersion, name, score })));
  const impacts = (prediction.explanations || []).flatMap((e) => (e.variableImpacts || []).map((i) => ({ model: e.modelVersion, ...i })));
  return [
    h("p", {}, "Outcomes: ", h("strong", { id: "fraud-test-outcomes" }, outcomes.length ? outcomes.join(", ") : "no rule matched")),
    table(
      [{ label: "Matched rule", value: (r) => r.ruleId }, { label: "Outcomes", value: (r) => r.outcomes.join(", ") }],
      prediction.ruleResults || [],
      { caption: "Matched rules", empty: "No rule matched." },
    ),
    h("div", { id: "fraud-test-scores" },
      table(
        [
          { label: "Model", value: (s) => `${s.model.modelId} ${s.model.modelVersionNumber}` },
          { label: "Score variable", value: (s) => s.name },
          { label: "Score (0–1000)", value: (s) => formatNumber(s.score, 1), class: "num" },
        ],
        scores,
        { caption: "Model scores", empty: "The version uses no model." },
      )),
    impacts.length
      ? table(
        [
          { label: "Model", value: (i) => i.model.modelId },
          { label: "Variable", value: (i) => i.variableName },
          { label: "Log-odds impact", value: (i) => formatNumber(i.logOddsImpact, 4), class: "num" },
        ],
        impacts,
        { caption: "What drove the score (positive raises the risk)" },
      )
      : null,
  ];
}

// BacktestDetectorVersion (a Trellis addition): the version over stored events, by label.
function backtester(detectorId, eventType, state) {
  const picker = versionSelect("fraud-backtest-version", state, (vs) => vs.find((v) => v.status === "DRAFT") || vs[0]);
  const stats = eventType?.ingestedEventStatistics || {};
  const start = h("input", { type: "text", id: "fraud-backtest-start", value: stats.leastRecentEvent || "" });
  const end = h("input", { type: "text", id: "fraud-backtest-end", value: stats.mostRecentEvent || "" });
  const max = h("input", { type: "number", id: "fraud-backtest-max", value: 100000, min: 1, max: 1000000 });
  const result = h("div", { id: "fraud-backtest-result", role: "status" });
  const button = h("button", { type: "button", id: "fraud-backtest-run" }, "Run backtest");
  button.addEventListener("click", () => act(button, async () => {
    show(result);
    const [s, e] = [start.value.trim(), end.value.trim()];
    if (!ISO.test(s) || !ISO.test(e)) throw new Error("Start and end must be ISO 8601 UTC times like 2023-01-01T00:00:00Z.");
    if (new Date(s) > new Date(e)) throw new Error("The start is after the end.");
    const limit = Number(max.value);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1_000_000) throw new Error("Max events is a whole number from 1 to 1,000,000.");
    if (!picker.select.value) throw new Error("The detector has no version to backtest.");
    show(result, h("p", { class: "hint" }, "Evaluating stored events…"));
    const report = await fraud("BacktestDetectorVersion", { detectorId, detectorVersionId: picker.select.value, startTime: s, endTime: e, maxEvents: limit });
    show(result, backtestView(report));
  }));
  const element = h("section", { class: "panel", id: "fraud-backtest" },
    h("p", { class: "hint" }, "Run a version (a draft, typically) over the stored events of its event type and see what each outcome would have caught."),
    h("div", { class: "row" }, field("detector version", picker.select), field("from (UTC)", start), field("to (UTC)", end), field("max events", max)),
    h("div", { class: "row" }, button),
    result);
  return { element, versionsChanged: picker.refill };
}

function backtestView(report) {
  const labels = Object.keys(report.labels || {}).sort((a, b) => a.startsWith("(") - b.startsWith("(") || a.localeCompare(b));
  return [
    h("p", { id: "fraud-backtest-summary" },
      `Version ${report.detectorVersionId} (${report.status}) evaluated ${formatNumber(report.eventsEvaluated)} events: `,
      labels.map((l) => `${formatNumber(report.labels[l])} ${l}`).join(", "), "."),
    table(
      [
        { label: "Outcome", value: (o) => o.outcome },
        { label: "Events", value: (o) => formatNumber(o.events), class: "num" },
        ...labels.map((l) => ({ label: `${l}: events (share of all ${l})`, value: (o) => `${formatNumber(o.labels[l] || 0)} (${pct(o.captureRate[l] || 0)})`, class: "num" })),
      ],
      report.outcomes || [],
      { caption: "Outcomes by label", empty: "No outcomes." },
    ),
    table(
      [{ label: "Rule", value: (r) => r[0] }, { label: "Events matched", value: (r) => formatNumber(r[1]), class: "num" }],
      Object.entries(report.ruleMatches || {}),
      { caption: "Rule matches", empty: "No rule matched any event." },
    ),
  ];
}
