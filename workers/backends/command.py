"""The ``command`` backend: the prompt on stdin (or ``{prompt}`` in argv), stdout is the result.

The command runs in its own session (process group); a timeout, a cancel or a stopping worker kills the whole
group, so an agent CLI's children die with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping

from config import defaults
from config.settings import WorkerSpec
from workers.backends.base import Outcome, RunHandle, TaskContext

__all__ = ["CommandBackend"]

POLL_S = 0.05  # seconds between checks for cancel/stop while the command runs
KILL_GRACE_S = 2.0  # seconds between SIGTERM and SIGKILL when a run is aborted


class CommandBackend:
    def __init__(self, spec: WorkerSpec, *, base_env: Mapping[str, str]) -> None:
        assert spec.command
        self.spec = spec
        self.base_env = dict(base_env)

    def run(self, ctx: TaskContext, handle: RunHandle) -> Outcome:
        argv = list(self.spec.command or [])
        in_argv = any("{prompt}" in a for a in argv)
        if in_argv:
            argv = [a.replace("{prompt}", ctx.prompt) for a in argv]
        env = {**self.base_env, **self.spec.env, "TASKYARD_TASK_ID": ctx.id, "TASKYARD_WORKER": ctx.worker,
               "TASKYARD_ATTEMPT": str(ctx.attempt)}
        if ctx.trace_file:
            env["TASKYARD_TRACE_FILE"] = ctx.trace_file
        cwd = ctx.cwd or self.spec.cwd or None
        if cwd is not None and not os.path.isdir(cwd):  # else Popen's FileNotFoundError reads as a missing program
            return Outcome("failed", error=f"working directory does not exist: {cwd}", retryable=False)
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL if in_argv else subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, cwd=cwd, env=env, start_new_session=True)
        except FileNotFoundError:
            return Outcome("failed", error=f"command not found: {argv[0]}", retryable=False)
        except (PermissionError, NotADirectoryError, OSError) as exc:
            return Outcome("failed", error=f"cannot start {argv[0]}: {exc.strerror or exc}", retryable=False)

        payload = None if in_argv else ctx.prompt.encode("utf-8")
        deadline = time.monotonic() + ctx.timeout
        out = err = b""
        aborted = ""
        while True:
            try:
                out, err = proc.communicate(input=payload, timeout=POLL_S)
                break
            except subprocess.TimeoutExpired:
                payload = None
            if handle.stop.is_set():
                aborted = handle.reason or "aborted"
            elif time.monotonic() >= deadline:
                aborted = "timeout"
            if aborted:
                _kill_group(proc)
                try:
                    out, err = proc.communicate(timeout=KILL_GRACE_S)
                except subprocess.TimeoutExpired:  # a grandchild left the group and holds the pipes open
                    out, err = b"", b""
                break

        stdout = out[: defaults.MAX_RESULT_BYTES].decode("utf-8", "replace")
        tail = err[-defaults.STDERR_TAIL_BYTES:].decode("utf-8", "replace").strip()
        if aborted == "timeout":
            return Outcome("timeout", output=stdout, error=f"timeout after {ctx.timeout:g}s", exit_code=proc.returncode)
        if aborted:
            return Outcome("aborted", output=stdout, error=aborted, exit_code=proc.returncode)
        if proc.returncode != 0:
            detail = f": {tail}" if tail else ""
            return Outcome("failed", output=stdout, error=f"exit code {proc.returncode}{detail}",
                           exit_code=proc.returncode)
        return Outcome("completed", output=stdout, exit_code=0)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the command's process group, then SIGKILL whatever is left after the grace period."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        if wait is None:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader exited; make sure no member of the group survives it.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return
