"""Where the test data lives. The GitHub payloads are GitHub's own webhook examples (octokit/webhooks, MIT;
see tests/fixtures/github-webhooks/NOTICE), kept in the repository so the suite runs from any checkout."""

from __future__ import annotations

from pathlib import Path

GITHUB_WEBHOOKS = Path(__file__).resolve().parent / "fixtures" / "github-webhooks"
