// A trace as a timeline: one row per event with its offset, a one-line summary, tokens and cost, the payload
// on demand, and the trace's totals. While the trace runs, GET /api/stream?trace_id= appends events live.

import {ApiError, get, sseUrl} from "./api.js";
import {badge, fmtMs, fmtNum, fmtUsd, h, json, notice, replace, truncate} from "./dom.js";

const EVENTS_PAGE = 1000;  // the API's largest page of events
const MAX_EVENTS = 10_000;  // a timeline longer than this shows its first events only
export const NO_TRACE = "No trace yet: it starts when a worker takes the task.";

const first = (...values) => values.find((v) => typeof v === "number");

/** Tokens and cost an event reports (the same fields the server counts: top level or payload.usage). */
export function usageOf(payload) {
  const p = payload || {};
  const u = typeof p.usage === "object" && p.usage ? p.usage : {};
  return {
    tokensIn: first(p.tokens_in, p.input_tokens, p.prompt_tokens, u.tokens_in, u.input_tokens, u.prompt_tokens),
    tokensOut: first(p.tokens_out, p.output_tokens, p.completion_tokens, u.tokens_out, u.output_tokens,
      u.completion_tokens),
    cost: first(p.cost_usd, u.cost_usd),
  };
}

function describe(e) {
  const p = e.payload || {};
  const text = (v) => (typeof v === "string" ? v : JSON.stringify(v));
  switch (e.type) {
    case "llm_call": return [p.model, p.prompt && truncate(text(p.prompt), 80)].filter(Boolean).join(" · ");
    case "tool_call": return `${p.tool ?? p.name ?? "tool"}(${truncate(text(p.args ?? p.arguments ?? p.input ?? ""), 80)})`;
    case "tool_result": return truncate(text(p.output ?? p.result ?? p.content ?? ""), 100);
    case "error": return truncate(text(p.message ?? p.error ?? p), 120);
    case "session_end": return [p.status, p.duration_ms !== undefined && fmtMs(p.duration_ms), p.error]
      .filter(Boolean).join(" · ");
    case "task_started": return [p.worker, p.attempt && `attempt ${p.attempt}`].filter(Boolean).join(" · ");
    default: return truncate(text(p), 100);
  }
}

function item(e, t0, highlight) {
  const usage = usageOf(e.payload);
  const offset = t0 === null ? null : new Date(e.timestamp).getTime() - t0;
  return h("li", {class: ["event", highlight.has(e.seq) && "evidence"], "data-seq": e.seq},
    h("div", {class: "event-line"},
      h("span", {class: "seq mono"}, `#${e.seq}`),
      badge(e.type, "type"),
      h("span", {class: "offset muted", title: e.timestamp}, offset === null ? "" : `+${fmtMs(offset)}`),
      h("span", {class: "what"}, describe(e)),
      usage.tokensIn !== undefined || usage.tokensOut !== undefined
        ? h("span", {class: "chip"}, `${fmtNum(usage.tokensIn ?? 0)} in / ${fmtNum(usage.tokensOut ?? 0)} out`) : null,
      usage.cost !== undefined ? h("span", {class: "chip"}, fmtUsd(usage.cost)) : null),
    h("details", {}, h("summary", {}, "payload"), h("pre", {}, json(e.payload))));
}

export class TraceView {
  constructor(traceId, {highlight = [], title = "Trace"} = {}) {
    this.traceId = traceId;
    this.highlight = new Set(highlight);
    this.totals = h("div", {class: "totals"});
    this.list = h("ol", {class: "timeline", id: "timeline"});
    this.note = notice("Loading the trace…");
    this.el = h("section", {class: "card"}, h("h2", {}, title), this.totals, this.note, this.list);
    this.lastSeq = 0;
    this.t0 = null;
    this.loaded = false;
    this.source = null;
  }

  /** Loads the summary and every event; follows the stream while the trace runs. False: no trace yet. */
  async load() {
    let summary;
    try {
      summary = await get(`/api/traces/${encodeURIComponent(this.traceId)}`);
    } catch (err) {
      this.note.textContent = err instanceof ApiError && err.status === 404 ? NO_TRACE
        : `Could not load the trace: ${err.message}`;
      return false;
    }
    this.loaded = true;
    this.renderTotals(summary);
    while (this.lastSeq < MAX_EVENTS) {
      const page = await get(`/api/traces/${encodeURIComponent(this.traceId)}/events?after_seq=${this.lastSeq}`
        + `&limit=${EVENTS_PAGE}`);
      page.forEach((e) => this.append(e));
      if (page.length < EVENTS_PAGE) break;
    }
    this.note.textContent = this.list.children.length ? "" : "No events yet.";
    if (summary.status === "running") this.follow();
    return true;
  }

  append(e) {
    if (e.seq <= this.lastSeq) return;
    this.lastSeq = e.seq;
    if (this.t0 === null) this.t0 = new Date(e.timestamp).getTime();
    this.list.append(item(e, this.t0, this.highlight));
    this.note.textContent = "";
  }

  renderTotals(t) {
    replace(this.totals,
      badge(t.status),
      h("span", {}, `${fmtNum(t.event_count)} events`),
      h("span", {}, `${fmtNum(t.tokens_in)} in / ${fmtNum(t.tokens_out)} out tokens`),
      h("span", {}, `cost ${fmtUsd(t.cost_usd)}`),
      t.duration_ms !== null && t.duration_ms !== undefined ? h("span", {}, fmtMs(t.duration_ms)) : null);
  }

  async refreshTotals() {
    try {
      this.renderTotals(await get(`/api/traces/${encodeURIComponent(this.traceId)}`));
    } catch {
      // keep the totals shown
    }
  }

  follow() {
    if (this.source) return;
    const source = new EventSource(sseUrl("/api/stream", {trace_id: this.traceId, after_seq: this.lastSeq}));
    this.source = source;
    source.onmessage = (msg) => {
      let e;
      try {
        e = JSON.parse(msg.data);
      } catch {
        return;
      }
      this.append(e);
      if (e.type === "session_end") {
        this.stop();
        this.refreshTotals();
      }
    };
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) this.stop();
    };
  }

  stop() {
    if (this.source) this.source.close();
    this.source = null;
  }
}
