"""The git seam of the fix agent and of regression replay. Git and GitPython failures become
:class:`~engine.errors.GitError` (or :class:`~engine.errors.PathRefused`, :class:`~engine.errors.UnusableDiff`) here,
with a message naming the repository.

The configured repository's own working tree and index are never touched. A fix is committed in a temporary
``git worktree`` (a directory sharing the repository's objects and refs): the branch is created at the base, checked
out there, the change is written or applied and committed, and the worktree is removed whatever happens. Only the
branch stays, and only if everything worked. Regression replay uses :func:`add_worktree` / :func:`remove_worktree`.

Git is given everything it needs: author and committer are :data:`AUTHOR` (no ``user.name`` needed), hooks are off
(``core.hooksPath`` is the null device, ``--no-verify``), so are signing and automatic gc, and diffs come with
explicit ``a/`` ``b/`` prefixes and no colour or external driver; settings come in as arguments. Diffs and commit
messages reach git on stdin, never the command line; refs and branch names starting with ``-`` are refused.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from engine.errors import GitError, PathRefused, UnusableDiff
from engine.git_cmd import GIT_TIMEOUT_S, WORKTREE_LOCK, GitCmd, open_repo, trim, worktree_op
from engine.git_paths import clean_path, path_allowed, refused_paths

__all__ = [
    "AUTHOR",
    "GIT_TIMEOUT_S",
    "Commit",
    "add_worktree",
    "commit_diff",
    "commit_files",
    "delete_branch",
    "existing_commit",
    "path_allowed",
    "read_file",
    "refused_paths",
    "remove_worktree",
    "resolve_ref",
]

logger = logging.getLogger(__name__)

AUTHOR = ("Taskyard", "taskyard@localhost")  # (name, email) of every commit Taskyard makes
_SHORT_SHA = 12  # hex digits of a commit sha shown in messages
_REFUSED_MODES = {"120000": "a symlink", "160000": "a submodule"}  # git file modes a proposed change may not create
_DIFF_ARGS = ("--no-color", "--no-ext-diff", "--no-textconv", "-M", "--src-prefix=a/", "--dst-prefix=b/")
_APPLY_ARGS = ("apply", "-p1", "--whitespace=nowarn")




@dataclass(frozen=True)
class Commit:
    """A branch Taskyard made: where it started, the commit on it, and what changed."""

    branch: str  # e.g. "taskyard/fix-<incident>-<n>"
    commit: str  # sha of the new commit
    base: str  # sha the branch started from
    diff: str  # unified diff base..commit as `git diff` prints it, with a/ b/ prefixes
    files: list[str]  # changed paths, repo-relative posix, sorted (both sides of a rename)


def resolve_ref(repo_path: str, ref: str) -> str:
    """The commit sha ``ref`` names (a branch, tag, sha, ``HEAD~1`` ...) in the repository at ``repo_path``."""
    return _resolve(open_repo(repo_path), ref)


def commit_files(
    repo_path: str,
    *,
    base_ref: str,
    branch: str,
    files: Mapping[str, str],
    message: str,
    allowed_paths: Sequence[str],
) -> Commit:
    """Create ``branch`` at ``base_ref`` with ``files`` (repo-relative path -> full new UTF-8 text) committed.

    Raises :class:`PathRefused` before anything is made if a path is not allowed, :class:`UnusableDiff` if the
    files change nothing or cannot be written (e.g. through a symlink), :class:`GitError` for a bad repository, ref
    or branch name, or a branch that already exists.
    """
    repo = open_repo(repo_path)
    refused = refused_paths(files, allowed_paths)
    if refused:
        raise PathRefused(refused)
    if not files:
        raise UnusableDiff("the change is empty: no files given")
    base = _prepare(repo, base_ref, branch, message)
    with _branch_worktree(repo, base, branch) as tree:
        _write_files(repo, tree, files)
        paths = b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in files)
        tree.out("add", "--pathspec-from-file=-", "--pathspec-file-nul", data=paths, env={"GIT_LITERAL_PATHSPECS": "1"})
        return _commit(tree, base, branch, message, allowed_paths)


def commit_diff(
    repo_path: str,
    *,
    base_ref: str,
    branch: str,
    diff: str,
    message: str,
    allowed_paths: Sequence[str],
) -> Commit:
    """Create ``branch`` at ``base_ref`` with the unified ``diff`` applied and committed.

    The diff is read as ``git apply -p1`` reads it: paths carry one leading component to strip, as ``git diff``'s
    ``a/`` ``b/`` prefixes (a ``diff -u`` without prefixes does not apply). Every path it touches (both sides of a
    rename, created and deleted files) is checked against ``allowed_paths`` before anything is made
    (:class:`PathRefused`). An empty or unreadable diff, one that does not apply to the base, changes nothing, or
    creates a symlink or submodule raises :class:`UnusableDiff`.
    """
    repo = open_repo(repo_path)
    if not diff.strip():
        raise UnusableDiff("the diff is empty")
    patch = (diff if diff.endswith("\n") else diff + "\n").encode("utf-8", "surrogateescape")
    refused = refused_paths(_patch_paths(repo, patch), allowed_paths)
    if refused:
        raise PathRefused(refused)
    base = _prepare(repo, base_ref, branch, message)
    with _branch_worktree(repo, base, branch) as tree:
        status, _, stderr = tree.run(*_APPLY_ARGS, "--index", "--check", data=patch)
        if status != 0:
            raise UnusableDiff(f"the diff does not apply to {base[:_SHORT_SHA]}: {trim(stderr)}")
        tree.out(*_APPLY_ARGS, "--index", data=patch)
        return _commit(tree, base, branch, message, allowed_paths)


def add_worktree(repo_path: str, commit: str, dest: str) -> None:
    """Check out ``commit`` detached at ``dest`` (which must not exist, or be an empty directory)."""
    repo = open_repo(repo_path)
    sha = _resolve(repo, commit)
    target = os.path.abspath(dest)
    if os.path.lexists(target) and (not os.path.isdir(target) or os.listdir(target)):
        raise GitError(f"cannot add a worktree of {repo.repo} at {dest}: it exists and is not an empty directory")
    status, _, stderr = worktree_op(repo, "add", "--detach", "--quiet", target, sha)
    if status != 0:
        raise GitError(f"cannot add a worktree of {repo.repo} at {dest}: {trim(stderr)}")


def remove_worktree(repo_path: str, dest: str) -> None:
    """Remove the worktree at ``dest``; a no-op if it is already gone. ``git worktree remove --force``; if that
    fails (the directory was deleted by hand, say) the directory goes and ``git worktree prune`` forgets it. If
    ``repo_path`` is not a repository any more, the directory is simply deleted. Refuses a ``dest`` that is or
    contains the repository itself."""
    target = os.path.abspath(dest)
    _refuse_repo_inside(repo_path, target)
    try:
        repo: GitCmd | None = open_repo(repo_path)
    except GitError:
        repo = None
    if repo is not None:
        _refuse_repo_inside(repo.cwd, target)
        if worktree_op(repo, "remove", "--force", target)[0] == 0:
            return
    try:
        if os.path.islink(target) or os.path.isfile(target):
            os.unlink(target)
        elif os.path.isdir(target):
            shutil.rmtree(target)
    except OSError as exc:
        raise GitError(f"cannot remove the worktree directory {dest} of {repo_path}: {exc.strerror}") from exc
    if repo is not None:
        worktree_op(repo, "prune")


def read_file(repo_path: str, commit: str, path: str) -> str | None:
    """The text of ``path`` (repo-relative) at ``commit``; None when no such file is there. A path that could
    leave the repository, or a file that is not UTF-8 text -> GitError."""
    repo = open_repo(repo_path)
    if not clean_path(path):
        raise GitError(f"refusing path '{path}' in {repo_path}: it must stay inside the repository")
    sha = _resolve(repo, commit)
    status, out, _ = repo.run("cat-file", "blob", f"{sha}:{path}")
    if status != 0:
        return None
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise GitError(f"{path} at {sha[:_SHORT_SHA]} in {repo_path} is not UTF-8 text") from None


def existing_commit(repo_path: str, *, base: str, branch: str) -> Commit | None:
    """The commit a previous call made on ``branch`` (one commit by :data:`AUTHOR` on ``base``), so a job that
    runs again after its outcome was lost reuses it; None when the branch does not exist, or still points at
    ``base`` (an interrupted attempt: it is deleted). A branch of that name that is something else -> GitError
    (it is taken)."""
    repo = open_repo(repo_path)
    _check_branch(repo, branch)
    if not _branch_exists(repo, branch):
        return None
    base_sha = _resolve(repo, base)
    sha = _resolve(repo, f"refs/heads/{branch}")
    if sha == base_sha:  # an attempt interrupted between making the branch and committing: start again
        repo.out("update-ref", "-d", f"refs/heads/{branch}", base_sha)
        return None
    facts = repo.out("log", "-1", "--format=%P%x00%ae", sha).decode("utf-8", "replace").strip().split("\0")
    if len(facts) != 2 or facts[0] != base_sha or facts[1] != AUTHOR[1]:
        raise GitError(f"branch '{branch}' already exists in {repo_path}")
    diff = repo.out("diff", *_DIFF_ARGS, base_sha, sha).decode("utf-8", "replace")
    names = repo.out("diff", "--name-only", "-z", "--no-renames", base_sha, sha).split(b"\0")
    files = sorted({n.decode("utf-8", "surrogateescape") for n in names if n})
    return Commit(branch=branch, commit=sha, base=base_sha, diff=diff, files=files)


def delete_branch(repo_path: str, branch: str) -> None:
    """Delete ``branch``; a no-op if it does not exist. Git refuses while the branch is checked out somewhere."""
    repo = open_repo(repo_path)
    _check_branch(repo, branch)
    if _branch_exists(repo, branch):
        with WORKTREE_LOCK:  # git branch reads every worktree's metadata
            repo.out("branch", "-D", branch)


def _resolve(repo: GitCmd, ref: str) -> str:
    if not ref or ref.startswith("-") or any(c in ref for c in "\0\n\r"):
        raise GitError(f"refusing ref '{ref}' in {repo.repo}: a ref may not be empty, start with '-' or hold newlines")
    status, out, _ = repo.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if status != 0:
        raise GitError(f"unknown ref '{ref}' in {repo.repo}")
    return out.decode().strip()


def _check_branch(repo: GitCmd, branch: str) -> None:
    if not branch or branch.startswith("-") or "\0" in branch:
        raise GitError(f"invalid branch name '{branch}' for {repo.repo}")
    status, out, stderr = repo.run("check-ref-format", "--branch", branch)
    if status != 0 or out.decode("utf-8", "replace").strip() != branch:
        raise GitError(f"invalid branch name '{branch}' for {repo.repo}: {trim(stderr) or 'git expands it'}")


def _branch_exists(repo: GitCmd, branch: str) -> bool:
    return repo.run("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")[0] == 0


def _prepare(repo: GitCmd, base_ref: str, branch: str, message: str) -> str:
    """Checks shared by both commit functions; returns the base sha."""
    if not message.strip():
        raise GitError(f"the commit message is empty; nothing was committed to {repo.repo}")
    base = _resolve(repo, base_ref)
    _check_branch(repo, branch)
    if _branch_exists(repo, branch):
        raise GitError(f"branch '{branch}' already exists in {repo.repo}")
    return base


@contextmanager
def _branch_worktree(repo: GitCmd, base: str, branch: str) -> Iterator[GitCmd]:
    """Create ``branch`` at ``base`` and check it out in a temporary worktree; remove the worktree afterwards,
    and the branch too unless the body finished."""
    try:
        tree = tempfile.mkdtemp(prefix="taskyard-fix-")
    except OSError as exc:
        raise GitError(f"cannot make a temporary directory for a worktree of {repo.repo}: {exc}") from exc
    created = done = False
    try:
        status, _, stderr = repo.run("update-ref", "-m", "taskyard: new branch", f"refs/heads/{branch}", base, "")
        if status != 0:  # the empty old value makes this fail if the branch exists (another caller won the race)
            if _branch_exists(repo, branch):
                raise GitError(f"branch '{branch}' already exists in {repo.repo}")
            raise GitError(f"cannot create branch '{branch}' in {repo.repo}: {trim(stderr)}")
        created = True
        status, _, stderr = worktree_op(repo, "add", "--quiet", tree, branch)
        if status != 0:
            raise GitError(f"cannot check out branch '{branch}' of {repo.repo} in {tree}: {trim(stderr)}")
        yield replace(repo, cwd=tree)
        done = True
    finally:
        _cleanup(repo, tree, branch if created and not done else None)


def _cleanup(repo: GitCmd, tree: str, branch: str | None) -> None:
    """Best effort, never raises: the worktree goes, and ``branch`` too when given."""
    try:
        remove_worktree(repo.repo, tree)
        if branch is not None:
            repo.out("update-ref", "-d", f"refs/heads/{branch}")
    except GitError as exc:
        logger.warning("git cleanup failed", extra={"repo": repo.repo, "worktree": tree, "error": exc.message})


def _write_files(repo: GitCmd, tree: GitCmd, files: Mapping[str, str]) -> None:
    root = Path(tree.cwd)
    for rel, text in files.items():
        parts = rel.split("/")
        if any(root.joinpath(*parts[:depth]).is_symlink() for depth in range(1, len(parts) + 1)):
            raise UnusableDiff(f"refusing to write {rel} in {repo.repo}: it is or goes through a symlink")
        target = root / rel
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
        except (OSError, UnicodeError) as exc:
            raise UnusableDiff(f"cannot write {rel} in {repo.repo}: {exc}") from exc


def _patch_paths(repo: GitCmd, patch: bytes) -> set[str]:
    """Every path the patch touches, without applying it: ``--numstat`` names the new side of each file, and the
    same on the reversed patch names the old side (rename sources, deleted files)."""
    paths: set[str] = set()
    for reverse in ((), ("-R",)):
        status, out, stderr = repo.run(*_APPLY_ARGS, "--numstat", "-z", *reverse, data=patch)
        if status != 0:
            raise UnusableDiff(f"the diff is not a patch git can read: {trim(stderr)}")
        for record in out.split(b"\0"):
            if record:
                paths.add(record.split(b"\t", 2)[2].decode("utf-8", "surrogateescape"))
    return paths


def _commit(tree: GitCmd, base: str, branch: str, message: str, allowed_paths: Sequence[str]) -> Commit:
    """Check what is staged in ``tree`` against ``base`` and commit it."""
    modes, files = _staged(tree, base)
    if not files:
        raise UnusableDiff(f"the change is empty: it leaves {base[:_SHORT_SHA]} as it is")
    for mode, kind in _REFUSED_MODES.items():
        if mode in modes:
            raise UnusableDiff(f"the change writes {kind} (mode {mode}); a proposed fix may not")
    refused = refused_paths(files, allowed_paths)
    if refused:
        raise PathRefused(refused)
    name, email = AUTHOR
    env = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}
    tree.out("commit", "--no-verify", "--quiet", "--file=-", data=message.encode("utf-8", "surrogateescape"), env=env)
    sha = tree.out("rev-parse", "HEAD").decode().strip()
    diff = tree.out("diff", *_DIFF_ARGS, base, sha).decode("utf-8", "replace")
    return Commit(branch=branch, commit=sha, base=base, diff=diff, files=files)


def _staged(tree: GitCmd, base: str) -> tuple[set[str], list[str]]:
    """The new file modes and the sorted changed paths (both sides of renames) of the index against ``base``."""
    fields = tree.out("diff", "--cached", "--raw", "-z", "-M", "--no-abbrev", base).split(b"\0")
    modes: set[str] = set()
    paths: set[str] = set()
    i = 0
    while i < len(fields) and fields[i]:
        meta = fields[i].decode().split()  # ":<old mode> <new mode> <old sha> <new sha> <status>"
        count = 2 if meta[4][0] in "RC" else 1
        modes.add(meta[1])
        paths.update(f.decode("utf-8", "surrogateescape") for f in fields[i + 1 : i + 1 + count])
        i += 1 + count
    return modes, sorted(paths)


def _refuse_repo_inside(repo_dir: str, target: str) -> None:
    repo_real, target_real = os.path.realpath(repo_dir), os.path.realpath(target)
    if os.path.commonpath([repo_real, target_real]) == target_real:
        raise GitError(f"refusing to remove {target}: it is or contains the repository {repo_dir}")
