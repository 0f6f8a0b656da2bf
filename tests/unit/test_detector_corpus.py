"""The detector catalogue against the labelled corpus: per-class precision and recall must be 1.0."""

from __future__ import annotations

from collections import Counter

import pytest

from engine.detectors import FAILURE_CLASSES, analyze, analyze_incremental
from engine.detectors.model import Detection
from tests.unit.detector_corpus import CORPUS, Case

MIN_CASES = 40


def detections_of(item: Case) -> list[Detection]:
    run = analyze_incremental if item.incremental else analyze
    return run(item.events, item.facts, item.limits)


def test_the_corpus_has_a_firing_case_and_a_near_miss_for_every_class() -> None:
    assert len(CORPUS) >= MIN_CASES
    assert len({c.name for c in CORPUS}) == len(CORPUS), "case names must be unique"
    for failure_class in FAILURE_CLASSES:
        assert any(failure_class in c.expect for c in CORPUS), f"no case fires {failure_class}"
        assert any(failure_class in c.near_miss for c in CORPUS), f"no near-miss for {failure_class}"
    for item in CORPUS:
        assert not item.expect & item.near_miss, item.name
        assert item.expect <= set(FAILURE_CLASSES) and item.near_miss <= set(FAILURE_CLASSES), item.name


def test_per_class_precision_and_recall_on_the_corpus_are_perfect(capsys: pytest.CaptureFixture[str]) -> None:
    # Given every case labelled with every class it must raise (and so every class it must not)
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    wrong = []
    # When the catalogue runs on each
    for item in CORPUS:
        got = {d.failure_class for d in detections_of(item)}
        for failure_class in FAILURE_CLASSES:
            if failure_class in got and failure_class in item.expect:
                tp[failure_class] += 1
            elif failure_class in got:
                fp[failure_class] += 1
                wrong.append(f"{item.name}: unexpected {failure_class}")
            elif failure_class in item.expect:
                fn[failure_class] += 1
                wrong.append(f"{item.name}: missed {failure_class}")
    # Then every class is found exactly where it is labelled
    lines = [f"{'class':<18} {'pos':>4} {'neg':>4} {'near':>5} {'precision':>9} {'recall':>7}"]
    scores = {}
    for failure_class in FAILURE_CLASSES:
        found, positives = tp[failure_class] + fp[failure_class], tp[failure_class] + fn[failure_class]
        precision = tp[failure_class] / found if found else 1.0
        recall = tp[failure_class] / positives if positives else 1.0
        scores[failure_class] = (precision, recall)
        near = sum(failure_class in c.near_miss for c in CORPUS)
        lines.append(f"{failure_class:<18} {positives:>4} {len(CORPUS) - positives:>4} {near:>5} "
                     f"{precision:>9.3f} {recall:>7.3f}")
    with capsys.disabled():
        print(f"\ndetector corpus: {len(CORPUS)} traces\n" + "\n".join(lines))
    assert not wrong, "\n".join(wrong)
    assert all(p == 1.0 and r == 1.0 for p, r in scores.values()), scores


@pytest.mark.parametrize("item", [c for c in CORPUS if c.signatures], ids=lambda c: c.name)
def test_labelled_signatures_are_the_ones_found(item: Case) -> None:
    by_class = {d.failure_class: d.signature for d in detections_of(item)}
    for failure_class, signature in item.signatures.items():
        assert by_class.get(failure_class) == signature, (failure_class, by_class)


@pytest.mark.parametrize("item", CORPUS, ids=lambda c: c.name)
def test_every_detection_is_well_formed(item: Case) -> None:
    for found in detections_of(item):
        assert found.signature and found.summary and found.detector_version.startswith(found.failure_class + "/")
        assert 0.0 < found.confidence <= 1.0
        assert list(found.evidence) == sorted(set(found.evidence))
        seqs = {e["seq"] for e in item.events}
        assert set(found.evidence) <= seqs
        assert found.critical_step_seq is None or found.critical_step_seq in seqs
