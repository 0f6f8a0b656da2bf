from __future__ import annotations

import json
from typing import Any

import pytest

from engine.errors import FilterInvalid
from engine.filters import compile_filter, filter_text
from engine.lazy_json import LazyJSON
from tests.fixture_paths import GITHUB_WEBHOOKS

FIXTURES = GITHUB_WEBHOOKS


def fixture(name: str) -> Any:
    path = FIXTURES / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"fixture {path} is not available")
    return json.loads(path.read_text())


ATTRS = {"number": 12, "base_branch": "main", "head_branch": "feature/login", "labels": ["bug", "ui"],
         "draft": False, "author": "octocat"}


def check(spec: dict[str, Any], attrs: dict[str, Any] | None = None, payload: Any = None) -> str | None:
    return compile_filter(spec, where="filter").check(ATTRS if attrs is None else attrs, payload or {})


def test_the_empty_filter_passes_every_event() -> None:
    compiled = compile_filter({})
    assert compiled.check({}, None) is None and not compiled


def test_equality_passes_and_a_near_miss_names_both_values() -> None:
    assert check({"base_branch": "main"}) is None
    assert check({"base_branch": "main"}, {"base_branch": "develop"}) == \
        "filter base_branch: 'develop' does not match 'main'"


@pytest.mark.parametrize("event_value", [12, "12", 12.0])
def test_numbers_compare_as_text_so_yaml_ints_match_payload_ints_and_strings(event_value: Any) -> None:
    assert check({"number": 12}, {"number": event_value}) is None
    assert check({"number": "12"}, {"number": event_value}) is None
    assert check({"number": 13}, {"number": event_value}) == "filter number: '12' does not match '13'"


def test_booleans_and_null_compare_as_true_false_null() -> None:
    assert check({"draft": False}) is None
    assert check({"draft": "false"}) is None
    assert check({"draft": True}) == "filter draft: 'false' does not match 'true'"
    assert check({"merged_by": None}, {"merged_by": None}) is None
    assert check({"merged_by": "null"}, {"merged_by": None}) is None
    assert check({"merged_by": None}, {"merged_by": "octocat"}) == \
        "filter merged_by: 'octocat' does not match 'null'"


def test_text_normalisation() -> None:
    assert [filter_text(v) for v in (True, False, None, 7, 7.0, 0.5, "x", {"b": 1, "a": [2]})] == \
        ["true", "false", "null", "7", "7", "0.5", "x", '{"a":[2],"b":1}']


def test_a_list_means_any_of() -> None:
    assert check({"base_branch": ["develop", "main"]}) is None
    assert check({"base_branch": ["develop", "release"]}) == \
        "filter base_branch: 'main' does not match any of 'develop', 'release'"


def test_a_string_with_glob_characters_is_a_case_sensitive_glob() -> None:
    assert check({"head_branch": "feature/*"}) is None
    assert check({"head_branch": "feature/log?n"}) is None
    assert check({"head_branch": ["release/*", "feat*"]}) is None
    assert check({"head_branch": "Feature/*"}) == "filter head_branch: 'feature/login' does not match 'Feature/*'"
    assert check({"head_branch": "bugfix/*"}, {"head_branch": "x/bugfix/y"}) is not None
    assert check({"head_branch": "a[*]"}, {"head_branch": "a*"}) is None
    assert check({"head_branch": "a[*]"}, {"head_branch": "ab"}) is not None


def test_a_list_valued_attribute_passes_when_any_item_matches() -> None:
    assert check({"labels": "ui"}) is None
    assert check({"labels": ["security", "bug"]}) is None
    assert check({"labels": "b*"}) is None
    assert check({"labels": "ready"}) == "filter labels: ['bug', 'ui'] does not match 'ready'"
    assert check({"labels": "bug"}, {"labels": []}) == "filter labels: [] does not match 'bug'"


def test_not_passes_when_the_inner_filter_fails() -> None:
    assert check({"not": {"labels": "wip"}}) is None
    assert check({"not": {"labels": "bug"}}) == 'filter not {"labels": "bug"} matched'
    # The inner clauses are ANDed: not(a and b).
    assert check({"not": {"labels": "bug", "draft": True}}) is None


def test_a_missing_value_fails_the_clause_but_passes_under_not() -> None:
    assert check({"pull_request.draft": False}) == "filter pull_request.draft: missing in payload"
    assert check({"not": {"pull_request.draft": True}}) is None


def test_clauses_are_anded_and_the_first_failing_one_is_named() -> None:
    spec = {"base_branch": "main", "author": "someone", "number": 99}
    assert check(spec) == "filter author: 'octocat' does not match 'someone'"


def test_dotted_paths_reach_into_the_real_pull_request_payload() -> None:
    payload = fixture("pull_request.labeled")
    assert check({"repository.full_name": "Codertocat/Hello-World", "pull_request.draft": False,
                  "pull_request.base.ref": "master", "action": "labeled"}, {}, payload) is None
    assert check({"pull_request.head.ref": "main"}, {}, payload) == \
        "filter pull_request.head.ref: 'changes' does not match 'main'"
    assert check({"repository.owner.login": "Codertocat*"}, {}, payload) is None
    assert check({"pull_request.merged_by": None}, {}, payload) is None


