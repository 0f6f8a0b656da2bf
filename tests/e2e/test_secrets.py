"""Configured secrets never come back out: a representative session against real serve and worker processes,
then every response (headers and body), every process log, every CLI output and every value in Redis is
searched for each secret the config holds. API keys exist only as hashes (their 16-hex-character key id)."""

from __future__ import annotations

import hashlib
import hmac
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.e2e.conftest import Cluster, free_port, wait_final, wait_for
from tests.fixture_paths import GITHUB_WEBHOOKS
from tests.stub_github import StubGitHub

# Distinctive values, so a hit can only be a leak: each appears in the config and nowhere else.
ADMIN_KEY = "tyk-admin-Qm41vXb7Lr"
AGENT_KEY = "tyk-agent-Hn52cWd8Ks"
OTHER_KEY = "tyk-other-Jp63eYf9Mt"
WEBHOOK_SECRET = "whsec-Rt74gZh0Nu"
GITHUB_TOKEN = "ghp-Sv85iAj1Pw"
ENV_SECRET = "envsecret-Tw96kBm2Qx"
HEADER_SECRET = "hdrsecret-Ux07nCo3Ry"
REDIS_PASSWORD = "redispw-Vy18pDq4Sz"
SECRETS = {"api key (admin)": ADMIN_KEY, "api key (agent)": AGENT_KEY, "api key (other project)": OTHER_KEY,
           "webhook secret": WEBHOOK_SECRET, "GitHub token": GITHUB_TOKEN, "worker env": ENV_SECRET,
           "endpoint header": HEADER_SECRET, "Redis password": REDIS_PASSWORD}

ENV_DIGEST = hashlib.sha256(ENV_SECRET.encode()).hexdigest()  # the agent checks its env without holding it
AGENT = f'''
import hashlib, json, os, sys
prompt = sys.stdin.read()
with open(os.environ["TASKYARD_TRACE_FILE"], "a") as f:
    f.write(json.dumps({{"type": "llm_call", "payload": {{"model": "gpt-4o-mini", "input_tokens": 10,
                                                        "output_tokens": 5}}}}) + "\\n")
if hashlib.sha256(os.environ.get("AGENT_TOKEN", "").encode()).hexdigest() != "{ENV_DIGEST}":
    sys.exit("the token did not reach the agent")
if "fail" in prompt:
    sys.exit("asked to fail")
print("done: " + prompt)
'''

REVIEWER = '''
import json

def review(ctx):
    return json.dumps({"comment": "Reviewed: " + ctx.prompt, "status": {"state": "success", "description": "ok"}})
'''


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


# How to read a whole value of each Redis type (the command and its arguments after the key)
READ_BY_TYPE = {"string": ("GET",), "hash": ("HGETALL",), "list": ("LRANGE", 0, -1), "set": ("SMEMBERS",),
                "zset": ("ZRANGE", 0, -1, "WITHSCORES"), "stream": ("XRANGE", "-", "+")}


def redis_dump(url: str) -> str:
    """Every key of the test's database with its whole value, read by type: one line per key."""
    client = redis.Redis.from_url(url)
    out: list[str] = []
    try:
        for key in client.scan_iter(count=1000):
            kind = client.type(key).decode()
            command, *args = READ_BY_TYPE[kind]
            out.append(f"{key.decode(errors='replace')} {kind} {client.execute_command(command, key, *args)!r}")
    finally:
        client.close()
    return "\n".join(out)


class Recorder:
    """Keeps every response a client receives (status, headers, body) for the final search."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.clients: list[httpx.Client] = []

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        self.seen.append(f"{response.request.method} {response.url.path} -> {response.status_code}\n"
                         f"{dict(response.headers)}\n{response.text}")

    def client(self, base_url: str, headers: dict[str, str] | None = None) -> httpx.Client:
        self.clients.append(httpx.Client(base_url=base_url, headers=headers or {}, timeout=10,
                                         event_hooks={"response": [self]}))
        return self.clients[-1]


@pytest.fixture()
def record() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    for client in recorder.clients:
        client.close()


@pytest.fixture()
def github() -> Iterator[StubGitHub]:
    with StubGitHub(token=GITHUB_TOKEN) as stub:
        yield stub


def run_cli(cluster: Cluster, base_url: str, *commands: tuple[str | None, list[str]]) -> list[str]:
    """Run ``taskyard`` commands at once, each with its API key (or none) in TASKYARD_API_KEY; their outputs."""
    running = []
    for key, args in commands:
        env = {k: v for k, v in cluster.env.items() if k != "TASKYARD_API_KEY"}
        env.update({"TASKYARD_URL": base_url, **({"TASKYARD_API_KEY": key} if key else {})})
        running.append((args, subprocess.Popen([sys.executable, "-m", "api.cli", *args], cwd=cluster.tmp, env=env,
                                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    return [f"$ taskyard {' '.join(args)} -> {proc.wait(30)}\n{proc.communicate()[0]}" for args, proc in running]


def test_configured_secrets_never_appear_in_answers_logs_cli_output_or_redis(
        cluster: Cluster, redis_url: str, github: StubGitHub, record: Recorder) -> None:
    # Given: keys for two projects, a signed GitHub source with a token, a command worker with a secret in its
    # environment, an endpoint worker with a secret header; logs at debug, rate limits on (key-id buckets)
    (cluster.tmp / "agent.py").write_text(AGENT)
    (cluster.tmp / "review_agent.py").write_text(REVIEWER)
    config = cluster.config(f"""
