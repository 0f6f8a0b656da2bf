"""Detector benchmark: analysis time per 1,000-event trace (target <= 20 ms), median and p99 over many runs.

    .venv/bin/python scripts/bench_detectors.py [--runs 300] [--events 1000] [--result-bytes 1500]
                                                [--text repo|salad] [--json]

The trace is a realistic agent run, built once (seeded, so every run of the script measures the same trace) and
round-tripped through JSON like events read from the store: ``task_started``; then turns of ``llm_call`` (model,
token usage, a short conversation tail with the user's request), ``tool_call`` (read_file / grep / run_tests /
web_fetch / write_file with small argument objects) and ``tool_result`` (ok, with about ``--result-bytes`` of
text cut from this repository's code, or its docs for web_fetch; one in 25 failed); now and then a
``checkpoint``, a ``validator_check`` or a handled ``error``; ``session_end`` last. ``--text salad`` fills the
tool outputs with word salad dense in the words the injection detector keys on instead (a worst case).
Measured in this process, one core, after a warm-up: ``analyze`` (the whole catalogue) and
``analyze_incremental`` (loops and budgets).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.detectors import TraceFacts, analyze, analyze_incremental  # noqa: E402

WARMUP = 20  # runs discarded before measuring
START_MS = 1_763_870_400_000  # the trace's first timestamp (epoch ms)
_WORDS = ("def", "return", "self", "import", "class", "value", "config", "the", "system", "now", "mode", "user",
          "request", "error", "handler", "if", "else", "for", "in", "await", "async", "data", "result", "page",
          "follow", "instructions", "install", "press", "release", "update", "previous", "version", "ignore")
_TOOLS = ("read_file", "grep", "run_tests", "web_fetch", "write_file")


_ROOT = Path(__file__).resolve().parent.parent
_SOURCES: dict[str, str] = {}


def _source(kind: str) -> str:
    """Real text to cut tool outputs from: this repository's Python sources (code) or its docs (prose)."""
    if kind not in _SOURCES:
        paths = sorted(_ROOT.glob("engine/*.py") if kind == "code" else _ROOT.glob("docs/*.md"))
        _SOURCES[kind] = "\n".join(p.read_text(encoding="utf-8") for p in paths)
    return _SOURCES[kind]


def _text(rng: random.Random, size: int, *, kind: str = "code") -> str:
    if kind == "salad":  # adversarial: a third of the words are ones the injection detector keys on
        lines, length = [], 0
        while length < size:
            line = "    " * rng.randint(0, 3) + " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12)))
            lines.append(line)
            length += len(line) + 1
        return "\n".join(lines)[:size]
    text = _source(kind)
    start = rng.randrange(0, max(1, len(text) - size))
    return text[start:start + size]


def build_trace(events: int, *, result_bytes: int, text: str = "repo", seed: int = 1) -> list[dict[str, Any]]:
    """A realistic run of ``events`` events; ``text``: ``repo`` (tool outputs cut from this repository's code and
    docs) or ``salad`` (adversarial word salad dense in the words the injection detector keys on)."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    now = START_MS

    def add(kind: str, payload: dict[str, Any]) -> None:
        nonlocal now
        now += rng.randint(50, 3000)
        out.append({"seq": len(out) + 1, "type": kind, "timestamp": now, "payload": payload})

    add("task_started", {"worker": "coder", "attempt": 1, "proc": "p1", "pid": 4242})
    turn = 0
    while len(out) < events - 1:
        turn += 1
        add("llm_call", {"model": "claude-sonnet-4", "usage": {"input_tokens": rng.randint(2000, 9000),
                                                                "output_tokens": rng.randint(50, 600)},
                         "latency_ms": rng.randint(300, 4000),
                         "messages": [{"role": "system", "content": "You are a careful coding agent."},
                                      {"role": "user", "content": "Fix the failing test in the auth module."},
                                      {"role": "assistant", "content": _text(rng, 200, kind="prose")}]})
        tool = rng.choice(_TOOLS)
        args = {"path": f"src/pkg_{rng.randint(0, 40)}/mod_{rng.randint(0, 200)}.py"} if tool != "web_fetch" else \
            {"url": f"https://docs.example.com/page/{rng.randint(0, 10_000)}"}
        add("tool_call", {"tool": tool, "args": args, "id": f"call_{turn}"})
        if rng.random() < 0.04:
            add("tool_result", {"tool": tool, "call_id": f"call_{turn}", "ok": False,
                                "error": rng.choice(["file not found: x.py", "request timed out after 10s"])})
        else:
            kind = "salad" if text == "salad" else "prose" if tool == "web_fetch" else "code"
            add("tool_result", {"tool": tool, "call_id": f"call_{turn}", "ok": True,
                                "output": _text(rng, rng.randint(result_bytes // 2, result_bytes * 3 // 2),
                                                kind=kind)})
        roll = rng.random()
        if roll < 0.05:
            add("checkpoint", {"name": f"step-{turn}", "files_changed": rng.randint(0, 4)})
        elif roll < 0.08:
            add("validator_check", {"name": "pytest", "passed": rng.random() < 0.7, "failed": rng.randint(0, 3)})
        elif roll < 0.09:
            add("error", {"type": "ConnectionError", "message": "reset by peer", "handled": True})
    add("session_end", {"status": "completed", "duration_ms": now - START_MS, "exit_code": 0})
    return json.loads(json.dumps(out[:events]))


def _measure(fn: Any, events: list[dict[str, Any]], facts: TraceFacts, runs: int) -> dict[str, float]:
    for _ in range(WARMUP):
        fn(events, facts)
    times = []
    for _ in range(runs):
        started = time.perf_counter_ns()
        fn(events, facts)
        times.append((time.perf_counter_ns() - started) / 1e6)
    times.sort()
    return {"min_ms": round(times[0], 3), "median_ms": round(statistics.median(times), 3),
            "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 3),
            "max_ms": round(times[-1], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--result-bytes", type=int, default=1500, help="typical bytes of a tool result's output")
    parser.add_argument("--text", choices=("repo", "salad"), default="repo",
                        help="tool outputs: cut from this repository's code and docs, or adversarial word salad")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    events = build_trace(options.events, result_bytes=options.result_bytes, text=options.text)
    facts = TraceFacts(trace_id="bench", status="completed", source="task", worker="coder", worker_kind="handler",
                       task_state="completed", task_result="fixed", cost_usd=1.2, recent_costs=(1.0,) * 20)
    report = {"events": len(events), "trace_bytes": len(json.dumps(events)), "runs": options.runs, "text": options.text,
              "detections": [d.to_public() for d in analyze(events, facts)],
              "analyze": _measure(analyze, events, facts, options.runs),
              "analyze_incremental": _measure(analyze_incremental, events, facts, options.runs)}
    if options.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['events']} events, {report['trace_bytes'] / 1024:.0f} KiB ({options.text} text), "
          f"{options.runs} runs "
          f"({len(report['detections'])} detections: "
          f"{', '.join(sorted({d['failure_class'] for d in report['detections']})) or 'none'})")
    for name in ("analyze", "analyze_incremental"):
        figures = report[name]
        print(f"  {name:<20} min {figures['min_ms']:.2f} ms   median {figures['median_ms']:.2f} ms   "
              f"p99 {figures['p99_ms']:.2f} ms   max {figures['max_ms']:.2f} ms")


if __name__ == "__main__":
    main()
