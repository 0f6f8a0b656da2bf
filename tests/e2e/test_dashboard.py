"""The dashboard in a real browser (Debian's headless Chromium driven by Playwright) against real `serve` and
`worker` processes: it asks for the key, shows the workers, shows a submitted task turn `completed` without a
reload, shows a task's trace as a timeline, and acknowledges an incident with a click."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ROOT, Cluster, wait_final, wait_for
from tests.e2e.test_incidents import LOOPING_AGENT

CHROMIUM = Path(os.environ.get("TASKYARD_CHROMIUM", "/usr/bin/chromium"))
pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt install chromium)")]
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
expect = sync_api.expect

KEY = "k-ui"
HEADERS = {"X-API-Key": KEY}
UI_TIMEOUT_MS = 20_000  # the longest the page may take to show what the API already shows
SLOW_AGENT = """
import json, os, sys, time
prompt = sys.stdin.read()
with open(os.environ["TASKYARD_TRACE_FILE"], "a") as f:
    f.write(json.dumps({"type": "llm_call", "payload": {"model": "demo", "tokens_in": 120, "tokens_out": 30,
                                                       "cost_usd": 0.0042}}) + "\\n")
time.sleep(2.5)  # long enough to be seen running
print("echo: " + prompt)
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM))
        yield chromium
        chromium.close()


class Page:
    """A browser tab on the dashboard; records page errors and CSP violations, which fail the test."""

    def __init__(self, browser: Any, base: str, *, width: int = 1280) -> None:
        self.base = base
        self.page = browser.new_page(viewport={"width": width, "height": 900})
        self.problems: list[str] = []
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        self.page.on("console", self._console)

    def _console(self, message: Any) -> None:
        text = message.text
        # An API answering 401 (no key yet) or 404 (a trace not started yet) is the page working as meant.
        if "Content Security Policy" in text or (message.type == "error" and "Failed to load resource" not in text):
            self.problems.append(f"console {message.type}: {text}")

    def open(self, route: str = "") -> Any:
        self.page.goto(f"{self.base}/ui{route}")
        return self.page

    def sign_in(self, key: str = KEY) -> None:
        expect(self.page.locator("#login")).to_be_visible()
        self.page.fill("#api-key", key)
        self.page.click("#login-form button[type=submit]")

    def go(self, route: str) -> Any:
        self.page.evaluate("route => { location.hash = route; }", route)
        return self.page

    def wait_live(self) -> None:
        expect(self.page.locator("#live")).to_have_attribute("data-status", "live", timeout=UI_TIMEOUT_MS)

    def close(self) -> None:
        self.page.close()
        assert not self.problems, self.problems


@pytest.fixture()
def tabs(browser: Any) -> Iterator[Any]:
    opened: list[Page] = []

    def new(base: str, **kw: Any) -> Page:
        opened.append(Page(browser, base, **kw))
        return opened[-1]

    yield new
    for tab in opened:
        tab.close()


