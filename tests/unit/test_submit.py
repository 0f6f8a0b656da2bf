from __future__ import annotations

import pytest

from config.settings import WorkerSpec
from engine.dispatcher import plan
from engine.errors import NoOnlineWorkers, ValidationFailed, WorkerNotFound
from engine.submit import parse_submit


@pytest.mark.parametrize(("body", "message"), [
    ([], "invalid request body"),
    ({"prompt": 5}, "invalid request body"),
    ({"prompt": "x", "context": "nope"}, "invalid request body"),
    ({"prompt": "x", "max_retries": "3"}, "invalid request body"),
    ({"prompt": "x", "max_retries": True}, "invalid request body"),
    ({}, "prompt is required"),
    ({"prompt": ""}, "prompt is required"),
    ({"prompt": "   "}, "prompt is required"),
    ({"prompt": "x", "max_retries": 0}, "max_retries must be between 1 and 10"),
    ({"prompt": "x", "max_retries": 11}, "max_retries must be between 1 and 10"),
])
def test_bad_bodies_get_mechas_messages(body: object, message: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_submit(body)
    assert info.value.message == message


def test_unknown_fields_and_bad_timeouts_are_named() -> None:
    with pytest.raises(ValidationFailed, match="unknown field 'promt'"):
        parse_submit({"prompt": "x", "promt": "y"})
    with pytest.raises(ValidationFailed, match="timeout"):
        parse_submit({"prompt": "x", "timeout": "soon"})


def test_lone_surrogates_are_refused_not_stored() -> None:
    with pytest.raises(ValidationFailed, match="UTF-8"):
        parse_submit({"prompt": "\ud800"})


def test_valid_body_parses_durations() -> None:
    req = parse_submit({"prompt": "hi", "timeout": "2m", "max_retries": 3, "context": {"a": 1}})
    assert (req.timeout, req.max_retries, req.context) == (120.0, 3, {"a": 1})


def specs(*names: str, pools: dict[str, list[str]] | None = None, manual: set[str] | None = None):
    return {n: WorkerSpec(name=n, handler="m:f", pools=(pools or {}).get(n, []), auto=n not in (manual or set()))
            for n in names}


def test_named_worker_plan_allows_offline_and_unknown_is_404() -> None:
    p = plan(parse_submit({"prompt": "x", "worker": "b"}), specs("a", "b"), default_bound=7)
    assert p.policy == "named" and p.candidates == [("b", 7, 1, 600.0)] and not p.require_online
    with pytest.raises(WorkerNotFound):
        plan(parse_submit({"prompt": "x", "worker": "zz"}), specs("a"), default_bound=7)


@pytest.mark.parametrize("name", ["my agent", "-x", "a/b", "ünï"])
def test_a_worker_name_no_worker_can_have_is_404_worker_not_found_not_a_400(name: str) -> None:
    with pytest.raises(WorkerNotFound):
        parse_submit({"prompt": "x", "worker": name})


def test_round_robin_candidates_are_auto_workers_in_name_order() -> None:
    p = plan(parse_submit({"prompt": "x"}), specs("c", "a", "b", manual={"b"}), default_bound=3)
    assert [c[0] for c in p.candidates] == ["a", "c"] and p.rr_group == "*" and p.require_online


def test_pool_plan_and_empty_pool() -> None:
    defs = specs("a", "b", pools={"b": ["reviewers"]})
    p = plan(parse_submit({"prompt": "x", "pool": "reviewers"}), defs, default_bound=3)
    assert [c[0] for c in p.candidates] == ["b"] and p.rr_group == "pool:reviewers"
    with pytest.raises(NoOnlineWorkers):
        plan(parse_submit({"prompt": "x", "pool": "nobody"}), defs, default_bound=3)


@pytest.mark.parametrize("key", ["fix:0123", "regression:run:0:before", "event:e:r"])
def test_the_engines_own_idempotency_keys_cannot_be_taken_by_a_client(key: str) -> None:
    # a client that took a fix run's key first would have its task adopted as the fix agent's answer
    with pytest.raises(ValidationFailed, match="reserved for the engine's own tasks"):
        parse_submit({"prompt": "x", "idempotency_key": key})
    assert parse_submit({"prompt": "x", "idempotency_key": "fixture:1"}).idempotency_key == "fixture:1"
