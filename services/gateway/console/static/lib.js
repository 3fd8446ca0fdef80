// Shared helpers of the console pages: REST calls, safe DOM building, live updates, charts.

const CSRF_HEADER = "X-Trellis-Console";

export class ApiError extends Error {
  constructor(status, detail, body) {
    super(detail);
    this.status = status;
    this.body = body;
  }
}

// A REST call with the session cookie. JSON in, JSON (or text) out; a problem becomes ApiError.
export async function api(method, path, body, { raw = false, headers = {} } = {}) {
  const init = { method, credentials: "same-origin", headers: { [CSRF_HEADER]: "1", ...headers } };
  if (body !== undefined) {
    if (body instanceof Blob || body instanceof ArrayBuffer) {
      init.body = body;
    } else {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    location.assign(`/console/login?next=${encodeURIComponent(location.hash)}`);
    throw new ApiError(401, "signed out");
  }
  if (raw && response.ok) return response; // the caller reads (or streams) the body itself
  const type = response.headers.get("content-type") || "";
  const parsed = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const detail = (parsed && (parsed.detail || parsed.message)) || `HTTP ${response.status}`;
    throw new ApiError(response.status, detail, parsed);
  }
  return parsed;
}

// An Amazon Fraud Detector operation through the REST mapping (/v1/fraud/{Operation}).
export function fraud(operation, body = {}) {
  return api("POST", `/v1/fraud/${operation}`, body);
}

// h("div", {class: "x", onclick: fn}, "text", child): elements built without innerHTML.
export function h(tag, attrs = {}, ...children) {
  const svg = SVG_TAGS.has(tag);
  const el = svg ? document.createElementNS(SVG_NS, tag) : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (name === "value" && !svg) {
      el.value = value;
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// Replaces what `el` shows.
export function show(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const SVG_NS = "http://www.w3.org/2000/svg";
const SVG_TAGS = new Set([
  "svg", "g", "path", "line", "circle", "rect", "text", "title", "polyline", "desc",
]);

// Work a page started that must end when the user leaves it (live streams, timers).
const cleanups = [];
export function onLeave(fn) {
  cleanups.push(fn);
}
export function leave() {
  while (cleanups.length) {
    try {
      cleanups.pop()();
    } catch (err) {
      console.warn("cleanup failed", err);
    }
  }
}

// Server-sent events for a topic (see /v1/events); `handlers` maps event names to callbacks.
// Closed when the page is left. The browser reconnects by itself after a network error.
export function live(topic, handlers) {
  const source = new EventSource(`/v1/events?topic=${encodeURIComponent(topic)}`);
  for (const [name, fn] of Object.entries(handlers)) {
    source.addEventListener(name, (event) => fn(JSON.parse(event.data)));
  }
  onLeave(() => source.close());
  return source;
}

// Calls `fn` at most once per `ms` (bursts of live events become one refresh).
export function throttle(fn, ms = 300) {
  let timer = null;
  let again = false;
  return (...args) => {
    if (timer) {
      again = true;
      return;
    }
    fn(...args);
    timer = setTimeout(() => {
      timer = null;
      if (again) {
        again = false;
        fn(...args);
      }
    }, ms);
  };
}

// One run of `fn` at a time; calls made meanwhile become one more run after it, so a burst of
// live events never lets an older read overwrite a newer one.
export function serial(fn) {
  let running = null;
  let again = false;
  return () => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      try {
        do {
          again = false;
          await fn();
        } while (again);
      } finally {
        running = null;
      }
    })();
    return running;
  };
}

// A table from column specs [{label, value: row => text|Node, class?}] and rows; `rowAttrs`
// gives each row's attributes (ids for tests, a class to mark one).
export function table(columns, rows, { caption, empty = "Nothing yet.", rowAttrs = () => ({}) } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h(
    "table",
    {},
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.class }, c.label)))),
    h(
      "tbody",
      {},
      rows.map((row) => h("tr", rowAttrs(row), columns.map((c) => h("td", { class: c.class }, c.value(row))))),
    ),
  );
}

export function errorBox(err) {
  return h("div", { class: "error", role: "alert" }, err instanceof Error ? err.message : String(err));
}

// Runs an async action from a button: disables it meanwhile, shows the error next to it.
export async function act(button, fn) {
  button.disabled = true;
  const old = button.parentElement?.querySelector(":scope > .error");
  old?.remove();
  try {
    return await fn();
  } catch (err) {
    button.after(errorBox(err));
    return undefined;
  } finally {
    button.disabled = false;
  }
}

export function field(label, input) {
  return h("label", { class: "field" }, h("span", {}, label), input);
}

export function formatNumber(value, digits = 3) {
  if (value === undefined || value === null || value === "") return "—";
  const n = Number(value);
  if (!Number.isFinite(n)) return String(value);
  if (Number.isInteger(n)) return n.toLocaleString("en");
  return n.toLocaleString("en", { maximumFractionDigits: digits });
}

export function formatTime(value) {
  if (!value) return "—";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString("en-GB");
}

export function badge(status) {
  const text = String(status ?? "—");
  const tone = /FAIL|ERROR|STOP|DEAD|not_ready|DELETE/i.test(text)
    ? "bad"
    : /SUCC|ACTIVE|READY|COMPLETE|CREATED|InService|ready|TRAINING_COMPLETE|ok/i.test(text)
      ? "good"
      : "busy";
  return h("span", { class: `badge ${tone}` }, text);
}

// -- charts ----------------------------------------------------------------------------------

const PALETTE = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777"];
export function color(i) {
  return PALETTE[i % PALETTE.length];
}

