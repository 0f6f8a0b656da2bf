"""Planning fix and regression runs: which repository, which runner, which refs and cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import RepoSpec, WorkerSpec
from engine.errors import Unprocessable
from engine.loop_plans import case_of, check_ref, choose_runner, fix_fields, pick_cases, replayable, repo_for
from engine.models import Task


def _worker(name: str = "w", **extra: object) -> WorkerSpec:
    return WorkerSpec.model_validate({"name": name, "command": ["true"], **extra})


def test_the_workers_repo_comes_before_the_projects(tmp_path: Path) -> None:
    mine = RepoSpec(path=str(tmp_path / "a"), allowed_paths=["."])
    project = RepoSpec(path=str(tmp_path / "b"), allowed_paths=["."])
    worker = _worker(repo=mine.model_dump())
    assert repo_for(None, worker=worker, project_repo=project) == mine
    assert repo_for(None, worker=_worker(), project_repo=project) == project
    assert repo_for(None, worker=None, project_repo=None) is None


def test_a_requested_repo_must_be_one_that_is_configured(tmp_path: Path) -> None:
    project = RepoSpec(path=str(tmp_path / "b"), allowed_paths=["."])
    assert repo_for(str(tmp_path / "b") + "/", worker=None, project_repo=project) == project
    with pytest.raises(Unprocessable, match="not a repository configured"):
        repo_for("/etc", worker=None, project_repo=project)
    with pytest.raises(Unprocessable, match="invalid repo"):
        repo_for(7, worker=None, project_repo=project)  # type: ignore[arg-type]


@pytest.mark.parametrize("ref", ["-x", "--upload-pack=evil", "a b", "", "x" * 201, "a\nb", 5, None])
def test_refs_that_could_be_options_or_garbage_are_refused(ref: object) -> None:
    with pytest.raises(Unprocessable, match="invalid before_ref"):
        check_ref(ref, "before_ref")


def test_ordinary_refs_pass() -> None:
    assert check_ref("feature/x", "r") == "feature/x" and check_ref("HEAD~1", "r") == "HEAD~1"


def test_the_runner_is_the_worker_when_one_serves_the_fix_agent_pool() -> None:
    plain = {"w": _worker()}
    serving = {"w": _worker(), "f": _worker("f", pools=["fix-agent"])}
    assert choose_runner(None, plain) == "builtin"
    assert choose_runner(None, serving) == "worker"
    assert choose_runner("builtin", serving) == "builtin"
    with pytest.raises(Unprocessable, match="no worker serves the fix-agent pool"):
        choose_runner("worker", plain)
    with pytest.raises(Unprocessable, match="invalid runner"):
        choose_runner("shell", plain)


def test_fix_fields_keep_the_repo_and_default_to_its_base_ref(tmp_path: Path) -> None:
    repo = RepoSpec(path=str(tmp_path), base_ref="trunk", allowed_paths=["agents/"])
    fields = fix_fields(repo=repo, base_ref=None, runner="builtin", auto=True)
    assert fields["base_ref"] == "trunk" and fields["auto"] == "1" and '"agents/"' in fields["repo"]
    assert fix_fields(repo=None, base_ref=None, runner="builtin")["repo"] == ""


def test_a_case_runs_in_the_workers_directory_inside_the_worktree(tmp_path: Path) -> None:
    repo = RepoSpec(path=str(tmp_path), allowed_paths=["."])
    task = Task(id="t" * 32, project="default", worker_name="w", prompt="p", state="completed", seq=1,
                created_at_ms=0, context={"a": 1})
    inside = case_of(task, spec=_worker(cwd=str(tmp_path / "agents")), repo=repo)
    assert inside["cwd_rel"] == "agents" and inside["prompt"] == "p" and inside["context"] == {"a": 1}
    assert case_of(task, spec=_worker(cwd="/elsewhere"), repo=repo)["cwd_rel"] == ""
    assert case_of(task, spec=None, repo=repo)["cwd_rel"] == ""


def test_cases_default_to_the_newest_and_must_belong_to_the_incident() -> None:
    affected = ["a", "b", "c"]
    assert pick_cases(affected, None, limit=2) == ["a", "b"]
    assert pick_cases(affected, ["c", "c", "a"], limit=2) == ["c", "a"]
    with pytest.raises(Unprocessable, match="not one of the incident's tasks"):
        pick_cases(affected, ["z"], limit=2)
    with pytest.raises(Unprocessable, match="invalid cases"):
        pick_cases(affected, [], limit=2)
    with pytest.raises(Unprocessable, match="invalid cases"):
        pick_cases(affected, "a", limit=2)


def test_only_workers_of_the_runs_repository_can_be_replayed_in_it(tmp_path: Path) -> None:
    repo = RepoSpec(path=str(tmp_path / "agents"), allowed_paths=["."])
    other = RepoSpec(path=str(tmp_path / "other"), allowed_paths=["."])
    assert replayable(_worker(repo=repo.model_dump(), cwd=str(tmp_path / "agents" / "x")), repo, None)
    assert replayable(_worker(repo=repo.model_dump()), repo, None)
    assert replayable(_worker(), repo, repo)  # the project's repo
    assert not replayable(_worker(repo=other.model_dump()), repo, None)
    assert not replayable(_worker(repo=repo.model_dump(), cwd="/elsewhere"), repo, None)
    assert not replayable(_worker(), repo, None)
    assert not replayable(None, repo, repo)


def test_a_repo_path_with_a_nul_byte_is_refused_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(Unprocessable, match="invalid repo"):
        repo_for("a\0b", worker=None, project_repo=RepoSpec(path=str(tmp_path), allowed_paths=["."]))
