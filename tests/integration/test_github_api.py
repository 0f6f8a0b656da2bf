"""The GitHub client and write-back against the stub GitHub over real HTTP (no Redis)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from config.settings import PolicySpec
from engine.github_api import GitHubClient, GitHubError
from engine.writeback import Target, WriteBackRequest, comment_marker, execute, finished_keys, parse_result, plan
from tests.stub_github import StubGitHub

SHA = "abc123" + "0" * 34  # a commit id shape (40 hex)
TOKEN = "ghp_integration_secret_token"


@pytest.fixture()
def gh() -> Iterator[StubGitHub]:
    with StubGitHub(token=TOKEN) as stub:
        yield stub


@pytest.fixture()
def client(gh: StubGitHub) -> Iterator[GitHubClient]:
    with GitHubClient(gh.url, TOKEN, timeout_s=5.0) as c:
        yield c


def test_every_request_carries_auth_version_and_user_agent(gh: StubGitHub, client: GitHubClient) -> None:
    client.post_comment("octo", "repo", 1, "hello")
    request = gh.requests[-1]
    assert (request.method, request.path, request.json) == ("POST", "/repos/octo/repo/issues/1/comments",
                                                            {"body": "hello"})
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["x-github-api-version"] == "2022-11-28"
    assert request.headers["user-agent"].startswith("taskyard")


def test_pull_files_follows_every_page(gh: StubGitHub, client: GitHubClient) -> None:
    names = [f"src/file_{i:03}.py" for i in range(250)]
    gh.set_pull("octo", "repo", 12, files=names)
    assert client.pull_files("octo", "repo", 12) == names
    pages = [r.query for r in gh.requests if r.path.endswith("/files")]
    assert pages == [{"per_page": "100", "page": "1"}, {"per_page": "100", "page": "2"},
                     {"per_page": "100", "page": "3"}]


def test_pull_files_stops_at_the_page_cap(gh: StubGitHub) -> None:
    gh.set_pull("octo", "repo", 12, files=[f"f{i}" for i in range(250)])
    with GitHubClient(gh.url, TOKEN, max_pages=2) as capped:
        assert len(capped.pull_files("octo", "repo", 12)) == 200


def test_a_small_diff_comes_back_whole(gh: StubGitHub, client: GitHubClient) -> None:
    diff = "diff --git a/x.py b/x.py\n+print('hi')\n"
    gh.set_pull("octo", "repo", 3, diff=diff)
    assert client.pull_diff("octo", "repo", 3) == diff
    assert gh.requests[-1].headers["accept"] == "application/vnd.github.diff"


def test_a_huge_diff_is_cut_at_the_cap_with_a_marker_line(gh: StubGitHub, client: GitHubClient) -> None:
    line = "+" + "a" * 99 + "\n"  # 101 bytes
    gh.set_pull("octo", "repo", 4, diff=line * 8000)  # ~808 KB, past the 500 KB cap
    text = client.pull_diff("octo", "repo", 4)
    body, marker = text[: text.rindex("[taskyard")], text[text.rindex("[taskyard"):]
    assert marker == "[taskyard: diff truncated at 512000 bytes]\n"
    assert len(body.encode()) <= 512_000 and len(body.encode()) > 511_000
    assert body.endswith("\n") and set(body.splitlines()) == {line.rstrip("\n")}  # cut on a line boundary


def test_compare_diff_keeps_slashes_in_branch_names(gh: StubGitHub, client: GitHubClient) -> None:
    gh.set_compare("octo", "repo", "main", "feature/x", diff="diff --git a/a b/a\n")
    assert client.compare_diff("octo", "repo", "main", "feature/x") == "diff --git a/a b/a\n"
    assert gh.requests[-1].path == "/repos/octo/repo/compare/main...feature/x"


def test_find_comment_scans_every_page(gh: StubGitHub, client: GitHubClient) -> None:
    for i in range(150):
        gh.add_comment("octo", "repo", 9, f"comment {i}")
    wanted = gh.add_comment("octo", "repo", 9, "the one\n<!-- taskyard:abc -->")
    assert client.find_comment("octo", "repo", 9, "<!-- taskyard:abc -->") == wanted
    assert client.find_comment("octo", "repo", 9, "<!-- taskyard:other -->") is None


def test_status_and_labels_reach_github(gh: StubGitHub, client: GitHubClient) -> None:
    client.set_status("octo", "repo", SHA, "failure", "d" * 200, target_url="http://ci/1")
    assert gh.statuses == [{"owner": "octo", "repo": "repo", "sha": SHA, "state": "failure",
                            "description": "d" * 140, "context": "taskyard", "target_url": "http://ci/1"}]
    client.add_labels("octo", "repo", 5, ["bug", "needs review"])
    client.remove_label("octo", "repo", 5, "needs review")
    assert gh.labels("octo", "repo", 5) == ["bug"]
    assert gh.requests[-1].path == "/repos/octo/repo/issues/5/labels/needs review"


def test_removing_a_label_that_is_already_gone_succeeds(gh: StubGitHub, client: GitHubClient) -> None:
    client.remove_label("octo", "repo", 5, "never-there")
    assert gh.requests[-1].method == "DELETE"


@pytest.mark.parametrize(("status", "headers", "retryable"), [
    (500, {}, True),
    (502, {}, True),
    (429, {"Retry-After": "30"}, True),
    (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1700000000"}, True),
    (403, {}, False),
    (404, {}, False),
    (422, {}, False),
])
def test_errors_are_classified_as_retryable_or_not(gh: StubGitHub, client: GitHubClient, status: int,
                                                   headers: dict[str, str], retryable: bool) -> None:
    # The stub's message echoes the token: our error must not.
    gh.fail("POST", "/repos/octo/repo/issues/1/comments", status, headers=headers, message=f"bad {TOKEN}")
    with pytest.raises(GitHubError) as info:
        client.post_comment("octo", "repo", 1, "hello")
    assert info.value.status == status and info.value.retryable is retryable
    assert "comment on octo/repo#1" in info.value.message
    assert TOKEN not in info.value.message and TOKEN not in str(info.value)
    assert gh.comments("octo", "repo", 1) == []


def test_a_rejected_token_says_so(gh: StubGitHub) -> None:
    with GitHubClient(gh.url, "ghp_wrong") as wrong, pytest.raises(GitHubError) as info:
        wrong.add_labels("octo", "repo", 1, ["bug"])
    assert info.value.status == 401 and not info.value.retryable
    assert "token was rejected" in info.value.message and "ghp_wrong" not in info.value.message


def test_an_unreachable_github_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with GitHubClient(f"http://127.0.0.1:{port}", TOKEN, timeout_s=2.0) as c, pytest.raises(GitHubError) as info:
        c.pull_diff("octo", "repo", 1)
    assert info.value.retryable and info.value.status is None
    assert f"127.0.0.1:{port}" in info.value.message


def test_a_lost_response_never_posts_the_comment_twice(gh: StubGitHub, client: GitHubClient) -> None:
    # Given a plan with a comment, a status and a label, and a GitHub that posts the comment but hangs up
    steps = plan(WriteBackRequest(comment="Review: LGTM", status="success", add_labels=("reviewed",)),
                 PolicySpec(), Target("octo", "repo", number=12, head_sha=SHA))
    gh.fail("POST", "/repos/octo/repo/issues/12/comments", drop=True)

    # When write-back runs, the comment fails retryably and the independent steps still run
    first = execute(client, steps, done=set(), marker="evt1/task1")
    assert [(r.key, r.ok, r.retryable) for r in first] == [
        ("comment", False, True), ("status", True, False), ("label+reviewed", True, False)]
    assert len(gh.comments("octo", "repo", 12)) == 1

    # And when it resumes, it finds the posted comment instead of posting it again, and repeats nothing else
    second = execute(client, steps, done=finished_keys(first), marker="evt1/task1")
    comments = gh.comments("octo", "repo", 12)
    assert len(comments) == 1
    assert [(r.key, r.ok) for r in second] == [("comment", True)]
    assert second[0].detail == str(comments[0]["id"])
    assert comments[0]["body"] == "Review: LGTM\n\n" + comment_marker("evt1/task1")
    assert [s["state"] for s in gh.statuses] == ["success"]
    assert gh.labels("octo", "repo", 12) == ["reviewed"]
    assert sum(1 for r in gh.requests if r.method == "POST" and r.path.endswith("/comments")) == 1


def test_a_permanent_failure_is_recorded_and_the_next_step_still_runs(gh: StubGitHub, client: GitHubClient) -> None:
    steps = plan(WriteBackRequest(status="success", add_labels=("bug",)), PolicySpec(),
                 Target("octo", "repo", number=3, head_sha=SHA))
    gh.fail("POST", "/repos/octo/repo/statuses/", 422, message="No commit found for SHA: abc")
    results = execute(client, steps, done=set(), marker="m1")
    assert [(r.key, r.ok, r.retryable) for r in results] == [("status", False, False), ("label+bug", True, False)]
    assert "422" in results[0].detail and "No commit found" in results[0].detail
    assert finished_keys(results) == {"status", "label+bug"}


def test_done_and_denied_steps_are_not_run(gh: StubGitHub, client: GitHubClient) -> None:
    steps = plan(WriteBackRequest(comment="hi", status="success", add_labels=("secret",)),
                 PolicySpec(blocked_labels=["secret"]), Target("octo", "repo", number=3, head_sha=SHA))
    results = execute(client, steps, done={"comment"}, marker="m2")
    assert [r.key for r in results] == ["status"]
    assert gh.comments("octo", "repo", 3) == [] and gh.labels("octo", "repo", 3) == []


def test_payload_text_cannot_steer_the_token_to_another_api_path(gh: StubGitHub, client: GitHubClient) -> None:
    for owner, repo in (("..", "user"), ("octo", ".."), ("octo/../..", "x"), ("octo", "re po")):
        with pytest.raises(GitHubError) as caught:
            client.pull_diff(owner, repo, 1)
        assert not caught.value.retryable
    with pytest.raises(GitHubError):
        client.compare_diff("octo", "repo", "a" * 40, "../../../../user")
    assert all(not r.path.startswith("/user") for r in gh.requests)


def test_dot_segments_never_reach_a_github_path(gh: StubGitHub, client: GitHubClient) -> None:
    for label in (".", "..", " . "):
        with pytest.raises(GitHubError):
            client.remove_label("octo", "repo", 1, label)
    with pytest.raises(GitHubError):
        client.set_status("octo", "repo", "..", "success", "x")
    assert gh.requests == []
    request = parse_result(json.dumps({"labels": {"remove": ["."]}}))
    assert request is not None and request.remove_labels == () and request.problems
