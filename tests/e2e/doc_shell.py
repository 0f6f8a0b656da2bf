"""Running a doc's shell blocks as written, for the doc tests (tests/e2e/test_docs_*.py).

A block is found by the ``<!-- run-by-test: <test file> ... -->`` marker on the line above it
(tests/unit/test_docs_coverage.py checks that every shell block in the docs has one, or says why not). Its
commands run with bash in the test's directory and environment; the test fills only what the doc leaves to the
reader: ``localhost:8080`` becomes the test's server, and ``<task id>``-style placeholders take values from
earlier answers. A command the test cannot fill fails the test rather than run half-written."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.conftest import ROOT, START_TIMEOUT_S

__all__ = ["DocShell", "commands", "marked_blocks"]

SHELL_FENCE = re.compile(r"```(?:sh|bash|shell|console|zsh)\n(.*?)^```", re.S | re.M)
PLACEHOLDER = re.compile(r"<[a-z][a-z ]*>")
DOC_HOSTS = ("localhost:8080", "127.0.0.1:8080")  # where the docs say the server listens
STOP_TIMEOUT_S = 30.0  # seconds a started command gets to exit after SIGTERM before it is killed


def marked_blocks(doc: str, marker: str) -> list[str]:
    """Every shell block of ``doc`` (a path under the repository) on the line after ``marker``, in order."""
    parts = (ROOT / doc).read_text().split(marker + "\n")[1:]
    found = [match.group(1) for part in parts if (match := SHELL_FENCE.match(part))]
    assert found, f"no shell block is marked {marker} in {doc}"
    return found


def commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comment lines and trailing ``  # ...`` comments dropped."""
    found, current = [], ""
    for line in block.splitlines():
        code = re.sub(r"\s{2,}#.*$", "", line).rstrip()
        if code.lstrip().startswith("#"):
            code = ""
        if code.endswith("\\"):
            current += code[:-1]
            continue
        if (current + code).strip():
            found.append((current + code).strip())
        current = ""
    return found


class DocShell:
    """Runs commands of a doc in ``cwd`` with ``env``, against the server at ``base_url`` once it is set; the
    output of started commands goes to ``logs`` (default ``cwd``)."""

    def __init__(self, cwd: Path, env: dict[str, str], *, logs: Path | None = None) -> None:
        self.cwd = cwd
        self.env = env
        self.logs = logs or cwd
        self.base_url = ""
        self.values: dict[str, str] = {}  # placeholder name -> value, e.g. "task id" -> "3f2a..."
        self._started: list[tuple[subprocess.Popen[bytes], Any]] = []

    def fill(self, command: str) -> str:
        if self.base_url:
            for host in DOC_HOSTS:
                command = command.replace(f"http://{host}", host).replace(host, self.base_url)
        for name, value in self.values.items():
            command = command.replace(f"<{name}>", value)
        assert not PLACEHOLDER.search(command), f"a placeholder the test cannot fill: {command}"
        return command

    def run(self, command: str, *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-o", "pipefail", "-c", self.fill(command)], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def answer(self, command: str, *, code: int = 0, timeout: float = 60) -> Any:
        """The JSON the command printed, once it exited with ``code`` and printed nothing on stderr."""
        done = self.run(command, timeout=timeout)
        assert (done.returncode, done.stderr) == (code, ""), (command, done.stdout, done.stderr)
        return json.loads(done.stdout)

    def start(self, command: str, *, ready: Callable[[str], bool], name: str) -> subprocess.Popen[bytes]:
        """A long-running command (a server, a worker) in the background, once ``ready`` holds for its output."""
        log = self.logs / f"{name}.log"
        out = log.open("wb")
        proc = subprocess.Popen(["bash", "-c", f"exec {self.fill(command)}"], cwd=self.cwd, env=self.env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self._started.append((proc, out))
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready(log.read_text(errors="replace")):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{command!r} did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
        return proc

    def stream(self, command: str, *, until: Callable[[str], bool], then: Callable[[str], object] | None = None,
               timeout: float = 30) -> tuple[int, str]:
        """A command that runs until Ctrl-C (``--watch``, ``--follow``), on a terminal as a person runs it. Once it
        printed something, ``then`` gets its output so far every poll (to act on what it shows); once the output
        satisfies ``until``, Ctrl-C. Answers (exit code, output)."""
        leader, follower = pty.openpty()
        proc = subprocess.Popen(["bash", "-o", "pipefail", "-c", self.fill(command)], cwd=self.cwd, env=self.env,
                                stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, start_new_session=True)
        os.close(follower)
        text, deadline = "", time.monotonic() + timeout
        try:
            while not until(text) and time.monotonic() < deadline:
                if select.select([leader], [], [], 0.2)[0]:
                    try:
                        text += os.read(leader, 65536).decode(errors="replace")
                    except OSError:  # the command ended: nothing more to read
                        break
                if then is not None and text:
                    then(text)
            os.killpg(proc.pid, signal.SIGINT)
            code = proc.wait(10)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            os.close(leader)
        assert until(text), (command, text)
        return code, re.sub(r"\r+\n", "\n", text)  # a terminal ends lines with \r\n, and SSE with \r\n too

    def stop(self) -> None:
        """SIGTERM to every started command at once (each drains on its own), then wait for each."""
        for proc, _out in self._started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, out in reversed(self._started):
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            out.close()
