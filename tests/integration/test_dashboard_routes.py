"""The dashboard's routes on the real app: /ui and its assets are open (they hold no data) with a strict CSP and
ETags; the two SSE routes, and only they, also take the key as ``?api_key=`` (EventSource cannot send headers)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from api.controllers.ui import CSP
from tests.integration.conftest import app_client

pytestmark = pytest.mark.integration

CONFIG = """
api_keys:
  - {key: k-admin}
  - {key: k-submit, scopes: [submit]}
"""
STATIC = Path(__file__).resolve().parents[2] / "api" / "ui" / "static"


@pytest.fixture()
def client(tmp_path: Path, redis_client: Any, redis_url: str) -> Iterator[TestClient]:
    with app_client(tmp_path, CONFIG, redis_url) as c:
        yield c


def test_the_page_is_open_without_a_key_and_carries_a_strict_csp(client: TestClient) -> None:
    for path in ("/ui", "/ui/"):
        page = client.get(path)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == CSP
        assert page.headers["x-content-type-options"] == "nosniff"
        assert '<script type="module" src="/ui/static/js/app.js">' in page.text


def test_every_asset_the_page_loads_is_served_with_its_type(client: TestClient) -> None:
    index = client.get("/ui").text
    assets = re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', index)
    for js in STATIC.glob("js/**/*.js"):  # every module, including those imported by others
        assets.append("/ui/static/" + js.relative_to(STATIC).as_posix())
    assert "/ui/static/app.css" in assets and len(assets) > 5
    for path in assets:
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["content-security-policy"] == CSP
        kind = "text/css" if path.endswith(".css") else "text/javascript"
        assert answer.headers["content-type"].startswith(kind), path


def test_an_unchanged_asset_answers_304_to_its_etag(client: TestClient) -> None:
    first = client.get("/ui/static/js/app.js")
    again = client.get("/ui/static/js/app.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_only_files_of_the_static_folder_are_served(client: TestClient) -> None:
    for path in ("/ui/static/nope.js", "/ui/static/%2e%2e/auth.py", "/ui/static/..%2fcontrollers%2fui.py",
                 "/ui/static/index", "/ui/static/js"):
        assert client.get(path).status_code == 404, path
    # Dot segments are resolved before routing: what climbs out of /ui is an ordinary (closed) path.
    assert client.get("/ui/static/js/../../../auth.py").status_code == 401
    # Open means /ui and below, not every path that starts with the letters.
    assert client.get("/uix").status_code == 401


def test_the_sse_routes_take_the_key_as_a_query_parameter(client: TestClient) -> None:
    # A key in the query passes the gate: the route itself answers (404 / 400 before any stream starts).
    trace = client.get("/api/stream?trace_id=nope&api_key=k-admin")
    assert trace.status_code == 404 and trace.json()["error"] == "trace not found"
    feed = client.get("/api/activity?after=bad&api_key=k-admin")
    assert feed.status_code == 400 and feed.json()["error"].startswith("invalid after")
    # Without it, or with a wrong one: 401, as with headers.
    assert client.get("/api/stream?trace_id=nope").status_code == 401
    assert client.get("/api/activity?after=bad&api_key=wrong").status_code == 401
    assert client.get("/api/activity?after=bad&api_key=").status_code == 401
    # Scopes still apply: a key without `read` is refused.
    assert client.get("/api/stream?trace_id=nope&api_key=k-submit").status_code == 403


def test_no_other_route_takes_the_key_from_the_query(client: TestClient) -> None:
    for path in ("/tasks", "/workers", "/api/incidents", "/api/traces/x/events", "/api/stream/x"):
        assert client.get(f"{path}?api_key=k-admin").status_code == 401, path
    assert client.post("/api/stream?trace_id=nope&api_key=k-admin").status_code == 401  # GET only
    assert client.get("/tasks", headers={"X-API-Key": "k-admin"}).status_code == 200
