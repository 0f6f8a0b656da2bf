"""Every Redis key Taskyard uses, spelled once.

Python code formats these templates; the Lua scripts get the same templates as generated ``k_<name>(...)``
functions (see :func:`lua_preamble`), so no key is spelled twice. All keys start with ``ty:``; Dramatiq's keys
live under the ``ty:dq`` namespace (``ty:dq:ty.w.<worker>`` is the message list, ``.msgs`` the message hash).
"""

from __future__ import annotations

import re

__all__ = ["DRAMATIQ_NAMESPACE", "ENGINE_QUEUE", "TEMPLATES", "key", "lua_preamble", "queue_name"]

PREFIX = "ty:"
DRAMATIQ_NAMESPACE = "ty:dq"
ENGINE_QUEUE = "ty.engine"
QUEUE_PREFIX = "ty.w."
ACTOR_PREFIX = "run_task."

TEMPLATES: dict[str, str] = {
    # task records and indexes
    "task": "ty:task:{id}",  # hash: the task record
    "task_seq": "ty:seq:task",  # counter: gives every task a strictly growing list position
    "msg_seq": "ty:seq:msg",  # counter: makes Dramatiq message ids unique per (re)delivery
    "idem": "ty:idem:{project}:{key}",  # string: idempotency key -> task id
    "idx_all": "ty:p:{project}:tasks",  # zset: task id by seq
    "idx_state": "ty:p:{project}:tasks:s:{state}",  # zset: task id by seq, one per state
    "idx_worker": "ty:p:{project}:tasks:w:{worker}",  # zset: task id by seq, one per worker
    "idx_worker_state": "ty:p:{project}:tasks:ws:{worker}:{state}",  # zset: by worker and state
    "delayed": "ty:delayed",  # zset: task id -> due time (ms) of its next retry
    # workers and worker processes
    "workers": "ty:workers",  # set: names of defined workers
    "workers_removed": "ty:workers:removed",  # set: removed workers whose processes or tasks remain
    "worker_def": "ty:w:{worker}:def",  # string: the definition as JSON
    "worker_active": "ty:w:{worker}:active",  # zset: pending + dispatched task ids by created_at (ms); depth
    "worker_running": "ty:w:{worker}:running",  # set: dispatched task ids
    "worker_procs": "ty:w:{worker}:procs",  # zset: process id -> last heartbeat (ms)
    "worker_seen": "ty:w:{worker}:seen",  # string: last heartbeat of any of its processes (ms), kept for health
    "worker_wake": "ty:w:{worker}:wake",  # list: wake-up tokens idle consumers block on
    "worker_error": "ty:w:{worker}:error",  # string (expires): why its backend is failing health checks
    "proc": "ty:proc:{proc}",  # hash (expires): one worker process, alive while it heartbeats
    "proc_tasks": "ty:proc:{proc}:tasks",  # set: task ids the process is running
    "proc_cancel": "ty:proc:{proc}:cancel",  # list: task ids the process must cancel
    "rr": "ty:rr:{group}",  # string: round-robin cursor of one candidate group (position after the last chosen)
    "lock": "ty:lock:{name}",  # string: short leader lock for periodic jobs
    # retention (issue 8)
    "projects": "ty:projects",  # set: every project that stored a task, event, trace or usage record
    "retention_mark": "ty:p:{project}:retention",  # hash: "traces" -> seq up to which the trace walk has settled
    # webhook events
    "event": "ty:event:{id}",  # hash: the event record (raw payload, attributes, matches, state)
    "event_history": "ty:event:{id}:history",  # list: JSON {state, at, detail}, oldest first
    "event_deferred": "ty:event:{id}:deferred",  # hash: rule -> outcome of a queued dispatch, not yet merged
    "event_wb": "ty:event:{id}:wb",  # hash: "<task id>:<step key>" -> JSON result of a write-back step done
    "event_seq": "ty:seq:event",  # counter: gives every event a strictly growing list position
    "delivery": "ty:delivery:{project}:{source}:{delivery}",  # string (expires): delivery id -> event id
    "ev_open": "ty:events:open",  # zset: received or dispatched events by when last looked at (ms): the sweep
    "ev_all": "ty:p:{project}:events",  # zset: event id by seq
    "ev_state": "ty:p:{project}:events:s:{state}",  # zset: event id by seq, one per state
    "ev_source": "ty:p:{project}:events:src:{source}",  # zset: event id by seq, one per source
    "ev_source_state": "ty:p:{project}:events:ss:{source}:{state}",  # zset: by source and state
    "conc": "ty:conc:{project}:{rule}:{value}",  # string: task id holding a rule's concurrency key
    "audit": "ty:audit",  # stream: the audit trail (event received, rule matched, task sent, write-back...)
    "conc_wait": "ty:conc:{project}:{rule}:{value}:wait",  # list: JSON deferred dispatches (on_conflict queue)
    # traces (issue 4): one per task run (trace id = task id) or per external agent run
    "trace": "ty:trace:{id}",  # hash: the trace record (project, name, agent, status, counts, tokens, cost)
    "trace_events": "ty:trace:{id}:events",  # stream: the events, entry id "<seq>-0"
    "trace_keys": "ty:trace:{id}:keys",  # hash: idempotency key -> seq of the event stored under it
    "trace_scan": "ty:trace:{id}:scan",  # string (expires): a live-scan chain of the running trace is alive
    "trace_scan_dirty": "ty:trace:{id}:scan:dirty",  # string (expires): events arrived since the last live scan
    "trace_analysis": "ty:trace:{id}:analysis",  # string: the last analysis (JSON detections)
    "recent_costs": "ty:p:{project}:costs:{worker}",  # list: costs (USD) of a worker's last completed runs
    "trace_seq": "ty:seq:trace",  # counter: gives every trace a strictly growing list position
    "tr_all": "ty:p:{project}:traces",  # zset: trace id by seq
    "tr_status": "ty:p:{project}:traces:s:{status}",  # zset: trace id by seq, one per status
    "tr_agent": "ty:p:{project}:traces:a:{agent}",  # zset: trace id by seq, one per agent
    "tr_agent_status": "ty:p:{project}:traces:as:{agent}:{status}",  # zset: by agent and status
    # usage and cost (LLM calls in traces, MeshAI usage records)
    "usage": "ty:p:{project}:usage",  # stream: one entry per usage record (agent, model, worker, tokens, cost)
    # external agents' heartbeats (MeshAI)
    "agents": "ty:p:{project}:agents",  # zset: agent id -> last heartbeat (ms)
    # artifacts attached to traces
    "artifact": "ty:artifact:{id}",  # hash: artifact metadata (trace, project, content type, size, sha256)
    "trace_artifacts": "ty:trace:{id}:artifacts",  # zset: artifact id by seq, one per trace
    "artifact_seq": "ty:seq:artifact",  # counter: gives every artifact a strictly growing list position
    "secret": "ty:secret:{name}",  # string: a server-wide secret made once (e.g. the artifact URL signing key)
    # incidents (issue 5): detections clustered by (project, failure class, signature)
    "incident": "ty:incident:{id}",  # hash: the incident record (class, signature, status, counts, evidence)
    "incident_traces": "ty:incident:{id}:traces",  # zset: affected trace id -> when first counted (ms)
    "incident_costs": "ty:incident:{id}:costs",  # hash: affected trace id -> its cost (USD) as last recorded
    "incident_tasks": "ty:incident:{id}:tasks",  # zset: affected task id -> when first counted (ms)
    "incident_workers": "ty:incident:{id}:workers",  # zset: worker or agent -> its last occurrence (ms)
    "incident_history": "ty:incident:{id}:history",  # list: JSON {at, by, field, from, to, trace_id?}, oldest first
    "incident_sig": "ty:p:{project}:incsig:{digest}",  # string: sha1(class, signature) -> incident id
    "incident_seq": "ty:seq:incident",  # counter: last activity position (bumped by every occurrence)
    "inc_all": "ty:p:{project}:incidents",  # zset: incident id by last activity seq
    "inc_status": "ty:p:{project}:incidents:s:{status}",  # zset: by last activity seq, one per status
    "inc_class": "ty:p:{project}:incidents:c:{cls}",  # zset: by last activity seq, one per failure class
    "inc_worker": "ty:p:{project}:incidents:w:{worker}",  # zset: by last activity seq, one per worker or agent
    # fix runs and regression runs (issue 6)
    "fix_run": "ty:fixrun:{id}",  # hash: a fix run (incident, runner, repo, status, plan, diff, commit, fallback)
    "regression_run": "ty:regrun:{id}",  # hash: a regression run (incident, refs, status, cases JSON, verdict)
    "incident_fix_runs": "ty:incident:{id}:fixruns",  # zset: fix run id by its number n for the incident
    "incident_regression_runs": "ty:incident:{id}:regruns",  # zset: regression run id by its number n
    "incident_active_run": "ty:incident:{id}:active:{kind}",  # string: the run of a kind (fix|regression) in progress
    # outbound alert webhooks (issue 5)
    "webhook": "ty:webhook:{id}",  # hash: a subscription (project, url, events, classes, secret, created_at)
    "webhook_log": "ty:webhook:{id}:log",  # list: JSON delivery attempts, newest first (capped)
    "webhooks": "ty:p:{project}:webhooks",  # zset: subscription id by created_at (ms)
    "hooks_event": "ty:p:{project}:hooks:e:{event}",  # set: subscription ids taking one event type
    "hooks_task": "ty:p:{project}:hooks:task",  # set: subscription ids taking task.* events (finalize's EXISTS)
    "hook_delivery": "ty:hookd:{id}",  # hash (expires): one delivery (webhook, event, data, status, attempts)
    # the dashboard's live feed (issue 7)
    "activity": "ty:p:{project}:activity",  # stream (capped): one entry per task, event, incident or run change
    "task_minutes": "ty:p:{project}:tpm:{hour}",  # hash (expires): "<minute>:<created|completed|failed>" -> count
    # rate limits
    "ratelimit": "ty:rl:{bucket}",  # hash: token bucket (tokens, last refill ms)
    # metrics shared by every process
    "metrics": "ty:metrics",  # hash: counters
    "latency": "ty:metrics:dispatch_latency",  # hash: histogram buckets (le -> count), sum_ms, count
    # Dramatiq's Redis layout (dramatiq 2.2.1 dispatch.lua)
    "dq_queue": "ty:dq:ty.w.{worker}",  # list: message ids
    "dq_msgs": "ty:dq:ty.w.{worker}.msgs",  # hash: message id -> encoded message
    "dq_acks": "ty:dq:__acks__.{broker}.ty.w.{worker}",  # set: ids a consumer fetched and has not acked
    "dq_heartbeats": "ty:dq:__heartbeats__",  # zset: Dramatiq consumer id -> last call (ms)
    "dq_engine": "ty:dq:ty.engine",  # list: message ids of engine jobs
    "dq_engine_msgs": "ty:dq:ty.engine.msgs",  # hash: message id -> encoded engine job message
}

