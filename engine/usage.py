"""Usage records: tokens and cost per LLM call, in one Redis stream per project, summed per agent, model or worker.

The stream ``ty:p:<project>:usage`` holds one entry per record, with the fields ``agent``, ``model``, ``worker``,
``trace_id``, ``tokens_in``, ``tokens_out``, ``cost_usd`` (a decimal string), ``priced`` (``1``: the cost is known,
given by the caller or from the price table; ``0``: the model has no price and the cost is 0) and ``at`` (the
server's receive time, epoch ms). Entry ids are Redis-assigned (``*``), so they are the server's time too and a
time window is a stream id range. Two writers use this format: :func:`append` (MeshAI usage records) and the
trace store's ``trace_ingest.lua`` (``llm_call`` events).

Summing runs in Lua (``usage_sum.lua``) in chunks of :data:`SUM_CHUNK` entries, newest first: only the per-group
sums cross the network, and no single call holds Redis for long. One summary reads at most :data:`MAX_SCANNED`
entries; past that it answers with the newest part of the window and says so (``truncated``, ``covered_from``).
Measured roughly on the 2-core development machine (Redis 7.0, 200,000 records, 50 groups, a busy machine):
summing in Lua reads about 0.1-0.15 M entries/s, most of it XREVRANGE building Lua tables; paging the same entries
into Python with XREVRANGE COUNT 1000 managed about 0.01 M/s, as every entry crosses the network and is parsed. A
chunk of 2,000 entries holds Redis about 11 ms (10,000: about 60 ms), so a summary of the full cap takes 1.5-2 s
of wall time but never blocks other clients for long. A record takes about 110 bytes of Redis memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from engine import keys
from engine.errors import ValidationFailed
from engine.models import iso_ms
from engine.pricing import COST_DECIMALS
from engine.store import AsyncRunner, Op

__all__ = ["GROUPS", "MAX_SCANNED", "SUM_CHUNK", "GroupTotals", "UsageRecord", "UsageSummary", "append",
           "decimal_text", "sum_chunk", "summarize"]

GROUPS = ("agent", "model", "worker")  # the fields a summary may group by
SUM_CHUNK = 2_000  # entries one usage_sum call reads at most (about 11 ms of Redis time, measured)
MAX_SCANNED = 200_000  # entries one summary reads at most (1.5-2 s); older ones in the window are left out


@dataclass(frozen=True)
class UsageRecord:
    """One LLM call's usage. ``id`` (the stream entry id) and ``at_ms`` are set once it is stored."""

    agent: str
    model: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    priced: bool
    worker: str = ""
    trace_id: str = ""
    at_ms: int = 0
    id: str = ""

    def fields(self) -> tuple[str, ...]:
        """The stream entry's field/value pairs, flat, in the stored format."""
        return ("agent", self.agent, "model", self.model, "worker", self.worker, "trace_id", self.trace_id,
                "tokens_in", str(self.tokens_in), "tokens_out", str(self.tokens_out),
                "cost_usd", decimal_text(self.cost_usd), "priced", "1" if self.priced else "0", "at", str(self.at_ms))

    def to_public(self) -> dict[str, Any]:
        return {"id": self.id, "agent_id": self.agent, "model": self.model, "worker": self.worker or None,
                "trace_id": self.trace_id or None, "tokens_in": self.tokens_in, "tokens_out": self.tokens_out,
                "cost_usd": self.cost_usd, "priced": self.priced, "at": iso_ms(self.at_ms)}


