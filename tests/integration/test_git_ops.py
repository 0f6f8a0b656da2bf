"""engine.git_ops on real repositories made with `git init` in tmp_path: refs, the allowed-paths rule, commits made
in a temporary worktree (the repository's own checkout untouched), diffs applied or refused, replay worktrees.
No Redis. Every test runs with HOME and XDG_CONFIG_HOME pointing at empty directories and no system config, so
nothing from the machine's git configuration can help (or hurt) the code under test."""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from engine.errors import GitError, PathRefused, UnusableDiff
from engine.git_ops import (
    AUTHOR,
    Commit,
    add_worktree,
    commit_diff,
    commit_files,
    delete_branch,
    path_allowed,
    refused_paths,
    remove_worktree,
    resolve_ref,
)

pytestmark = pytest.mark.integration

PROMPT = "line one\nline two\nline three\nline four\nline five\n"
AGENTS = ["agents/"]
TREE = {
    "agents/prompt.md": PROMPT,
    "config/settings.yaml": "retries: 1\n",
    "configs/other.yaml": "x: 1\n",
    "README.md": "first\n",
}
IDENTITY_VARS = ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL")


def git(cwd: Path, *args: str) -> str:
    """Runs git for the test's own setup; the identity is on the command line, never in any config file."""
    ident = ["-c", "user.name=Test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false"]
    done = subprocess.run(["git", *ident, *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout


def branches(repo: Path) -> set[str]:
    return set(git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads").split())


def worktrees(repo: Path) -> list[str]:
    return [line for line in git(repo, "worktree", "list", "--porcelain").splitlines() if line.startswith("worktree ")]


def checkout_state(repo: Path) -> tuple[str, str, bytes]:
    """What must not change in the configured checkout: status, HEAD, and the index file byte for byte."""
    return git(repo, "status", "--porcelain"), git(repo, "rev-parse", "HEAD"), (repo / ".git" / "index").read_bytes()


def show(repo: Path, commit: str, path: str) -> str:
    return git(repo, "show", f"{commit}:{path}")


def write_fix(
    repo: Path,
    files: dict[str, str],
    *,
    branch: str = "fix",
    base: str = "main",
    message: str = "m",
    allowed: list[str] = AGENTS,
) -> Commit:
    return commit_files(str(repo), base_ref=base, branch=branch, files=files, message=message, allowed_paths=allowed)


def apply_fix(repo: Path, diff: str, *, branch: str = "fix", allowed: list[str] = AGENTS) -> Commit:
    return commit_diff(str(repo), base_ref="main", branch=branch, diff=diff, message="m", allowed_paths=allowed)


@pytest.fixture(autouse=True)
def no_git_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_CONFIG_GLOBAL", "EMAIL", *IDENTITY_VARS):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    """main: agents/prompt.md, config/settings.yaml, configs/other.yaml, README.md; two commits."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    for rel, text in TREE.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "initial")
    git(path, "tag", "v1")
    (path / "README.md").write_text("second\n")
    git(path, "commit", "-q", "-am", "second")
    return path


def clone_diff(repo: Path, tmp_path: Path, *commands: list[str]) -> str:
    """A diff made by git itself: in a clone, run each command (``["write", path, text]``, ``["link", path,
    target]`` or git arguments), commit, and diff main..HEAD there."""
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(repo), str(other))
    for command in commands:
        if command[0] in ("write", "link"):
            (other / command[1]).parent.mkdir(parents=True, exist_ok=True)
            if command[0] == "write":
                (other / command[1]).write_text(command[2])
            else:
                (other / command[1]).symlink_to(command[2])
        else:
            git(other, *command)
    git(other, "add", "-A")
    git(other, "commit", "-q", "-m", "proposed")
    return git(other, "diff", "origin/main", "HEAD")


def test_resolve_ref_returns_the_commit_sha_of_branches_tags_shas_and_relative_refs(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    first = git(repo, "rev-parse", "HEAD~1").strip()
    assert resolve_ref(str(repo), "main") == head
    assert resolve_ref(str(repo), "HEAD~1") == first
    assert resolve_ref(str(repo), "v1") == first
    assert resolve_ref(str(repo), first[:10]) == first
    assert len(head) == 40


def test_resolve_ref_of_an_unknown_ref_names_the_ref_and_the_repository(repo: Path) -> None:
    with pytest.raises(GitError) as caught:
        resolve_ref(str(repo), "no-such-branch")
    assert caught.value.message == f"unknown ref 'no-such-branch' in {repo}"


@pytest.mark.parametrize("ref", ["-x", "--output=/tmp/x", "", "main\nHEAD"])
def test_resolve_ref_refuses_refs_that_could_be_read_as_options(repo: Path, ref: str) -> None:
    with pytest.raises(GitError) as caught:
        resolve_ref(str(repo), ref)
    assert str(repo) in caught.value.message
    assert not isinstance(caught.value, (PathRefused, UnusableDiff))


@pytest.mark.parametrize("where", ["missing", "plain-dir", "file", "subdir-of-repo"])
def test_a_path_that_is_not_a_repository_root_is_a_git_error_naming_it(repo: Path, tmp_path: Path, where: str) -> None:
    places = {"missing": tmp_path / "nope", "plain-dir": tmp_path / "home", "file": repo / "README.md"}
    path = places.get(where, repo / "agents")
    with pytest.raises(GitError) as caught:
        resolve_ref(str(path), "HEAD")
    assert caught.value.message == f"not a git repository: {path}"
    with pytest.raises(GitError, match="not a git repository"):
        write_fix(path, {"x": "y"}, base="HEAD", allowed=["."])


@pytest.mark.parametrize(
    ("path", "allowed", "expected"),
    [
        ("agents/prompt.md", ["agents/"], True),
        ("agents/deep/er/file.py", ["agents/"], True),
        ("agents", ["agents/"], False),
        ("agentsx/file", ["agents/"], False),
        ("config/x.yaml", ["config"], True),
        ("config", ["config"], True),
        ("configs/x", ["config"], False),
        ("config/x.yaml", ["./config"], True),
        ("config/x.yaml", ["config//"], True),
        ("README.md", ["README.md"], True),
        ("README.md/x", ["README.md"], True),
        ("anything/at/all.txt", ["."], True),
        ("anything/at/all.txt", [""], True),
        ("anything/at/all.txt", ["./"], True),
        ("file.txt", [], False),
        ("../outside", ["."], False),
        ("agents/../config/x", ["."], False),
        ("agents/../agents/x", ["agents/"], False),
        ("./agents/x", ["agents/"], False),
        ("agents//x", ["agents/"], False),
        ("agents/x/", ["agents/"], False),
        ("/etc/passwd", ["."], False),
        ("/agents/x", ["agents/"], False),
        (".git/config", ["."], False),
        (".GIT/hooks/pre-commit", ["."], False),
        ("sub/.git/config", ["."], False),
        (".git", ["."], False),
        (".gitignore", ["."], True),
        (".github/workflows/ci.yml", [".github/"], True),
        ("agents\\x", ["."], False),
        ("", ["."], False),
        (".", ["."], False),
        ("x", ["../x"], False),
        ("etc/passwd", ["/etc"], False),
        ("config/x", ["agents/", "config/"], True),
    ],
)
def test_path_allowed_follows_the_allowed_paths_rules(path: str, allowed: list[str], expected: bool) -> None:
    assert path_allowed(path, allowed) is expected


def test_refused_paths_lists_the_refused_ones_sorted_once() -> None:
    paths = ["z/file", "agents/ok", ".git/config", "z/file", "a/file"]
    assert refused_paths(paths, AGENTS) == [".git/config", "a/file", "z/file"]
    assert refused_paths(["agents/ok"], AGENTS) == []


def test_commit_files_commits_on_a_new_branch_and_leaves_the_checkout_untouched(repo: Path) -> None:
    # Given a checkout with local changes: a modified tracked file, a staged file and an untracked one
    (repo / "README.md").write_text("local edit\n")
    (repo / "staged.txt").write_text("staged\n")
    git(repo, "add", "staged.txt")
    (repo / "untracked.txt").write_text("mine\n")
    before = checkout_state(repo)
    base = git(repo, "rev-parse", "HEAD~1").strip()

    files = {"agents/prompt.md": PROMPT.replace("two", "2"), "agents/new/extra.md": "new\n"}
    result = write_fix(repo, files, base="HEAD~1", branch="taskyard/fix-inc1-1", message="Fix the prompt\n\nWhy.")

    assert isinstance(result, Commit)
    assert (result.branch, result.base) == ("taskyard/fix-inc1-1", base)
    assert git(repo, "rev-parse", "taskyard/fix-inc1-1").strip() == result.commit
    assert git(repo, "rev-parse", f"{result.commit}^").strip() == base
    assert result.files == ["agents/new/extra.md", "agents/prompt.md"]
    assert result.diff == git(repo, "diff", "--src-prefix=a/", "--dst-prefix=b/", base, result.commit)
    assert "diff --git a/agents/prompt.md b/agents/prompt.md" in result.diff
    assert "-line two\n+line 2\n" in result.diff
    assert show(repo, result.commit, "agents/new/extra.md") == "new\n"
    assert show(repo, result.commit, "README.md") == "first\n"
    assert git(repo, "log", "-1", "--format=%an <%ae> %cn <%ce>%n%B", result.commit).startswith(
        "Taskyard <taskyard@localhost> Taskyard <taskyard@localhost>\nFix the prompt\n\nWhy."
    )
    assert checkout_state(repo) == before
    assert worktrees(repo) == [f"worktree {repo}"]


def test_commits_work_with_no_git_user_configured_anywhere(repo: Path, no_git_config: Path) -> None:
    assert subprocess.run(["git", "config", "user.email"], cwd=repo, capture_output=True).returncode == 1
    assert list(no_git_config.iterdir()) == []

    result = write_fix(repo, {"agents/prompt.md": "short\n"})

    assert git(repo, "log", "-1", "--format=%an|%ae", result.commit).strip() == "|".join(AUTHOR)


def test_hooks_signing_and_diff_settings_in_git_config_do_not_leak_in(repo: Path, no_git_config: Path) -> None:
    # Given hooks that fail (and leave a mark) and a global config asking for signing and prefix-less diffs
    marker = no_git_config / "hook-ran"
    hooks = no_git_config / "hooks"
    hooks.mkdir()
    for name in ("pre-commit", "commit-msg", "post-commit", "post-checkout"):
        for where in (hooks, repo / ".git" / "hooks"):
            (where / name).write_text(f"#!/bin/sh\necho {name} >> {marker}\nexit 1\n")
            (where / name).chmod(0o755)
    (no_git_config / ".gitconfig").write_text(
        f"[commit]\n\tgpgsign = true\n[gpg]\n\tprogram = false\n[core]\n\thooksPath = {hooks}\n"
        "[diff]\n\tnoprefix = true\n\texternal = false\n[color]\n\tui = always\n[user]\n\tuseConfigOnly = true\n"
    )

    first = write_fix(repo, {"agents/prompt.md": "a\n"}, branch="a")
    second = apply_fix(repo, first.diff, branch="b")

    assert first.diff.startswith("diff --git a/agents/prompt.md b/agents/prompt.md\n")
    assert "\x1b[" not in first.diff
    assert second.diff == first.diff
    assert not marker.exists()


def test_a_disallowed_path_is_refused_before_anything_is_made(repo: Path) -> None:
    before = branches(repo)
    with pytest.raises(PathRefused) as caught:
        write_fix(repo, {"agents/ok.md": "ok\n", "config/settings.yaml": "x\n", ".git/hooks/pre-commit": "x"})
    assert caught.value.paths == [".git/hooks/pre-commit", "config/settings.yaml"]
    assert branches(repo) == before
    assert worktrees(repo) == [f"worktree {repo}"]
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()


def test_a_branch_that_already_exists_is_refused_and_kept(repo: Path) -> None:
    git(repo, "branch", "taken", "HEAD~1")
    taken = git(repo, "rev-parse", "taken")
    with pytest.raises(GitError) as caught:
        write_fix(repo, {"agents/prompt.md": "x\n"}, branch="taken")
    assert caught.value.message == f"branch 'taken' already exists in {repo}"
    assert git(repo, "rev-parse", "taken") == taken


@pytest.mark.parametrize("branch", ["HEAD", "a..b", "-x", "x.lock", "has space", "", "@{-1}", "ends/"])
def test_invalid_branch_names_are_refused(repo: Path, branch: str) -> None:
    before = branches(repo)
    with pytest.raises(GitError, match="invalid branch name"):
        write_fix(repo, {"agents/prompt.md": "x\n"}, branch=branch)
    assert branches(repo) == before


def test_files_that_change_nothing_are_an_empty_change_and_leave_no_branch(repo: Path) -> None:
    with pytest.raises(UnusableDiff, match="^the change is empty: "):
        write_fix(repo, {"agents/prompt.md": PROMPT})
    assert branches(repo) == {"main"}
    assert worktrees(repo) == [f"worktree {repo}"]


def test_a_failure_after_the_branch_was_made_deletes_it_again(repo: Path) -> None:
    # "agents" is allowed as an exact entry, but it is a directory at the base, so the write fails
    with pytest.raises(UnusableDiff, match="cannot write agents"):
        write_fix(repo, {"agents": "x\n"}, allowed=["agents"])
    assert branches(repo) == {"main"}
    assert worktrees(repo) == [f"worktree {repo}"]


def test_writing_through_a_symlink_is_refused(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (repo / "agents" / "out").symlink_to(outside)
    git(repo, "add", "agents/out")
    git(repo, "commit", "-q", "-m", "a link")
    with pytest.raises(UnusableDiff, match="symlink"):
        write_fix(repo, {"agents/out/evil.sh": "boom\n"})
    assert list(outside.iterdir()) == []
    assert branches(repo) == {"main"}


def test_an_empty_commit_message_is_refused(repo: Path) -> None:
    with pytest.raises(GitError, match="commit message is empty"):
        write_fix(repo, {"agents/prompt.md": "x\n"}, message=" \n")
    assert branches(repo) == {"main"}


def test_commit_diff_applies_a_diff_made_by_git(repo: Path, tmp_path: Path) -> None:
    diff = clone_diff(
        repo,
        tmp_path,
        ["write", "agents/prompt.md", PROMPT.replace("four", "4")],
        ["write", "agents/new.md", "hello\n"],
        ["mv", "agents/prompt.md", "agents/renamed.md"],
    )
    before = checkout_state(repo)

    result = apply_fix(repo, diff, branch="taskyard/fix-2")

    assert result.files == ["agents/new.md", "agents/prompt.md", "agents/renamed.md"]
    assert show(repo, result.commit, "agents/renamed.md") == PROMPT.replace("four", "4")
    assert git(repo, "rev-parse", f"{result.commit}^{{tree}}") == git(tmp_path / "other", "rev-parse", "HEAD^{tree}")
    assert "rename from agents/prompt.md\nrename to agents/renamed.md\n" in result.diff
    assert checkout_state(repo) == before
    assert worktrees(repo) == [f"worktree {repo}"]


def test_a_diff_without_a_trailing_newline_still_applies(repo: Path, tmp_path: Path) -> None:
    diff = clone_diff(repo, tmp_path, ["write", "agents/prompt.md", "only\n"])
    result = apply_fix(repo, diff.rstrip("\n"))
    assert show(repo, result.commit, "agents/prompt.md") == "only\n"


def test_a_diff_that_does_not_apply_is_unusable_and_leaves_no_branch(repo: Path, tmp_path: Path) -> None:
    diff = clone_diff(repo, tmp_path, ["write", "agents/prompt.md", PROMPT.replace("two", "2")])
    diff = diff.replace(" line one", " line ONE").replace(" line three", " line THREE")
    base = git(repo, "rev-parse", "main").strip()
    with pytest.raises(UnusableDiff) as caught:
        apply_fix(repo, diff)
    assert caught.value.message.startswith(f"the diff does not apply to {base[:12]}: ")
    assert "agents/prompt.md" in caught.value.message
    assert branches(repo) == {"main"}
    assert worktrees(repo) == [f"worktree {repo}"]


@pytest.mark.parametrize(
    ("commands", "refused"),
    [
        ([["write", "config/settings.yaml", "retries: 9\n"]], ["config/settings.yaml"]),
        ([["mv", "agents/prompt.md", "configs/prompt.md"]], ["configs/prompt.md"]),
        ([["mv", "configs/other.yaml", "agents/other.yaml"]], ["configs/other.yaml"]),
        ([["rm", "-q", "README.md"]], ["README.md"]),
        ([["write", "agents/a.md", "a\n"], ["write", "tools/b.sh", "b\n"]], ["tools/b.sh"]),
    ],
    ids=["modify", "rename-out", "rename-in", "delete", "create"],
)
def test_a_diff_touching_a_disallowed_path_is_refused(
    repo: Path, tmp_path: Path, commands: list[list[str]], refused: list[str]
) -> None:
    diff = clone_diff(repo, tmp_path, *commands)
    with pytest.raises(PathRefused) as caught:
        apply_fix(repo, diff)
    assert caught.value.paths == refused
    assert branches(repo) == {"main"}


def test_the_old_side_of_a_rename_is_checked_before_the_diff_is_tried(repo: Path) -> None:
    # a rename out of a disallowed file whose hunk does not even apply: refused for its path, not for the hunk
    diff = (
        "diff --git a/configs/other.yaml b/agents/other.yaml\nsimilarity index 50%\n"
        "rename from configs/other.yaml\nrename to agents/other.yaml\n"
        "--- a/configs/other.yaml\n+++ b/agents/other.yaml\n@@ -1 +1 @@\n-x: 999\n+x: 2\n"
    )
    with pytest.raises(PathRefused) as caught:
        apply_fix(repo, diff)
    assert caught.value.paths == ["configs/other.yaml"]
    assert branches(repo) == {"main"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "^the diff is empty$"),
        ("  \n\t\n", "^the diff is empty$"),
        ("please change line two to 2\n", "^the diff is not a patch git can read: "),
        ("--- a/agents/prompt.md\n+++ b/agents/prompt.md\n@@ -1,3 +1,3 @@\n garbage\n", "not a patch git can read"),
    ],
)
def test_empty_or_garbage_text_is_not_a_usable_diff(repo: Path, text: str, message: str) -> None:
    with pytest.raises(UnusableDiff, match=message):
        apply_fix(repo, text, allowed=["."])
    assert branches(repo) == {"main"}


def test_a_diff_that_creates_a_symlink_is_refused(repo: Path, tmp_path: Path) -> None:
    diff = clone_diff(repo, tmp_path, ["link", "agents/passwd", "/etc/passwd"])
    assert "new file mode 120000" in diff
    with pytest.raises(UnusableDiff, match="symlink"):
        apply_fix(repo, diff, allowed=["."])
    assert branches(repo) == {"main"}
    assert worktrees(repo) == [f"worktree {repo}"]


def test_a_diff_with_only_a_no_op_change_is_an_empty_change(repo: Path, tmp_path: Path) -> None:
    diff = clone_diff(repo, tmp_path, ["write", "agents/prompt.md", "x\n"])
    reverse = git(tmp_path / "other", "diff", "HEAD", "origin/main")
    with pytest.raises(UnusableDiff, match="^the change is empty: "):
        apply_fix(repo, diff + reverse)
    assert branches(repo) == {"main"}


def test_concurrent_commits_on_one_repository_each_get_their_own_branch(repo: Path) -> None:
    def fix(n: int) -> Commit:
        return write_fix(repo, {"agents/prompt.md": f"version {n}\n"}, branch=f"taskyard/fix-c-{n}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(fix, range(8)))

    assert [r.branch for r in results] == [f"taskyard/fix-c-{n}" for n in range(8)]
    assert len({r.commit for r in results}) == 8
    for n, result in enumerate(results):
        assert show(repo, result.commit, "agents/prompt.md") == f"version {n}\n"
    assert worktrees(repo) == [f"worktree {repo}"]


def test_pruning_a_lost_replay_worktree_does_not_break_commits_running_beside_it(repo: Path, tmp_path: Path) -> None:
    # `git worktree prune` can delete a worktree another thread is still adding; here both happen at once
    def replay(n: int) -> None:
        dest = tmp_path / f"replay-{n}"
        add_worktree(str(repo), "main", str(dest))
        shutil.rmtree(dest)
        remove_worktree(str(repo), str(dest))  # the directory is gone, so this prunes

    def fix(n: int) -> Commit:
        return write_fix(repo, {"agents/prompt.md": f"version {n}\n"}, branch=f"taskyard/fix-p-{n}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        replays = [pool.submit(replay, n) for n in range(12)]
        fixes = [pool.submit(fix, n) for n in range(12)]
        results = [f.result() for f in fixes] + [r.result() for r in replays]

    assert len(branches(repo)) == 13
    assert len(results) == 24
    assert worktrees(repo) == [f"worktree {repo}"]


def test_commits_work_on_a_bare_repository(repo: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    result = write_fix(bare, {"agents/prompt.md": "bare\n"})
    again = apply_fix(bare, result.diff, branch="fix2")
    assert show(bare, "fix", "agents/prompt.md") == show(bare, "fix2", "agents/prompt.md") == "bare\n"
    assert again.files == ["agents/prompt.md"]
    assert worktrees(bare) == [f"worktree {bare}"]


def test_add_worktree_checks_out_the_commit_detached_and_remove_worktree_is_idempotent(
    repo: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "replay" / "wt"
    first = git(repo, "rev-parse", "HEAD~1").strip()

    add_worktree(str(repo), "HEAD~1", str(dest))

    assert (dest / "README.md").read_text() == "first\n"
    assert git(dest, "rev-parse", "HEAD").strip() == first
    assert subprocess.run(["git", "symbolic-ref", "-q", "HEAD"], cwd=dest).returncode == 1  # detached
    assert len(worktrees(repo)) == 2
    remove_worktree(str(repo), str(dest))
    assert not dest.exists()
    assert worktrees(repo) == [f"worktree {repo}"]
    remove_worktree(str(repo), str(dest))
    assert worktrees(repo) == [f"worktree {repo}"]


def test_remove_worktree_prunes_a_worktree_whose_directory_is_already_gone(repo: Path, tmp_path: Path) -> None:
    dest = tmp_path / "wt"
    add_worktree(str(repo), "main", str(dest))
    subprocess.run(["rm", "-rf", str(dest)], check=True)
    assert len(worktrees(repo)) == 2
    remove_worktree(str(repo), str(dest))
    assert worktrees(repo) == [f"worktree {repo}"]
    assert not (repo / ".git" / "worktrees").exists() or list((repo / ".git" / "worktrees").iterdir()) == []


def test_add_worktree_refuses_a_destination_that_is_not_empty(repo: Path, tmp_path: Path) -> None:
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "keep.txt").write_text("keep\n")
    with pytest.raises(GitError, match="not an empty directory"):
        add_worktree(str(repo), "main", str(dest))
    assert (dest / "keep.txt").read_text() == "keep\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    add_worktree(str(repo), "main", str(empty))
    assert (empty / "README.md").read_text() == "second\n"


def test_add_worktree_of_an_unknown_commit_is_a_git_error(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(GitError, match="unknown ref 'nope'"):
        add_worktree(str(repo), "nope", str(tmp_path / "wt"))
    assert not (tmp_path / "wt").exists()


def test_remove_worktree_outside_a_repository_just_removes_the_directory(tmp_path: Path) -> None:
    dest = tmp_path / "leftover"
    (dest / "sub").mkdir(parents=True)
    (dest / "sub" / "f.txt").write_text("x")
    remove_worktree(str(tmp_path / "gone-repo"), str(dest))
    assert not dest.exists()
    remove_worktree(str(tmp_path / "gone-repo"), str(dest))


def test_remove_worktree_refuses_to_remove_the_repository_itself(repo: Path) -> None:
    for dest in (repo, repo.parent):
        with pytest.raises(GitError, match="refusing to remove"):
            remove_worktree(str(repo), str(dest))
    assert (repo / "README.md").read_text() == "second\n"


def test_delete_branch_deletes_and_is_idempotent(repo: Path) -> None:
    git(repo, "branch", "old")
    delete_branch(str(repo), "old")
    assert branches(repo) == {"main"}
    delete_branch(str(repo), "old")
    assert branches(repo) == {"main"}
    with pytest.raises(GitError, match="invalid branch name"):
        delete_branch(str(repo), "-D")
