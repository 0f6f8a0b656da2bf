"""How the client commands of ``taskyard`` print: aligned tables and key/value blocks with ANSI colour on a
terminal, JSON otherwise (one document, or one object per line for ``--watch`` / ``--follow``), a spinner for
``--wait``, and the trace timeline. No dependency beyond the standard library."""

from __future__ import annotations

import json
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO, TypeVar

__all__ = ["Column", "Output", "Spinner", "age", "clip", "duration", "parse_time"]

T = TypeVar("T")
SPIN_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
SPIN_INTERVAL_S = 0.1  # seconds between two spinner frames
_CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "blue": "34", "magenta": "35",
          "cyan": "36"}
# The colour of a state, status, health or verdict wherever it is printed.
STYLES = {
    "completed": "green", "healthy": "green", "online": "green", "resolved": "green", "fixed": "green",
    "failed": "red", "down": "red", "error": "red", "open": "red", "not_fixed": "red", "write_back_failed": "red",
    "crashed": "red", "timeout": "red", "offline": "dim",
    "pending": "yellow", "queued": "yellow", "received": "yellow", "degraded": "yellow", "acknowledged": "yellow",
    "busy": "yellow", "not_reproduced": "yellow",
    "dispatched": "cyan", "running": "cyan", "matched": "cyan",
    "cancelled": "magenta", "regressed": "magenta", "skipped": "dim", "unknown": "dim",
}


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time from the API, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def age(value: Any, *, now: datetime | None = None) -> str:
    """``12s ago``, ``3m ago``, ``2h ago``, ``5d ago`` (``-`` when there is no time)."""
    at = parse_time(value)
    if at is None:
        return "-"
    seconds = max(0, int(((now or datetime.now(UTC)) - at).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def duration(start: Any, end: Any) -> str:
    """The time between two API times, as ``0.42s`` / ``3m05s`` (``-`` when either is missing)."""
    a, b = parse_time(start), parse_time(end)
    if a is None or b is None:
        return "-"
    seconds = (b - a).total_seconds()
    return f"{seconds:.2f}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def clip(value: Any, width: int) -> str:
    """One line of at most ``width`` characters (newlines shown as spaces, an ellipsis when cut)."""
    text = " ".join(str(value).split()) if value is not None else ""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


# Control characters but newline and tab, and ESC unless it starts a colour (SGR) sequence like ours.
_UNSAFE = re.compile(r"\x1b(?!\[[0-9;]*m)|[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Column:
    """A table column: its header, how to get the cell's text from a row, and whether to colour it by value."""

    header: str
    get: Callable[[dict[str, Any]], Any]
    styled: bool = False  # coloured by its value (a state, status, health or verdict)
    right: bool = False
    style: Callable[[dict[str, Any]], str | None] | None = None  # or coloured by this, from the row


class Output:
    """Where a command's answer goes. ``json_mode``: JSON only; else tables, coloured when ``color``."""

    def __init__(self, *, json_mode: bool, color: bool, stream: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self.color = color
        self.stream = stream or sys.stdout
        encoding = (getattr(self.stream, "encoding", None) or "utf-8").lower().replace("-", "").replace("_", "")
        self.ascii_json = encoding != "utf8"  # JSON stays valid on a terminal or file that is not UTF-8
        reconfigure = getattr(self.stream, "reconfigure", None)
        if self.ascii_json and reconfigure is not None:
            reconfigure(errors="backslashreplace")  # tables: a character the encoding lacks is shown escaped

    def paint(self, text: str, style: str | None) -> str:
        codes = ";".join(_CODES[s] for s in (style or "").split() if s in _CODES)
        return f"\x1b[{codes}m{text}\x1b[0m" if self.color and codes else text

    def state(self, value: Any) -> str:
        text = "-" if value in (None, "") else str(value)
        return self.paint(text, STYLES.get(text))

    def write(self, text: str = "") -> None:
        """A line. Control characters from the server's data (prompts, results, errors are anyone's text) are
        shown escaped, so they cannot move the cursor, retitle the terminal or write the clipboard; only this
        module's own colour codes pass."""
        self.stream.write(_UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}", text) + "\n")
        self.stream.flush()

    def document(self, value: Any) -> None:
        """One JSON document (the whole answer)."""
        self.write(json.dumps(value, indent=2, ensure_ascii=self.ascii_json))

    def json_line(self, value: Any) -> None:
        """One JSON object on one line (``--watch`` / ``--follow``)."""
        self.write(json.dumps(value, ensure_ascii=self.ascii_json, separators=(",", ":")))

    def table(self, rows: Sequence[dict[str, Any]], columns: Sequence[Column], *, empty: str = "none") -> None:
        """Aligned columns; the last one is cut to the terminal's width."""
        if not rows:
            self.write(self.paint(f"({empty})", "dim"))
            return
        cells = [[str(c.get(row)) if c.get(row) is not None else "-" for c in columns] for row in rows]
        widths = [max(len(c.header), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
        room = shutil.get_terminal_size((120, 24)).columns - sum(w + 2 for w in widths[:-1])
        widths[-1] = max(len(columns[-1].header), min(widths[-1], room))
        self.write(self.paint("  ".join(c.header.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(),
                              "bold"))
        for row, texts in zip(rows, cells, strict=True):
            parts = []
            for i, (column, width) in enumerate(zip(columns, widths, strict=True)):
                last = i == len(columns) - 1
                text = clip(texts[i], width) if last else texts[i]
                padded = text.rjust(width) if column.right else text if last else text.ljust(width)
                style = column.style(row) if column.style else STYLES.get(text) if column.styled else None
                parts.append(self.paint(padded, style))
            self.write("  ".join(parts).rstrip())

    def fields(self, pairs: Sequence[tuple[str, Any]], *, styled: Sequence[str] = ()) -> None:
        """``key  value`` lines, keys aligned, keys without a value left out; values of the keys in ``styled``
        coloured by value."""
        pairs = [(k, v) for k, v in pairs if v not in (None, "", [])]
        width = max((len(k) for k, _ in pairs), default=0)
        for key, value in pairs:
            text = str(value)
            if key in styled:
                text = self.state(text)
            self.write(f"{self.paint(key.ljust(width), 'dim')}  {text}")

    def heading(self, text: str) -> None:
        self.write()
        self.write(self.paint(text, "bold"))


class Spinner:
    """A one-line spinner on ``stream`` (a terminal) with the live state, while ``work`` runs on a thread."""

    def __init__(self, stream: TextIO, label: str, *, color: bool) -> None:
        self.stream = stream
        self.label = label
        self.state = "…"
        self.out = Output(json_mode=False, color=color, stream=stream)

    def update(self, state: str) -> None:
        self.state = state

    def run(self, work: Callable[[Callable[[str], None]], T]) -> T:
        """``work(update)`` on a daemon thread, the spinner here until it ends; its result or its exception."""
        result: list[T] = []
        failure: list[BaseException] = []
        done = threading.Event()

        def target() -> None:
            try:
                result.append(work(self.update))
            except BaseException as exc:  # handed to the caller's thread, re-raised there
                failure.append(exc)
            finally:
                done.set()

        threading.Thread(target=target, daemon=True, name="taskyard-wait").start()
        started, frame = time.monotonic(), 0
        try:
            while not done.wait(SPIN_INTERVAL_S):
                elapsed = time.monotonic() - started
                spin = self.out.paint(SPIN_FRAMES[frame % len(SPIN_FRAMES)], "cyan")
                self.stream.write(f"\r\x1b[2K{spin} {self.label} {self.out.state(self.state)} "
                                  f"{self.out.paint(f'{elapsed:.0f}s', 'dim')}")
                self.stream.flush()
                frame += 1
        finally:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
        if failure:
            raise failure[0]
        return result[0]
