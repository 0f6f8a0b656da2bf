"""Fix runs and regression runs on a real Redis and real git repositories: one active run per incident and
kind (decided atomically), the fix agent job's builtin runner, fallbacks and a redelivered job."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import redis

from config.settings import RepoSpec
from engine import incidents, runs
from engine.detectors.model import Detection
from engine.fix_agent import FixAgent, branch_name
from engine.ids import new_id
from engine.loop_options import LoopOptions
from engine.loop_plans import fix_fields
from engine.loop_records import FixRun
from engine.store import SyncRunner

pytestmark = pytest.mark.integration

PROJECT = "default"


def _git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "HOME": str(repo.parent), "PATH": "/usr/bin:/bin"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    (path / "taskyard-agent.yaml").write_text("# demo\nmodel: demo\n")
    _git(path, "init", "-q", "-b", "main")
    _git(path, "add", ".")
    _git(path, "commit", "-q", "-m", "init")
    return path


def _incident(runner: SyncRunner, failure_class: str = "loop", signature: str = "tool:search") -> str:
    detection = Detection(failure_class=failure_class, signature=signature, confidence=1.0, evidence=(1, 2, 3),
                          critical_step_seq=3, summary="the same call", detector_version="t/1")
    [outcome] = runner.run(incidents.record(project=PROJECT, trace_id=new_id(), task_id=None, worker="looper",
                                            cost_usd=0.0, detections=[detection], now_ms=1000))
    return outcome.incident_id


def _options(tmp_path: Path) -> LoopOptions:
    return LoopOptions(default_bound=10, offline_after_ms=3000, worktree_root=tmp_path / "wt", replay_timeout_s=60,
                       max_cases=5, playbooks={"loop": "# loop\nCap retries.", "crash": "# crash\nRead the trace."})


def _start(runner: SyncRunner, incident_id: str, repo: RepoSpec | None) -> str:
    created = runner.run(runs.create("fix", incident_id=incident_id, project=PROJECT, run_id=new_id(), now_ms=1000,
                                     fields=fix_fields(repo=repo, base_ref=None, runner="builtin")))
    assert created is not None
    return created.run_id


def test_two_requests_at_once_start_one_run(redis_url: str, redis_client: redis.Redis) -> None:
    incident_id = _incident(SyncRunner(redis_client))
    answers: list[Any] = []

    def request() -> None:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        answers.append(SyncRunner(client).run(runs.create(
            "fix", incident_id=incident_id, project=PROJECT, run_id=new_id(), now_ms=1, fields={"runner": "builtin"})))
        client.close()

    threads = [threading.Thread(target=request) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(a.created for a in answers) == 1 and len({a.run_id for a in answers}) == 1
    jobs = [json.loads(m) for m in redis_client.hvals("ty:dq:ty.engine.msgs")]
    assert [(j["actor_name"], j["args"]) for j in jobs] == [("fix_agent", [answers[0].run_id])]


def test_a_finished_run_frees_the_incident_for_the_next_one(redis_client: redis.Redis) -> None:
    runner = SyncRunner(redis_client)
    incident_id = _incident(runner)
    first = _start(runner, incident_id, None)
    assert runner.run(runs.update("fix", first, now_ms=2, expect=("completed",), fields={"plan": "x"})) == \
        ("stale", "queued")
    assert runner.run(runs.update("fix", first, now_ms=2, fields={"status": "completed"})) == ("ok", "completed")
    second = _start(runner, incident_id, None)
    assert second != first
    assert runner.run(runs.list_ids("fix", incident_id, limit=10)) == [second, first]
    assert FixRun.from_hash(runner.run(runs.get("fix", second)) or {}).n == 2
    assert runner.run(runs.update("fix", "nope", now_ms=2, fields={})) == ("missing", None)


def test_an_unknown_or_foreign_incident_starts_nothing(redis_client: redis.Redis) -> None:
    runner = SyncRunner(redis_client)
    incident_id = _incident(runner)
    assert runner.run(runs.create("fix", incident_id=incident_id, project="other", run_id=new_id(), now_ms=1,
                                  fields={})) is None
    assert runner.run(runs.create("fix", incident_id=new_id(), project=PROJECT, run_id=new_id(), now_ms=1,
                                  fields={})) is None
    assert redis_client.hlen("ty:dq:ty.engine.msgs") == 0


def test_the_builtin_runner_commits_a_step_cap_on_a_new_branch(redis_client: redis.Redis, repo: Path,
                                                               tmp_path: Path) -> None:
    runner = SyncRunner(redis_client)
    incident_id = _incident(runner)
    spec = RepoSpec(path=str(repo), allowed_paths=["taskyard-agent.yaml"])
    run_id = _start(runner, incident_id, spec)
    FixAgent(runner, _options(tmp_path)).job(run_id, 1)
    run = FixRun.from_hash(runner.run(runs.get("fix", run_id)) or {})
    assert run.status == "completed" and not run.fallback, run
    assert run.branch == branch_name(incident_id, 1) and run.files == ["taskyard-agent.yaml"]
    assert "+max_repeats: 2" in run.diff and run.commit == _git(repo, "rev-parse", run.branch).strip()
    assert "model: demo" in _git(repo, "show", f"{run.branch}:taskyard-agent.yaml")  # the rest is kept
    assert _git(repo, "status", "--porcelain") == "" and len(_git(repo, "worktree", "list").splitlines()) == 1
    deliveries = [json.loads(m) for m in redis_client.hvals("ty:dq:ty.engine.msgs")]
    assert "fix_agent" in {d["actor_name"] for d in deliveries}


def test_a_redelivered_job_finds_the_branch_it_made(redis_client: redis.Redis, repo: Path, tmp_path: Path) -> None:
    runner = SyncRunner(redis_client)
    incident_id = _incident(runner)
    spec = RepoSpec(path=str(repo), allowed_paths=["."])
    run_id = _start(runner, incident_id, spec)
    agent = FixAgent(runner, _options(tmp_path))
    agent.job(run_id, 1)
    made = FixRun.from_hash(runner.run(runs.get("fix", run_id)) or {})
    # the store lost the outcome (a crash between the commit and the write): the job runs again
    runner.run(runs.update("fix", run_id, now_ms=3, fields={"status": "running", "commit": "", "diff": ""}))
    agent.job(run_id, 1)
    again = FixRun.from_hash(runner.run(runs.get("fix", run_id)) or {})
    assert again.commit == made.commit and not again.fallback and again.diff == made.diff


def test_changes_outside_allowed_paths_fall_back_with_the_reason(redis_client: redis.Redis, repo: Path,
                                                                 tmp_path: Path) -> None:
    runner = SyncRunner(redis_client)
    incident_id = _incident(runner)
    run_id = _start(runner, incident_id, RepoSpec(path=str(repo), allowed_paths=["agents/"]))
    FixAgent(runner, _options(tmp_path)).job(run_id, 1)
    run = FixRun.from_hash(runner.run(runs.get("fix", run_id)) or {})
    assert run.fallback and "outside allowed_paths" in run.fallback_reason and "taskyard-agent.yaml" in \
        run.fallback_reason
    assert not run.commit and not run.diff and run.plan
    assert branch_name(incident_id, 1) not in _git(repo, "branch", "--list")


@pytest.mark.parametrize(("failure_class", "with_repo", "reason"), [
    ("loop", False, "no repository is configured for worker looper"),
    ("crash", True, "no builtin fix for crash"),
])
def test_without_a_repo_or_a_playbook_edit_the_run_is_a_labelled_fallback(
        redis_client: redis.Redis, repo: Path, tmp_path: Path, failure_class: str, with_repo: bool,
        reason: str) -> None:
    runner = SyncRunner(redis_client)
    incident_id = _incident(runner, failure_class, "boom")
    spec = RepoSpec(path=str(repo), allowed_paths=["."]) if with_repo else None
    run_id = _start(runner, incident_id, spec)
    FixAgent(runner, _options(tmp_path)).job(run_id, 1)
    run = FixRun.from_hash(runner.run(runs.get("fix", run_id)) or {})
    assert run.status == "completed" and run.fallback and reason in run.fallback_reason, run
    assert run.plan == _options(tmp_path).playbooks[failure_class]  # the playbook is the plan
    assert not run.diff and not run.commit and not run.branch


def test_a_job_that_gives_up_fails_the_run_and_frees_the_incident(redis_client: redis.Redis,
                                                                  tmp_path: Path) -> None:
    runner = SyncRunner(redis_client)
    incident_id = _incident(runner)
    run_id = _start(runner, incident_id, None)
    FixAgent(runner, _options(tmp_path)).give_up(run_id, RuntimeError("redis went away"))
    run = FixRun.from_hash(runner.run(runs.get("fix", run_id)) or {})
    assert run.status == "failed" and "redis went away" in run.error
    assert _start(runner, incident_id, None) != run_id


def test_two_deliveries_of_one_job_at_once_make_one_commit_and_no_false_fallback(
        redis_url: str, redis_client: redis.Redis, repo: Path, tmp_path: Path) -> None:
    runner = SyncRunner(redis_client)
    incident_id = _incident(runner)
    run_id = _start(runner, incident_id, RepoSpec(path=str(repo), allowed_paths=["."]))
    retries: list[Any] = []

    def deliver() -> None:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        agent = FixAgent(SyncRunner(client), _options(tmp_path))
        outcome = agent.job(run_id, 1)
        while outcome is not None:  # the other delivery held the commit step: look again, as Dramatiq would
            retries.append(outcome)
            outcome = agent.job(run_id, 2)
        client.close()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run = FixRun.from_hash(runner.run(runs.get("fix", run_id)) or {})
    assert run.status == "completed" and not run.fallback and run.commit, run
    assert _git(repo, "rev-parse", run.branch).strip() == run.commit


def test_a_branch_left_at_the_base_by_an_interrupted_attempt_is_made_again(redis_client: redis.Redis, repo: Path,
                                                                          tmp_path: Path) -> None:
    runner = SyncRunner(redis_client)
    incident_id = _incident(runner)
    run_id = _start(runner, incident_id, RepoSpec(path=str(repo), allowed_paths=["."]))
    _git(repo, "branch", branch_name(incident_id, 1), "main")  # made, then the process died before the commit
    FixAgent(runner, _options(tmp_path)).job(run_id, 1)
    run = FixRun.from_hash(runner.run(runs.get("fix", run_id)) or {})
    assert not run.fallback and run.commit and run.commit != _git(repo, "rev-parse", "main").strip()


def test_follow_ups_lost_with_a_crashed_delivery_run_when_the_job_comes_back(redis_client: redis.Redis, repo: Path,
                                                                            tmp_path: Path) -> None:
    runner = SyncRunner(redis_client)
    incident_id = _incident(runner)
    run_id = _start(runner, incident_id, RepoSpec(path=str(repo), allowed_paths=["."]))
    agent = FixAgent(runner, _options(tmp_path))
    seen: list[str] = []

    def follow_up(done: FixRun) -> None:
        seen.append(done.id)
        if len(seen) == 1:
            raise ConnectionError("redis blip")

    agent.on_completed.append(follow_up)
    with pytest.raises(ConnectionError):
        agent.job(run_id, 1)  # the run is stored completed, then its follow-up fails: Dramatiq retries the job
    assert (runner.run(runs.get("fix", run_id)) or {}).get("settled") is None
    agent.job(run_id, 1)
    assert seen == [run_id, run_id] and (runner.run(runs.get("fix", run_id)) or {}).get("settled") == "1"
    agent.job(run_id, 1)
    assert seen == [run_id, run_id]  # settled: nothing runs a third time


def test_a_task_holding_the_runs_idempotency_key_is_never_adopted(redis_client: redis.Redis, repo: Path,
                                                                   tmp_path: Path) -> None:
    from config.settings import WorkerSpec
    from engine import registry
    from engine.admission import admission
    from engine.models import SubmitRequest

    runner = SyncRunner(redis_client)
    fixer = WorkerSpec(name="fixer", command=["true"], pools=["fix-agent"])
    runner.run(registry.register(fixer, source="config"))
    incident_id = _incident(runner)
    created = runner.run(runs.create("fix", incident_id=incident_id, project=PROJECT, run_id=new_id(), now_ms=1,
                                     fields=fix_fields(repo=RepoSpec(path=str(repo), allowed_paths=["."]),
                                                       base_ref=None, runner="worker")))
    assert created is not None
    # someone took the key first (the API refuses it; here it is written below the API)
    request = SubmitRequest(prompt="{}", worker="fixer", idempotency_key=f"fix:{created.run_id}")
    taken = runner.run(admission(request, {"fixer": fixer}, task_id=new_id(), project=PROJECT, now_ms=1,
                                 default_bound=10, offline_after_ms=3000))
    assert taken.status == "ok"
    FixAgent(runner, _options(tmp_path)).job(created.run_id, 1)
    run = FixRun.from_hash(runner.run(runs.get("fix", created.run_id)) or {})
    assert run.fallback and "is not its fix-agent task" in run.fallback_reason and not run.commit
