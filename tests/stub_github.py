"""A stub of GitHub's REST API over real HTTP, for integration and e2e tests.

It serves the endpoints Taskyard calls (issue comments, commit statuses, labels, pull request diff and files,
compare), checks the bearer token, records every request, and injects faults: answer the next N matching
requests with a status, or perform the action and then drop the connection without answering (the "response
lost" case that write-back must survive without posting twice).

    with StubGitHub(token="ghp_test") as gh:
        gh.set_pull("octo", "repo", 12, diff="diff --git ...", files=["a.py"])
        client = GitHubClient(gh.url, "ghp_test")
        ...
        assert gh.comments("octo", "repo", 12)[0]["body"].startswith("LGTM")
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["Fault", "RecordedRequest", "StubGitHub"]

_REPO = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(_REPO + r"/issues/(?P<number>\d+)/comments"), "_list_comments"),
    ("POST", re.compile(_REPO + r"/issues/(?P<number>\d+)/comments"), "_create_comment"),
    ("POST", re.compile(_REPO + r"/issues/(?P<number>\d+)/labels"), "_add_labels"),
    ("DELETE", re.compile(_REPO + r"/issues/(?P<number>\d+)/labels/(?P<label>[^/]+)"), "_remove_label"),
    ("POST", re.compile(_REPO + r"/statuses/(?P<sha>[^/]+)"), "_create_status"),
    ("GET", re.compile(_REPO + r"/pulls/(?P<number>\d+)/files"), "_pull_files"),
    ("GET", re.compile(_REPO + r"/pulls/(?P<number>\d+)"), "_pull"),
    ("GET", re.compile(_REPO + r"/compare/(?P<base>.+?)\.\.\.(?P<head>.+)"), "_compare"),
]
_DIFF_MEDIA = "application/vnd.github.diff"
_POLL_S = 0.05  # seconds between the server loop's shutdown checks (stop() waits up to this long)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # without the query string, percent-decoded
    query: dict[str, str]
    headers: dict[str, str]  # lowercase names
    json: Any  # the parsed body, or None


@dataclass
class Fault:
    """Answer the next ``times`` requests matching ``method`` and ``path_prefix`` with ``status`` (or drop)."""

    method: str
    path_prefix: str
    status: int = 500
    times: int = 1
    drop: bool = False  # perform the action, then close the connection without a response
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "stub fault"


@dataclass
class _Issue:
    comments: list[dict[str, Any]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A dropped connection (the "drop" fault) is the point of the test, not an error to print."""


