"""``taskyard rules test``: a rules dry run of a saved delivery against a running server."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from api.cli_commands import UsageError
from api.cli_render import Column, Output
from api.client import Client

__all__ = ["rules_test"]


def _payload(path: str) -> Any:
    """A delivery's JSON body from a file, or from stdin for ``-``."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the payload {path}: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"the payload {path} is not JSON: {exc}") from None


def _headers(values: list[str] | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values or []:
        name, sep, text = value.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"--header {value!r}: give 'Name: value'")
        headers[name.strip()] = text.strip()
    return headers


def rules_test(client: Client, args: argparse.Namespace, out: Output) -> int:
    """Exit 0 when at least one rule matched, 1 when none did (so a script can assert a rule fires)."""
    answer = client.test_rules(args.source, _payload(args.payload), event_type=args.type,
                               headers=_headers(args.header))
    if out.json_mode:
        out.document(answer)
        return 0 if answer.get("matched") else 1
    out.fields([("source", answer.get("source")), ("type", answer.get("type")), ("actor", answer.get("actor")),
                ("subject", answer.get("subject"))])
    out.heading("rules")
    out.table(answer.get("rules") or [], [
        Column("RULE", lambda r: r.get("rule")), Column("WORKER", lambda r: r.get("worker") or r.get("pool")),
        Column("MATCH", lambda r: "yes" if r.get("matched") else "no",
               style=lambda r: "green" if r.get("matched") else "dim"),
        Column("AUTO", lambda r: "yes" if r.get("auto", True) else "no"),
        Column("WHY NOT", lambda r: None if r.get("matched") else r.get("reason"))],
        empty=f"no rule listens to source {answer.get('source')}")
    for rule in answer.get("rules") or []:
        if not rule.get("matched"):
            continue
        out.heading(f"prompt of {rule.get('rule')}")
        if rule.get("prompt_error"):
            out.write(out.paint(f"does not render: {rule['prompt_error']}", "red"))
        else:
            out.write(str(rule.get("prompt", "")))
    return 0 if answer.get("matched") else 1
