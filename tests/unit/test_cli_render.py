"""The client commands' output and exit codes without a server: tables, colour only when asked, the trace
timeline's tokens, cost and errors, one-line usage errors, and the exit code of each kind of failure."""

from __future__ import annotations

import io
import json

import pytest

from api.cli_client import _parser, exit_code
from api.cli_render import Column, Output, age, clip, duration
from api.cli_trace import timeline_rows
from api.client import ClientError, NotFound, Refused, ServerError, ServerUnreachable, Unauthorized

ROWS = [{"id": "a1", "state": "completed", "prompt": "short"}, {"id": "b22", "state": "failed", "prompt": "x" * 300}]
COLUMNS = [Column("ID", lambda r: r["id"]), Column("STATE", lambda r: r["state"], styled=True),
           Column("PROMPT", lambda r: r["prompt"])]


def test_a_table_aligns_its_columns_and_cuts_the_last_one_to_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    stream = io.StringIO()
    Output(json_mode=False, color=False, stream=stream).table(ROWS, COLUMNS)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "ID   STATE      PROMPT"
    assert lines[1] == "a1   completed  short"
    assert lines[2].startswith("b22  failed     xxx") and lines[2].endswith("…") and len(lines[2]) <= 40


def test_colour_is_added_only_when_asked_and_by_value() -> None:
    plain, coloured = io.StringIO(), io.StringIO()
    Output(json_mode=False, color=False, stream=plain).table(ROWS[:1], COLUMNS)
    Output(json_mode=False, color=True, stream=coloured).table(ROWS[:1], COLUMNS)
    assert "\x1b[" not in plain.getvalue()
    assert "\x1b[32mcompleted\x1b[0m" in coloured.getvalue() and "\x1b[1mID" in coloured.getvalue()


def test_json_lines_are_one_object_per_line() -> None:
    stream = io.StringIO()
    Output(json_mode=True, color=False, stream=stream).json_line({"id": "a", "text": "two\nlines"})
    assert stream.getvalue() == '{"id":"a","text":"two\\nlines"}\n'


def test_times_read_as_ages_and_durations() -> None:
    assert duration("2026-11-23T10:00:00.000Z", "2026-11-23T10:00:00.420Z") == "0.42s"
    assert duration("2026-11-23T10:00:00.000Z", "2026-11-23T10:03:05.000Z") == "3m05s"
    assert duration(None, "2026-11-23T10:00:00Z") == age(None) == "-"
    assert clip("a\nb   c", 10) == "a b c" and clip("abcdef", 4) == "abc…"


def test_the_timeline_finds_tokens_cost_tools_and_what_went_wrong() -> None:
    events = [
        {"seq": 1, "type": "task_started", "timestamp": "2026-11-23T10:00:00.000Z", "payload": {"attempt": 2}},
        {"seq": 2, "type": "llm_call", "timestamp": "2026-11-23T10:00:00.250Z",
         "payload": {"model": "gpt-4o", "usage": {"input_tokens": 1200, "output_tokens": 350}, "cost_usd": 0.0089}},
        {"seq": 3, "type": "tool_call", "timestamp": "2026-11-23T10:00:01.000Z",
         "payload": {"tool": "search", "args": {"q": "why"}}},
        {"seq": 4, "type": "tool_result", "timestamp": "2026-11-23T10:00:01.500Z",
         "payload": {"tool": "search", "error": "rate limited"}},
        {"seq": 5, "type": "session_end", "timestamp": "2026-11-23T10:00:02.000Z",
         "payload": {"status": "failed", "error": "gave up"}},
    ]
    rows = timeline_rows({"id": "t"}, events)
    assert [r["offset"] for r in rows] == [0.0, 0.25, 1.0, 1.5, 2.0]
    assert [r["what"] for r in rows] == [None, "gpt-4o", "search", "search", None]
    assert (rows[1]["tokens"], rows[1]["cost"]) == ("1200/350", "$0.0089")
    assert [r["error"] for r in rows] == [None, None, None, "rate limited", "failed: gave up"]
    assert (rows[0]["detail"], rows[2]["detail"]) == ("attempt 2", '{"q":"why"}')


def test_usage_errors_are_one_line_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        _parser().parse_args(["task", "submit"])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err == ("taskyard: task submit: the following arguments are required: prompt "
                   "(see 'taskyard task submit --help')\n")


@pytest.mark.parametrize(("error", "code"), [
    (NotFound(404, "task not found"), 3), (Unauthorized(401, "unauthorized"), 4), (Refused(422, "invalid"), 4),
    (Refused(429, "task queue full"), 4), (Refused(503, "no online workers"), 5), (ServerError(500, "x"), 5),
    (ServerUnreachable(None, "cannot reach"), 5), (ClientError(None, "not JSON"), 5)])
def test_each_failure_has_its_documented_exit_code(error: ClientError, code: int) -> None:
    assert exit_code(error) == code


def test_control_characters_from_the_server_cannot_drive_the_terminal() -> None:
    # a prompt that would retitle the terminal, clear it and write the clipboard (OSC 52)
    buffer = io.StringIO()
    out = Output(json_mode=False, color=True, stream=buffer)
    out.write(out.paint("task", "bold") + " innocent\x1b]0;PWNED\x07\x1b[2J\x1b]52;c;Zm9v\x07 fake\r")
    text = buffer.getvalue()
    assert "\x1b]" not in text and "\x07" not in text and "\x1b[2J" not in text and "\r" not in text
    assert text.startswith("\x1b[1mtask\x1b[0m innocent\\x1b]0;PWNED\\x07")  # our own colour stays


def test_json_stays_valid_on_an_output_that_is_not_utf8() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="latin-1")
    out = Output(json_mode=True, color=False, stream=stream)
    out.document({"result": "launch 🚀"})
    assert json.loads(raw.getvalue().decode("latin-1")) == {"result": "launch 🚀"}


def test_an_answer_that_is_not_the_apis_exits_5_not_4() -> None:
    assert exit_code(ClientError(None, "the server's answer to GET /workers is not the Taskyard API's")) == 5
