from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from config.loader import load_settings
from config.settings import RuleSpec, Settings
from engine.errors import ConfigError
from engine.rules import EventView, RuleBook
from tests.fixture_paths import GITHUB_WEBHOOKS

FIXTURES = GITHUB_WEBHOOKS


def settings(workers: list[dict[str, Any]] | None = None, rules: list[dict[str, Any]] | None = None) -> Settings:
    return Settings.model_validate({"workers": workers or [], "rules": rules or []})


def worker(name: str, *events: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "handler": "m:f", "events": list(events)}


def rule(on: Any, prompt: str = "go", source: str = "github", **extra: Any) -> dict[str, Any]:
    return {"source": source, "on": on, "prompt": prompt, **extra}


def event(type_: str, source: str = "github", payload: Any = None, **attrs: Any) -> EventView:
    return EventView(source=source, type=type_, attrs=attrs, payload=payload or {})


# --- config shape ---------------------------------------------------------------------------------------------


def test_mecha_worker_events_parse_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "taskyard.yaml"
    path.write_text("""
workers:
  - name: pr-reviewer
    handler: m:f
    events:
      - source: github
        on: [pull_request.opened, pull_request.synchronize]
        filter: {base_branch: main}
        prompt: "Review PR #{{.number}}: {{.title}}"
rules:
  - {source: github, on: push, pool: builders, prompt: build, auto: false,
     concurrency_key: "{{.repo_name}}", on_conflict: cancel_running}
""")
    loaded = load_settings(path, env={})
    spec = loaded.workers[0].events[0]
    assert spec.on == ["pull_request.opened", "pull_request.synchronize"] and spec.filter == {"base_branch": "main"}
    assert spec.auto is True and spec.on_conflict == "queue" and spec.worker is None and spec.pool is None
    top = loaded.rules[0]
    assert top.on == ["push"] and top.pool == "builders" and top.auto is False and top.on_conflict == "cancel_running"


def test_a_rule_under_a_worker_must_not_name_a_target() -> None:
    with pytest.raises(ValidationError, match="must not name worker: its target is that worker"):
        settings([worker("w", rule("push", worker="other"))])


