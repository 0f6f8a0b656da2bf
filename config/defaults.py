"""Defaults, each with its unit. The settings model and the engine take their defaults from here."""

from __future__ import annotations

HOST = "127.0.0.1"
PORT = 8080
DATA_DIR = ".taskyard"
CONFIG_FILE = "taskyard.yaml"
DEFAULT_PROJECT = "default"

MAX_QUEUE_DEPTH = 256  # tasks (pending + dispatched) per worker
MAX_RETRIES = 1  # attempts in all (1 = no retry); a task may ask for 1..10
TASK_TIMEOUT_S = 600.0  # seconds a task may run
HEARTBEAT_INTERVAL_S = 5.0  # seconds between worker-process heartbeats
OFFLINE_AFTER_HEARTBEATS = 3  # missed heartbeats before a process counts as gone
DRAIN_TIMEOUT_S = 30.0  # seconds a stopping worker waits for running tasks before requeueing them
TASK_EXPIRY_S = 86400.0  # seconds a task may stay pending before it fails with "expired"
MAX_LOST_DELIVERIES = 5  # times a task may lose its worker process before it fails with "worker lost"
POLL_TIMEOUT_S = 1.0  # seconds an idle consumer blocks on its wake-up list before polling again
RETRY_BACKOFF_BASE_S = 1.0  # seconds before the first retry; doubles each attempt
RETRY_BACKOFF_MAX_S = 300.0  # seconds, cap on the retry backoff
STDERR_TAIL_BYTES = 2048  # bytes of a failed command's stderr kept in the task error
MAX_RESULT_BYTES = 1_048_576  # bytes of output kept as a task's result
MAX_PROMPT_BYTES = 1_048_576  # bytes, largest prompt accepted
MAX_BODY_BYTES = 2_097_152  # bytes, largest POST /task body accepted

# Inbound webhook sources and GitHub write-back.
WEBHOOK_MAX_BODY_BYTES = 5_242_880  # bytes (5 MiB), largest webhook body a source accepts
GITHUB_API_URL = "https://api.github.com"  # REST API root; GitHub Enterprise uses https://<host>/api/v3
GITHUB_TIMEOUT_S = 10.0  # seconds per GitHub API request (connect, read and write each)
GITHUB_MAX_DIFF_BYTES = 512_000  # bytes (500 KB) of a pull request or compare diff kept; the rest is cut
GITHUB_PAGE_SIZE = 100  # items per page when listing files or comments (GitHub's maximum)
GITHUB_MAX_PAGES = 30  # pages followed per listing (3,000 items, GitHub's own cap on pull request files)
GITHUB_MAX_COMMENT_CHARS = 65_000  # characters of a write-back comment; GitHub refuses bodies over 65,536

# Webhook events
MAX_EVENT_ERROR_CHARS = 2000  # characters of an event error or state-history detail kept
AUDIT_PAGE = 100  # audit entries GET /logs answers when no limit is given
ENGINE_PROCESSES = 1  # engine processes per serve (each with its own interpreter lock; more use more cores)

# Trace artifacts
ARTIFACT_MAX_BYTES = 10_485_760  # bytes (10 MiB), largest artifact accepted
ARTIFACT_URL_TTL_S = 3600  # seconds (1 hour) a signed artifact URL stays valid
ARTIFACT_MULTIPART_OVERHEAD_BYTES = 65_536  # bytes (64 KiB) a multipart body may add (boundaries, part headers)
ARTIFACT_CONTENT_TYPES = (  # media types an artifact may have; application/octet-stream is left out on purpose
    "text/plain", "text/markdown", "text/csv", "text/x-diff", "application/json", "application/x-ndjson",
    "image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "application/zip", "application/gzip",
)

# Traces
TRACE_MAX_BATCH = 1000  # events per POST /api/traces/{id}/events at most
TRACE_MAX_EVENT_BYTES = 262_144  # bytes (256 KiB) of one stored event (its JSON)
TRACE_MAX_BODY_BYTES = 16_777_216  # bytes (16 MiB), largest event batch body accepted
TRACE_PAGE = 100  # events GET /api/traces/{id}/events answers when no limit is given
TRACE_MAX_PAGE = 1000  # events per page at most
SSE_HEARTBEAT_S = 15.0  # seconds between SSE comment heartbeats

# Usage and agent telemetry (MeshAI shapes)
AGENT_DEGRADED_AFTER_S = 120.0  # seconds without an agent heartbeat before it counts as degraded (MeshAI: 2 min)
AGENT_DOWN_AFTER_S = 300.0  # seconds without an agent heartbeat before it counts as down (MeshAI: 5 min)
USAGE_MAX_BATCH = 100  # usage records per POST /telemetry/usages at most

# Failure detectors (issue 5): thresholds per run, overridable per worker or project under `detectors:`
DETECTOR_MAX_STEPS = 200  # steps (llm_call + tool_call events) a run may take before step_budget fires
DETECTOR_MAX_DURATION_S = 1800.0  # seconds (30 min) a run may last before time_budget fires
DETECTOR_MAX_TOKENS = 1_000_000  # tokens (in + out) a run may use before token_budget fires
DETECTOR_LOOP_REPEATS = 3  # identical calls in a row (same tool + same args, or same LLM prompt) that make a loop
DETECTOR_LOOP_CYCLES = 2  # full cycles of a 2- or 3-call pattern (A-B-A-B) that make an oscillation loop
DETECTOR_COST_SPIKE_FACTOR = 5.0  # times the worker's recent median cost a completed run must exceed
DETECTOR_COST_SPIKE_MIN_RUNS = 5  # recent runs needed before cost_spike judges at all
DETECTOR_COST_SPIKE_MIN_USD = 0.10  # USD a run must cost at least for cost_spike to fire (noise floor)

# Retention (issue 8): how long finished records are kept; 0 (or null in the config) keeps them forever
RETENTION_TASKS_S = 604_800.0  # seconds (7 days) a final task (completed, failed, cancelled) is kept after completed_at
RETENTION_EVENTS_S = 604_800.0  # seconds (7 days) a webhook event in a final state is kept after its last change
RETENTION_TRACES_S = 604_800.0  # seconds (7 days) an ended trace of an external agent is kept after its last change
RETENTION_USAGE_S = 2_592_000.0  # seconds (30 days) a usage record is kept
RETENTION_MIN_S = 60.0  # seconds, shortest period accepted other than 0 (a bare `7` is 7 seconds, not 7 days)

# fix agent and regression replay (issue 6)
FIX_AGENT_CONFIG = "taskyard-agent.yaml"  # the agent's own settings file in its repo, edited by the builtin runner
FIX_GUARD_FILE = "taskyard-guard.yaml"  # the input-guard file the builtin runner writes for prompt_injection
REPLAY_TIMEOUT_S = 3600.0  # seconds a regression run waits for its replayed tasks before giving up
REPLAY_MAX_CASES = 10  # cases (affected tasks, newest first) a regression run replays when none are named
