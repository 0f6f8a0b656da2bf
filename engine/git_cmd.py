"""Running git safely for :mod:`engine.git_ops`: one command at a time in a directory, with hooks, signing,
automatic gc and colour off on every call, a time limit, stdin from bytes (never the command line), and git's
failures as :class:`~engine.errors.GitError` naming the configured repository."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO, TypeAlias

import git

from engine.errors import GitError

__all__ = ["GIT_TIMEOUT_S", "WORKTREE_LOCK", "GitCmd", "Result", "open_repo", "trim", "worktree_op"]

GIT_TIMEOUT_S = 300.0  # seconds one git command may run (a checkout of a large repository included) before it is killed
_STDERR_CHARS = 500  # characters of git's stderr quoted in an error message
_SAFE_SETTINGS = (f"core.hooksPath={os.devnull}", "commit.gpgsign=false", "gc.auto=0", "maintenance.auto=false")
_SAFE_CONFIG = tuple(arg for setting in _SAFE_SETTINGS for arg in ("-c", setting))  # on every command: no hooks etc.

# While `git worktree add` builds a worktree's metadata, a concurrent prune deletes it and a concurrent add, remove
# or `git branch -D` dies reading it, so within this process those commands take turns.
WORKTREE_LOCK = threading.Lock()

_Env: TypeAlias = Mapping[str, str] | None  # extra environment for one git command
Result: TypeAlias = tuple[int, bytes, str]  # exit status, stdout, stderr


@dataclass(frozen=True)
class GitCmd:
    """Runs git in ``cwd``; ``repo`` is the configured repository path every message names."""

    cwd: str
    repo: str

    def run(self, *args: str, data: bytes | None = None, env: _Env = None) -> Result:
        if not os.path.isdir(self.cwd):
            raise GitError(f"cannot run git for {self.repo}: directory {self.cwd} does not exist")
        try:
            if data is None:
                return self._execute(list(args), None, env)
            with tempfile.TemporaryFile() as stdin:
                stdin.write(data)
                stdin.seek(0)
                return self._execute(list(args), stdin, env)
        except git.GitCommandNotFound as exc:
            raise GitError(f"cannot run git for {self.repo}: is git installed and on PATH? ({exc})") from exc
        except (OSError, ValueError) as exc:
            raise GitError(f"cannot run git for {self.repo}: {exc}") from exc

    def out(self, *args: str, data: bytes | None = None, env: _Env = None) -> bytes:
        status, stdout, stderr = self.run(*args, data=data, env=env)
        if status != 0:
            raise GitError(f"git {args[0]} failed in {self.repo}: {trim(stderr)}")
        return stdout

    def _execute(self, args: list[str], stdin: BinaryIO | None, env: _Env) -> Result:
        return git.Git(self.cwd).execute(
            ["git", *_SAFE_CONFIG, *args],
            istream=stdin,
            with_extended_output=True,
            with_exceptions=False,
            stdout_as_string=False,
            strip_newline_in_stdout=False,
            kill_after_timeout=GIT_TIMEOUT_S,
            env=env,
        )


def open_repo(repo_path: str) -> GitCmd:
    try:
        repo = git.Repo(repo_path, expand_vars=False) if repo_path else None
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, OSError) as exc:
        raise GitError(f"not a git repository: {repo_path}") from exc
    if repo is None:
        raise GitError(f"not a git repository: {repo_path!r}")
    try:
        return GitCmd(cwd=str(repo.working_tree_dir or repo.git_dir), repo=repo_path)
    finally:
        repo.close()


def worktree_op(repo: GitCmd, *args: str) -> Result:
    """``git worktree <args>``, holding the lock."""
    with WORKTREE_LOCK:
        return repo.run("worktree", *args)


def trim(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _STDERR_CHARS else text[: _STDERR_CHARS - 1] + "…"
