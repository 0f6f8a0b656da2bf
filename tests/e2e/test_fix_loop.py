"""Closing the loop over real processes and a real git repository made by the test: a scripted agent that
loops on a tool when its settings lack a cap becomes an incident; the fix agent commits a cap on a branch
(builtin runner, and a fix-agent worker through the queue); regression replay runs the failing tasks before and
after the fix and says ``fixed``, which resolves the incident. A failure that does not reproduce and an
incident without a repository give honest answers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.answers import reason
from tests.e2e.conftest import Cluster, wait_final, wait_for

pytestmark = pytest.mark.e2e

KEY = {"X-API-Key": "k-fix"}
AGENT = """
import json, os, sys
import yaml
sys.stdin.read()
try:
    with open("taskyard-agent.yaml") as f:
        settings = yaml.safe_load(f) or {}
except FileNotFoundError:
    settings = {}
cap = min(settings.get("max_steps", 99), settings.get("max_repeats", 99))
calls = 0
with open(os.environ["TASKYARD_TRACE_FILE"], "a") as f:
    while calls < min(cap, 5):  # without a cap: the same call, five times
        f.write(json.dumps({"type": "tool_call", "payload": {"tool": "search", "args": {"q": "why"}}}) + "\\n")
        calls += 1
print(f"made {calls} calls")
"""
FIXER = """
import json, sys
prompt = sys.stdin.read()
assert "loop" in prompt and "search" in prompt, prompt[:500]
diff = '''--- a/taskyard-agent.yaml
+++ b/taskyard-agent.yaml
@@ -1,2 +1,3 @@
 # settings of the demo agent
 model: demo
+max_steps: 2
'''
print(json.dumps({"plan": "cap the agent at two steps so it cannot loop", "diff": diff}))
"""
CRASHER = """
import sys
sys.stdin.read()
raise SystemExit("boom: the database is on fire")
"""


def _git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "HOME": str(repo.parent), "PATH": "/usr/bin:/bin"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def _make_repo(root: Path) -> Path:
    repo = root / "agent-repo"
    repo.mkdir()
    (repo / "agent.py").write_text(AGENT)
    (repo / "taskyard-agent.yaml").write_text("# settings of the demo agent\nmodel: demo\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "the demo agent")
    return repo


def _config(redis_url: str, tmp_path: Path, repo: Path, repo_fields: str) -> str:
    """A config with the looping agent's worker (its repo given ``repo_fields``) as the last lines."""
    return f"""
redis_url: {redis_url}
api_key: k-fix
heartbeat_interval: 0.5s
data_dir: {tmp_path / "data"}
workers:
  - name: looper
    command: [{sys.executable}, agent.py]
    cwd: {repo}
    repo: {{path: {repo}, {repo_fields}}}
"""


def _run_loopers(api: httpx.Client, n: int) -> list[str]:
    ids = [api.post("/task", json={"prompt": f"find out why #{i}", "worker": "looper"}).json()["id"]
           for i in range(n)]
    for task_id in ids:
        assert wait_final(api, task_id)["state"] == "completed"
    return ids


def _finished(api: httpx.Client, path: str, timeout: float = 60) -> dict[str, Any]:
    run = wait_for(lambda: api.get(path).json(), lambda r: r["status"] in ("completed", "failed"), timeout=timeout,
                   interval=0.2)
    assert run["status"] == "completed", run
    return run


