"""Failure detectors: pure, deterministic functions over a trace's ordered events (issue 5, DESIGN section 6).

One module per concept: ``events`` (reading events), ``fingerprint`` (error signatures), ``outcomes`` (how runs
ended), ``loops``, ``budgets``, ``tools``, ``injection``, and ``catalogue`` (running them all).
"""

from __future__ import annotations

from engine.detectors.catalogue import (
    DETECTOR_VERSIONS,
    DETECTORS,
    INCREMENTAL_CLASSES,
    analyze,
    analyze_incremental,
    merge,
)
from engine.detectors.fingerprint import fingerprint
from engine.detectors.model import FAILURE_CLASSES, Detection, TraceFacts

__all__ = ["DETECTORS", "DETECTOR_VERSIONS", "FAILURE_CLASSES", "INCREMENTAL_CLASSES", "Detection", "TraceFacts",
           "analyze", "analyze_incremental", "fingerprint", "merge"]
