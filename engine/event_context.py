"""What a rule's templates see of an event: its attributes, the raw payload, and the lazy GitHub attributes.

Used by the engine job that dispatches (which fetches ``diff`` and ``file_list`` from the GitHub API, only when
a template of a matching rule uses them) and by the rules dry run (which shows a placeholder instead).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from config.settings import SourceSpec
from engine.github_api import GitHubClient
from engine.rules import Rule

__all__ = ["LAZY_ATTRIBUTES", "base_context", "fetch_lazy", "lazy_wanted"]

LAZY_ATTRIBUTES = frozenset({"diff", "file_list"})
_SHA = re.compile(r"[0-9a-f]{40}")


def base_context(*, payload: Any, source: str, event_type: str, actor: str | None, subject: str | None,
                 attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The template variables every event gives: its attributes (which win over the names before them)."""
    return {"payload": payload, "source": source, "event_type": event_type, "actor": actor, "subject": subject,
            **attrs}


def lazy_wanted(rules: Iterable[Rule]) -> set[str]:
    """The lazy attributes the prompts and concurrency keys of the dispatching rules use."""
    wanted: set[str] = set()
    for rule in rules:
        if rule.auto:
            wanted |= rule.prompt.variables & LAZY_ATTRIBUTES
            if rule.concurrency_key is not None:
                wanted |= rule.concurrency_key.variables & LAZY_ATTRIBUTES
    return wanted


def fetch_lazy(client: GitHubClient | None, spec: SourceSpec | None, event_type: str, attrs: Mapping[str, Any],
               wanted: set[str]) -> dict[str, Any]:
    """``diff`` and ``file_list`` from the GitHub API (the source's token), for a pull request or a push. Empty
    for other sources and events. Raises GitHubError."""
    empty = {name: "" if name == "diff" else [] for name in wanted}
    owner, repo, number = attrs.get("repo_owner"), attrs.get("repo_name"), attrs.get("number")
    if client is None or spec is None or spec.kind != "github" or not owner or not repo:
        return empty
    out: dict[str, Any] = {}
    if number is not None and event_type.split(".")[0] in ("pull_request", "pull_request_review"):
        if "diff" in wanted:
            out["diff"] = client.pull_diff(owner, repo, int(number))
        if "file_list" in wanted:
            out["file_list"] = client.pull_files(owner, repo, int(number))
    elif _SHA.fullmatch(str(attrs.get("before", ""))) and _SHA.fullmatch(str(attrs.get("head_sha", ""))):
        # Only commit shas go into the compare path: payload text must never steer the API call.
        diff = client.compare_diff(owner, repo, attrs["before"], attrs["head_sha"])
        out = {"diff": diff, "file_list": _files_of(diff)}
    else:
        return empty
    return {k: v for k, v in out.items() if k in wanted}


def _files_of(diff: str) -> list[str]:
    """File names from a unified diff's ``diff --git a/x b/x`` lines (push events have no files endpoint)."""
    return [line.rsplit(" b/", 1)[1] for line in diff.splitlines()
            if line.startswith("diff --git a/") and " b/" in line]