def test_a_looping_agent_is_fixed_and_the_fix_is_proven_by_replay(cluster: Cluster, redis_url: str,
                                                                  tmp_path: Path) -> None:
    repo = _make_repo(tmp_path)
    (tmp_path / "fixer.py").write_text(FIXER)
    (tmp_path / "crasher.py").write_text(CRASHER)
    fields = "base_ref: main, allowed_paths: [taskyard-agent.yaml, agents/]"
    cluster.config(_config(redis_url, tmp_path, repo, fields) + f"""
  - name: fixer
    command: [{sys.executable}, {tmp_path / "fixer.py"}]
    pools: [fix-agent]
    auto: false
  - name: crasher
    command: [{sys.executable}, {tmp_path / "crasher.py"}]
    auto: false
""")
    api = cluster.serve(headers=KEY)
    head_before = _git(repo, "rev-parse", "main")

    # Given: two runs of an agent that loops: one loop incident affecting both tasks
    tasks = _run_loopers(api, 2)
    incident = wait_for(lambda: api.get("/api/incidents?class=loop").json(),
                        lambda i: len(i) == 1 and i[0]["task_count"] == 2, interval=0.2)[0]
    assert incident["failure_class"] == "loop" and set(incident["tasks"]) == set(tasks)

    # When: the builtin runner proposes a fix
    started = api.post(f"/api/incidents/{incident['id']}/fix-agent", json={"runner": "builtin"})
    assert started.status_code == 202, started.text
    fix = _finished(api, f"/api/fix-runs/{started.json()['id']}")
    # Then: a commit on a new branch, with a plan and a diff that only touches the agent's settings
    assert fix["fallback"] is False and fix["runner"] == "builtin", fix
    assert fix["branch"] == f"taskyard/fix-{incident['id']}-1" and fix["files"] == ["taskyard-agent.yaml"]
    assert "+max_repeats: 2" in fix["diff"] and "search" in fix["plan"]
    assert _git(repo, "rev-parse", fix["branch"]).strip() == fix["commit"]
    assert _git(repo, "rev-parse", "main") == head_before and _git(repo, "status", "--porcelain") == ""
    assert [r["id"] for r in api.get(f"/api/incidents/{incident['id']}/fix-runs").json()] == [fix["id"]]

    # When: the failing tasks are replayed before and after the fix
    replay = api.post(f"/api/incidents/{incident['id']}/regression-runs", json={"fix_run_id": fix["id"]})
    assert replay.status_code == 202, replay.text
    run = _finished(api, f"/api/regression-runs/{replay.json()['id']}", timeout=90)
    # Then: both cases fail before and pass after: fixed, and the incident is resolved with the fix linked
    assert run["summary"] == {"before_fail": 2, "before_pass": 0, "after_fail": 0, "after_pass": 2,
                              "verdict": "fixed"}, run
    assert {c["task_id"] for c in run["cases"]} == set(tasks)
    assert all(c["result"] == "fixed" for c in run["cases"])
    # The run is marked completed first; resolving the incident follows (after the worktrees are removed)
    resolved = wait_for(lambda: api.get(f"/api/incidents/{incident['id']}").json(),
                        lambda i: i["status"] == "resolved", interval=0.2)
    assert resolved["status"] == "resolved"
    assert resolved["fix"] == {"fix_run_id": fix["id"], "regression_run_id": run["id"]}
    compare = api.get(f"/api/regression-runs/{run['id']}/compare").json()
    for case in compare["cases"]:
        assert {"failure_class": "loop", "signature": "tool:search"} in case["changes"]["detections_gone"]
        assert "-made 5 calls" in case["output_diff"] and "+made 2 calls" in case["output_diff"]
    # the replays were judged, never counted as new occurrences; the worktrees are gone
    assert resolved["count"] == 2
    assert not any((tmp_path / "data" / "worktrees").glob("*/*"))
    assert "worktree" not in _git(repo, "worktree", "list").split("\n", 1)[-1]

    # A fix-agent worker through the queue: its JSON answer becomes a commit on the next branch
    by_worker = api.post(f"/api/incidents/{incident['id']}/fix-agent", json={"runner": "worker"})
    assert by_worker.status_code == 202
    worker_fix = _finished(api, f"/api/fix-runs/{by_worker.json()['id']}")
    assert worker_fix["fallback"] is False and worker_fix["task_id"], worker_fix
    assert worker_fix["branch"] == f"taskyard/fix-{incident['id']}-2" and "+max_steps: 2" in worker_fix["diff"]
    assert api.get(f"/task/{worker_fix['task_id']}").json()["worker_name"] == "fixer"
    second = api.post(f"/api/incidents/{incident['id']}/regression-runs", json={"fix_run_id": worker_fix["id"]})
    assert _finished(api, f"/api/regression-runs/{second.json()['id']}", timeout=90)["verdict"] == "fixed"

    # A failure that does not reproduce: "before" is already the fixed code
    same = api.post(f"/api/incidents/{incident['id']}/regression-runs",
                    json={"before_ref": fix["commit"], "after_ref": fix["commit"], "cases": [tasks[0]]})
    assert same.status_code == 202, same.text
    unproven = _finished(api, f"/api/regression-runs/{same.json()['id']}", timeout=90)
    assert unproven["verdict"] == "not_reproduced" and unproven["summary"]["before_fail"] == 0

    # No repository: a labelled fallback with the playbook's plan, never a diff
    crashed = api.post("/task", json={"prompt": "go", "worker": "crasher", "max_retries": 1}).json()["id"]
    assert wait_final(api, crashed)["state"] == "failed"
    crash = wait_for(lambda: api.get("/api/incidents?worker=crasher").json(), lambda i: len(i) >= 1,
                     interval=0.2)[0]
    no_repo = api.post(f"/api/incidents/{crash['id']}/fix-agent", json={"runner": "builtin"}).json()
    labelled = _finished(api, f"/api/fix-runs/{no_repo['id']}")
    assert labelled["fallback"] is True and "no repository is configured" in labelled["fallback_reason"]
    assert labelled["diff"] is None and labelled["commit"] is None and labelled["plan"]
    refused = api.post(f"/api/incidents/{crash['id']}/regression-runs", json={})
    assert refused.status_code == 422 and "no repository" in refused.json()["error"]


