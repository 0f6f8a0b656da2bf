"""Regenerate the dashboard screenshots in docs/screenshots/ (run through scripts/screenshots).

Starts `taskyard serve --no-workers` and one `taskyard worker` in a temporary directory, makes some data through the
API (tasks that pass and fail with traces, a webhook delivery, an agent that loops on a tool, the fix agent's commit
and the regression run that proves it), then saves a PNG of each page at laptop width and the overview at phone
width, in headless Chromium (Debian's /usr/bin/chromium, or $TASKYARD_CHROMIUM) driven by Playwright.

Redis: the embedded one under the temporary directory, or $TASKYARD_SCREENSHOTS_REDIS_URL (an empty database: the
script refuses one that holds keys). $TASKYARD_SCREENSHOTS_DIR writes the PNGs elsewhere (the test does).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import redis
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("TASKYARD_SCREENSHOTS_DIR", ROOT / "docs" / "screenshots"))
CHROMIUM = os.environ.get("TASKYARD_CHROMIUM", "/usr/bin/chromium")
KEY = "screenshots"
SECRET = "s3cr3t-for-screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TIMEOUT_S = 90.0  # seconds any one step may take

SUMMARIZER = """
import json, os, sys, time
prompt = sys.stdin.read()
with open(os.environ["TASKYARD_TRACE_FILE"], "a") as f:
    def emit(kind, **payload):
        f.write(json.dumps({"type": kind, "payload": payload}) + "\\n")
    emit("llm_call", model="claude-sonnet-4-6", tokens_in=1840, tokens_out=212, cost_usd=0.00871)
    emit("tool_call", tool="fetch", args={"url": "https://status.example.com"})
    emit("tool_result", output="all systems operational")
    emit("llm_call", model="claude-sonnet-4-6", tokens_in=2105, tokens_out=96, cost_usd=0.00776)
time.sleep(0.3)
if "fail" in prompt:
    sys.exit("upstream returned 503")
print("Summary: " + prompt[:60])
"""
LOOPER = """
import json, os, sys
import yaml
sys.stdin.read()
try:
    with open("taskyard-agent.yaml") as f:
        settings = yaml.safe_load(f) or {}
except FileNotFoundError:
    settings = {}
cap = min(settings.get("max_steps", 99), settings.get("max_repeats", 99))
with open(os.environ["TASKYARD_TRACE_FILE"], "a") as f:
    for _ in range(min(cap, 5)):  # without a cap: the same call, five times
        f.write(json.dumps({"type": "tool_call", "payload": {"tool": "search", "args": {"q": "why"}}}) + "\\n")
print(f"made {min(cap, 5)} calls")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "demo", "GIT_AUTHOR_EMAIL": "demo@example.com",
           "GIT_COMMITTER_NAME": "demo", "GIT_COMMITTER_EMAIL": "demo@example.com"}
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def _wait(what: str, fetch: Callable[[], Any], done: Callable[[Any], bool]) -> Any:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"screenshots: gave up waiting for {what}: {value!r}"[:500])
        time.sleep(0.2)


