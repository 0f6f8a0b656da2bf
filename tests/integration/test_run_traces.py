"""Every task run is a trace: a command's JSON-lines trace file, a handler's ``ctx.emit`` and an endpoint's
``metadata.events`` reach the task's trace in order, between ``task_started`` and ``session_end``."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from config.settings import WorkerSpec
from engine import tasks, traces
from engine.clock import now_ms
from engine.keys import lua_preamble
from engine.models import iso_ms
from engine.store import SyncRunner, _definitions
from tests.integration.conftest import Endpoint, ServiceHarness, define
from tests.integration.test_runtime import submit, wait_task

pytestmark = pytest.mark.integration

AGENT = """
import json, os, sys
path = os.environ["TASKYARD_TRACE_FILE"]
def emit(event):
    with open(path, "a") as f:
        f.write(json.dumps(event) + "\\n")
prompt = sys.stdin.read()
emit({"type": "llm_call", "payload": {"model": "gpt-4o", "input_tokens": 1000, "output_tokens": 10}})
with open(path, "a") as f:
    f.write("this is not json\\n")
emit({"type": "tool_call", "payload": {"tool": "grep", "args": {"q": prompt}}})
emit({"type": "tool_result", "payload": {"tool": "grep", "ok": True}})
print("done:" + prompt)
"""


def trace_of(runner: SyncRunner, task_id: str) -> tuple[traces.Trace, list[dict[str, Any]]]:
    deadline = time.monotonic() + 10
    while True:
        trace = runner.run(traces.get(task_id))
        if (trace is not None and trace.status != "running") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert trace is not None
    return trace, [e.to_public() for e in runner.run(traces.read_events(task_id, after_seq=0, limit=1000))]


def test_command_trace_file_events_arrive_in_order(start_runtime, service: ServiceHarness, runner: SyncRunner,
                                                   tmp_path: Path) -> None:
    (tmp_path / "agent.py").write_text(AGENT)
    start_runtime(WorkerSpec(name="agent", command=[sys.executable, str(tmp_path / "agent.py")]))
    task = wait_task(service, submit(service, prompt="needle").id)
    assert task.state == "completed" and task.result == "done:needle\n"
    trace, events = trace_of(runner, task.id)
    assert [e["type"] for e in events] == ["task_started", "llm_call", "tool_call", "tool_result", "session_end"]
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert events[2]["payload"] == {"tool": "grep", "args": {"q": "needle"}}
    end = events[-1]["payload"]
    assert end["status"] == "completed" and end["exit_code"] == 0 and end["invalid_trace_lines"] == 1
    assert end["duration_ms"] >= 0 and events[0]["payload"]["attempt"] == 1
    assert (trace.status, trace.task_id, trace.worker, trace.source) == ("completed", task.id, "agent", "task")
    assert (trace.tokens_in, trace.tokens_out) == (1000, 10) and trace.cost_usd > 0  # priced from the table
    assert not list(Path(tmp_path).glob("*.jsonl"))


def test_handler_emit_failures_and_retries(start_runtime, service: ServiceHarness, runner: SyncRunner,
                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "emitting.py").write_text(
        "import time\n"
        "def run(ctx):\n"
        "    ctx.emit({'type': 'checkpoint', 'payload': {'step': 1}})\n"
        "    time.sleep(0.8)\n"  # longer than a flush interval: the first events land while it runs
        "    ctx.emit({'type': 'validator_check', 'payload': {'passed': ctx.attempt > 1}})\n"
        "    if ctx.attempt == 1:\n"
        "        raise RuntimeError('flaky')\n"
        "    return 'ok'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    start_runtime(WorkerSpec(name="flaky", handler="emitting:run", max_retries=2))
    task = submit(service, prompt="p")
    deadline = time.monotonic() + 5
    seen: list[str] = []
    while time.monotonic() < deadline and "checkpoint" not in seen:
        seen = [e.body["type"] for e in runner.run(traces.read_events(task.id, after_seq=0, limit=100))]
        time.sleep(0.05)
    assert seen[:2] == ["task_started", "checkpoint"]  # live, before the run ended
    done = wait_task(service, task.id)
    assert done.state == "completed" and done.attempts == 2
    trace, events = trace_of(runner, task.id)
    kinds = [e["type"] for e in events]
    assert kinds == ["task_started", "checkpoint", "validator_check", "session_end"] * 2
    first_end, last_end = events[3]["payload"], events[7]["payload"]
    assert first_end["status"] == "failed" and first_end["will_retry"] is True
    assert first_end["error"] == "RuntimeError: flaky"
    assert last_end["status"] == "completed" and "will_retry" not in last_end
    assert trace.status == "completed" and trace.events == 8


def test_endpoint_metadata_events_and_http_status(start_runtime, service: ServiceHarness, runner: SyncRunner,
                                                  endpoint: str) -> None:
    start_runtime(WorkerSpec(name="remote", endpoint=endpoint))
    Endpoint.script = [(200, {"result": "fine", "metadata": {"events": [
        {"type": "llm_call", "payload": {"model": "unknown-model", "tokens_in": 5}},
        {"type": "BAD"},
        {"type": "tool_call", "payload": {"tool": "search"}}]}})]
    task = wait_task(service, submit(service, prompt="p").id)
    assert task.state == "completed"
    trace, events = trace_of(runner, task.id)
    assert [e["type"] for e in events] == ["task_started", "llm_call", "tool_call", "session_end"]
    assert events[-1]["payload"]["http_status"] == 200 and events[-1]["payload"]["rejected_events"] == 1
    assert trace.tokens_in == 5 and trace.cost_usd == 0


def test_bad_events_never_cost_a_run_its_trace(start_runtime, service: ServiceHarness, runner: SyncRunner,
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "odd.py").write_text(
        "import datetime, time\n"
        "def run(ctx):\n"
        "    ctx.emit({'type': 'checkpoint', 'payload': {'at': datetime.datetime.now()}})\n"  # not JSON
        "    ctx.emit({'type': 'step'})\n"
        "    time.sleep(0.6)\n"
        "    ctx.emit({'type': 'later'})\n"
        "    return 'ok'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    start_runtime(WorkerSpec(name="odd", handler="odd:run"))
    task = wait_task(service, submit(service, prompt="p").id)
    assert task.state == "completed"
    trace, events = trace_of(runner, task.id)
    assert [e["type"] for e in events] == ["task_started", "step", "later", "session_end"]
    assert events[-1]["payload"]["rejected_events"] == 1 and trace.status == "completed"
    # emitted times are kept: `step` was stamped when emitted, ~0.6 s before `later`
    stamps = {e["type"]: e["timestamp"] for e in events}
    assert stamps["step"] < stamps["later"]


def test_command_runs_survive_a_lost_trace_dir_and_keep_an_unterminated_last_line(
        start_runtime, service: ServiceHarness, runner: SyncRunner, tmp_path: Path) -> None:
    script = tmp_path / "tail.py"
    script.write_text("import os\nwith open(os.environ['TASKYARD_TRACE_FILE'], 'a') as f:\n"
                      "    f.write('{\"type\": \"first\"}\\n{\"type\": \"final_answer\"}')\nprint('ok')\n")
    runtime = start_runtime(WorkerSpec(name="tail", command=[sys.executable, str(script)]))
    shutil.rmtree(runtime._trace_dir)  # a /tmp cleaner ran while the worker was idle
    task = wait_task(service, submit(service, prompt="p").id)
    assert task.state == "completed"
    _, events = trace_of(runner, task.id)
    assert [e["type"] for e in events] == ["task_started", "first", "final_answer", "session_end"]


def test_a_run_with_thousands_of_events_is_stored_whole(start_runtime, service: ServiceHarness,
                                                         runner: SyncRunner, tmp_path: Path) -> None:
    script = tmp_path / "chatty.py"
    script.write_text("import os, json\nwith open(os.environ['TASKYARD_TRACE_FILE'], 'a') as f:\n"
                      "    for i in range(2500):\n"
                      "        f.write(json.dumps({'type': 'tool_call', 'payload': {'i': i}}) + '\\n')\n")
    start_runtime(WorkerSpec(name="chatty", command=[sys.executable, str(script)]))
    task = wait_task(service, submit(service, prompt="p").id)
    trace, _ = trace_of(runner, task.id)
    assert trace.status == "completed" and trace.events == 2502


def test_a_task_that_ends_without_its_worker_ends_its_trace(runner: SyncRunner, service: ServiceHarness,
                                                             spec_factory) -> None:
    define(runner, spec_factory("w"))
    task = submit(service, prompt="p")
    claim = runner.run(tasks.claim(task_id=task.id, proc_id="p" * 32, now_ms=now_ms(), max_lost=3))
    assert claim.task is not None
    runner.run(traces.create(trace_id=task.id, project="default", now_ms=now_ms(), name="w", agent="w",
                             worker="w", task_id=task.id, source="task"))
    # The worker vanished before writing session_end; its task is failed by the engine ("worker lost").
    runner.run(tasks.finish(task_id=task.id, proc_id="p" * 32, now_ms=now_ms(), outcome="failed",
                            text="worker lost"))
    trace, events = trace_of(runner, task.id)
    assert trace.status == "failed" and trace.ended_at_ms is not None
    assert events[-1]["type"] == "session_end" and events[-1]["seq"] == 1
    assert events[-1]["payload"] == {"status": "failed", "error": "worker lost", "closed_by": "taskyard"}
    assert runner.run(traces.list_page(project="default", status="failed", agent="w", below_seq=None,
                                       limit=10))[0][0].id == task.id


@pytest.mark.parametrize("ms", [0, 1, 999, 951782400000, 1709164800123, 1795046400999, 4102444799999,
                                253402300799999])
def test_lua_iso_ms_matches_python(runner: SyncRunner, ms: int) -> None:
    common = (Path(__file__).resolve().parents[2] / "engine" / "lua" / "_common.lua").read_text()
    source = dict(_definitions(common))["iso_ms"]
    lua = lua_preamble(used="") + source + "\nreturn iso_ms(ARGV[1])"
    assert runner.client.eval(lua, 0, ms) == iso_ms(ms)