def decimal_text(usd: float) -> str:
    """A cost as a plain decimal string (``0.0000375``, never ``3.75e-05``), to :data:`COST_DECIMALS` places."""
    text = format(Decimal(repr(round(usd, COST_DECIMALS))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def append(project: str, records: list[UsageRecord], *, now_ms: int) -> Op[list[UsageRecord]]:
    """Store ``records`` in one round trip (one MULTI/EXEC of XADDs), stamped with ``now_ms``; the answer is the
    records with their stream ids and times."""
    stamped = [replace(r, at_ms=now_ms) for r in records]
    stream = keys.key("usage", project=project)
    commands = (("SADD", keys.key("projects"), project),  # the retention sweep's list of projects
                *(("XADD", stream, "*", *r.fields()) for r in stamped))

    def parse(answers: list[Any]) -> list[UsageRecord]:
        return [replace(r, id=i) for r, i in zip(stamped, answers[1:], strict=True)]

    return Op(parse, commands=commands)


@dataclass
class GroupTotals:
    """Sums over the records of one group (or of all of them)."""

    records: int = 0
    unpriced: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0

    def add(self, other: GroupTotals) -> None:
        self.records += other.records
        self.unpriced += other.unpriced
        self.tokens_in += other.tokens_in
        self.tokens_out += other.tokens_out
        self.cost_usd += other.cost_usd

    def to_public(self) -> dict[str, Any]:
        return {"count": self.records, "unpriced": self.unpriced, "tokens_in": self.tokens_in,
                "tokens_out": self.tokens_out, "cost_usd": round(self.cost_usd, COST_DECIMALS)}


@dataclass
class UsageSummary:
    group_by: str
    from_ms: int | None
    to_ms: int | None
    groups: dict[str, GroupTotals] = field(default_factory=dict)
    scanned: int = 0
    truncated: bool = False
    oldest_id: str = ""  # the oldest entry read

    @property
    def totals(self) -> GroupTotals:
        total = GroupTotals()
        for group in self.groups.values():
            total.add(group)
        return total

    def to_public(self) -> dict[str, Any]:
        ordered = sorted(self.groups.items(), key=lambda kv: (-kv[1].cost_usd, -kv[1].records, kv[0]))
        answer: dict[str, Any] = {
            "group_by": self.group_by, "from": iso_ms(self.from_ms), "to": iso_ms(self.to_ms),
            "groups": [{self.group_by: name or None, **totals.to_public()} for name, totals in ordered],
            "totals": self.totals.to_public(), "scanned": self.scanned, "truncated": self.truncated}
        if self.truncated:
            answer["covered_from"] = iso_ms(int(self.oldest_id.split("-")[0]))
        return answer


@dataclass(frozen=True)
class _Chunk:
    read: int
    last_id: str
    groups: dict[str, GroupTotals]


def _parse_chunk(raw: list[str]) -> _Chunk:
    groups = {}
    for i in range(2, len(raw), 6):
        name, records, unpriced, tin, tout, cost = raw[i:i + 6]
        groups[name] = GroupTotals(int(records), int(unpriced), int(tin), int(tout), float(cost))
    return _Chunk(int(raw[0]), raw[1], groups)


def sum_chunk(project: str, *, group_by: str, high: str, low: str, count: int) -> Op[_Chunk]:
    """Per-group sums of at most ``count`` entries from stream id ``high`` down to ``low`` (XREVRANGE bounds)."""
    return Op(_parse_chunk, script="usage_sum", args=(project, group_by, high, low, count))


async def summarize(runner: AsyncRunner, project: str, *, group_by: str, from_ms: int | None, to_ms: int | None,
                    max_scanned: int = MAX_SCANNED, chunk: int = SUM_CHUNK) -> UsageSummary:
    """Sums per ``group_by`` value of the records received in ``[from_ms, to_ms)`` (either end open when None),
    newest first, reading at most ``max_scanned`` entries."""
    if group_by not in GROUPS:
        raise ValidationFailed(f"invalid group_by: must be one of {', '.join(GROUPS)}")
    if from_ms is not None and to_ms is not None and to_ms <= from_ms:
        raise ValidationFailed("invalid range: from must be before to")
    summary = UsageSummary(group_by=group_by, from_ms=from_ms, to_ms=to_ms)
    if to_ms is not None and to_ms <= 0:
        return summary
    high = "+" if to_ms is None else str(to_ms - 1)  # "<ms>" as an upper bound takes every entry of that ms
    low = "-" if from_ms is None else str(max(0, from_ms))  # stream ids start at 0: earlier is "from the start"
    while True:
        want = min(chunk, max_scanned - summary.scanned)
        part = await runner.run(sum_chunk(project, group_by=group_by, high=high, low=low, count=want))
        summary.scanned += part.read
        for name, totals in part.groups.items():
            summary.groups.setdefault(name, GroupTotals()).add(totals)
        if part.last_id:
            summary.oldest_id = part.last_id
        if part.read < want:
            return summary
        high = f"({part.last_id}"
        if summary.scanned >= max_scanned:
            more = await runner.run(Op(bool, command=("XREVRANGE", keys.key("usage", project=project), high, low,
                                                      "COUNT", 1)))
            summary.truncated = more
            return summary