def test_the_page_asks_for_the_key_and_a_task_turns_completed_live(cluster: Cluster, redis_url: str,
                                                                  tmp_path: Path, tabs: Any) -> None:
    # Given: serve without workers, and a worker process with a slow command worker
    (tmp_path / "agent.py").write_text(SLOW_AGENT)
    cluster.config(f"""
redis_url: {redis_url}
api_key: {KEY}
heartbeat_interval: 0.5s
workers:
  - name: slowpoke
    command: [{sys.executable}, {tmp_path / "agent.py"}]
""")
    api = cluster.serve("--no-workers", headers=HEADERS)
    cluster.worker()
    ui = httpx.get(f"{api.base_url}/ui")
    assert ui.status_code == 200 and ui.headers["content-security-policy"].startswith("default-src 'self'")
    tab = tabs(str(api.base_url))
    page = tab.open()

    # When: a wrong key, then the right one
    tab.sign_in("wrong")
    expect(page.locator("#login-error")).to_contain_text("refused")
    tab.sign_in()

    # Then: the overview shows the worker, its health and its queue against its bound
    card = page.locator('[data-worker="slowpoke"]')
    expect(card).to_contain_text("healthy", timeout=UI_TIMEOUT_MS)
    expect(card).to_contain_text("0 / 256")
    expect(page.locator(".chart svg")).to_have_count(2)
    assert page.evaluate("sessionStorage.getItem('taskyard.apiKey')") == KEY

    # When: a task (with markup in its prompt) is submitted through the API while the tasks page is open
    tab.go("#/tasks")
    tab.wait_live()
    page.evaluate("window.notReloaded = true")
    prompt = '<img src=x id="injected"> hello'
    task_id = api.post("/task", json={"prompt": prompt}).json()["id"]

    # Then: its row appears while it runs and turns completed, without a reload
    row = page.locator(f'#tasks tr[data-id="{task_id}"]')
    expect(row).to_be_visible(timeout=UI_TIMEOUT_MS)
    assert row.get_attribute("data-state") in ("pending", "dispatched")
    expect(row).to_have_attribute("data-state", "completed", timeout=UI_TIMEOUT_MS)
    expect(row.locator(".badge")).to_have_text("completed")
    expect(row.locator("td.prompt")).to_have_text(prompt)  # shown as text, never as markup
    assert page.locator("#injected").count() == 0
    assert page.evaluate("window.notReloaded") is True
    assert wait_final(api, task_id)["state"] == "completed"

    # And: the task detail shows the prompt, the result and the trace as a timeline with tokens and cost
    row.locator("a").click()
    expect(page.locator("pre.result")).to_contain_text("echo: <img", timeout=UI_TIMEOUT_MS)
    timeline = page.locator("#timeline li")
    expect(timeline.filter(has_text="session_end")).to_have_count(1, timeout=UI_TIMEOUT_MS)
    assert timeline.count() >= 3  # task_started, llm_call, session_end
    expect(timeline.filter(has_text="llm_call")).to_contain_text("120 in / 30 out")
    expect(timeline.filter(has_text="llm_call")).to_contain_text("$0.0042")
    expect(page.locator(".totals")).to_contain_text("120 in / 30 out tokens")


def test_a_running_tasks_trace_streams_into_its_timeline(cluster: Cluster, redis_url: str, tmp_path: Path,
                                                         tabs: Any) -> None:
    # Given: a task page opened while its task is pending (no worker yet)
    (tmp_path / "agent.py").write_text(SLOW_AGENT)
    cluster.config(f"""
redis_url: {redis_url}
api_key: {KEY}
heartbeat_interval: 0.5s
workers:
  - name: slowpoke
    command: [{sys.executable}, {tmp_path / "agent.py"}]
""")
    api = cluster.serve("--no-workers", headers=HEADERS)
    task_id = api.post("/task", json={"prompt": "wait for me", "worker": "slowpoke"}).json()["id"]
    tab = tabs(str(api.base_url), width=375)  # a phone
    page = tab.open()
    tab.sign_in()
    tab.go(f"#/task/{task_id}")
    tab.wait_live()
    expect(page.locator(".page-head .badge")).to_have_text("pending")
    expect(page.locator("#view")).to_contain_text("No trace yet")

    # When: a worker comes up and runs it
    cluster.worker()

    # Then: the page follows it to completed and the timeline fills in live, ending with session_end
    expect(page.locator(".page-head .badge")).to_have_text("completed", timeout=UI_TIMEOUT_MS)
    expect(page.locator("#timeline li").filter(has_text="session_end")).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(page.locator("#timeline li").filter(has_text="llm_call")).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375  # nothing wider than the phone