def _setup(tmp: Path) -> Path:
    """The worker scripts, a git repository for the looping agent, and the config. Returns the config's path."""
    (tmp / "summarizer.py").write_text(SUMMARIZER)
    repo = tmp / "agent-repo"
    repo.mkdir()
    (repo / "agent.py").write_text(LOOPER)
    (repo / "taskyard-agent.yaml").write_text("# settings of the demo agent\nmodel: demo\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "the demo agent")
    url = os.environ.get("TASKYARD_SCREENSHOTS_REDIS_URL")
    if url and redis.Redis.from_url(url).dbsize():
        raise SystemExit(f"screenshots: {url} holds keys; give an empty database")
    config = tmp / "taskyard.yaml"
    config.write_text(f"""
{f"redis_url: {url}" if url else ""}
api_key: {KEY}
data_dir: {tmp / "data"}
heartbeat_interval: 0.5s
sources:
  alerts: {{secret: {SECRET}}}
workers:
  - name: echo
    handler: workers.builtin:echo
    events:
      - source: alerts
        on: [deploy.failed]
        prompt: "Find out why the deploy of {{{{.service}}}} failed"
  - name: summarizer
    command: [{sys.executable}, {tmp / "summarizer.py"}]
    concurrency: 2
    max_queue_depth: 20
  - name: looper
    command: [{sys.executable}, agent.py]
    cwd: {repo}
    auto: false
    repo: {{path: {repo}, base_ref: main, allowed_paths: [taskyard-agent.yaml]}}
""")
    return config


@contextmanager
def _cluster(tmp: Path) -> Iterator[httpx.Client]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TASKYARD_CONFIG", None)
    port = _free_port()
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> None:
        log = (tmp / f"{args[0]}.log").open("wb")
        procs.append(subprocess.Popen([sys.executable, "-m", "api.cli", *args], cwd=tmp, env=env, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True))

    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": KEY}, timeout=10)

    def online() -> int:
        try:
            return sum(w["state"] == "online" for w in api.get("/workers").json())
        except httpx.TransportError:
            return -1

    try:
        # One after the other: the worker then joins the embedded Redis that serve started, not one of its own.
        start("serve", "--no-workers", "--port", str(port))
        _wait("serve", online, lambda n: n >= 0)
        start("worker")
        _wait("the worker", online, lambda n: n == 3)
        yield api
    except BaseException:
        for log in sorted(tmp.glob("*.log")):
            print(f"--- {log.name} (last lines)\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        raise
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _make_data(api: httpx.Client) -> dict[str, str]:
    """Tasks, a webhook delivery, a loop incident with a fix and its proof, and an open failure incident."""
    ids = {}
    prompts = ["Summarize yesterday's incidents for the on-call channel", "Triage issue #482 <script>x</script>",
               "Draft release notes for v2.4", "Summarize: this one will fail", "Check the status page"]
    for prompt in prompts:
        ids.setdefault("summary", api.post("/task", json={"prompt": prompt, "worker": "summarizer"}).json()["id"])
    for prompt in ("ping", "hello from the API"):
        api.post("/task", json={"prompt": prompt, "worker": "echo"})
    body = json.dumps({"type": "deploy.failed", "service": "billing", "env": "production"}).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    delivery = api.post("/webhook/alerts", content=body, headers={"X-Signature": f"sha256={signature}"})
    ids["event"] = delivery.json()["id"]
    for n in range(2):
        api.post("/task", json={"prompt": f"Find out why the search is slow (#{n + 1})", "worker": "looper"})
    loop = _wait("the loop incident", lambda: api.get("/api/incidents?class=loop").json(),
                 lambda i: len(i) == 1 and i[0]["task_count"] == 2)[0]
    ids["incident"] = loop["id"]
    fix = api.post(f"/api/incidents/{loop['id']}/fix-agent", json={"runner": "builtin"}).json()
    fix = _wait("the fix run", lambda: api.get(f"/api/fix-runs/{fix['id']}").json(),
                lambda r: r["status"] in ("completed", "failed"))
    run = api.post(f"/api/incidents/{loop['id']}/regression-runs", json={"fix_run_id": fix["id"]}).json()
    _wait("the regression run", lambda: api.get(f"/api/regression-runs/{run['id']}").json(),
          lambda r: r["status"] in ("completed", "failed"))
    _wait("every task to finish", lambda: api.get("/tasks?limit=100").json(),
          lambda ts: all(t["state"] in ("completed", "failed", "cancelled") for t in ts))
    _wait("the failure incident", lambda: api.get("/api/incidents").json(), lambda i: len(i) >= 2)
    return ids


def _shoot(api: httpx.Client, ids: dict[str, str]) -> list[Path]:
    OUT.mkdir(parents=True, exist_ok=True)
    shots = [("overview", "#/", '[data-worker="summarizer"]'), ("tasks", "#/tasks", "#tasks tbody tr"),
             ("task", f"#/task/{ids['summary']}", "#timeline li"), ("events", "#/events", "#events tbody tr"),
             ("event", f"#/event/{ids['event']}", ".history li"),
             ("incidents", "#/incidents", "#incidents tbody tr"),
             ("incident", f"#/incident/{ids['incident']}", "article.run .case")]
    saved = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        for size, pages in ((DESKTOP, shots), (PHONE, shots[:2])):
            page = browser.new_page(viewport=size, device_scale_factor=1)
            page.goto(f"{api.base_url}/ui")
            page.fill("#api-key", KEY)
            page.click("#login-form button[type=submit]")
            for name, route, ready in pages:
                page.evaluate("route => { location.hash = route; }", route)
                expect(page.locator(ready).first).to_be_visible(timeout=TIMEOUT_S * 1000)
                expect(page.locator("#live")).to_have_attribute("data-status", "live", timeout=TIMEOUT_S * 1000)
                page.wait_for_timeout(800)  # row highlight animations end
                path = OUT / (f"{name}.png" if size is DESKTOP else f"{name}-phone.png")
                page.screenshot(path=path, full_page=True)
                saved.append(path)
            page.close()
        browser.close()
    return saved


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="taskyard-screenshots-") as tmp_name:
        tmp = Path(tmp_name)
        _setup(tmp)
        with _cluster(tmp) as api:
            ids = _make_data(api)
            for path in _shoot(api, ids):
                print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