_FIELD = re.compile(r"\{(\w+)\}")


def key(template: str, /, **parts: str) -> str:
    """The key ``name`` with its parts filled in: ``key("task", id=tid)``."""
    return TEMPLATES[template].format(**parts)


def queue_name(worker: str) -> str:
    """The Dramatiq queue of a worker: ``ty.w.<worker>``."""
    return f"{QUEUE_PREFIX}{worker}"


def actor_name(worker: str) -> str:
    """The Dramatiq actor that runs a worker's tasks: ``run_task.<worker>``."""
    return f"{ACTOR_PREFIX}{worker}"


def lua_preamble(used: str | None = None) -> str:
    """Lua functions ``k_<name>(a, b)`` for every template (or only those ``used`` calls), arguments in
    template order. Redis runs a script's whole chunk on every call, so unused functions cost time."""
    lines = []
    for name, template in TEMPLATES.items():
        if used is not None and f"k_{name}(" not in used:
            continue
        fields = _FIELD.findall(template)
        pieces = [p for p in _FIELD.split(template)]
        expr = []
        for i, piece in enumerate(pieces):
            if i % 2 == 0:
                if piece:
                    expr.append(_lua_str(piece))
            else:
                expr.append(f"tostring({piece})")
        body = " .. ".join(expr)
        lines.append(f"local function k_{name}({', '.join(fields)}) return {body} end")
    lines.append(f"local QUEUE_PREFIX = {_lua_str(QUEUE_PREFIX)}")
    lines.append(f"local ACTOR_PREFIX = {_lua_str(ACTOR_PREFIX)}")
    lines.append(f"local ENGINE_QUEUE = {_lua_str(ENGINE_QUEUE)}")
    return "\n".join(lines) + "\n"


def _lua_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
