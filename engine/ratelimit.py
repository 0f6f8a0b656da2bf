"""Rate limiting: token buckets in Redis, checked and taken from in one Lua call.

A caller is limited by up to three buckets at once: its API key's, its project's and, for a webhook delivery,
its source's. :func:`check` runs ``ratelimit.lua``, which refills each bucket by the Redis server's clock
(replicas with skewed clocks agree), lets the call through only when every bucket holds a token and then takes
one from each; a refused call takes nothing. One atomic call per request makes the limit exact under any
concurrency and across any number of API replicas. Which buckets apply to whom is :class:`RateLimitPolicy`;
everything is off unless configured.

Bucket names (``ty:rl:<name>``): ``key:<key id>`` (the first 16 hex characters of the key's SHA-256, never the
key), ``anon`` (every caller when no key is configured), ``project:<project>``, ``source:<source>``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from config.base import RateLimitSpec
from engine.store import Op

__all__ = ["ANON_BUCKET", "Bucket", "RateLimitPolicy", "Verdict", "check"]

ANON_BUCKET = "anon"  # the bucket every request shares when no API key is configured
MS_PER_S = 1000  # milliseconds in a second


@dataclass(frozen=True)
class Bucket:
    """One token bucket: holds at most ``burst`` tokens (it starts full) and gains ``per_second`` a second."""

    name: str
    burst: int
    per_second: float

    @classmethod
    def of(cls, name: str, spec: RateLimitSpec) -> Bucket:
        return cls(name, spec.burst, spec.per_second)


@dataclass(frozen=True)
class Verdict:
    """The answer for one request, from its binding bucket: the one that refused it (the longest wait, if
    several did) or, when allowed, the one with the fewest tokens left."""

    allowed: bool
    limit: int  # the binding bucket's burst (tokens)
    remaining: int  # whole tokens left in it after this request
    reset_s: int  # seconds until it is full again, rounded up
    retry_after_s: int  # 0 when allowed; else seconds until it holds a token again, rounded up, at least 1
    bucket: str  # the binding bucket's name


def check(buckets: Sequence[Bucket], *, cost: int = 1, now_us: int | None = None) -> Op[Verdict]:
    """Take ``cost`` tokens from every bucket, or from none when one lacks them. ``now_us`` (epoch
    microseconds) replaces the Redis server's clock; only tests of the arithmetic pass it."""
    if not buckets:
        raise ValueError("check needs at least one bucket")
    if cost < 1 or any(cost > b.burst for b in buckets):
        raise ValueError("cost must be at least 1 and at most every bucket's burst")
    args: list[object] = [now_us or 0, cost]
    for b in buckets:
        args += [b.name, b.burst, repr(float(b.per_second))]

    def parse(raw: list[int]) -> Verdict:
        allowed, limit, remaining, reset_ms, retry_ms, index = (int(x) for x in raw)
        retry_after_s = max(1, math.ceil(retry_ms / MS_PER_S)) if not allowed else 0
        return Verdict(bool(allowed), limit, remaining, math.ceil(reset_ms / MS_PER_S), retry_after_s,
                       buckets[index - 1].name)

    return Op(parse, script="ratelimit", args=tuple(args))


@dataclass(frozen=True)
class RateLimitPolicy:
    """Which buckets limit a request. Empty (the default) limits nothing.

    - ``default``: the limit of every API key without its own (each key has its own bucket); with no key
      configured, of the one bucket all requests share (``anon``).
    - ``keys``: a key's own limit, by key id (``api_keys[].rate_limit``).
    - ``projects``: one bucket per listed project, shared by all its keys (``project_rate_limits``).
    - ``sources``: one bucket per listed webhook source, for every delivery to it (``sources.<name>.rate_limit``).

    A request that came without an API key counts only when it is a delivery to a source that verifies its
    signature, and then only against that source's bucket (the API limits are for API clients, and a sender such
    as GitHub does not retry a refused delivery). Any other unauthenticated request (an unsigned source, about to
    be refused 401; a signed artifact URL) touches no bucket: nobody without a key can spend a key's, a
    project's or the shared ``anon`` bucket.
    """

    default: RateLimitSpec | None = None
    keys: Mapping[str, RateLimitSpec] = field(default_factory=dict)
    projects: Mapping[str, RateLimitSpec] = field(default_factory=dict)
    sources: Mapping[str, RateLimitSpec] = field(default_factory=dict)
    signed_sources: frozenset[str] = frozenset()  # sources that verify a signature (may be posted to keyless)

    @property
    def enabled(self) -> bool:
        return bool(self.default or self.keys or self.projects or self.sources)

    def buckets(self, *, key_id: str, project: str, source: str | None = None,
                authenticated: bool = True) -> list[Bucket]:
        """The buckets of a request in ``project`` by the key with ``key_id`` ("" when no key is configured:
        the shared ``anon`` bucket); ``source`` names the webhook source it posts to, if any;
        ``authenticated`` False: it presented no valid key."""
        if not authenticated:
            if source is not None and source in self.signed_sources and source in self.sources:
                return [Bucket.of(f"source:{source}", self.sources[source])]
            return []
        found: list[Bucket] = []
        spec = self.keys.get(key_id, self.default) if key_id else self.default
        if spec is not None:
            found.append(Bucket.of(f"key:{key_id}" if key_id else ANON_BUCKET, spec))
        if project in self.projects:
            found.append(Bucket.of(f"project:{project}", self.projects[project]))
        if source is not None and source in self.sources:
            found.append(Bucket.of(f"source:{source}", self.sources[source]))
        return found
