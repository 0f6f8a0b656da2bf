// Fix runs (plan, diff, commit or fallback) and regression runs (verdict, and per case the before/after
// comparison from GET /api/regression-runs/{id}/compare).

import {badge, diffView, facts, fmtMs, fmtNum, fmtUsd, h, link, notice, shortId, time} from "./dom.js";
import {markdown} from "./markdown.js";

export function fixRunView(run) {
  return h("article", {class: "run", "data-id": run.id},
    h("header", {}, h("h3", {}, `Fix run #${run.n}`), badge(run.status), run.fallback ? badge("fallback") : null),
    facts([
      ["runner", run.runner], ["repo", run.repo], ["base", run.base_ref],
      ["branch", run.branch ? h("code", {}, run.branch) : null],
      ["commit", run.commit ? h("code", {}, run.commit.slice(0, 12)) : null],
      ["files", run.files && run.files.length ? run.files.join(", ") : null],
      ["task", run.task_id ? link("task", run.task_id) : null],
      ["started", run.started_at ? time(run.started_at) : time(run.created_at)],
      ["finished", run.finished_at ? time(run.finished_at) : null],
    ]),
    run.fallback_reason ? h("p", {class: "warn"}, run.fallback_reason) : null,
    run.error ? h("pre", {class: "text error"}, run.error) : null,
    run.plan ? h("details", {open: !run.diff}, h("summary", {}, "Plan"), markdown(run.plan)) : null,
    run.diff ? h("details", {open: true}, h("summary", {}, "Diff"), diffView(run.diff)) : null);
}

function detections(side) {
  const list = side && Array.isArray(side.detections) ? side.detections : [];
  return list.length ? list.map((d) => `${d.failure_class}: ${d.signature}`).join("; ") : "none";
}

function sideTask(side) {
  return side && side.task_id ? link("task", side.task_id) : "—";
}

function delta(value, fmt) {
  if (value === null || value === undefined || value === 0) return "";
  return ` (${value > 0 ? "+" : "−"}${fmt(Math.abs(value))})`;
}

function caseView(c) {
  const b = c.before || {};
  const a = c.after || {};
  const ch = c.changes || {};
  const line = (label, before, after, change = "") => h("tr", {},
    h("th", {scope: "row"}, label), h("td", {"data-label": "before"}, before), h("td", {"data-label": "after"}, after,
      change ? h("span", {class: "muted"}, change) : null));
  return h("div", {class: "case"},
    h("h4", {}, "Case ", link("task", c.task_id), ` on ${c.worker ?? "—"} `, badge(c.result)),
    h("table", {class: "compare"},
      h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", {}, "before"), h("th", {}, "after"))),
      h("tbody", {},
        line("task", sideTask(b), sideTask(a)),
        line("state", badge(b.state), badge(a.state)),
        line("judged", b.failed ? "fails" : b.failed === false ? "passes" : "—",
          a.failed ? "fails" : a.failed === false ? "passes" : "—"),
        line("detections", detections(b), detections(a)),
        line("duration", fmtMs(b.duration_ms), fmtMs(a.duration_ms), delta(ch.duration_ms, fmtMs)),
        line("tokens", fmtNum(b.tokens), fmtNum(a.tokens), delta(ch.tokens, fmtNum)),
        line("cost", fmtUsd(b.cost_usd), fmtUsd(a.cost_usd), delta(ch.cost_usd, fmtUsd)),
        line("events", fmtNum(b.events), fmtNum(a.events)),
        b.error || a.error ? line("error", b.error ?? "", a.error ?? "") : null)),
    ch.detections_gone && ch.detections_gone.length
      ? h("p", {class: "good"}, `Gone: ${ch.detections_gone.map((d) => `${d.failure_class} ${d.signature}`).join(", ")}`)
      : null,
    ch.detections_new && ch.detections_new.length
      ? h("p", {class: "error"}, `New: ${ch.detections_new.map((d) => `${d.failure_class} ${d.signature}`).join(", ")}`)
      : null,
    c.output_diff ? h("details", {}, h("summary", {}, "Output diff"), diffView(c.output_diff))
      : h("p", {class: "muted small"}, ch.output_changed ? "Outputs differ." : "Same output before and after."));
}

export function regressionRunView(run, compare) {
  const s = run.summary || {};
  return h("article", {class: "run", "data-id": run.id},
    h("header", {}, h("h3", {}, `Regression run #${run.n}`), badge(run.status),
      run.verdict ? badge(run.verdict, "big") : null),
    facts([
      ["fix run", run.fix_run_id ? h("span", {class: "mono"}, shortId(run.fix_run_id)) : null],
      ["before", run.before_commit ? h("code", {}, run.before_commit.slice(0, 12)) : run.before_ref],
      ["after", run.after_commit ? h("code", {}, run.after_commit.slice(0, 12)) : run.after_ref],
      ["cases", Array.isArray(run.cases) ? String(run.cases.length) : null],
      ["summary", s.verdict ? `before ${s.before_fail} fail / ${s.before_pass} pass → after ${s.after_fail} fail / `
        + `${s.after_pass} pass` : null],
      ["started", run.started_at ? time(run.started_at) : time(run.created_at)],
      ["finished", run.finished_at ? time(run.finished_at) : null],
    ]),
    run.error ? h("pre", {class: "text error"}, run.error) : null,
    compare && compare.cases && compare.cases.length ? h("div", {class: "cases"}, compare.cases.map(caseView))
      : run.status === "completed" ? notice("No cases.") : notice("Running: the comparison appears when it ends."));
}