def test_a_path_through_a_list_maps_over_it_or_indexes_it() -> None:
    labeled = fixture("pull_request.labeled")
    assert check({"pull_request.labels.name": "bug"}, {}, labeled) is None
    assert check({"pull_request.labels.name": "wip"}, {}, labeled) == \
        "filter pull_request.labels.name: ['bug'] does not match 'wip'"
    push = fixture("push.with-new-branch")
    assert check({"commits.0.id": "6113728f27ae82c7b1a177c8d03f9e96e0adf246", "ref": "refs/heads/*"}, {}, push) \
        is None
    assert check({"commits.99.id": "x"}, {}, push) == "filter commits.99.id: missing in payload"


def test_an_attribute_wins_over_a_payload_key_of_the_same_name() -> None:
    assert check({"number": 12}, {"number": 12}, {"number": 2}) is None


def test_long_values_are_shortened_in_reasons() -> None:
    reason = check({"body": "x"}, {"body": "y" * 500})
    assert reason is not None and len(reason) < 120 and "..." in reason


def test_keys_lists_every_key_read_including_under_not() -> None:
    compiled = compile_filter({"base_branch": "main", "not": {"labels": "wip", "pull_request.draft": True}})
    assert compiled.keys == frozenset({"base_branch", "labels", "pull_request.draft"})
    assert compiled.spec == {"base_branch": "main", "not": {"labels": "wip", "pull_request.draft": True}}


def test_bad_shapes_are_all_reported_with_their_location() -> None:
    spec = {
        "head_branch": {"glob": "x"},
        "labels": [],
        "base_branch": ["main", ["nested"]],
        "not": ["wip"],
        "a..b": 1,
        "": 2,
    }
    with pytest.raises(FilterInvalid) as info:
        compile_filter(spec, where="workers[w].events[0].filter")
    keys = [key for key, _ in info.value.problems]
    assert keys == [
        "workers[w].events[0].filter.head_branch",
        "workers[w].events[0].filter.labels",
        "workers[w].events[0].filter.base_branch[1]",
        "workers[w].events[0].filter.not",
        "workers[w].events[0].filter.a..b",
        "workers[w].events[0].filter.",
    ]
    reasons = dict(info.value.problems)
    assert "not a mapping" in reasons["workers[w].events[0].filter.head_branch"]
    assert "empty list" in reasons["workers[w].events[0].filter.labels"]
    assert "mapping of clauses" in reasons["workers[w].events[0].filter.not"]


def test_bad_clauses_inside_not_are_located_under_not() -> None:
    with pytest.raises(FilterInvalid) as info:
        compile_filter({"not": {"labels": {}}, "x": 1}, where="rules[0].filter")
    assert [key for key, _ in info.value.problems] == ["rules[0].filter.not.labels"]
    with pytest.raises(FilterInvalid, match="must not be empty|non-empty"):
        compile_filter({"not": {}})


def test_a_filter_that_is_not_a_mapping_is_invalid() -> None:
    with pytest.raises(FilterInvalid, match="rules.0..filter: must be a mapping"):
        compile_filter(["base_branch"], where="rules[0].filter")  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", [
    {"base_branch": "master"}, {"base_branch": ["main", "master"]}, {"head_branch": "chan*"},
    {"not": {"labels": "bug"}}, {"pull_request.draft": False}, {"repository.full_name": "Codertocat/*"},
    {"not": {"action": ["closed", "opened"]}, "sender": "Codertocat"}, {"missing.path": "x"},
])
def test_the_fast_path_agrees_with_the_explaining_one(spec: dict) -> None:
    from engine.sources.github import extract_attributes

    flt = compile_filter(spec)
    for path in sorted(FIXTURES.glob("*.json")):
        payload = json.loads(path.read_text())
        attrs = extract_attributes(path.name.split(".")[0], payload)
        assert flt.passes(attrs, payload) == (flt.check(attrs, payload) is None), (spec, path.name)


def test_a_payload_left_undecoded_is_decoded_only_when_a_dotted_path_needs_it() -> None:
    raw = (FIXTURES / "pull_request.opened.json").read_text() if (FIXTURES / "pull_request.opened.json").is_file() \
        else json.dumps({"pull_request": {"draft": False}})
    by_attr = LazyJSON(raw)
    assert compile_filter({"base_branch": "main"}).passes(ATTRS, by_attr)
    assert not by_attr.decoded  # an attribute decided it
    by_path = LazyJSON(raw)
    assert compile_filter({"pull_request.draft": False}).passes({}, by_path)
    assert compile_filter({"pull_request.draft": True}).check({}, by_path) is not None
    assert by_path.decoded and by_path.value == json.loads(raw)
