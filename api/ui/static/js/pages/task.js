// Task detail: prompt, result, error, context, and its trace as a timeline (trace id = task id). The task's
// changes in the feed refetch it (at most once per 300 ms); its trace streams live while it runs.

import {get, request} from "../api.js";
import {badge, between, coalesce, facts, fmtMs, h, json, notice, replace, section, shortId, time} from "../dom.js";
import {NO_TRACE, TraceView} from "../trace.js";

const COALESCE_MS = 300;  // at most one refetch of the task per 300 ms
const FINAL = new Set(["completed", "failed", "cancelled"]);

function text(title, value, cls) {
  return section(title, h("pre", {class: ["text", cls]}, value));
}

export function mount(root, {id}) {
  const head = h("div", {class: "page-head"}, h("h1", {}, "Task ", h("span", {class: "mono"}, shortId(id))));
  const body = h("div", {}, notice("Loading…"));
  const trace = new TraceView(id);
  const message = h("p", {class: "error", role: "alert", hidden: true});
  replace(root, h("p", {class: "crumbs"}, h("a", {href: "#/tasks"}, "← Tasks")), head, message, body, trace.el);
  let task = null;

  async function cancel(button) {
    button.disabled = true;
    try {
      render((await request("POST", `/task/${encodeURIComponent(id)}/cancel`)).data);
    } catch (err) {
      message.textContent = `Could not cancel: ${err.message}`;
      message.hidden = false;
      button.disabled = false;
    }
  }

  function render(t) {
    task = t;
    const cancelButton = FINAL.has(t.state) ? null
      : h("button", {type: "button", class: "danger", id: "cancel"}, "Cancel");
    if (cancelButton) cancelButton.addEventListener("click", () => cancel(cancelButton));
    replace(head, h("h1", {}, "Task ", h("span", {class: "mono"}, shortId(t.id))), badge(t.state, "big"),
      cancelButton);
    replace(body,
      section("Details", facts([
        ["id", h("span", {class: "mono"}, t.id)],
        ["worker", t.worker_name ? h("a", {href: `#/tasks?worker=${encodeURIComponent(t.worker_name)}`},
          t.worker_name) : "—"],
        ["pool", t.pool],
        ["attempts", `${t.attempts} of ${t.max_retries}`],
        ["created", time(t.created_at)],
        ["started", t.dispatched_at ? time(t.dispatched_at) : null],
        ["finished", t.completed_at ? time(t.completed_at) : null],
        ["took", t.completed_at ? fmtMs(between(t.dispatched_at || t.created_at, t.completed_at)) : null],
        ["timeout", t.timeout ? fmtMs(t.timeout * 1000) : null],
        ["exit code", t.exit_code],
        ["dispatch", t.dispatch ? `${t.dispatch.policy}: ${t.dispatch.chosen ?? "—"}` : null],
        ["regression run", t.regression_run ? h("span", {class: "mono"}, shortId(t.regression_run)) : null],
      ])),
      text("Prompt", t.prompt),
      t.result !== null && t.result !== undefined ? text("Result", t.result, "result") : null,
      t.error ? text("Error", t.error, "error") : null,
      t.context !== null && t.context !== undefined ? text("Context", json(t.context)) : null);
  }

  async function refresh() {
    try {
      render(await get(`/task/${encodeURIComponent(id)}`));
      message.hidden = true;
    } catch (err) {
      message.textContent = err.status === 404 ? "Task not found." : `Could not load the task: ${err.message}`;
      message.hidden = false;
      return;
    }
    if (!trace.loaded) {
      if (task.state === "pending") trace.note.textContent = NO_TRACE;
      else await trace.load();
    } else if (task.state === "dispatched") {
      trace.follow();  // a retry reopens the trace
    } else if (FINAL.has(task.state) && !trace.source) {
      trace.refreshTotals();
    }
  }

  const changed = coalesce(refresh, COALESCE_MS);
  changed(id);
  return {
    refresh: () => changed(id),
    onActivity(kind, d) {
      if (kind === "task" && d.subject === id) changed(id);
    },
    destroy() {
      changed.cancel();
      trace.stop();
    },
  };
}