@pytest.mark.parametrize(("target", "message"), [
    ({}, "names exactly one of worker or pool"),
    ({"worker": "a", "pool": "b"}, r"exactly one of worker or pool \(got both\)"),
])
def test_a_top_level_rule_names_exactly_one_target(target: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(rules=[rule("push", **target)])


@pytest.mark.parametrize(("fields", "message"), [
    ({"on": []}, "at least 1 item"),
    ({"on": ["pull request"]}, "is not an event type"),
    ({"prompt": ""}, "at least 1 character"),
    ({"on_conflict": "skip"}, "needs a concurrency_key"),
    ({"on_conflict": "drop", "concurrency_key": "k"}, "'queue', 'cancel_running' or 'skip'"),
    ({"bogus": 1}, "Extra inputs are not permitted"),
    ({"source": "bad source"}, "must match"),
])
def test_bad_rule_fields_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RuleSpec.model_validate({**rule("push", pool="p"), **fields})


def test_a_missing_prompt_is_reported_with_its_key(tmp_path: Path) -> None:
    path = tmp_path / "taskyard.yaml"
    path.write_text("workers: [{name: w, handler: m:f, events: [{source: github, on: push}]}]\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert f"{path}: workers[0] (w).events[0].prompt: is required" in [str(i) for i in info.value.issues]


# --- build ------------------------------------------------------------------------------------------------------


def test_build_lists_every_bad_rule_with_file_and_location() -> None:
    config = settings(
        [worker("pr-reviewer",
                rule("pull_request.opened", filter={"head_branch": {"glob": "x"}}),
                rule("push", prompt="{{ .title ", concurrency_key="{% if %}")),
         worker("ok", rule("push"))],
        [rule("push", pool="p", filter={"labels": []}), rule("push", pool="p", prompt="{{if .a}}x{{end}}")],
    )
    with pytest.raises(ConfigError) as info:
        RuleBook.build(config, origins={"pr-reviewer": "workers/pr.yaml"}, default_file="ty.yaml")
    issues = [(i.file, i.key) for i in info.value.issues]
    assert issues == [
        ("workers/pr.yaml", "workers[pr-reviewer].events[0].filter.head_branch"),
        ("workers/pr.yaml", "workers[pr-reviewer].events[1].prompt"),
        ("workers/pr.yaml", "workers[pr-reviewer].events[1].concurrency_key"),
        ("ty.yaml", "rules[0].filter.labels"),
        ("ty.yaml", "rules[1].prompt"),
    ]
    assert "template syntax error on line 1" in info.value.issues[1].reason
    assert "Go template actions" in info.value.issues[4].reason


def test_rules_of_workers_come_first_then_top_level_rules_with_stable_ids() -> None:
    book = RuleBook.build(settings(
        [worker("b", rule("push"), rule("ping")), worker("a", rule("push"))],
        [rule("push", pool="p"), rule("push", worker="a")],
    ))
    assert len(book) == 5
    assert [r.id for r in book.rules()] == ["b.events[0]", "b.events[1]", "a.events[0]", "rules[0]", "rules[1]"]
    assert [r.location for r in book.rules()][:2] == ["workers[b].events[0]", "workers[b].events[1]"]
    assert [(r.worker, r.pool) for r in book.rules()] == [("b", None), ("b", None), ("a", None), (None, "p"),
                                                          ("a", None)]
    assert book.get("rules[0]") is book.rules()[3] and book.get("nope") is None


def test_an_empty_config_builds_an_empty_book() -> None:
    book = RuleBook.build(settings())
    assert len(book) == 0 and book.match(event("push")) == [] and book.evaluate(event("push")) == []


# --- candidates and matching ------------------------------------------------------------------------------------


def test_candidates_use_exact_types_globs_and_the_source() -> None:
    book = RuleBook.build(settings(
        [worker("w",
                rule(["pull_request.opened", "pull_request.synchronize"]),
                rule("pull_request.*"),
                rule("*"),
                rule("push"),
                rule("*", source="alerts"),
                rule(["pull_request.opened", "pull_request.*"]))],
    ))
    ids = [r.id for r in book.candidates("github", "pull_request.opened")]
    assert ids == ["w.events[0]", "w.events[1]", "w.events[2]", "w.events[5]"]
    assert [r.id for r in book.candidates("github", "push")] == ["w.events[2]", "w.events[3]"]
    assert [r.id for r in book.candidates("github", "pull_requests.opened")] == ["w.events[2]"]
    assert [r.id for r in book.candidates("alerts", "fired")] == ["w.events[4]"]
    assert book.candidates("gitlab", "push") == []


def test_candidates_are_stable_when_a_caller_mutates_the_list() -> None:
    book = RuleBook.build(settings([worker("w", rule("push"))]))
    book.candidates("github", "push").clear()
    assert len(book.candidates("github", "push")) == 1


def test_match_returns_rules_whose_filters_pass_including_auto_false() -> None:
    book = RuleBook.build(settings(
        [worker("reviewer", rule("pull_request.opened", filter={"base_branch": "main"})),
         worker("labeler", rule("pull_request.*", auto=False))],
        [rule("pull_request.opened", pool="p", filter={"not": {"labels": "wip"}})],
    ))
    matched = book.match(event("pull_request.opened", base_branch="main", labels=["wip"]))
    assert [(r.id, r.auto) for r in matched] == [("reviewer.events[0]", True), ("labeler.events[0]", False)]
    assert [r.id for r in book.match(event("pull_request.opened", base_branch="dev", labels=[]))] == \
        ["labeler.events[0]", "rules[0]"]


def test_evaluate_gives_every_rule_of_the_source_with_the_reason() -> None:
    book = RuleBook.build(settings(
        [worker("w",
                rule(["pull_request.opened", "pull_request.synchronize"], filter={"base_branch": "main"}),
                rule("pull_request.closed"),
                rule("fired", source="alerts"))],
    ))
    verdicts = book.evaluate(event("pull_request.closed", base_branch="develop"))
    assert [(v.rule.id, v.matched, v.reason) for v in verdicts] == [
        ("w.events[0]", False,
         "event type 'pull_request.closed' is not one of pull_request.opened, pull_request.synchronize"),
        ("w.events[1]", True, None),
    ]
    (near_miss, _) = book.evaluate(event("pull_request.opened", base_branch="develop"))
    assert near_miss.reason == "filter base_branch: 'develop' does not match 'main'"
    assert near_miss.to_public() == {
        "rule": "w.events[0]", "location": "workers[w].events[0]", "worker": "w", "pool": None, "auto": True,
        "matched": False, "reason": "filter base_branch: 'develop' does not match 'main'",
    }


def test_to_public_describes_the_rule_as_written() -> None:
    book = RuleBook.build(settings(rules=[rule(
        "pull_request.*", prompt="Review {{.number}}", pool="reviewers", filter={"pull_request.draft": False},
        concurrency_key="{{.repo_name}}#{{.number}}", on_conflict="cancel_running")]))
    (only,) = book.rules()
    public = only.to_public()
    assert json.loads(json.dumps(public)) == public
    assert public == {
        "id": "rules[0]", "location": "rules[0]", "source": "github", "on": ["pull_request.*"],
        "filter": {"pull_request.draft": False}, "prompt": "Review {{.number}}", "auto": True, "worker": None,
        "pool": "reviewers", "concurrency_key": "{{.repo_name}}#{{.number}}", "on_conflict": "cancel_running",
    }
    assert only.uses == frozenset({"number", "repo_name", "pull_request.draft"})


def test_a_real_pull_request_matches_and_renders_its_prompt() -> None:
    path = FIXTURES / "pull_request.opened.json"
    if not path.is_file():
        pytest.skip(f"fixture {path} is not available")
    payload = json.loads(path.read_text())
    book = RuleBook.build(settings([worker("pr-reviewer", rule(
        ["pull_request.opened", "pull_request.synchronize"],
        prompt="Review PR #{{.number}} in {{.repository.full_name}}: {{.pull_request.title}}",
        filter={"repository.full_name": "Codertocat/*", "pull_request.draft": False, "base_branch": "master"},
        concurrency_key="{{.repository.full_name}}#{{.number}}"))]))
    attrs = {"number": payload["number"], "base_branch": payload["pull_request"]["base"]["ref"]}
    (matched,) = book.match(EventView("github", "pull_request.opened", attrs, payload))
    context = {**payload, **attrs}
    assert matched.prompt.render(context) == \
        "Review PR #2 in Codertocat/Hello-World: Update the README with new information."
    assert matched.concurrency_key is not None
    assert matched.concurrency_key.render(context) == "Codertocat/Hello-World#2"
