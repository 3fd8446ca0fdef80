// Overview: every service, its replicas, readiness, consumer lag and recent errors.

import { api, badge, formatNumber, formatTime, h, onLeave, show, table } from "../lib.js";

const REFRESH_MS = 5000;

export async function render(root) {
  const body = h("div");
  show(root, h("h1", {}, "Overview"), body);
  const refresh = async () => {
    const { services } = await api("GET", "/v1/services");
    show(body, overview(services));
  };
  await refresh();
  // Replica health is answered on request (scatter-gather), not published: refresh calmly.
  const timer = setInterval(() => refresh().catch(() => {}), REFRESH_MS);
  onLeave(() => clearInterval(timer));
}

function overview(services) {
  const ready = services.filter((s) => s.status === "ready").length;
  return [
    h("div", { class: "stats" },
      h("div", { class: "stat" }, h("b", {}, `${ready} / ${services.length}`), h("span", {}, "services ready")),
      h("div", { class: "stat" }, h("b", {}, services.reduce((n, s) => n + s.replicas, 0)), h("span", {}, "replicas"))),
    h("h2", {}, "Services"),
    table(
      [
        { label: "Service", value: (s) => s.name },
        { label: "Status", value: (s) => badge(s.status) },
        { label: "Replicas (ready)", value: (s) => `${s.replicas} (${s.ready_replicas})`, class: "num" },
        { label: "Consumer lag", value: (s) => lag(s), class: "num" },
        { label: "Recent errors", value: (s) => recentErrors(s) },
      ],
      services,
      { caption: "Every service and its replicas" },
    ),
    h("h2", {}, "Replicas"),
    table(
      [
        { label: "Service", value: (r) => r.service },
        { label: "Replica", value: (r) => r.instance_id },
        { label: "Host", value: (r) => `${r.host} (pid ${r.pid})` },
        { label: "Version", value: (r) => r.version },
        { label: "Handled / failed", value: (r) => `${formatNumber(r.handled)} / ${formatNumber(r.failed)}`, class: "num" },
        { label: "Checks", value: (r) => Object.entries(r.checks || {}).map(([k, v]) => `${k}: ${v}`).join(", ") },
        { label: "Ready", value: (r) => badge(r.ready ? "ready" : "not_ready") },
        { label: "Started", value: (r) => formatTime(r.started_at) },
      ],
      services.flatMap((s) => (s.instances || []).map((r) => ({ service: s.name, ...r }))),
      { caption: "Live replicas" },
    ),
  ];
}

function lag(service) {
  const consumers = (service.instances || []).flatMap((r) => r.consumers || []);
  if (!consumers.length) return "—";
  const byDurable = new Map();
  for (const c of consumers) byDurable.set(c.durable, (c.pending || 0) + (c.ack_pending || 0));
  return h("ul", { class: "plain" }, [...byDurable].map(([name, n]) => h("li", {}, `${name}: ${formatNumber(n)}`)));
}

function recentErrors(service) {
  const errors = (service.instances || [])
    .flatMap((r) => r.recent_errors || [])
    .sort((a, b) => String(b.time).localeCompare(String(a.time)));
  const failed = (service.instances || []).reduce((n, r) => n + (r.failed || 0), 0);
  if (!errors.length) return failed ? `${failed} failed messages` : "none";
  return h("ul", { class: "plain" }, errors.slice(0, 5).map((e) => h("li", {}, h("span", { class: "hint" }, formatTime(e.time)), " ", e.message)));
}
