// Incidents: one per failure signature, newest activity first, filtered by status and class. Live: an incident
// in the feed is refetched (a burst is one refresh per 300 ms); a new occurrence moves it to the top.

import {request, get, withQuery} from "../api.js";
import {badge, coalesce, fmtUsd, h, link, notice, replace, time, truncate} from "../dom.js";
import {filterSelect} from "./tasks.js";

export const STATUSES = ["open", "acknowledged", "resolved", "regressed"];
const CLASSES = ["crash", "timeout", "lost_worker", "loop", "step_budget", "time_budget", "token_budget", "tool_error",
  "validator_failure", "prompt_injection", "cost_spike", "empty_output", "exit_nonzero"];
const PAGE = 50;  // rows per page
const COALESCE_MS = 300;  // at most one refresh of changed rows per 300 ms
const MOVES_UP = new Set(["created", "updated", "regressed"]);  // occurrences (triage keeps the order)

function row(i) {
  return h("tr", {"data-id": i.id, "data-status": i.status},
    h("td", {"data-label": "Incident"}, link("incident", i.id)),
    h("td", {"data-label": "Class"}, badge(i.failure_class, "class")),
    h("td", {"data-label": "Status", class: "state"}, badge(i.status)),
    h("td", {"data-label": "Summary", class: "prompt"}, truncate(i.summary, 120)),
    h("td", {"data-label": "Seen"}, `${i.count}×`),
    h("td", {"data-label": "Workers"}, (i.workers || []).slice(0, 3).join(", ") || "—"),
    h("td", {"data-label": "Wasted"}, fmtUsd(i.cost_wasted_usd)),
    h("td", {"data-label": "Last seen"}, time(i.last_seen)));
}

export function mount(root, {query}) {
  const filters = {status: query.get("status") || "", class: query.get("class") || ""};
  const statusFilter = filterSelect("f-status", "Status", STATUSES, filters.status, "any");
  const classFilter = filterSelect("f-class", "Class", CLASSES, filters.class, "any");
  const tbody = h("tbody");
  const empty = notice("No incidents match. The detectors open one per failure signature they find in traces.");
  const status = h("p", {class: "error", role: "alert", hidden: true});
  const more = h("button", {type: "button", class: "secondary", hidden: true}, "Load more");
  const rows = new Map();  // incident id -> tr
  let cursor = null;

  const onFilter = () => {
    location.hash = `#${withQuery("/incidents", {status: statusFilter.querySelector("select").value,
      class: classFilter.querySelector("select").value})}`;
  };
  statusFilter.addEventListener("change", onFilter);
  classFilter.addEventListener("change", onFilter);
  more.addEventListener("click", () => load(cursor));

  replace(root,
    h("div", {class: "page-head"}, h("h1", {}, "Incidents"), h("div", {class: "filters"}, statusFilter, classFilter)),
    status,
    h("table", {class: "list", id: "incidents"},
      h("thead", {}, h("tr", {}, ["Incident", "Class", "Status", "Summary", "Seen", "Workers", "Wasted", "Last seen"]
        .map((c) => h("th", {}, c)))),
      tbody),
    empty, more);

  const matches = (i) => (!filters.status || i.status === filters.status)
    && (!filters.class || i.failure_class === filters.class);

  function put(i, toTop) {
    const old = rows.get(i.id);
    if (!matches(i)) {
      if (old) old.remove();
      rows.delete(i.id);
    } else {
      const tr = row(i);
      tr.classList.add("flash");
      if (old && !toTop) old.replaceWith(tr);
      else {
        if (old) old.remove();
        tbody.prepend(tr);
      }
      rows.set(i.id, tr);
    }
    empty.hidden = rows.size > 0;
  }

  async function load(from) {
    try {
      const page = await request("GET", withQuery("/api/incidents", {...filters, limit: PAGE, cursor: from}));
      if (!from) {
        rows.clear();
        tbody.replaceChildren();
      }
      cursor = page.next;
      for (const i of page.data) {
        const tr = row(i);
        rows.set(i.id, tr);
        tbody.append(tr);
      }
      more.hidden = !cursor;
      empty.hidden = rows.size > 0;
      status.hidden = true;
    } catch (err) {
      status.textContent = `Could not load incidents: ${err.message}`;
      status.hidden = false;
    }
  }

  const moved = new Set();
  const changed = coalesce((ids) => {
    for (const id of ids) {
      const toTop = moved.delete(id);
      get(`/api/incidents/${encodeURIComponent(id)}`).then((i) => put(i, toTop)).catch(() => {});
    }
  }, COALESCE_MS);

  load(null);
  return {
    refresh: () => load(null),
    onActivity(kind, d) {
      if (kind !== "incident") return;
      if (MOVES_UP.has(d.state)) moved.add(d.subject);
      changed(d.subject);
    },
    destroy: changed.cancel,
  };
}
