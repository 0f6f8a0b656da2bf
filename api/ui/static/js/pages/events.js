// Events: webhook deliveries, newest first, filtered by state and source, with the rules they matched and
// their tasks. Live: each event change in the feed refetches that event (a burst is one refresh per 300 ms).

import {get, request, withQuery} from "../api.js";
import {badge, coalesce, h, link, notice, replace, time, truncate} from "../dom.js";
import {filterSelect} from "./tasks.js";

const STATES = ["received", "matched", "dispatched", "completed", "failed", "skipped", "write_back_failed"];
const PAGE = 50;  // rows per page
const COALESCE_MS = 300;  // at most one refresh of changed rows per 300 ms

function matched(e) {
  const matches = Array.isArray(e.matches) ? e.matches : [];
  if (!matches.length) return h("span", {class: "muted"}, "none");
  return h("span", {}, matches.map((m, i) => [i ? ", " : "", m.rule ?? "rule", " ",
    m.task_id ? link("task", m.task_id, `→ ${m.worker ?? m.pool ?? "task"}`) : h("span", {class: "muted"}, m.status)]));
}

function row(e) {
  return h("tr", {"data-id": e.id, "data-state": e.state},
    h("td", {"data-label": "Event"}, link("event", e.id)),
    h("td", {"data-label": "State", class: "state"}, badge(e.state)),
    h("td", {"data-label": "Source"}, e.source),
    h("td", {"data-label": "Type"}, e.type),
    h("td", {"data-label": "Subject"}, truncate([e.actor, e.subject].filter(Boolean).join(" · ") || "—", 60)),
    h("td", {"data-label": "Rules"}, matched(e)),
    h("td", {"data-label": "Received"}, time(e.created_at)));
}

export function mount(root, {query}) {
  const filters = {state: query.get("state") || "", source: query.get("source") || ""};
  const stateFilter = filterSelect("f-state", "State", STATES, filters.state, "any");
  const sourceInput = h("input", {id: "f-source", name: "source", value: filters.source, placeholder: "any",
    size: 10});
  const tbody = h("tbody");
  const empty = notice("No events match. Webhook deliveries (POST /webhook/<source>) show up here.");
  const status = h("p", {class: "error", role: "alert", hidden: true});
  const more = h("button", {type: "button", class: "secondary", hidden: true}, "Load more");
  const rows = new Map();  // event id -> tr
  let cursor = null;

  const onFilter = () => {
    location.hash = `#${withQuery("/events", {state: stateFilter.querySelector("select").value,
      source: sourceInput.value.trim()})}`;
  };
  stateFilter.addEventListener("change", onFilter);
  sourceInput.addEventListener("change", onFilter);
  more.addEventListener("click", () => load(cursor));

  replace(root,
    h("div", {class: "page-head"}, h("h1", {}, "Events"),
      h("div", {class: "filters"}, stateFilter, h("label", {class: "filter"}, "Source", sourceInput))),
    status,
    h("table", {class: "list", id: "events"},
      h("thead", {}, h("tr", {}, ["Event", "State", "Source", "Type", "Subject", "Rules", "Received"]
        .map((c) => h("th", {}, c)))),
      tbody),
    empty, more);

  const matches = (e) => (!filters.state || e.state === filters.state) && (!filters.source || e.source === filters.source);

  function put(e) {
    const old = rows.get(e.id);
    if (!matches(e)) {
      if (old) old.remove();
      rows.delete(e.id);
    } else {
      const tr = row(e);
      tr.classList.add("flash");
      if (old) old.replaceWith(tr); else tbody.prepend(tr);  // a new event is the newest
      rows.set(e.id, tr);
    }
    empty.hidden = rows.size > 0;
  }

  async function load(from) {
    try {
      const page = await request("GET", withQuery("/events", {...filters, limit: PAGE, cursor: from}));
      if (!from) {
        rows.clear();
        tbody.replaceChildren();
      }
      cursor = page.next;
      for (const e of page.data) {
        const tr = row(e);
        rows.set(e.id, tr);
        tbody.append(tr);
      }
      more.hidden = !cursor;
      empty.hidden = rows.size > 0;
      status.hidden = true;
    } catch (err) {
      status.textContent = `Could not load events: ${err.message}`;
      status.hidden = false;
    }
  }

  const changed = coalesce((ids) => {
    for (const id of ids) get(`/event/${encodeURIComponent(id)}`).then(put).catch(() => {});
  }, COALESCE_MS);

  load(null);
  return {
    refresh: () => load(null),
    onActivity(kind, d) {
      if (kind !== "event") return;
      if (!rows.has(d.subject) && filters.source && d.source !== filters.source) return;
      changed(d.subject);
    },
    destroy: changed.cancel,
  };
}