redis_url: {redis_url}
log_level: debug
heartbeat_interval: 1s
poll_timeout: 100ms  # idle consumers wake often, so the processes stop quickly
rate_limit: {{burst: 10000, per_second: 0.01}}  # a bucket lives until it is full again
api_keys:
  - {{key: {ADMIN_KEY}, project: default, scopes: [admin]}}
  - {{key: {AGENT_KEY}, project: default, scopes: [ingest, read]}}
  - {{key: {OTHER_KEY}, project: other, scopes: [submit, read]}}
sources:
  github: {{secret: {WEBHOOK_SECRET}, token: {GITHUB_TOKEN}, api_url: "{github.url}"}}
workers:
  - name: agent
    command: ["{sys.executable}", "agent.py"]
    env: {{AGENT_TOKEN: {ENV_SECRET}}}
  - name: reviewer
    handler: "review_agent:review"
    auto: false
    events:
      - {{source: github, on: [pull_request.opened], prompt: "Review {{{{.title}}}}"}}
  - name: remote
    endpoint: "{github.url}"
    headers: {{Authorization: "Bearer {HEADER_SECRET}", X-Remote-Token: {HEADER_SECRET}}}
    auto: false
    timeout: 2s
""")
    base = str(cluster.serve("--no-workers").base_url)
    cluster.worker()
    admin = record.client(base, {"X-API-Key": ADMIN_KEY})
    agent = record.client(base, {"Authorization": f"Bearer {AGENT_KEY}"})
    other = record.client(base, {"X-API-Key": OTHER_KEY})
    anonymous = record.client(base)
    outputs: list[str] = []

    # When: open routes, refused keys and scopes
    assert anonymous.get("/health").status_code == 200
    assert anonymous.get("/tasks").status_code == 401
    assert anonymous.get("/tasks", headers={"Authorization": f"Bearer {ADMIN_KEY}x"}).status_code == 401
    assert anonymous.get("/tasks", headers={"X-API-Key": ADMIN_KEY[:-1]}).status_code == 401
    assert anonymous.get("/api/activity", params={"api_key": AGENT_KEY + "x"}).status_code == 401
    assert agent.post("/task", json={"prompt": "not allowed"}).status_code == 403
    assert other.get("/workers/agent").status_code == 200

    # Tasks that succeed and fail, in two projects, on a command and on an endpoint worker
    ok = admin.post("/task", json={"prompt": "ship it", "worker": "agent"}).json()
    failing = admin.post("/task", json={"prompt": "please fail", "worker": "agent"}).json()
    remote = admin.post("/task", json={"prompt": "call out", "worker": "remote"}).json()
    elsewhere = other.post("/task", json={"prompt": "other project", "worker": "agent"}).json()
    assert wait_final(admin, ok["id"])["state"] == "completed"  # the env secret reached the command
    assert wait_final(admin, failing["id"])["state"] == "failed"
    assert wait_final(admin, remote["id"])["state"] == "failed"
    assert wait_final(other, elsewhere["id"])["state"] == "completed"
    assert any(r.headers.get("authorization") == f"Bearer {HEADER_SECRET}" for r in github.requests)

    # A webhook with a bad signature, then a good one whose result is written back to GitHub with the token
    body = (GITHUB_WEBHOOKS / "pull_request.opened.json").read_bytes()
    hook = {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": str(uuid.uuid4()),
            "Content-Type": "application/json"}
    assert anonymous.post("/webhook/github", content=body,
                          headers={**hook, "X-Hub-Signature-256": sign(body, ADMIN_KEY)}).status_code == 401
    received = anonymous.post("/webhook/github", content=body, headers={**hook, "X-Hub-Signature-256": sign(body)})
    assert received.status_code == 202, received.text
    event_id = received.json()["id"]
    wait_for(lambda: github.comments("Codertocat", "Hello-World", 2), bool)
    event = wait_for(lambda: admin.get(f"/event/{event_id}").json(), lambda e: e["state"] == "completed")
    assert event["state"] == "completed", event
    assert all(r.headers.get("authorization") == f"Bearer {GITHUB_TOKEN}" for r in github.requests
               if r.path.startswith("/repos/"))

    # Trace ingest by an agent key, and the task's own run trace
    trace = agent.post("/api/traces", json={"name": "secret-free run", "agent": "scout"}).json()
    ingest = agent.post(f"/api/traces/{trace['id']}/events", json={"events": [
        {"seq": 1, "type": "llm_call", "payload": {"model": "gpt-4o-mini", "input_tokens": 3, "output_tokens": 1}},
        {"seq": 2, "type": "session_end", "payload": {"status": "completed"}}]})
    assert ingest.json()["accepted"] == 2, ingest.text

    # Every reading route, an error or two, and the live activity stream with its key in the query string
    for path in ("/workers", "/workers/remote", "/tasks", f"/task/{ok['id']}", f"/task/{failing['id']}",
                 f"/task/{remote['id']}", "/events", f"/event/{event_id}", "/logs", f"/api/traces/{trace['id']}",
                 f"/api/traces/{trace['id']}/events", f"/api/traces/{ok['id']}/events", "/api/sessions",
                 "/api/usage", "/api/incidents", "/api/agents", "/api/stats/tasks", "/metrics", "/health",
                 "/task/" + "0" * 32, "/no/such/route"):
        assert admin.get(path).status_code < 500, path
    assert admin.post("/task", content=b"{not json").status_code == 400
    assert agent.get("/logs").status_code == 403
    workers = {w["name"]: w for w in admin.get("/workers").json()}
    assert workers["agent"]["definition"]["env"] == {"AGENT_TOKEN": "[redacted]"}
    with httpx.Client(base_url=base, timeout=10) as raw, raw.stream(
            "GET", "/api/activity", params={"api_key": ADMIN_KEY}) as stream:
        assert stream.status_code == 200
        outputs.append(f"{dict(stream.headers)}\n" + next(stream.iter_text()))

    # The CLI, with the key from the environment, with a wrong one, checking the config; a worker that cannot
    # reach a Redis whose URL holds a password
    unreachable, port = cluster.tmp / "unreachable.yaml", free_port()
    unreachable.write_text(f"redis_url: redis://taskyard:{REDIS_PASSWORD}@127.0.0.1:{port}/0\n")
    tasks, wrong_key, check, no_redis = run_cli(
        cluster, base, (ADMIN_KEY, ["tasks", "--json"]), (ADMIN_KEY + "-wrong", ["workers"]),
        (None, ["config", "check", "--config", str(config)]), (None, ["worker", "--config", str(unreachable)]))
    assert ok["id"] in tasks and "unauthorized" in wrong_key and "config ok" in check
    assert no_redis.endswith(f"-> 1\ntaskyard worker: cannot reach Redis at redis://taskyard:***@127.0.0.1:{port}/0 "
                             "(store unavailable: ConnectionError)\n"), no_redis  # one line, never a traceback
    outputs += [tasks, wrong_key, check, no_redis]

    # Then: API keys are known to Redis only by their key id (the rate-limit buckets)
    for proc in cluster.procs:  # stop them all at once, then wait: every log complete
        proc.popen.send_signal(signal.SIGTERM)
    cluster.stop_all()
    dump = redis_dump(redis_url)
    buckets = sorted(line.split()[0] for line in dump.splitlines() if line.startswith("ty:rl:key:"))
    assert buckets == sorted(f"ty:rl:key:{key_id(k)}" for k in (ADMIN_KEY, AGENT_KEY, OTHER_KEY))
    # And no secret appears in any answer, log, CLI output or stored value
    places = {"responses": "\n".join(record.seen), "stream and CLI": "\n".join(outputs), "redis": dump,
              **{proc.log.name: proc.output() for proc in cluster.procs}}
    assert " DEBUG " in places[f"serve-{base.rsplit(':', 1)[1]}.log"]  # the most talkative level ran
    leaks = [f"{what} in {where}" for where, text in places.items() for what, secret in SECRETS.items()
             if secret in text]
    assert leaks == [], leaks

