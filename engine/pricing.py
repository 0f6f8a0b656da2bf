"""What an LLM call costs: the price book built from the default table and the ``pricing:`` overrides.

A model name matches exactly first (case-insensitive, surrounding spaces ignored), then by the longest listed name
that is a prefix of it and ends at a separator (``-``, ``@``, ``:``, ``_``), so dated and tagged variants find their
family (``claude-3-5-sonnet-20241022``, ``claude-sonnet-4@20250514``, ``gemini-2.0-flash-001``) while ``gpt-4`` does
not price ``gpt-4o-audio`` or ``gpt-4.5``. A routing prefix such as ``openai/`` or ``models/`` is dropped when the
full name does not match. A model that matches nothing costs 0 and is reported unpriced.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from config.pricing import DEFAULT_PRICES, PriceSpec
from engine.errors import ValidationFailed

__all__ = ["TOKENS_PER_PRICE_UNIT", "Price", "PriceBook"]

TOKENS_PER_PRICE_UNIT = 1_000_000  # tokens: prices are USD per this many tokens
COST_DECIMALS = 12  # decimal places (USD) a computed cost keeps; finer than any per-token price
# What may follow a listed name for it to match as a prefix: a dated or numbered snapshot of the same model
# (gpt-4o-2024-08-06, claude-3-5-sonnet-20241022, gemini-1.5-pro-002, claude-sonnet-4@20250514, -latest, -v2).
# Anything else is another model (gpt-4-32k, gpt-5-pro, gpt-4o-audio-preview): unpriced unless the table lists it.
_VARIANT = re.compile(r"(-[0-9]{4}-?[0-9]{2}-?[0-9]{2}|-[0-9]{3,4}|@[0-9][0-9a-z.-]*|-latest|-v[0-9]+(:[0-9]+)?)")


@dataclass(frozen=True)
class Price:
    """One model's price: USD per million input and output tokens, and the day it took effect."""

    model: str
    input_per_million: float
    output_per_million: float
    effective: datetime.date

    def to_public(self) -> dict[str, object]:
        return {"model": self.model, "input_per_million": self.input_per_million,
                "output_per_million": self.output_per_million, "effective": self.effective.isoformat()}


class PriceBook:
    """Prices by model name. Build it once per process with :meth:`build`; it never changes afterwards."""

    def __init__(self, prices: Iterable[Price]) -> None:
        self._by_name: dict[str, Price] = {p.model.strip().lower(): p for p in prices}
        # longest names first, so the first prefix found is the longest one
        self._prefixes = sorted(self._by_name, key=len, reverse=True)

    @classmethod
    def build(cls, overrides: Sequence[PriceSpec] = ()) -> PriceBook:
        """The default table with ``overrides`` (from ``Settings.pricing``) replacing or adding entries."""
        merged = {spec.model.strip().lower(): spec for spec in DEFAULT_PRICES}
        merged.update({spec.model.strip().lower(): spec for spec in overrides})
        return cls(Price(model=s.model.strip(), input_per_million=s.input_per_million,
                         output_per_million=s.output_per_million, effective=s.effective) for s in merged.values())

    def prices(self) -> list[Price]:
        """Every price, by model name."""
        return [self._by_name[name] for name in sorted(self._by_name)]

    def lookup(self, model: str) -> Price | None:
        """The price of ``model``: exact match, else longest separator-bounded prefix; None if unknown."""
        name = model.strip().lower()
        found = self._match(name)
        if found is None and "/" in name:
            found = self._match(name.rsplit("/", 1)[1])
        return found

    def cost(self, model: str | None, tokens_in: int, tokens_out: int) -> tuple[float, bool]:
        """``(usd, priced)`` for one call; an unknown or missing model costs 0.0 with ``priced`` False."""
        if tokens_in < 0 or tokens_out < 0:
            raise ValidationFailed("token counts cannot be negative")
        price = self.lookup(model) if model else None
        if price is None:
            return 0.0, False
        usd = (tokens_in * price.input_per_million + tokens_out * price.output_per_million) / TOKENS_PER_PRICE_UNIT
        return round(usd, COST_DECIMALS), True

    def _match(self, name: str) -> Price | None:
        if not name:
            return None
        exact = self._by_name.get(name)
        if exact is not None:
            return exact
        for listed in self._prefixes:
            if len(listed) < len(name) and name.startswith(listed) and _VARIANT.fullmatch(name[len(listed):]):
                return self._by_name[listed]
        return None
