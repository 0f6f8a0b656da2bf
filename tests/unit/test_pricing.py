from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from config.loader import load_settings
from config.pricing import DEFAULT_PRICES, PriceSpec
from engine.errors import ConfigError, ValidationFailed
from engine.pricing import PriceBook

DAY = datetime.date(2025, 1, 1)


def spec(model: str, input_usd: float, output_usd: float) -> PriceSpec:
    return PriceSpec(model=model, input_per_million=input_usd, output_per_million=output_usd, effective=DAY)


def test_every_default_price_has_a_date_and_unique_name() -> None:
    names = [p.model.lower() for p in DEFAULT_PRICES]
    assert len(names) == len(set(names))
    assert all(p.effective.year >= 2023 for p in DEFAULT_PRICES)
    for family in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3", "claude-3-5-sonnet", "claude-3-5-haiku",
                   "claude-sonnet-4", "claude-opus-4", "gemini-1.5-pro", "gemini-2.5-flash"):
        assert PriceBook.build().lookup(family) is not None, family


def test_exact_match_beats_a_prefix() -> None:
    book = PriceBook.build()
    assert book.lookup("gpt-4o-2024-05-13").input_per_million == 5.0  # type: ignore[union-attr]
    assert book.lookup("gpt-4o-2024-08-06").input_per_million == 2.5  # type: ignore[union-attr]


def test_longest_prefix_wins() -> None:
    book = PriceBook.build()
    assert book.lookup("gpt-4o-mini-2024-07-18").model == "gpt-4o-mini"  # type: ignore[union-attr]
    assert book.lookup("claude-opus-4-5-20251101").model == "claude-opus-4-5"  # type: ignore[union-attr]
    assert book.lookup("claude-opus-4-20250514").model == "claude-opus-4"  # type: ignore[union-attr]
    assert book.lookup("gemini-2.0-flash-lite-001").model == "gemini-2.0-flash-lite"  # type: ignore[union-attr]


def test_lookup_ignores_case_and_a_routing_prefix() -> None:
    book = PriceBook.build()
    assert book.lookup("  Claude-3-5-Sonnet-20241022 ").model == "claude-3-5-sonnet"  # type: ignore[union-attr]
    assert book.lookup("openai/gpt-4.1-mini").model == "gpt-4.1-mini"  # type: ignore[union-attr]
    assert book.lookup("models/gemini-1.5-pro").model == "gemini-1.5-pro"  # type: ignore[union-attr]
    assert book.lookup("claude-sonnet-4@20250514").model == "claude-sonnet-4"  # type: ignore[union-attr]


def test_a_prefix_matches_only_a_snapshot_of_the_same_model() -> None:
    book = PriceBook.build([spec("acme", 1, 1)])
    assert book.lookup("acme-20250101") is not None and book.lookup("acme-latest") is not None
    assert book.lookup("acme-large") is None  # another model of the family: not priced as acme
    assert book.lookup("acmecorp-large") is None
    assert book.lookup("gpt-4.5-preview") is None  # not priced as gpt-4
    for other in ("gpt-5-pro", "gpt-5-pro-2025-10-06", "gpt-4-32k", "gpt-4-vision-preview", "o3-deep-research",
                  "gpt-4o-audio-preview", "gpt-4o-realtime-preview"):
        found = PriceBook.build().lookup(other)
        assert found is None or found.model == other, (other, found)


def test_unknown_model_costs_nothing_and_is_flagged() -> None:
    book = PriceBook.build()
    assert book.lookup("no-such-model") is None
    assert book.cost("no-such-model", 1000, 1000) == (0.0, False)
    assert book.cost(None, 1000, 1000) == (0.0, False)
    assert book.cost("", 1000, 1000) == (0.0, False)


def test_cost_is_tokens_times_price_per_million() -> None:
    book = PriceBook.build()
    usd, priced = book.cost("gpt-4o", 1_000_000, 500_000)  # 2.50 + 0.5 * 10.00
    assert priced and usd == pytest.approx(7.5)
    usd, priced = book.cost("claude-3-5-haiku-20241022", 1234, 567)  # 0.80 and 4.00 per million
    assert priced and usd == pytest.approx((1234 * 0.8 + 567 * 4.0) / 1e6)


def test_negative_tokens_are_refused() -> None:
    with pytest.raises(ValidationFailed):
        PriceBook.build().cost("gpt-4o", -1, 0)


def test_overrides_replace_and_add_entries() -> None:
    book = PriceBook.build([spec("GPT-4o", 1.0, 2.0), spec("my-finetune", 3.0, 4.0)])
    assert book.cost("gpt-4o-2024-11-20", 1_000_000, 1_000_000) == (3.0, True)
    assert book.cost("my-finetune-v2", 1_000_000, 0) == (3.0, True)
    assert book.lookup("gpt-4o").effective == DAY  # type: ignore[union-attr]
    assert book.lookup("gpt-4o-mini").input_per_million == 0.15  # type: ignore[union-attr]  # others unchanged


def test_pricing_overrides_load_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "taskyard.yaml"
    path.write_text("pricing:\n  - {model: gpt-4o, input_per_million: 2, output_per_million: 8, "
                    "effective: 2025-02-01}\n")
    settings = load_settings(path, env={})
    assert settings.pricing == [PriceSpec(model="gpt-4o", input_per_million=2, output_per_million=8,
                                          effective=datetime.date(2025, 2, 1))]


def test_pricing_overrides_reject_duplicates_and_negative_prices(tmp_path: Path) -> None:
    path = tmp_path / "taskyard.yaml"
    path.write_text("pricing:\n  - {model: a, input_per_million: 1, output_per_million: 1, effective: 2025-01-01}\n"
                    "  - {model: A, input_per_million: 2, output_per_million: 2, effective: 2025-01-01}\n")
    with pytest.raises(ConfigError, match="priced twice"):
        load_settings(path, env={})
    path.write_text("pricing:\n  - {model: a, input_per_million: -1, output_per_million: 1, effective: 2025-01-01}\n")
    with pytest.raises(ConfigError, match="pricing"):
        load_settings(path, env={})
