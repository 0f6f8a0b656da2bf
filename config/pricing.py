"""LLM prices: the default table and the ``pricing:`` settings that override it.

Prices are USD per million tokens (input and output), each with the date it took effect. They are the list prices
as published by the vendors on their pricing pages, for the standard (non-batch, non-cached, shortest-context) tier;
long-context tiers, cached input, batch discounts and reasoning-token surcharges are not modelled. Vendors change
prices: REVIEW THIS TABLE against the vendors' pages before relying on the cost figures, and override or add entries
with ``pricing:`` in ``taskyard.yaml``::

    pricing:
      - {model: gpt-4o, input_per_million: 2.5, output_per_million: 10, effective: 2024-08-06}
      - {model: my-finetune, input_per_million: 3, output_per_million: 12, effective: 2025-01-01}

Model names match exactly first, then by the longest listed name that is a prefix of the given one
(``claude-3-5-sonnet-20241022`` -> ``claude-3-5-sonnet``); see :mod:`engine.pricing`.
"""

from __future__ import annotations

import datetime
from typing import Annotated

from pydantic import AfterValidator, Field

from config.base import Strict

__all__ = ["DEFAULT_PRICES", "PriceList", "PriceSpec"]


class PriceSpec(Strict):
    """One model's price: USD per million input and output tokens, and the date that price took effect."""

    # model name as reported in llm_call events (dated snapshots match by prefix)
    model: str = Field(min_length=1, max_length=200)
    input_per_million: float = Field(ge=0)  # USD per 1,000,000 input (prompt) tokens
    output_per_million: float = Field(ge=0)  # USD per 1,000,000 output (completion) tokens
    effective: datetime.date  # the day this price took effect


def _unique_models(specs: list[PriceSpec]) -> list[PriceSpec]:
    seen: set[str] = set()
    for spec in specs:
        name = spec.model.strip().lower()
        if name in seen:
            raise ValueError(f"model {spec.model!r} is priced twice")
        seen.add(name)
    return specs


PriceList = Annotated[list[PriceSpec], AfterValidator(_unique_models)]  # model names unique, case-insensitive


def _p(model: str, input_usd: float, output_usd: float, effective: str) -> PriceSpec:
    return PriceSpec(model=model, input_per_million=input_usd, output_per_million=output_usd,
                     effective=datetime.date.fromisoformat(effective))


# (model, USD per 1M input tokens, USD per 1M output tokens, effective date). As published by the vendors;
# must be reviewed (see the module docstring). Tiered models list their lowest (short-prompt) tier.
DEFAULT_PRICES: tuple[PriceSpec, ...] = (
    # OpenAI (openai.com/api/pricing)
    _p("gpt-4o", 2.50, 10.00, "2024-08-06"),
    _p("gpt-4o-2024-05-13", 5.00, 15.00, "2024-05-13"),
    _p("gpt-4o-mini", 0.15, 0.60, "2024-07-18"),
    _p("gpt-4.1", 2.00, 8.00, "2025-04-14"),
    _p("gpt-4.1-mini", 0.40, 1.60, "2025-04-14"),
    _p("gpt-4.1-nano", 0.10, 0.40, "2025-04-14"),
    _p("gpt-5", 1.25, 10.00, "2025-08-07"),
    _p("gpt-5-mini", 0.25, 2.00, "2025-08-07"),
    _p("gpt-5-nano", 0.05, 0.40, "2025-08-07"),
    _p("gpt-5.1", 1.25, 10.00, "2025-11-13"),
    _p("gpt-4-turbo", 10.00, 30.00, "2024-04-09"),
    _p("gpt-4", 30.00, 60.00, "2023-03-14"),
    _p("gpt-3.5-turbo", 0.50, 1.50, "2024-01-25"),
    _p("o1", 15.00, 60.00, "2024-12-17"),
    _p("o1-mini", 1.10, 4.40, "2025-01-31"),
    _p("o1-pro", 150.00, 600.00, "2025-03-19"),
    _p("o3", 2.00, 8.00, "2025-06-10"),
    _p("o3-mini", 1.10, 4.40, "2025-01-31"),
    _p("o3-pro", 20.00, 80.00, "2025-06-10"),
    _p("o4-mini", 1.10, 4.40, "2025-04-16"),
    # Anthropic (anthropic.com/pricing)
    _p("claude-3-5-sonnet", 3.00, 15.00, "2024-06-20"),
    _p("claude-3-5-haiku", 0.80, 4.00, "2024-11-04"),
    _p("claude-3-7-sonnet", 3.00, 15.00, "2025-02-24"),
    _p("claude-3-opus", 15.00, 75.00, "2024-03-04"),
    _p("claude-3-haiku", 0.25, 1.25, "2024-03-13"),
    _p("claude-sonnet-4", 3.00, 15.00, "2025-05-22"),
    _p("claude-sonnet-4-5", 3.00, 15.00, "2025-09-29"),
    _p("claude-opus-4", 15.00, 75.00, "2025-05-22"),
    _p("claude-opus-4-1", 15.00, 75.00, "2025-08-05"),
    _p("claude-opus-4-5", 5.00, 25.00, "2025-11-24"),
    _p("claude-haiku-4-5", 1.00, 5.00, "2025-10-15"),
    # Google (ai.google.dev/gemini-api/docs/pricing; prompts up to 128k / 200k tokens)
    _p("gemini-1.5-pro", 1.25, 5.00, "2024-10-01"),
    _p("gemini-1.5-flash", 0.075, 0.30, "2024-08-12"),
    _p("gemini-1.5-flash-8b", 0.0375, 0.15, "2024-10-03"),
    _p("gemini-2.0-flash", 0.10, 0.40, "2025-02-05"),
    _p("gemini-2.0-flash-lite", 0.075, 0.30, "2025-02-25"),
    _p("gemini-2.5-pro", 1.25, 10.00, "2025-06-17"),
    _p("gemini-2.5-flash", 0.30, 2.50, "2025-06-17"),
    _p("gemini-2.5-flash-lite", 0.10, 0.40, "2025-07-22"),
    _p("gemini-3-pro-preview", 2.00, 12.00, "2025-11-18"),
)
