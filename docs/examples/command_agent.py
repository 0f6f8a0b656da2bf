"""A command worker: the prompt arrives on stdin, the result is what it prints, trace events go to the file
named by $TASKYARD_TRACE_FILE (one JSON object per line). Run by Taskyard as `python command_agent.py`."""

import json
import os
import sys


def trace(event_type: str, **payload: object) -> None:
    path = os.environ.get("TASKYARD_TRACE_FILE")
    if path:  # absent when run by hand
        with open(path, "a") as f:
            f.write(json.dumps({"type": event_type, "payload": payload}) + "\n")


prompt = sys.stdin.read()
trace("llm_call", model="gpt-4o-mini", input_tokens=len(prompt.split()), output_tokens=3)
trace("tool_call", tool="word_count", args={"text": prompt[:50]})
count = len(prompt.split())
trace("tool_result", tool="word_count", result=count)
print(f"{count} words")
