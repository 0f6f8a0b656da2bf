"""A small synchronous GitHub REST client: what write-back and the lazy attributes (``diff``, ``file_list``) need.

Synchronous on purpose: the engine job that uses it runs in a worker thread. httpx errors and GitHub's error
answers become :class:`~engine.errors.GitHubError` here, at the boundary, with ``retryable`` set for rate limits
(429, or 403 with ``x-ratelimit-remaining: 0`` or ``retry-after``), 5xx answers and network errors. Messages name
the call and what to check, and never contain the token.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from config import defaults
from engine.errors import GitHubError

__all__ = ["STATUS_STATES", "GitHubClient", "GitHubError"]

logger = logging.getLogger("taskyard.github")

API_VERSION = "2022-11-28"
USER_AGENT = "taskyard"
_JSON = "application/vnd.github+json"
_DIFF = "application/vnd.github.diff"
STATUS_STATES = ("error", "failure", "pending", "success")
STATUS_DESCRIPTION_CHARS = 140  # characters; GitHub refuses longer commit status descriptions
_MESSAGE_CHARS = 200  # characters of GitHub's own error message quoted in ours
_MIN_SCRUB_CHARS = 8  # characters; a token at least this long is blanked out of quoted messages


class GitHubClient:
    """GitHub's REST API with a bearer token. One instance per source; close it (or use ``with``) when done."""

    def __init__(
        self,
        api_url: str,
        token: str | None,
        *,
        timeout_s: float = defaults.GITHUB_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
        max_diff_bytes: int = defaults.GITHUB_MAX_DIFF_BYTES,
        max_pages: int = defaults.GITHUB_MAX_PAGES,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._token = token
        self._timeout_s = timeout_s
        self.max_diff_bytes = max_diff_bytes
        self.max_pages = max_pages
        headers = {"Accept": _JSON, "X-GitHub-Api-Version": API_VERSION, "User-Agent": USER_AGENT}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.api_url, headers=headers, timeout=timeout_s, transport=transport,
                                  follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reads -------------------------------------------------------------------------------------------------

    def pull_diff(self, owner: str, repo: str, number: int) -> str:
        """The pull request's unified diff, cut at ``max_diff_bytes`` with a marker line saying so."""
        return self._diff(f"{_repo_path(owner, repo)}/pulls/{int(number)}", f"diff of {owner}/{repo}#{number}")

    def compare_diff(self, owner: str, repo: str, base: str, head: str) -> str:
        """The diff between two commits or refs (for push events), cut like :meth:`pull_diff`."""
        return self._diff(_compare_path(owner, repo, base, head), f"diff of {owner}/{repo} {base}...{head}")

    def pull_files(self, owner: str, repo: str, number: int) -> list[str]:
        """The names of the files a pull request changes, following pages up to ``max_pages``."""
        what = f"files of {owner}/{repo}#{number}"
        return [_field(item, "filename", what) for item in
                self._pages(f"{_repo_path(owner, repo)}/pulls/{int(number)}/files", what)]

    def find_comment(self, owner: str, repo: str, number: int, marker: str) -> int | None:
        """The id of the first comment on the issue or pull request whose body contains ``marker``, or None."""
        what = f"comments of {owner}/{repo}#{number}"
        for item in self._pages(f"{_repo_path(owner, repo)}/issues/{int(number)}/comments", what):
            body = item.get("body") if isinstance(item, dict) else None
            if isinstance(body, str) and marker in body:
                return int(_field(item, "id", what))
        return None

    # -- writes ------------------------------------------------------------------------------------------------

    def post_comment(self, owner: str, repo: str, number: int, body: str) -> int:
        """Post a comment on an issue or pull request; returns the new comment's id."""
        what = f"comment on {owner}/{repo}#{number}"
        response = self._request("POST", f"{_repo_path(owner, repo)}/issues/{int(number)}/comments", what,
                                 json={"body": body})
        return int(_field(self._json(response, what), "id", what))

    def set_status(self, owner: str, repo: str, sha: str, state: str, description: str,
                   context: str = "taskyard", target_url: str | None = None) -> None:
        """Set a commit status. ``description`` is cut to GitHub's 140 characters."""
        if state not in STATUS_STATES:
            raise ValueError(f"status state must be one of {', '.join(STATUS_STATES)}, not {state!r}")
        payload: dict[str, Any] = {"state": state, "description": description[:STATUS_DESCRIPTION_CHARS],
                                   "context": context}
        if target_url:
            payload["target_url"] = target_url
        if not _SHA.fullmatch(sha):
            raise GitHubError(f"{sha[:80]!r} is not a commit sha", retryable=False)
        self._request("POST", f"{_repo_path(owner, repo)}/statuses/{sha}",
                      f"status {state} on {owner}/{repo}@{sha[:12]}", json=payload)

    def add_labels(self, owner: str, repo: str, number: int, labels: list[str]) -> None:
        """Add labels to an issue or pull request (GitHub creates a label that does not exist yet)."""
        self._request("POST", f"{_repo_path(owner, repo)}/issues/{int(number)}/labels",
                      f"labels {', '.join(labels)} on {owner}/{repo}#{number}", json={"labels": list(labels)})

    def remove_label(self, owner: str, repo: str, number: int, label: str) -> None:
        """Remove one label; a label that is already gone (404) counts as removed."""
        what = f"removing label {label} from {owner}/{repo}#{number}"
        path = f"{_repo_path(owner, repo)}/issues/{int(number)}/labels/{_segment(label)}"
        try:
            self._request("DELETE", path, what)
        except GitHubError as exc:
            if exc.status != 404:
                raise

    # -- plumbing ----------------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, what: str, *, json: Any = None,
                 params: Mapping[str, Any] | None = None) -> httpx.Response:
        try:
            response = self._http.request(method, path, json=json, params=params)
        except httpx.HTTPError as exc:
            raise self._transport_error(what, exc) from exc
        if response.is_success:
            return response
        raise self._status_error(what, response)

    def _diff(self, path: str, what: str) -> str:
        """Stream a diff and stop reading past the cap, so a huge pull request costs at most the cap."""
        chunks: list[bytes] = []
        size = 0
        truncated = False
        try:
            with self._http.stream("GET", path, headers={"Accept": _DIFF}) as response:
                if not response.is_success:
                    response.read()
                    raise self._status_error(what, response)
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > self.max_diff_bytes:
                        truncated = True
                        break
        except httpx.HTTPError as exc:
            raise self._transport_error(what, exc) from exc
        data = b"".join(chunks)
        if not truncated:
            return data.decode("utf-8", "replace")
        kept = data[: self.max_diff_bytes]
        cut = kept.rfind(b"\n")
        kept = kept[: cut + 1] if cut >= 0 else kept
        text = kept.decode("utf-8", "ignore")  # "ignore": a character split by the cut is dropped, not garbled
        if text and not text.endswith("\n"):
            text += "\n"
        return text + f"[taskyard: diff truncated at {self.max_diff_bytes} bytes]\n"

    def _pages(self, path: str, what: str) -> Iterator[Any]:
        """Items of a paginated list: per_page=100, following pages while GitHub says there are more."""
        for page in range(1, self.max_pages + 1):
            response = self._request("GET", path, what, params={"per_page": defaults.GITHUB_PAGE_SIZE, "page": page})
            items = self._json(response, what)
            if not isinstance(items, list):
                raise GitHubError(f"{what}: GitHub answered with an unexpected shape; check api_url "
                                  f"({self.api_url}) points at the REST API", status=response.status_code)
            yield from items
            more = "next" in response.links if "link" in response.headers else \
                len(items) >= defaults.GITHUB_PAGE_SIZE
            if not more:
                return
        logger.warning("github listing cut at the page cap", extra={"what": what, "pages": self.max_pages})

    def _json(self, response: httpx.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise GitHubError(f"{what}: GitHub's answer is not JSON; check api_url ({self.api_url}) points at "
                              "the REST API", status=response.status_code) from exc

    def _transport_error(self, what: str, exc: httpx.HTTPError) -> GitHubError:
        if isinstance(exc, httpx.TimeoutException):
            reason = f"no answer within {self._timeout_s:g}s"
        else:
            reason = f"connection failed ({type(exc).__name__})"
        return GitHubError(f"{what}: {reason} talking to {self.api_url}; will retry", retryable=True)

    def _status_error(self, what: str, response: httpx.Response) -> GitHubError:
        status = response.status_code
        detail = self._scrub(_github_message(response))
        suffix = f": {detail}" if detail else ""
        limited = response.headers.get("x-ratelimit-remaining") == "0" or "retry-after" in response.headers
        if status == 429 or (status == 403 and limited):
            wait = response.headers.get("retry-after") or response.headers.get("x-ratelimit-reset")
            hint = f" (retry-after {wait})" if wait else ""
            return GitHubError(f"{what}: GitHub rate limit reached{hint}; will retry", status=status, retryable=True)
        if status >= 500:
            return GitHubError(f"{what}: GitHub answered {status}{suffix}; will retry", status=status, retryable=True)
        hint = {
            401: "the token was rejected: check the source's token",
            403: "the token lacks permission: it needs write access to issues, pull requests and commit statuses",
            404: "not found: check the owner, repository and number, and that the token can see the repository",
            422: "GitHub refused the request as invalid",
        }.get(status, "GitHub refused the request")
        return GitHubError(f"{what}: {status} {hint}{suffix}", status=status, retryable=False)

    def _scrub(self, text: str) -> str:
        """GitHub's message with the token blanked, should it ever echo it (a real token is 40+ characters;
        shorter test tokens are left alone rather than blanking ordinary words)."""
        if self._token and len(self._token) >= _MIN_SCRUB_CHARS:
            return text.replace(self._token, "***")
        return text


_REPO_PART = re.compile(r"[A-Za-z0-9_.-]{1,100}")  # GitHub's owner and repository names
_SHA = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")  # a commit id (SHA-1 or SHA-256 repositories)


def _segment(value: str) -> str:
    """One path segment from text a task or payload chose: quoted, and never a dot segment, which the HTTP
    client would resolve (a label named ``.`` made ``DELETE .../labels``: remove every label)."""
    if value.strip() in ("", ".", ".."):
        raise GitHubError(f"{value!r} cannot be used in a GitHub API path", retryable=False)
    return quote(value, safe="")


def _repo_path(owner: str, repo: str) -> str:
    """``/repos/<owner>/<repo>``; names come from payloads, so anything but a GitHub name is refused (a ``..``
    would walk the token to another API path)."""
    for part in (owner, repo):
        if not _REPO_PART.fullmatch(part) or part in (".", ".."):
            raise GitHubError(f"{part!r} is not a GitHub owner or repository name", retryable=False)
    return f"/repos/{quote(owner, safe='')}/{quote(repo, safe='')}"


def _compare_path(owner: str, repo: str, base: str, head: str) -> str:
    return f"{_repo_path(owner, repo)}/compare/{_segment(base)}...{_segment(head)}"


def _field(item: Any, key: str, what: str) -> Any:
    if isinstance(item, dict) and key in item:
        return item[key]
    raise GitHubError(f"{what}: GitHub's answer has no {key!r}; check api_url points at the REST API")


def _github_message(response: httpx.Response) -> str:
    """GitHub's own ``message`` from an error answer, shortened; empty when the body is not GitHub's JSON."""
    try:
        data = response.json()
    except ValueError:
        return ""
    message = data.get("message") if isinstance(data, dict) else None
    return message[:_MESSAGE_CHARS] if isinstance(message, str) else ""