def test_an_incident_appears_live_and_is_acknowledged_with_a_click(cluster: Cluster, redis_url: str,
                                                                   tmp_path: Path, tabs: Any) -> None:
    # Given: a worker whose agent loops on a tool, and the incidents page open before it runs
    (tmp_path / "agent.py").write_text(LOOPING_AGENT)
    cluster.config(f"""
redis_url: {redis_url}
api_key: {KEY}
heartbeat_interval: 0.5s
workers:
  - name: looper
    command: [{sys.executable}, {tmp_path / "agent.py"}]
""")
    api = cluster.serve("--no-workers", headers=HEADERS)
    cluster.worker()
    tab = tabs(str(api.base_url))
    page = tab.open()
    tab.sign_in()
    tab.go("#/incidents")
    tab.wait_live()

    # When: the agent loops
    task_id = api.post("/task", json={"prompt": "go"}).json()["id"]
    assert wait_final(api, task_id)["state"] == "completed"
    incidents = wait_for(lambda: api.get("/api/incidents").json(), lambda i: len(i) == 1)
    incident_id = incidents[0]["id"]

    # Then: the incident shows up without a reload; its page has the evidence marked in the trace and the playbook
    row = page.locator(f'#incidents tr[data-id="{incident_id}"]')
    expect(row).to_contain_text("open", timeout=UI_TIMEOUT_MS)
    row.locator("a").first.click()
    expect(page.locator("#incident-status")).to_have_text("open")
    expect(page.locator("#timeline li.evidence")).to_have_count(4, timeout=UI_TIMEOUT_MS)
    expect(page.locator("#view")).to_contain_text("What it means")

    # When: Acknowledge is clicked
    page.get_by_role("button", name="Acknowledge").click()

    # Then: the page and the API say acknowledged
    expect(page.locator("#incident-status")).to_have_text("acknowledged")
    expect(page.get_by_role("button", name="Acknowledge")).to_be_disabled()
    assert api.get(f"/api/incidents/{incident_id}").json()["status"] == "acknowledged"

    # And: the fix agent runs from its button; without a repository its run is an honest fallback
    page.get_by_role("button", name="Run fix agent").click()
    expect(page.locator("article.run")).to_contain_text("fallback", timeout=UI_TIMEOUT_MS)
    expect(page.get_by_role("button", name="Replay")).to_be_disabled()


def test_without_a_key_the_dashboard_opens_at_once(cluster: Cluster, redis_url: str, tabs: Any) -> None:
    cluster.config(f"redis_url: {redis_url}\nheartbeat_interval: 0.5s\n")
    api = cluster.serve()
    tab = tabs(str(api.base_url))
    page = tab.open("#/tasks")
    expect(page.locator("#tasks")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.locator("#login")).to_be_hidden()
    expect(page.locator("#forget")).to_be_hidden()
    tab.wait_live()
    # a malformed escape in the address is "no such page", not a blank view
    tab.go("#/task/%E0%A4%A")
    expect(page.locator("#view")).to_contain_text("No such page", timeout=UI_TIMEOUT_MS)


def test_the_screenshot_script_shoots_every_page(redis_client: Any, redis_url: str, tmp_path: Path) -> None:
    # The script as documented (scripts/screenshots), writing to a temporary folder on the tests' empty database.
    env = {**os.environ, "TASKYARD_SCREENSHOTS_DIR": str(tmp_path / "shots"),
           "TASKYARD_SCREENSHOTS_REDIS_URL": redis_url, "TASKYARD_CHROMIUM": str(CHROMIUM)}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "screenshots.py")], env=env, capture_output=True,
                          text=True, timeout=110)
    assert done.returncode == 0, done.stdout + done.stderr
    widths = {}
    for png in (tmp_path / "shots").glob("*.png"):
        head = png.read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n", png
        widths[png.stem] = int.from_bytes(head[16:20], "big")
    assert widths == {"overview": 1280, "tasks": 1280, "task": 1280, "events": 1280, "event": 1280,
                      "incidents": 1280, "incident": 1280, "overview-phone": 390, "tasks-phone": 390}
