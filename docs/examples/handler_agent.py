"""A handler worker: Taskyard imports the module and calls the function with a TaskContext (id, prompt,
context, worker, attempt, timeout, cwd, emit). Sync or async; the return value is the result; raising fails the
task with the exception's text. Configured as `handler: handler_agent:shout` (the module must be importable:
taskyard adds its working directory to sys.path, so run it from this directory, or install the module)."""

from workers.backends.base import TaskContext


def shout(ctx: TaskContext) -> str:
    ctx.emit({"type": "llm_call", "payload": {"model": "gpt-4o-mini", "input_tokens": 5, "output_tokens": 5}})
    if not ctx.prompt.strip():
        raise ValueError("nothing to shout")
    return ctx.prompt.upper()
