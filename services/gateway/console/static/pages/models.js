// Models: what the inference service serves, on which providers, and how it performs.

import { act, api, badge, bars, errorBox, formatNumber, formatTime, h, live, onLeave, show, table, throttle } from "../lib.js";

const STATS_REFRESH_MS = 5000;

export async function render(root, params) {
  if (params[0]) return renderModel(root, params[0]);
  const body = h("div");
  show(root, h("h1", {}, "Models"), body);
  const refresh = async () => {
    const { models } = await api("GET", "/v1/models");
    show(body, modelTable(models, refresh));
  };
  await refresh();
  live("models", { change: throttle(() => refresh().catch((e) => show(body, errorBox(e))), 500) });
}

function modelTable(models, refresh) {
  return table(
    [
      { label: "Model", value: (m) => h("a", { href: `#/models/${encodeURIComponent(m.name)}` }, m.name) },
      { label: "Version", value: (m) => m.version, class: "num" },
      { label: "Task", value: (m) => m.task },
      { label: "State", value: (m) => [badge(m.state), m.reason ? h("div", { class: "hint" }, m.reason) : null] },
      { label: "Providers", value: (m) => (m.providers || []).join(", ") || "—" },
      { label: "Requests", value: (m) => formatNumber(m.stats?.requests ?? 0), class: "num" },
      { label: "p50 / p99 latency (ms)", value: (m) => latencyText(m.stats), class: "num" },
      { label: "", value: (m) => loadButton(m, refresh) },
    ],
    models,
    { caption: "Served models", empty: "No models registered yet." },
  );
}

function loadButton(model, refresh) {
  const loaded = model.state === "READY" || model.state === "LOADING";
  const button = h("button", { class: "secondary", dataset: { model: model.name } }, loaded ? "Unload" : "Load");
  button.addEventListener("click", () =>
    act(button, async () => {
      await api("POST", `/v1/models/${encodeURIComponent(model.name)}/${loaded ? "unload" : "load"}`, {});
      await refresh();
    }),
  );
  return button;
}

// Quantile of a cumulative histogram, read at the upper bound of the bucket that reaches it.
export function quantile(snapshot, q) {
  if (!snapshot || !snapshot.count) return null;
  const target = q * snapshot.count;
  for (let i = 0; i < snapshot.upper_bounds.length; i++) {
    if (snapshot.cumulative_counts[i] >= target) return snapshot.upper_bounds[i];
  }
  return Infinity;
}

function latencyText(stats) {
  const p50 = quantile(stats?.latency_s, 0.5);
  const p99 = quantile(stats?.latency_s, 0.99);
  if (p50 === null) return "—";
  const ms = (v) => (Number.isFinite(v) ? `≤${formatNumber(v * 1000, 1)}` : "> max");
  return `${ms(p50)} / ${ms(p99)}`;
}

// Per-bucket counts from cumulative ones, labelled by their range.
function buckets(snapshot, unit, scale = 1) {
  if (!snapshot || !snapshot.count) return [];
  const items = [];
  let previous = 0;
  let lower = 0;
  snapshot.upper_bounds.forEach((bound, i) => {
    const count = snapshot.cumulative_counts[i] - previous;
    previous = snapshot.cumulative_counts[i];
    if (count > 0) items.push({ label: `${formatNumber(lower * scale, 1)}–${formatNumber(bound * scale, 1)} ${unit}`, value: count });
    lower = bound;
  });
  if (snapshot.count > previous) items.push({ label: `> ${formatNumber(lower * scale, 1)} ${unit}`, value: snapshot.count - previous });
  return items;
}

async function renderModel(root, name) {
  const body = h("div");
  show(root, h("p", {}, h("a", { href: "#/models" }, "← Models")), h("h1", {}, name), body);
  const refresh = async () => {
    const model = await api("GET", `/v1/models/${encodeURIComponent(name)}`);
    show(body, modelView(model));
  };
  await refresh();
  live("models", { change: throttle(() => refresh().catch((e) => show(body, errorBox(e))), 500) });
  // Latency and batch sizes change with every request; they are not bus events, so read calmly.
  const timer = setInterval(() => refresh().catch(() => {}), STATS_REFRESH_MS);
  onLeave(() => clearInterval(timer));
}

function modelView(model) {
  const stats = model.stats || {};
  const config = model.config || {};
  const latency = buckets(stats.latency_s, "ms", 1000);
  const batchSizes = buckets(stats.batch_size, "rows");
  return [
    h("div", { class: "stats" },
      stat(badge(model.state), "state"),
      stat(`v${model.version}`, "version served"),
      stat((model.providers || []).join(", ") || "—", "providers (as run)"),
      stat(formatNumber(stats.requests ?? 0), "requests"),
      stat(formatNumber(stats.failures ?? 0), "failures"),
      stat(formatNumber(stats.rows ?? 0), "rows"),
      stat(latencyText(stats), "p50 / p99 ms")),
    model.reason ? errorBox(model.reason) : null,
    h("div", { class: "grid2" },
      h("div", { class: "panel", id: "latency-chart" },
        latency.length ? bars({ title: "Request latency", items: latency, valueLabel: "requests" }) : h("p", { class: "empty" }, "No requests yet.")),
      h("div", { class: "panel", id: "batch-chart" },
        batchSizes.length ? bars({ title: "Batch sizes", items: batchSizes, valueLabel: "batches" }) : h("p", { class: "empty" }, "No batches yet."))),
    h("h2", {}, "Configuration"),
    table(
      [{ label: "Setting", value: (r) => r[0] }, { label: "Value", value: (r) => r[1] }],
      [
        ["Task", config.task],
        ["Description", config.description || "—"],
        ["Provider preference", `${config.provider}${config.require_gpu ? " (GPU required)" : ""}`],
        ["GPU memory limit", config.gpu_mem_limit_mb ? `${config.gpu_mem_limit_mb} MB` : "—"],
        ["Dynamic batching", config.batching?.enabled
          ? `max ${config.batching.max_batch_size} rows, ${config.batching.max_queue_delay_us} µs delay, ${config.batching.instances} instances`
          : "off"],
        ["Sequence buckets", (config.sequence_buckets || []).join(", ") || "—"],
        ["Loaded", formatTime(model.loaded_at)],
        ["Replica", model.instance_id || "—"],
      ],
    ),
    h("h2", {}, "Inputs and outputs"),
    table(
      [
        { label: "Direction", value: (t) => t.direction },
        { label: "Name", value: (t) => t.name },
        { label: "Type", value: (t) => t.datatype },
        { label: "Shape", value: (t) => `[${(t.shape || []).join(", ")}]` },
      ],
      [
        ...(config.inputs || []).map((t) => ({ direction: "input", ...t })),
        ...(config.outputs || []).map((t) => ({ direction: "output", ...t })),
      ],
    ),
  ];
}

function stat(value, label) {
  return h("div", { class: "stat" }, h("b", {}, value), h("span", {}, label));
}