class StubGitHub:
    """The stub server; a context manager that starts it on 127.0.0.1 (a free port) and stops it."""

    def __init__(self, token: str | None = "ghp_stub_token") -> None:
        self.token = token
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._issues: dict[tuple[str, str, int], _Issue] = {}
        self._statuses: list[dict[str, Any]] = []
        self._pulls: dict[tuple[str, str, int], tuple[str, list[str]]] = {}
        self._compares: dict[tuple[str, str, str, str], tuple[str, list[str]]] = {}
        self._next_id = 1000
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def __enter__(self) -> StubGitHub:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        handler = type("_BoundHandler", (_Handler,), {"stub": self})
        self._server = _QuietServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(_POLL_S,), name="stub-github",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    @property
    def url(self) -> str:
        assert self._server is not None, "the stub is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- set-up and inspection -----------------------------------------------------------------------------------

    def set_pull(self, owner: str, repo: str, number: int, *, diff: str = "", files: list[str] | None = None) -> None:
        with self._lock:
            self._pulls[(owner, repo, number)] = (diff, list(files or []))

    def set_compare(self, owner: str, repo: str, base: str, head: str, *, diff: str = "",
                    files: list[str] | None = None) -> None:
        with self._lock:
            self._compares[(owner, repo, base, head)] = (diff, list(files or []))

    def add_comment(self, owner: str, repo: str, number: int, body: str) -> int:
        with self._lock:
            return self._new_comment(owner, repo, number, body)

    def set_labels(self, owner: str, repo: str, number: int, labels: list[str]) -> None:
        with self._lock:
            self._issue(owner, repo, number).labels = list(labels)

    def fail(self, method: str, path_prefix: str, status: int = 500, *, times: int = 1, drop: bool = False,
             headers: dict[str, str] | None = None, message: str = "stub fault") -> None:
        """Make the next ``times`` requests matching (method, path prefix) fail; ``drop`` acts, then hangs up."""
        with self._lock:
            self._faults.append(Fault(method.upper(), path_prefix, status, times, drop, dict(headers or {}),
                                      message))

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def comments(self, owner: str, repo: str, number: int) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(c) for c in self._issue(owner, repo, number).comments]

    @property
    def statuses(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(s) for s in self._statuses]

    def labels(self, owner: str, repo: str, number: int) -> list[str]:
        with self._lock:
            return list(self._issue(owner, repo, number).labels)

    # -- request handling (called from server threads) -----------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
        """Returns (status, headers, body); status 0 means drop the connection without answering."""
        split = urlsplit(raw_path)
        path = unquote(split.path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        with self._lock:
            self._requests.append(RecordedRequest(method, path, query, headers, data))
            fault = self._take_fault(method, path)
            if fault is not None and not fault.drop:
                return _json_answer(fault.status, {"message": fault.message}, fault.headers)
            if self.token is not None and headers.get("authorization") != f"Bearer {self.token}":
                return _json_answer(401, {"message": "Bad credentials"})
            answer = self._route(method, split.path, query, headers, data)
        return (0, {}, b"") if fault is not None else answer

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.method == method and path.startswith(fault.path_prefix) and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    def _route(self, method: str, raw_path: str, query: dict[str, str], headers: dict[str, str],
               data: Any) -> tuple[int, dict, bytes]:
        for route_method, pattern, name in _ROUTES:
            match = pattern.fullmatch(raw_path)
            if route_method == method and match:
                params = {k: unquote(v) for k, v in match.groupdict().items()}
                handler = getattr(self, name)
                result: tuple[int, dict, bytes] = handler(params, query, headers, data)
                return result
        return _json_answer(404, {"message": "Not Found"})

    def _issue(self, owner: str, repo: str, number: int) -> _Issue:
        return self._issues.setdefault((owner, repo, number), _Issue())

    def _new_comment(self, owner: str, repo: str, number: int, body: str) -> int:
        self._next_id += 1
        self._issue(owner, repo, number).comments.append({"id": self._next_id, "body": body})
        return self._next_id

    def _list_comments(self, p: dict[str, str], query: dict[str, str], headers: dict, data: Any) -> tuple:
        items = self._issue(p["owner"], p["repo"], int(p["number"])).comments
        return _page(items, query, f"/repos/{p['owner']}/{p['repo']}/issues/{p['number']}/comments", self.url)

    def _create_comment(self, p: dict[str, str], query: dict, headers: dict, data: Any) -> tuple:
        if not isinstance(data, dict) or not isinstance(data.get("body"), str):
            return _json_answer(422, {"message": "body is required"})
        comment_id = self._new_comment(p["owner"], p["repo"], int(p["number"]), data["body"])
        return _json_answer(201, {"id": comment_id, "body": data["body"]})

    def _add_labels(self, p: dict[str, str], query: dict, headers: dict, data: Any) -> tuple:
        labels = data.get("labels") if isinstance(data, dict) else None
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            return _json_answer(422, {"message": "labels must be a list of strings"})
        issue = self._issue(p["owner"], p["repo"], int(p["number"]))
        issue.labels += [x for x in labels if x not in issue.labels]
        return _json_answer(200, [{"name": x} for x in issue.labels])

    def _remove_label(self, p: dict[str, str], query: dict, headers: dict, data: Any) -> tuple:
        issue = self._issue(p["owner"], p["repo"], int(p["number"]))
        if p["label"] not in issue.labels:
            return _json_answer(404, {"message": "Label does not exist"})
        issue.labels.remove(p["label"])
        return _json_answer(200, [{"name": x} for x in issue.labels])

    def _create_status(self, p: dict[str, str], query: dict, headers: dict, data: Any) -> tuple:
        if not isinstance(data, dict) or data.get("state") not in ("error", "failure", "pending", "success"):
            return _json_answer(422, {"message": "state is invalid"})
        status = {"owner": p["owner"], "repo": p["repo"], "sha": p["sha"], **data}
        self._statuses.append(status)
        return _json_answer(201, status)

    def _pull(self, p: dict[str, str], query: dict, headers: dict, data: Any) -> tuple:
        found = self._pulls.get((p["owner"], p["repo"], int(p["number"])))
        if found is None:
            return _json_answer(404, {"message": "Not Found"})
        if headers.get("accept") == _DIFF_MEDIA:
            return 200, {"Content-Type": "text/plain; charset=utf-8"}, found[0].encode("utf-8")
        return _json_answer(200, {"number": int(p["number"])})

    def _pull_files(self, p: dict[str, str], query: dict, headers: dict, data: Any) -> tuple:
        found = self._pulls.get((p["owner"], p["repo"], int(p["number"])))
        if found is None:
            return _json_answer(404, {"message": "Not Found"})
        items = [{"filename": name} for name in found[1]]
        return _page(items, query, f"/repos/{p['owner']}/{p['repo']}/pulls/{p['number']}/files", self.url)

    def _compare(self, p: dict[str, str], query: dict, headers: dict, data: Any) -> tuple:
        found = self._compares.get((p["owner"], p["repo"], p["base"], p["head"]))
        if found is None:
            return _json_answer(404, {"message": "Not Found"})
        if headers.get("accept") == _DIFF_MEDIA:
            return 200, {"Content-Type": "text/plain; charset=utf-8"}, found[0].encode("utf-8")
        return _json_answer(200, {"files": [{"filename": name} for name in found[1]]})


def _json_answer(status: int, data: Any, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(data).encode("utf-8")


def _page(items: list[Any], query: dict[str, str], path: str, base_url: str) -> tuple[int, dict, bytes]:
    """GitHub-style pagination: ``per_page`` (at most 100) and ``page``, with a Link header when more follow."""
    per_page = min(int(query.get("per_page", "30")), 100)
    page = max(int(query.get("page", "1")), 1)
    chunk = items[(page - 1) * per_page: page * per_page]
    headers = {}
    if page * per_page < len(items):
        headers["Link"] = f'<{base_url}{path}?per_page={per_page}&page={page + 1}>; rel="next"'
    return _json_answer(200, chunk, headers)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as GitHub: a dropped connection then looks like the real thing
    timeout = 10  # seconds an idle kept-alive connection may wait for its next request
    stub: StubGitHub

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read .requests instead
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, answer_headers, answer = self.stub.handle(self.command, self.path, headers, body)
        if status == 0:
            self.close_connection = True
            return
        self.send_response(status)
        for name, value in answer_headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _serve
