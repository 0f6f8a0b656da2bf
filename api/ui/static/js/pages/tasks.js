// Tasks: newest first, filtered by state and worker (kept in the hash: #/tasks?state=failed&worker=echo).
// Live: each task change in the feed refetches that task (a burst is one refresh per 300 ms) and inserts,
// updates or drops its row.

import {get, request, withQuery} from "../api.js";
import {badge, between, coalesce, fmtMs, h, link, notice, replace, time, truncate} from "../dom.js";

export const STATES = ["pending", "dispatched", "completed", "failed", "cancelled"];
const PAGE = 50;  // rows per page
const COALESCE_MS = 300;  // at most one refresh of changed rows per 300 ms
const RELOAD_OVER = 25;  // a burst touching more tasks than this reloads the first page instead of each task

function row(t) {
  return h("tr", {"data-id": t.id, "data-state": t.state},
    h("td", {"data-label": "Task"}, link("task", t.id)),
    h("td", {"data-label": "State", class: "state"}, badge(t.state)),
    h("td", {"data-label": "Worker"}, t.worker_name || "—"),
    h("td", {"data-label": "Prompt", class: "prompt"}, truncate(t.prompt, 90)),
    h("td", {"data-label": "Created"}, time(t.created_at)),
    h("td", {"data-label": "Took"}, fmtMs(between(t.dispatched_at || t.created_at, t.completed_at))));
}

export function filterSelect(id, label, values, selected, anyText) {
  return h("label", {class: "filter"}, label,
    h("select", {id, name: id},
      h("option", {value: ""}, anyText),
      values.map((v) => h("option", {value: v, selected: v === selected}, v))));
}

export function mount(root, {query}) {
  const filters = {state: query.get("state") || "", worker: query.get("worker") || ""};
  const stateFilter = filterSelect("f-state", "State", STATES, filters.state, "any");
  const workerFilter = filterSelect("f-worker", "Worker", filters.worker ? [filters.worker] : [], filters.worker, "any");
  const tbody = h("tbody");
  const empty = notice("No tasks match.");
  const status = h("p", {class: "error", role: "alert", hidden: true});
  const more = h("button", {type: "button", class: "secondary", hidden: true}, "Load more");
  const rows = new Map();  // task id -> {task, tr}
  let cursor = null;

  const onFilter = () => {
    const state = stateFilter.querySelector("select").value;
    const worker = workerFilter.querySelector("select").value;
    location.hash = `#${withQuery("/tasks", {state, worker})}`;
  };
  stateFilter.addEventListener("change", onFilter);
  workerFilter.addEventListener("change", onFilter);
  more.addEventListener("click", () => load(cursor));

  replace(root,
    h("div", {class: "page-head"}, h("h1", {}, "Tasks"), h("div", {class: "filters"}, stateFilter, workerFilter)),
    status,
    h("table", {class: "list", id: "tasks"},
      h("thead", {}, h("tr", {}, ["Task", "State", "Worker", "Prompt", "Created", "Took"].map((c) => h("th", {}, c)))),
      tbody),
    empty, more);

  get("/workers").then((ws) => {
    const select = workerFilter.querySelector("select");
    const names = ws.map((w) => w.name).filter((n) => n !== filters.worker);
    select.append(...names.map((n) => h("option", {value: n}, n)));
  }).catch(() => {});

  const matches = (t) => (!filters.state || t.state === filters.state)
    && (!filters.worker || t.worker_name === filters.worker);

  function put(t) {
    const old = rows.get(t.id);
    if (!matches(t)) {
      if (old) old.tr.remove();
      rows.delete(t.id);
    } else if (old) {
      const tr = row(t);
      old.tr.replaceWith(tr);
      if (old.task.state !== t.state) tr.classList.add("flash");
      rows.set(t.id, {task: t, tr});
    } else {
      const older = [...tbody.children].find((tr) => rows.get(tr.dataset.id).task.created_at < t.created_at);
      if (!older && cursor) return;  // older than every row shown: it belongs to a page not loaded yet
      const tr = row(t);
      tr.classList.add("flash");
      tbody.insertBefore(tr, older || null);
      rows.set(t.id, {task: t, tr});
    }
    empty.hidden = rows.size > 0;
  }

  async function load(from) {
    try {
      const page = await request("GET", withQuery("/tasks", {...filters, limit: PAGE, cursor: from}));
      if (!from) {
        rows.clear();
        tbody.replaceChildren();
      }
      cursor = page.next;
      for (const t of page.data) {
        const tr = row(t);
        rows.set(t.id, {task: t, tr});
        tbody.append(tr);
      }
      more.hidden = !cursor;
      empty.hidden = rows.size > 0;
      status.hidden = true;
    } catch (err) {
      status.textContent = `Could not load tasks: ${err.message}`;
      status.hidden = false;
    }
  }

  const changed = coalesce((ids) => {
    if (ids.size > RELOAD_OVER) {
      load(null);
      return;
    }
    for (const id of ids) get(`/task/${encodeURIComponent(id)}`).then(put).catch(() => {});
  }, COALESCE_MS);

  load(null);
  return {
    refresh: () => load(null),
    onActivity(kind, d) {
      if (kind !== "task") return;
      const known = rows.has(d.subject);
      if (!known && filters.worker && d.worker !== filters.worker) return;
      if (!known && filters.state && d.state !== filters.state) return;
      changed(d.subject);
    },
    destroy: changed.cancel,
  };
}