function scale(min, max, from, to) {
  const span = max - min || 1;
  return (v) => from + ((v - min) / span) * (to - from);
}

function extent(values, pad = 0) {
  let min = Math.min(...values);
  let max = Math.max(...values);
  if (!Number.isFinite(min)) return [0, 1];
  if (min === max) {
    min -= 0.5;
    max += 0.5;
  }
  const margin = (max - min) * pad;
  return [min - margin, max + margin];
}

// An SVG chart of lines and/or points with hover values, followed by the same data as a table
// for screen readers. series: [{name, points: [[x, y, label?]], color?, line?: bool, dot?: bool}]
export function chart({ title, series, xLabel, yLabel, width = 560, height = 300, xDomain, yDomain, marker }) {
  const m = { left: 56, right: 16, top: 16, bottom: 42 };
  const all = series.flatMap((s) => s.points);
  const [x0, x1] = xDomain || extent(all.map((p) => p[0]), 0.02);
  const [y0, y1] = yDomain || extent(all.map((p) => p[1]), 0.05);
  const x = scale(x0, x1, m.left, width - m.right);
  const y = scale(y0, y1, height - m.bottom, m.top);
  const svg = h("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "chart",
    role: "img",
    "aria-label": title,
  });
  svg.append(h("title", {}, title));
  const ticks = (lo, hi) => Array.from({ length: 5 }, (_, i) => lo + ((hi - lo) * i) / 4);
  for (const t of ticks(y0, y1)) {
    svg.append(h("line", { x1: m.left, x2: width - m.right, y1: y(t), y2: y(t), class: "grid" }));
    svg.append(h("text", { x: m.left - 6, y: y(t) + 4, class: "tick", "text-anchor": "end" }, formatNumber(t, 2)));
  }
  for (const t of ticks(x0, x1)) {
    svg.append(h("text", { x: x(t), y: height - m.bottom + 16, class: "tick", "text-anchor": "middle" }, formatNumber(t, 2)));
  }
  svg.append(h("line", { x1: m.left, x2: width - m.right, y1: height - m.bottom, y2: height - m.bottom, class: "axis" }));
  svg.append(h("line", { x1: m.left, x2: m.left, y1: m.top, y2: height - m.bottom, class: "axis" }));
  svg.append(h("text", { x: (width + m.left) / 2, y: height - 6, class: "label", "text-anchor": "middle" }, xLabel));
  svg.append(h("text", { x: 14, y: height / 2, class: "label", "text-anchor": "middle", transform: `rotate(-90 14 ${height / 2})` }, yLabel));
  series.forEach((s, i) => {
    const stroke = s.color || color(i);
    if (s.line !== false && s.points.length > 1) {
      const d = s.points.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
      svg.append(h("path", { d, fill: "none", stroke, "stroke-width": 2 }));
    }
    if (s.dot !== false) {
      for (const p of s.points) {
        svg.append(
          h("circle", { cx: x(p[0]), cy: y(p[1]), r: s.line === false ? 4.5 : 3, fill: stroke, class: "dot" },
            h("title", {}, `${s.name}: ${p[2] ? p[2] + " — " : ""}${xLabel} ${formatNumber(p[0])}, ${yLabel} ${formatNumber(p[1])}`)),
        );
      }
    }
  });
  if (marker) {
    svg.append(h("circle", { cx: x(marker[0]), cy: y(marker[1]), r: 7, class: "marker" }));
  }
  const legend = series.length > 1
    ? h("ul", { class: "legend" }, series.map((s, i) => h("li", {}, h("span", { class: "swatch", dataset: { color: s.color || color(i) } }), s.name)))
    : null;
  legend?.querySelectorAll(".swatch").forEach((el) => { el.style.background = el.dataset.color; });
  const rows = series.flatMap((s) => s.points.map((p) => ({ s: s.name, p })));
  const data = h(
    "details", { class: "chart-data" }, h("summary", {}, `${title}: data`),
    table(
      [
        { label: "series", value: (r) => r.s },
        { label: xLabel, value: (r) => formatNumber(r.p[0]) },
        { label: yLabel, value: (r) => formatNumber(r.p[1]) },
        { label: "label", value: (r) => r.p[2] ?? "" },
      ],
      rows.slice(0, 2000),
    ),
  );
  return h("figure", { class: "figure" }, h("figcaption", {}, title), svg, legend, data);
}

// Horizontal bars: items [{label, value}] (variable importance, score buckets).
export function bars({ title, items, valueLabel = "value", width = 560 }) {
  const max = Math.max(...items.map((i) => Math.abs(i.value)), 1e-9);
  const row = 22;
  const left = 180;
  const svg = h("svg", { viewBox: `0 0 ${width} ${items.length * row + 8}`, class: "chart", role: "img", "aria-label": title });
  items.forEach((item, i) => {
    const w = ((width - left - 60) * Math.abs(item.value)) / max;
    svg.append(h("text", { x: left - 8, y: i * row + 16, class: "tick", "text-anchor": "end" }, item.label));
    svg.append(h("rect", { x: left, y: i * row + 4, width: Math.max(w, 1), height: row - 8, fill: color(0), class: "bar" },
      h("title", {}, `${item.label}: ${formatNumber(item.value)}`)));
    svg.append(h("text", { x: left + w + 6, y: i * row + 16, class: "tick" }, formatNumber(item.value)));
  });
  const data = h("details", { class: "chart-data" }, h("summary", {}, `${title}: data`),
    table([{ label: "item", value: (r) => r.label }, { label: valueLabel, value: (r) => formatNumber(r.value) }], items));
  return h("figure", { class: "figure" }, h("figcaption", {}, title), svg, data);
}
