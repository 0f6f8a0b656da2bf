"""Every command in the docs is run by a test (issue 7), and the docs' other examples are checked here.

Shell blocks (```sh, bash, shell, console) in README.md and docs/**/*.md need, on the line right above the fence,
either ``<!-- run-by-test: <test file> [note] -->`` naming a test file that exists, names the doc's path and
contains that exact marker (it selects the block by it: tests/e2e/doc_shell.py), or
``<!-- not-run-by-test: <reason> -->`` for the few a test cannot run. Other blocks:

- ```yaml: a config (every example is a whole file, or the top-level keys of one) loads through the settings
  model and its rules and schedules build, as ``taskyard config check`` does (``${VAR}``s given a value);
- ```json: parses (write an elision as a ``"…"`` string, not a bare ``...``);
- ```python: compiles; an excerpt that names a file of docs/examples is that file's lines, in order (some left
  out); the alert-signature recipe of docs/api.md verifies a real signature and refuses a changed body;
- a block without a language (diagrams, wire formats) must not hold commands.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from api.engine_process import build_rules
from config.loader import load_settings
from engine.webhook_signing import new_secret, signature_headers

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
SHELL = {"sh", "bash", "shell", "console", "zsh"}
RUN_BY = re.compile(r"<!-- run-by-test: (tests/[\w/]+\.py)( [^<>]*)? -->")
NOT_RUN = re.compile(r"<!-- not-run-by-test: ([^<>]{10,}) -->")
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
COMMAND_WORDS = ("curl ", "taskyard ", ".venv/", "./scripts/", "python ", "$ ", "export ", "cd ")


@dataclass(frozen=True)
class Block:
    doc: str  # path under the repository
    line: int  # of the opening fence
    lang: str
    body: str
    above: str  # the line right above the opening fence

    def __str__(self) -> str:
        return f"{self.doc}:{self.line} ({self.lang or 'no language'})"


def _blocks() -> list[Block]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = path.read_text()
        for match in FENCE.finditer(text):
            before = text[:match.start()].splitlines()
            found.append(Block(str(path.relative_to(ROOT)), len(before) + 1, match.group(1).lower(), match.group(2),
                               before[-1].strip() if before else ""))
    return found


BLOCKS = _blocks()


def _of(*langs: str) -> list[Block]:
    return [b for b in BLOCKS if b.lang in langs]


def test_the_scan_finds_the_docs_blocks() -> None:
    assert len(_of(*SHELL)) >= 25 and len(_of("yaml")) >= 10 and len(_of("json")) >= 10 and len(_of("python")) >= 5
    assert {b.doc for b in _of(*SHELL)} >= {"README.md", "docs/cli.md", "docs/api.md", "docs/github.md"}


def _coverage_problems(blocks: list[Block]) -> list[str]:
    problems = []
    for block in blocks:
        run = RUN_BY.fullmatch(block.above)
        if run is None:
            if not NOT_RUN.fullmatch(block.above):
                problems.append(f"{block}: no <!-- run-by-test: tests/... --> or <!-- not-run-by-test: why --> above")
            continue
        test = ROOT / run.group(1)
        if not test.is_file():
            problems.append(f"{block}: {run.group(1)} does not exist")
            continue
        source = test.read_text()
        if block.doc not in source:
            problems.append(f"{block}: {run.group(1)} never names {block.doc}")
        elif block.above not in source:
            problems.append(f"{block}: {run.group(1)} does not select the block by its marker {block.above}")
    return problems


def test_every_shell_block_is_run_by_a_test_that_reads_its_doc_or_says_why_not() -> None:
    problems = _coverage_problems(_of(*SHELL))
    assert problems == [], "\n".join(problems)


def test_the_rule_refuses_a_block_without_a_marker_a_test_that_is_gone_or_one_that_never_reads_it() -> None:
    def block(doc: str, above: str) -> Block:
        return Block(doc, 1, "sh", "curl -s localhost:8080/health\n", above)

    api = "<!-- run-by-test: tests/e2e/test_docs_api.py -->"
    problems = _coverage_problems([
        block("docs/api.md", api), block("docs/x.md", "<!-- not-run-by-test: a long drill, figures below -->"),
        block("docs/x.md", ""), block("docs/x.md", "<!-- not-run-by-test: slow -->"),
        block("docs/api.md", "<!-- run-by-test: tests/e2e/test_gone.py -->"), block("docs/cli.md", api),
        block("docs/api.md", "<!-- run-by-test: tests/e2e/test_docs_api.py (a note it lacks) -->")])
    assert [p.split(": ", 1)[1].split(" ", 1)[0] for p in problems] == [
        "no", "no", "tests/e2e/test_gone.py", "tests/e2e/test_docs_api.py", "tests/e2e/test_docs_api.py"]
    assert "never names docs/cli.md" in problems[3] and "does not select the block by its marker" in problems[4]


def test_a_block_without_a_language_holds_no_command() -> None:
    commands = [f"{b}: {line}" for b in _of("") for line in b.body.splitlines() if line.startswith(COMMAND_WORDS)]
    assert commands == [], "label these blocks ```sh and run them in a test:\n" + "\n".join(commands)


@pytest.mark.parametrize("block", _of("yaml"), ids=str)
def test_a_yaml_example_is_a_valid_config(block: Block, tmp_path: Path) -> None:
    path = tmp_path / "taskyard.yaml"
    path.write_text(block.body)
    env = {name: f"value-of-{name.lower()}-0123456789" for name in ENV_REF.findall(block.body)}
    settings = load_settings(path, env=env)  # raises ConfigError naming the key and the reason
    build_rules(settings, str(path))
    assert settings.model_fields_set, f"{block} sets no key"


@pytest.mark.parametrize("block", _of("json"), ids=str)
def test_a_json_example_parses(block: Block) -> None:
    assert isinstance(json.loads(block.body), (dict, list))


@pytest.mark.parametrize("block", _of("python"), ids=str)
def test_a_python_example_compiles(block: Block) -> None:
    compile(block.body, str(block), "exec", flags=ast.PyCF_ONLY_AST)


def _code(line: str) -> str:
    return re.sub(r"\s{2,}#.*$", "", line).strip()


@pytest.mark.parametrize("block", [b for b in _of("python") if b.body.startswith("# docs/examples/")], ids=str)
def test_an_excerpt_of_docs_examples_is_the_files_own_lines(block: Block) -> None:
    name = block.body.splitlines()[0].removeprefix("# ").split()[0]
    remaining = iter([_code(line) for line in (ROOT / name).read_text().splitlines()])
    missing = [line for line in map(_code, block.body.splitlines()[1:]) if line and line not in remaining]
    assert missing == [], f"{block}: not lines of {name}, in order: {missing}"


def test_the_alert_signature_recipe_verifies_a_delivery_and_refuses_a_changed_body() -> None:
    [recipe] = [b for b in _of("python") if b.doc == "docs/api.md" and "webhook-signature" in b.body]
    for secret in (new_secret(), "a secret the subscriber chose"):
        body = b'{"id": "d1", "type": "incident.created"}'
        headers = signature_headers(secret, "d1", int(time.time()), body)
        for sent, verified in ((body, True), (body + b" ", False)):
            scope = {"base64": base64, "hashlib": hashlib, "hmac": hmac, "time": time, "secret": secret,
                     "headers": headers, "body": sent}
            exec(recipe.body, scope)  # noqa: S102 - the doc's own code, on values made here
            assert (scope["ok"], scope["fresh"]) == (verified, True), (secret, sent)