def test_fix_run_requests_are_validated(cluster: Cluster, redis_url: str, tmp_path: Path) -> None:
    repo = _make_repo(tmp_path)
    cluster.config(_config(redis_url, tmp_path, repo, "allowed_paths: [taskyard-agent.yaml]"))
    api = cluster.serve(headers=KEY)
    _run_loopers(api, 1)
    incident = wait_for(lambda: api.get("/api/incidents").json(), lambda i: len(i) == 1, interval=0.2)[0]
    path = f"/api/incidents/{incident['id']}"
    cases = [
        (f"{path}/fix-agent", [1], 400, "invalid request body"),
        (f"{path}/fix-agent", {"nope": 1}, 400, "unknown field 'nope'"),
        (f"{path}/fix-agent", {"runner": "magic"}, 422, "invalid runner"),
        (f"{path}/fix-agent", {"runner": "worker"}, 422, "no worker serves the fix-agent pool"),
        (f"{path}/fix-agent", {"repo": "/etc"}, 422, "not a repository configured"),
        (f"{path}/fix-agent", {"base_ref": "--upload-pack=x"}, 422, "invalid base_ref"),
        (f"{path}/fix-agent", {"base_ref": "no-such-branch"}, 422, "unknown ref"),
        ("/api/incidents/" + "0" * 32 + "/fix-agent", {}, 404, "incident not found"),
        (f"{path}/regression-runs", {}, 422, "nothing to compare"),
        (f"{path}/regression-runs", {"fix_run_id": "f" * 32}, 422, "no fix run"),
        (f"{path}/regression-runs", {"before_ref": "main", "after_ref": "main", "cases": ["a" * 32]}, 422,
         "not one of the incident's tasks"),
    ]
    for url, body, status, message in cases:
        answer = api.post(url, content=json.dumps(body), headers={"Content-Type": "application/json"})
        assert (answer.status_code, message in reason(answer)) == (status, True), (body, answer.text)
    assert api.get("/api/fix-runs/" + "0" * 32).status_code == 404
    assert api.get("/api/regression-runs/nope").json() == {"error": "regression run not found"} or \
        api.get("/api/regression-runs/nope").status_code == 404
    assert api.get(f"{path}/fix-runs").json() == []  # nothing refused was stored


def test_auto_heal_fixes_and_proves_a_new_incident_by_itself(cluster: Cluster, redis_url: str,
                                                            tmp_path: Path) -> None:
    repo = _make_repo(tmp_path)
    cluster.config(_config(redis_url, tmp_path, repo, "allowed_paths: [taskyard-agent.yaml]")
                   + "    auto_heal: {attempts: 1}\n")
    api = cluster.serve(headers=KEY)
    tasks = _run_loopers(api, 1)
    incident = wait_for(lambda: api.get("/api/incidents").json(), lambda i: len(i) == 1, interval=0.2)[0]
    # nobody asks: the incident gets a fix run, the fix a replay, and the verdict resolves the incident
    healed = wait_for(lambda: api.get(f"/api/incidents/{incident['id']}").json(),
                      lambda i: i["status"] == "resolved", timeout=90, interval=0.3)
    assert healed["status"] == "resolved" and healed["fix"] is not None, healed
    [fix] = api.get(f"/api/incidents/{incident['id']}/fix-runs").json()
    [replay] = api.get(f"/api/incidents/{incident['id']}/regression-runs").json()
    assert fix["auto"] is True and fix["commit"] and replay["auto"] is True
    assert replay["verdict"] == "fixed" and replay["fix_run_id"] == fix["id"]
    assert [c["task_id"] for c in replay["cases"]] == tasks
    assert _git(repo, "rev-parse", "main") != fix["commit"]  # nothing merged: the fix waits on its branch
