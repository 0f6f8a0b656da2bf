// Incident detail: summary, evidence (the representative trace with the evidence events marked), playbook,
// history; Acknowledge / Resolve, Run fix agent, Replay (with the newest fix run that made a commit); the fix
// runs and regression runs with their before/after comparison. Live on the incident's and its runs' changes.

import {get, request} from "../api.js";
import {badge, coalesce, facts, fmtUsd, h, link, notice, replace, section, shortId, time} from "../dom.js";
import {markdown} from "../markdown.js";
import {fixRunView, regressionRunView} from "../runs.js";
import {TraceView} from "../trace.js";

const COALESCE_MS = 300;  // at most one refetch of the incident, and of its runs, per 300 ms

function historyView(history) {
  if (!history || !history.length) return notice("No history.");
  return h("ol", {class: "history"}, history.slice().reverse().map((c) => h("li", {},
    time(c.at), " ", h("strong", {}, c.field), ": ", c.from ?? "—", " → ", c.to ?? "—",
    h("span", {class: "muted"}, ` by ${c.by}`), c.trace_id ? [" (", link("task", c.trace_id, "trace"), ")"] : null)));
}

export function mount(root, {id}) {
  const message = h("p", {class: "flash-message", role: "status", hidden: true});
  const head = h("div", {class: "page-head"}, h("h1", {}, "Incident"));
  const button = (text, cls) => h("button", {type: "button", class: cls, disabled: true}, text);
  const buttons = {
    ack: button("Acknowledge", "secondary"), resolve: button("Resolve", "secondary"),
    fix: button("Run fix agent", "primary"), replay: button("Replay", "primary"),
  };
  const body = h("div", {}, notice("Loading…"));
  const runs = h("div", {});
  replace(root, h("p", {class: "crumbs"}, h("a", {href: "#/incidents"}, "← Incidents")), head,
    h("div", {class: "actions", id: "actions"}, Object.values(buttons)), message, body, runs);
  let incident = null;
  let trace = null;
  let replayFrom = null;  // the newest fix run with a commit

  function say(text, kind = "ok") {
    message.textContent = text;
    message.className = `flash-message ${kind}`;
    message.hidden = false;
  }

  async function act(btn, method, path, payload, done) {
    btn.disabled = true;
    try {
      done((await request(method, path, payload)).data);
    } catch (err) {
      say(`${btn.textContent}: ${err.message}`, "error");
    } finally {
      updateButtons();
    }
  }

  const base = `/api/incidents/${encodeURIComponent(id)}`;
  buttons.ack.addEventListener("click", () => act(buttons.ack, "PATCH", base, {status: "acknowledged"}, (i) => {
    render(i);
    say("Acknowledged.");
  }));
  buttons.resolve.addEventListener("click", () => act(buttons.resolve, "PATCH", base, {status: "resolved"}, (i) => {
    render(i);
    say("Resolved.");
  }));
  buttons.fix.addEventListener("click", () => act(buttons.fix, "POST", `${base}/fix-agent`, {}, (run) => {
    say(`Fix run #${run.n} ${run.status}.`);
    runsChanged("runs");
  }));
  buttons.replay.addEventListener("click", () => act(buttons.replay, "POST", `${base}/regression-runs`,
    {fix_run_id: replayFrom.id}, (run) => {
      say(`Regression run #${run.n} ${run.status}.`);
      runsChanged("runs");
    }));

  function updateButtons() {
    const status = incident ? incident.status : null;
    buttons.ack.disabled = !incident || status === "acknowledged" || status === "resolved";
    buttons.resolve.disabled = !incident || status === "resolved";
    buttons.fix.disabled = !incident;
    buttons.replay.disabled = !replayFrom;
    buttons.replay.title = replayFrom ? `Replay the incident's tasks before and after fix run #${replayFrom.n}`
      : "Needs a fix run that made a commit";
  }

  function render(i) {
    incident = i;
    replace(head, h("h1", {}, "Incident ", h("span", {class: "mono"}, shortId(i.id))), badge(i.failure_class, "class"),
      h("span", {id: "incident-status"}, badge(i.status, "big")));
    const ev = i.evidence || {};
    const rep = i.representative || {};
    replace(body,
      section("Summary", h("p", {class: "lead"}, i.summary), facts([
        ["signature", h("code", {}, i.signature)],
        ["occurrences", `${i.count} in ${i.trace_count} trace(s), ${i.task_count} task(s)`],
        ["regressions", i.regressions || null],
        ["first seen", time(i.first_seen)], ["last seen", time(i.last_seen)],
        ["resolved", i.resolved_at ? time(i.resolved_at) : null],
        ["owner", i.owner], ["workers", (i.workers || []).join(", ") || null],
        ["wasted", fmtUsd(i.cost_wasted_usd)],
        ["tasks", i.tasks && i.tasks.length ? h("span", {}, i.tasks.map((t, n) => [n ? ", " : "", link("task", t)]))
          : null],
        ["fixed by", i.fix ? `fix run ${shortId(i.fix.fix_run_id)}, regression run ${shortId(i.fix.regression_run_id)}`
          : null],
      ])),
      section("Evidence", facts([
        ["events", ev.seqs && ev.seqs.length ? ev.seqs.map((s) => `#${s}`).join(", ") : null],
        ["critical step", ev.critical_step_seq !== undefined && ev.critical_step_seq !== null
          ? `#${ev.critical_step_seq}` : null],
        ["confidence", typeof ev.confidence === "number" ? `${Math.round(ev.confidence * 100)} %` : null],
        ["trace", rep.task_id ? link("task", rep.task_id) : rep.trace_id ? h("code", {}, rep.trace_id) : null],
      ])),
      trace ? trace.el : null,
      section("Playbook", markdown(i.playbook || "No playbook for this class.")),
      section("History", historyView(i.history)));
    if (!trace && rep.trace_id) {
      trace = new TraceView(rep.trace_id, {highlight: ev.seqs || [], title: "Representative trace"});
      body.insertBefore(trace.el, body.children[2]);
      trace.load();
    }
    updateButtons();
  }

  async function refresh() {
    try {
      render(await get(base));
    } catch (err) {
      replace(body, notice(err.status === 404 ? "Incident not found." : `Could not load: ${err.message}`, "error"));
    }
  }

  async function refreshRuns() {
    try {
      const [fixes, regressions] = await Promise.all([get(`${base}/fix-runs`), get(`${base}/regression-runs`)]);
      replayFrom = fixes.find((r) => r.commit) || null;
      const compares = await Promise.all(regressions.map((r) => (r.status === "completed"
        ? get(`/api/regression-runs/${encodeURIComponent(r.id)}/compare`).catch(() => null) : null)));
      replace(runs,
        section("Regression runs", regressions.length ? regressions.map((r, n) => regressionRunView(r, compares[n]))
          : notice("None yet. Replay runs the incident's tasks before and after a fix and compares them.")),
        section("Fix runs", fixes.length ? fixes.map(fixRunView)
          : notice("None yet. The fix agent proposes a fix as a commit on a new branch.")));
    } catch (err) {
      replace(runs, notice(`Could not load the runs: ${err.message}`, "error"));
    }
    updateButtons();
  }

  const changed = coalesce(refresh, COALESCE_MS);
  const runsChanged = coalesce(refreshRuns, COALESCE_MS);
  changed(id);
  runsChanged("runs");
  return {
    refresh() {
      changed(id);
      runsChanged("runs");
    },
    onActivity(kind, d) {
      if (kind === "incident" && d.subject === id) changed(id);
      if ((kind === "fix_run" || kind === "regression_run") && d.incident_id === id) runsChanged("runs");
    },
    destroy() {
      changed.cancel();
      runsChanged.cancel();
      if (trace) trace.stop();
    },
  };
}
