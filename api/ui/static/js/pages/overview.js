// Overview: the workers (state, health, queue depth against its bound, running tasks) and the last hour's
// tasks per minute and failure rate. Refreshed on the feed's ticks and on task activity, at most once a second.

import {get} from "../api.js";
import {failureChart, throughputChart} from "../charts.js";
import {ago, badge, h, notice, replace, section, throttle} from "../dom.js";

const REFRESH_MS = 1000;  // at most one refresh of workers and charts per second, however busy the feed is

function meter(value, max, label) {
  const share = max ? Math.min(1, value / max) : 0;
  const level = share >= 0.9 ? "high" : share >= 0.6 ? "mid" : "low";
  return h("div", {class: "meter-row"},
    h("span", {class: "meter-label"}, label),
    h("meter", {min: 0, max: max || 1, value, low: (max || 1) * 0.6, high: (max || 1) * 0.9, optimum: 0,
      class: level, title: `${value} of ${max}`}),
    h("span", {class: "meter-value"}, `${value} / ${max ?? "∞"}`));
}

function workerCard(w) {
  const errors = Array.isArray(w.errors) ? w.errors : [];
  return h("article", {class: "worker", "data-worker": w.name},
    h("header", {},
      h("a", {class: "worker-name", href: `#/tasks?worker=${encodeURIComponent(w.name)}`}, w.name),
      h("span", {class: "muted"}, w.kind),
      h("span", {class: "badges"}, badge(w.state), badge(w.health))),
    meter(w.queue_depth ?? 0, w.max_queue_depth, "queue"),
    meter(w.running ?? 0, (w.concurrency ?? 1) * Math.max(w.processes ?? 1, 1), "running"),
    h("p", {class: "muted small"},
      `${w.processes ?? 0} process${w.processes === 1 ? "" : "es"} · heartbeat ${ago(w.last_heartbeat)}`,
      w.pools && w.pools.length ? ` · pools ${w.pools.join(", ")}` : ""),
    errors.length ? h("p", {class: "error small"}, errors.join("; ")) : null);
}

export function mount(root) {
  const summary = h("p", {class: "muted"}, "Loading…");
  const workers = h("div", {class: "workers"});
  const charts = h("div", {class: "charts"});
  replace(root,
    h("div", {class: "page-head"}, h("h1", {}, "Overview"), summary),
    section("Workers", workers),
    section("Last hour", charts));

  async function refresh() {
    const [ws, stats] = await Promise.allSettled([get("/workers"), get("/api/stats/tasks?minutes=60")]);
    if (ws.status === "fulfilled") {
      const list = ws.value;
      const online = list.filter((w) => w.state === "online" || w.state === "busy").length;
      const queued = list.reduce((n, w) => n + (w.queue_depth || 0), 0);
      const running = list.reduce((n, w) => n + (w.running || 0), 0);
      summary.textContent = `${online} of ${list.length} workers online · ${queued} queued · ${running} running`;
      replace(workers, list.length ? list.map(workerCard)
        : notice("No workers yet: define one in taskyard.yaml or start `taskyard worker`."));
    } else {
      replace(workers, notice(`Could not load workers: ${ws.reason.message}`, "error"));
    }
    if (stats.status === "fulfilled") {
      replace(charts, throughputChart(stats.value), failureChart(stats.value));
    } else {
      replace(charts, notice(`Could not load the charts: ${stats.reason.message}`, "error"));
    }
  }

  const later = throttle(refresh, REFRESH_MS);
  later();
  return {
    refresh: later,
    onTick: later,
    onActivity: (kind) => { if (kind === "task") later(); },
    destroy: later.cancel,
  };
}
