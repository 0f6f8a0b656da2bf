"""External agents' telemetry in MeshAI's shapes: heartbeats and agent health, usage records, usage summaries.

An agent heartbeats (``POST /heartbeat {agent_id}``) into the project's ``agents`` sorted set (agent id -> last
heartbeat, ms); its health is the heartbeat's age against ``agent_health`` (healthy, degraded, down; unknown when
it never sent one). Usage records (``POST /telemetry/usage`` and ``/telemetry/usages``) are validated here, priced
from the :class:`~engine.pricing.PriceBook` when the caller gives no ``cost_usd``, and stored by
:mod:`engine.usage`. Unknown body fields are ignored (MeshAI clients send more than Taskyard keeps); a client's
``timestamp`` is checked but not stored: windows use the server's receive time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from config import defaults
from config.telemetry import AgentHealthSpec
from engine import keys, usage
from engine.clock import now_ms, parse_ms
from engine.errors import InvalidBody, ValidationFailed
from engine.models import iso_ms
from engine.pricing import PriceBook
from engine.registry import health_of
from engine.store import AsyncRunner, Op
from engine.usage import UsageRecord

__all__ = ["AGENT_STATUSES", "TelemetryService", "agent_health"]

AGENT_STATUSES = ("healthy", "degraded", "down", "unknown")
MAX_NAME_CHARS = 200  # characters of an agent id, model, worker or trace id
MAX_TOKENS = 1_000_000_000  # tokens per record and direction; keeps sums exact in Lua's doubles (< 2**53)
MAX_COST_USD = 1_000_000.0  # USD one record may report
MAX_AGENTS_LISTED = 1000  # agents GET /api/agents answers at most, most recent heartbeat first
_NAME = re.compile(r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]+")  # printable: no control characters


agent_health = health_of  # an agent's health by heartbeat age: the workers' rule, with configurable thresholds


class TelemetryService:
    """What the API asks of the engine about MeshAI-style agents. ``clock`` gives epoch ms (tests inject one)."""

    def __init__(self, runner: AsyncRunner, prices: PriceBook, *, health: AgentHealthSpec | None = None,
                 clock: Callable[[], int] | None = None, max_batch: int = defaults.USAGE_MAX_BATCH) -> None:
        spec = health or AgentHealthSpec()
        self.runner = runner
        self.prices = prices
        self.degraded_after_ms = round(spec.degraded_after * 1000)
        self.down_after_ms = round(spec.down_after * 1000)
        self.clock = clock or now_ms
        self.max_batch = max_batch

    # -- agents --------------------------------------------------------------------------------------------------

    async def heartbeat(self, project: str, body: Any) -> dict[str, Any]:
        """Record a heartbeat; the answer is the agent's view (``status`` is healthy unless a later heartbeat from
        a clock that runs ahead is already stored)."""
        if not isinstance(body, dict):
            raise InvalidBody("expected a JSON object")
        try:
            agent = _name(body, "agent_id", required=True)
        except ValueError as exc:
            raise InvalidBody(f"{exc}") from None
        now = self.clock()
        zset = keys.key("agents", project=project)
        _, stored = await self.runner.run(Op(list, commands=(
            ("ZADD", zset, "GT", now, agent), ("ZSCORE", zset, agent))))  # GT: a late, older beat never wins
        return self._view(agent, int(float(stored)), now)

    async def agents(self, project: str, *, status: str | None = None) -> list[dict[str, Any]]:
        """Agents by most recent heartbeat first (at most :data:`MAX_AGENTS_LISTED`), optionally of one status."""
        if status is not None and status not in AGENT_STATUSES[:3]:
            raise ValidationFailed(f"invalid status: must be one of {', '.join(AGENT_STATUSES[:3])}")
        now = self.clock()
        # The status is a heartbeat-age range: select it in Redis, then cap (down agents are the oldest ones).
        high, low = {None: ("+inf", "-inf"), "healthy": ("+inf", f"({now - self.degraded_after_ms}"),
                     "degraded": (str(now - self.degraded_after_ms), f"({now - self.down_after_ms}"),
                     "down": (str(now - self.down_after_ms), "-inf")}[status]
        raw = await self.runner.run(Op(_pairs, command=(
            "ZREVRANGEBYSCORE", keys.key("agents", project=project), high, low, "WITHSCORES", "LIMIT", 0,
            MAX_AGENTS_LISTED)))
        views = [self._view(agent, last, now) for agent, last in raw]
        return [v for v in views if status is None or v["status"] == status]

    async def agent(self, project: str, agent_id: str) -> dict[str, Any]:
        """One agent's health; ``unknown`` (with no last heartbeat) for an id that never sent one."""
        score = await self.runner.run(Op(lambda raw: raw, command=(
            "ZSCORE", keys.key("agents", project=project), agent_id)))
        return self._view(agent_id, None if score is None else int(float(score)), self.clock())

    def _view(self, agent: str, last: int | None, now: int) -> dict[str, Any]:
        return {"agent_id": agent,
                "status": agent_health(last, now, degraded_after_ms=self.degraded_after_ms,
                                       down_after_ms=self.down_after_ms),
                "last_heartbeat": iso_ms(last),
                "age_seconds": None if last is None else max(0, now - last) / 1000}

    # -- usage ---------------------------------------------------------------------------------------------------

    async def record_usage(self, project: str, body: Any) -> dict[str, Any]:
        """Validate, price and store one usage record; the stored record."""
        try:
            record = self._record(body)
        except ValueError as exc:
            raise InvalidBody(f"{exc}") from None
        (stored,) = await self.runner.run(usage.append(project, [record], now_ms=self.clock()))
        return stored.to_public()

    async def record_usages(self, project: str, body: Any) -> dict[str, Any]:
        """``{"usages": [...]}``: stores every valid item (in one round trip) and names each rejected one."""
        items = body.get("usages") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise InvalidBody("usages must be a list")
        if len(items) > self.max_batch:
            raise InvalidBody(f"at most {self.max_batch} usages per request "
                                   f"(got {len(items)})")
        records: list[UsageRecord] = []
        rejected: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            try:
                records.append(self._record(item))
            except ValueError as exc:
                rejected.append({"index": index, "reason": str(exc)})
        stored = await self.runner.run(usage.append(project, records, now_ms=self.clock())) if records else []
        return {"accepted": len(stored), "rejected": rejected, "records": [r.to_public() for r in stored]}

    async def summary(self, project: str, *, group_by: str | None, from_: str | None,
                      to: str | None) -> dict[str, Any]:
        """Sums per agent, model or worker (``agent`` by default) over ``[from, to)``, plus totals."""
        from_ms = parse_ms(from_, "from") if from_ else None
        to_ms = parse_ms(to, "to") if to else None
        result = await usage.summarize(self.runner, project, group_by=group_by or "agent", from_ms=from_ms,
                                       to_ms=to_ms)
        return result.to_public()

    def _record(self, item: Any) -> UsageRecord:
        """One usage item as a record, priced; ValueError with a message naming the field otherwise."""
        if not isinstance(item, dict):
            raise ValueError("expected a JSON object")
        agent = _name(item, "agent_id", required=True)
        model = _name(item, "model", required=True)
        tokens_in = _tokens(item, "input_tokens", "tokens_in")
        tokens_out = _tokens(item, "output_tokens", "tokens_out")
        worker = _name(item, "worker", required=False)
        trace_id = _name(item, "trace_id", required=False)
        _timestamp(item.get("timestamp"))
        given = item.get("cost_usd")
        if given is None:
            cost, priced = self.prices.cost(model, tokens_in, tokens_out)
        else:
            if isinstance(given, bool) or not isinstance(given, (int, float)) or not 0 <= given <= MAX_COST_USD \
                    or not math.isfinite(given):  # the range first: math.isfinite(10**400) overflows
                raise ValueError(f"cost_usd must be a number from 0 to {MAX_COST_USD:g}")
            cost, priced = float(given), True
        return UsageRecord(agent=agent, model=model, tokens_in=tokens_in, tokens_out=tokens_out, cost_usd=cost,
                           priced=priced, worker=worker, trace_id=trace_id)


