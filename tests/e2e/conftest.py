"""Real `taskyard serve` and `taskyard worker` processes, talked to over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0  # seconds a process may take to come up


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    def __init__(self, args: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._file = log.open("wb")
        self.popen = subprocess.Popen([sys.executable, "-m", "api.cli", *args], cwd=cwd, env=env,
                                      stdout=self._file, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._file.close()
        return self.popen.returncode


class Cluster:
    """Starts processes for one test and stops them all at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[Proc] = []
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.env.pop("TASKYARD_CONFIG", None)

    def config(self, text: str) -> Path:
        path = self.tmp / "taskyard.yaml"
        path.write_text(text)
        return path

    def serve(self, *args: str, cwd: Path | None = None, headers: dict[str, str] | None = None) -> httpx.Client:
        port = free_port()
        proc = self._start(["serve", "--port", str(port), *args], cwd=cwd, name=f"serve-{port}")
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers or {}, timeout=10)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                client.get("/health")
                return client
            except httpx.TransportError:
                if proc.popen.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"serve did not start:\n{proc.output()}") from None
                time.sleep(0.1)

    def worker(self, *args: str, cwd: Path | None = None) -> Proc:
        proc = self._start(["worker", *args], cwd=cwd, name=f"worker-{len(self.procs)}")
        deadline = time.monotonic() + START_TIMEOUT_S
        while "taskyard worker: serving" not in proc.output():
            if proc.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker did not start:\n{proc.output()}")
            time.sleep(0.05)
        return proc

    def _start(self, args: list[str], *, cwd: Path | None, name: str) -> Proc:
        proc = Proc(args, cwd=cwd or self.tmp, env=self.env, log=self.tmp / f"{name}.log")
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@pytest.fixture()
def cluster(tmp_path: Path, redis_client: Any) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.stop_all()


def wait_for(fetch: Callable[[], Any], done: Callable[[Any], bool], *, timeout: float = 20,
             interval: float = 0.05) -> Any:
    """Poll ``fetch`` until ``done`` holds or the deadline passes; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def wait_final(client: httpx.Client, task_id: str, timeout: float = 20) -> dict[str, Any]:
    return wait_for(lambda: client.get(f"/task/{task_id}").json(),
                    lambda t: t["state"] in ("completed", "failed", "cancelled"), timeout=timeout)
