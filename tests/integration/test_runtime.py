"""The worker runtime with real Dramatiq threads, real subprocesses and a real local HTTP endpoint."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from config.settings import WorkerSpec
from engine.models import Task
from tests.integration.conftest import Endpoint, ServiceHarness
from tests.procfs import process_alive

FINAL = {"completed", "failed", "cancelled"}


def wait_task(service: ServiceHarness, task_id: str, *, states: set[str] = FINAL, timeout: float = 15) -> Task:
    deadline = time.monotonic() + timeout
    while True:
        task = service(lambda s: s.get("default", task_id))
        if task.state in states or time.monotonic() > deadline:
            return task
        time.sleep(0.05)


def submit(service: ServiceHarness, **body: Any) -> Task:
    return service(lambda s: s.submit("default", body))[0]


def test_dramatiq_consumes_the_message_admission_wrote(start_runtime, service: ServiceHarness) -> None:
    # The admission script writes Dramatiq 2.2.1's Redis layout by hand; a real Dramatiq worker must read it.
    start_runtime(WorkerSpec(name="echo", handler="workers.builtin:echo"))
    task = wait_task(service, submit(service, prompt="hello there").id)
    assert (task.state, task.result, task.attempts) == ("completed", "hello there", 1)
    assert task.dispatched_at_ms is not None and task.completed_at_ms >= task.dispatched_at_ms


def test_command_reads_stdin_and_argv_placeholder(start_runtime, service: ServiceHarness) -> None:
    start_runtime(WorkerSpec(name="upper", command=["tr", "a-z", "A-Z"]),
                  WorkerSpec(name="argv", command=["echo", "got: {prompt}"]))
    a = submit(service, prompt="shout", worker="upper")
    b = submit(service, prompt="hi", worker="argv")
    assert wait_task(service, a.id).result == "SHOUT"
    assert wait_task(service, b.id).result == "got: hi\n"


def test_nonzero_exit_fails_with_code_and_stderr_tail(start_runtime, service: ServiceHarness) -> None:
    start_runtime(WorkerSpec(name="bad", command=["sh", "-c", "echo partial; echo 'it broke' >&2; exit 7"]))
    task = wait_task(service, submit(service, prompt="x").id)
    assert task.state == "failed" and task.exit_code == 7
    assert task.error == "exit code 7: it broke" and task.result is None


def test_timeout_kills_the_whole_process_tree(start_runtime, service: ServiceHarness, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    start_runtime(WorkerSpec(name="slow", command=["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"]))
    task = wait_task(service, submit(service, prompt="x", timeout=1).id)
    assert task.state == "failed" and task.error == "timeout after 1s"
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while process_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_alive(child), "the grandchild survived the timeout"



def test_cancel_kills_a_running_command(start_runtime, service: ServiceHarness) -> None:
    start_runtime(WorkerSpec(name="slow", command=["sleep", "60"]))
    task = submit(service, prompt="x")
    wait_task(service, task.id, states={"dispatched"})
    service(lambda s: s.cancel("default", task.id))
    done = wait_task(service, task.id, timeout=10)
    assert (done.state, done.error) == ("cancelled", "cancelled")


def test_failed_attempts_retry_with_backoff_until_success(start_runtime, service: ServiceHarness,
                                                          tmp_path: Path) -> None:
    counter = tmp_path / "n"
    script = f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; [ $n -ge 1 ] && echo ok"
    start_runtime(WorkerSpec(name="flaky", command=["sh", "-c", script], max_retries=3))
    task = wait_task(service, submit(service, prompt="x").id, timeout=20)
    assert (task.state, task.result, task.attempts) == ("completed", "ok\n", 2)


def test_graceful_stop_requeues_a_running_task_for_another_process(start_runtime, service: ServiceHarness,
                                                                   tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = f"if [ -e {marker} ]; then echo second; else touch {marker}; sleep 60; fi"
    spec = WorkerSpec(name="w", command=["sh", "-c", script])
    first = start_runtime(spec, drain_timeout_s=0.5)
    task = submit(service, prompt="x")
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:  # the command really started
        time.sleep(0.02)
    first.stop()
    assert wait_task(service, task.id, states={"pending"}).state == "pending"
    start_runtime(spec)
    done = wait_task(service, task.id)
    assert (done.state, done.result) == ("completed", "second\n")


def test_async_handler_and_handler_errors(start_runtime, service: ServiceHarness, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_agent.py").write_text(
        "async def run(ctx):\n    return {'echo': ctx.prompt, 'ctx': ctx.context}\n"
        "def boom(ctx):\n    raise RuntimeError('no luck')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    start_runtime(WorkerSpec(name="a", handler="my_agent:run"), WorkerSpec(name="b", handler="my_agent:boom"))
    ok = wait_task(service, submit(service, prompt="p", worker="a", context={"k": 1}).id)
    bad = wait_task(service, submit(service, prompt="p", worker="b").id)
    assert json.loads(ok.result or "") == {"echo": "p", "ctx": {"k": 1}}
    assert (bad.state, bad.error) == ("failed", "RuntimeError: no luck")


def test_output_with_lone_surrogates_is_stored_not_lost(start_runtime, service: ServiceHarness, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "odd_agent.py").write_text("def run(ctx):\n    return 'half \\ud800 a pair'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    start_runtime(WorkerSpec(name="odd", handler="odd_agent:run"))
    task = wait_task(service, submit(service, prompt="p").id)
    assert (task.state, task.result) == ("completed", "half ? a pair")


def test_a_claim_whose_reply_was_lost_is_given_back(start_runtime, service: ServiceHarness,
                                                     redis_client) -> None:
    from engine import registry
    from engine import tasks as task_ops
    from engine.clock import now_ms
    from engine.store import SyncRunner

    runner = SyncRunner(redis_client)
    runtime = start_runtime(WorkerSpec(name="echo", handler="workers.builtin:echo"))
    runner.run(registry.register(WorkerSpec(name="elsewhere", handler="workers.builtin:echo"), source="test"))
    task = submit(service, prompt="orphan", worker="elsewhere")
    # Given Redis holds the task as dispatched to this live process, which never heard of it (what a fetch
    # whose reply was lost on the wire leaves behind)
    claimed = runner.run(task_ops.claim(task_id=task.id, proc_id=runtime.proc_id, now_ms=now_ms(), max_lost=3))
    assert claimed.task is not None and claimed.task.state == "dispatched"
    # Then within a few heartbeats the process gives it back to its queue
    back = wait_task(service, task.id, states={"pending"}, timeout=10)
    assert (back.state, back.owner, back.lost) == ("pending", None, 0)


def test_endpoint_contract_retries_5xx_and_fails_on_4xx(start_runtime, service: ServiceHarness,
                                                        endpoint: str) -> None:
    start_runtime(WorkerSpec(name="remote", endpoint=endpoint))
    Endpoint.script = [(503, {}), (200, {"result": "fine"})]
    ok = wait_task(service, submit(service, prompt="p", context={"a": 1}).id)
    assert (ok.state, ok.result) == ("completed", "fine")
    assert Endpoint.calls[-1] == {"id": ok.id, "prompt": "p", "context": {"a": 1}} and len(Endpoint.calls) == 2
    Endpoint.script = [(400, {"error": "bad"})]
    bad = wait_task(service, submit(service, prompt="p").id)
    assert bad.state == "failed" and bad.error.startswith("HTTP 400")


def test_worker_status_shows_processes_and_busy(start_runtime, service: ServiceHarness) -> None:
    start_runtime(WorkerSpec(name="slow", command=["sleep", "60"], concurrency=1))
    task = submit(service, prompt="x")
    wait_task(service, task.id, states={"dispatched"})
    (worker,) = service(lambda s: s.workers())
    assert worker["state"] == "busy" and worker["running"] == 1 and worker["processes"] == 1
    assert worker["health"] == "healthy" and worker["queue_depth"] == 1
    service(lambda s: s.cancel("default", task.id))
    wait_task(service, task.id)


if sys.platform != "linux":  # pragma: no cover
    pytest.skip("process-group tests need Linux", allow_module_level=True)
