"""Every API route is scope-checked: it names a scope (or is one of the open paths) and runs the app's
``require_scope`` hook. A controller that set its own ``before_request`` would silently drop the check."""

from __future__ import annotations

from typing import Any

from api.app import create_app
from api.auth import OPEN_PATHS, UI_PREFIX, require_scope
from config.settings import Settings

OPEN = OPEN_PATHS | {"/schema", "/artifacts/{artifact_id:str}/content"}  # the last checks its URL's signature


def _litestar(app: Any) -> Any:
    while not hasattr(app, "routes"):  # the ASGI gates in front of Litestar
        app = app.app
    return app


def test_every_route_names_a_scope_and_runs_the_scope_check() -> None:
    app = _litestar(create_app(Settings(), redis_url="redis://127.0.0.1:1/0"))
    checked = 0
    for route in app.routes:
        if route.path in OPEN or route.path.startswith("/schema") or route.path.startswith(UI_PREFIX):
            continue
        for handler in route.route_handlers:
            if handler.http_methods == {"OPTIONS"}:  # Litestar's own preflight answer, no data
                continue
            assert handler.opt.get("scope"), f"{route.path} names no scope"
            assert handler.resolve_before_request() is require_scope, f"{route.path} skips the scope check"
            checked += 1
    assert checked > 40  # every area's routes were seen, not an empty app