MAX_TIMESTAMP_MS = 253_402_300_800_000  # epoch milliseconds of the year 10000


def _name(item: dict[str, Any], field: str, *, required: bool) -> str:
    value = item.get(field)
    if value is None or value == "":
        if required:
            raise ValueError(f"{field} is required")
        return ""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or not value.strip():
        raise ValueError(f"{field} must be a non-blank string without control characters")
    if len(value) > MAX_NAME_CHARS:
        raise ValueError(f"{field} must be at most {MAX_NAME_CHARS} characters")
    return value


def _tokens(item: dict[str, Any], name: str, alias: str) -> int:
    given = [f for f in (name, alias) if item.get(f) is not None]
    if not given:
        raise ValueError(f"{name} is required")
    if len(given) == 2:
        raise ValueError(f"give {name} or {alias}, not both")
    value = item[given[0]]
    if isinstance(value, float) and value.is_integer():  # 120.0 from a client that counts in floats
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
        raise ValueError(f"{given[0]} must be a whole number from 0 to {MAX_TOKENS:,}")
    return value


def _timestamp(value: Any) -> None:
    if value is None:
        return
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not -MAX_TIMESTAMP_MS <= value <= MAX_TIMESTAMP_MS or not math.isfinite(value):  # range first: no overflow
            raise ValueError("timestamp must be epoch milliseconds or an RFC 3339 time")
        return
    if not isinstance(value, str):
        raise ValueError("timestamp must be epoch milliseconds or an RFC 3339 time")
    try:
        parse_ms(value, "timestamp")
    except ValidationFailed:
        raise ValueError("timestamp must be epoch milliseconds or an RFC 3339 time") from None


def _pairs(raw: Any) -> list[tuple[str, int]]:
    """ZRANGE ... WITHSCORES as (member, score ms) pairs, whether the client paired them or not."""
    if raw and not isinstance(raw[0], (list, tuple)):
        raw = list(zip(raw[::2], raw[1::2], strict=True))
    return [(member, int(float(score))) for member, score in raw]
