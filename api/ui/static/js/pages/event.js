// Event detail: the delivery, the rules it matched (and why others were skipped or refused), its linked tasks
// with their current state, its history, write-back results and payload. Live on its own and its tasks' changes.

import {get} from "../api.js";
import {badge, coalesce, facts, h, json, link, notice, replace, section, shortId, time} from "../dom.js";

const COALESCE_MS = 300;  // at most one refetch per 300 ms

function table(headers, rows) {
  return h("table", {class: "list"}, h("thead", {}, h("tr", {}, headers.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows));
}

function cell(label, ...content) {
  return h("td", {"data-label": label}, ...content);
}

function matchesView(matches) {
  if (!matches || !matches.length) return notice("No rule matched this event.");
  return table(["Rule", "Target", "Status", "Task", "Reason"], matches.map((m) => h("tr", {},
    cell("Rule", m.rule ?? "—"),
    cell("Target", m.worker ?? (m.pool ? `pool ${m.pool}` : "—")),
    cell("Status", badge(m.status)),
    cell("Task", m.task_id ? link("task", m.task_id) : "—"),
    cell("Reason", m.reason ?? ""))));
}

function tasksView(tasks) {
  if (!tasks || !tasks.length) return notice("No tasks.");
  return table(["Task", "State", "Worker"], tasks.map((t) => h("tr", {"data-id": t.id},
    cell("Task", link("task", t.id)), cell("State", badge(t.state)), cell("Worker", t.worker_name ?? t.worker ?? "—"))));
}

function historyView(history) {
  if (!history || !history.length) return notice("No history.");
  return h("ol", {class: "history"}, history.map((step) => h("li", {},
    time(step.at), " ", badge(step.state), step.detail ? h("span", {class: "muted"}, ` ${typeof step.detail === "string"
      ? step.detail : JSON.stringify(step.detail)}`) : null)));
}

export function mount(root, {id}) {
  const body = h("div", {}, notice("Loading…"));
  replace(root, h("p", {class: "crumbs"}, h("a", {href: "#/events"}, "← Events")), body);
  let taskIds = new Set();

  async function refresh() {
    let e;
    try {
      e = await get(`/event/${encodeURIComponent(id)}`);
    } catch (err) {
      replace(body, notice(err.status === 404 ? "Event not found." : `Could not load the event: ${err.message}`,
        "error"));
      return;
    }
    taskIds = new Set((e.tasks || []).map((t) => t.id));
    replace(body,
      h("div", {class: "page-head"}, h("h1", {}, "Event ", h("span", {class: "mono"}, shortId(e.id))),
        badge(e.state, "big")),
      section("Delivery", facts([
        ["id", h("span", {class: "mono"}, e.id)],
        ["source", e.source], ["type", e.type], ["actor", e.actor], ["subject", e.subject],
        ["delivery", e.delivery_id], ["received", time(e.created_at)], ["updated", time(e.updated_at)],
        ["replay of", e.replay_of ? link("event", e.replay_of) : null],
      ])),
      e.error ? section("Error", h("pre", {class: "text error"}, e.error)) : null,
      section("Matched rules", matchesView(e.matches)),
      section("Linked tasks", tasksView(e.tasks)),
      section("History", historyView(e.history)),
      e.write_back && Object.keys(e.write_back).length ? section("Write-back", h("pre", {}, json(e.write_back))) : null,
      section("Payload", h("details", {}, h("summary", {}, "show the payload as received"),
        h("pre", {}, json(e.payload)))));
  }

  const changed = coalesce(refresh, COALESCE_MS);
  changed(id);
  return {
    refresh: () => changed(id),
    onActivity(kind, d) {
      if ((kind === "event" && d.subject === id) || (kind === "task" && taskIds.has(d.subject))) changed(id);
    },
    destroy: changed.cancel,
  };
}
