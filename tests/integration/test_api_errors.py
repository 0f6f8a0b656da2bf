"""The error edge of the real app (real Redis) when something unexpected breaks: JSON 500 with a request id
that is also in the log line, and no stack trace in the body."""

from __future__ import annotations

import logging

import pytest
from litestar.testing import TestClient

from api.app import create_app
from config.loader import load_settings
from engine.service import TaskService


def test_unexpected_errors_are_json_500_with_a_logged_request_id(redis_client, redis_url: str,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    async def broken(self: TaskService, project: str, task_id: str) -> None:
        raise RuntimeError("disk on fire at /secret/path")

    monkeypatch.setattr(TaskService, "get", broken)  # fault injection: an unexpected bug deep inside
    app = create_app(load_settings(None, env={}), redis_url=redis_url)
    with caplog.at_level(logging.ERROR, logger="taskyard.api"), TestClient(app=app) as client:
        response = client.get("/task/" + "a" * 32)
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal error" and len(body["request_id"]) == 16
    assert "secret" not in response.text and "Traceback" not in response.text
    (record,) = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert record.request_id == body["request_id"]
