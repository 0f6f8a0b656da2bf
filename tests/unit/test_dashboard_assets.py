"""The dashboard's static files keep the promises its CSP and its docs make: no HTML built from strings, no
inline script, style or event handler, nothing from another origin, small modules whose imports resolve, and
every file shipped as package data."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "api" / "ui" / "static"
MODULES = sorted(STATIC.glob("js/**/*.js"))
MAX_MODULE_LINES = 300
SVG_NS = "http://www.w3.org/2000/svg"


def test_there_are_modules_to_check() -> None:
    assert len(MODULES) >= 8 and (STATIC / "index.html").exists() and (STATIC / "app.css").exists()


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.relative_to(STATIC).as_posix())
def test_a_module_never_builds_html_from_strings(module: Path) -> None:
    text = re.sub(r"/\*.*?\*/|^\s*//.*$", "", module.read_text(), flags=re.S | re.M)  # code, not comments
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                 "setAttribute(\"on", "setAttribute('on"):
        assert sink not in text, f"{module.name} uses {sink}"


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.relative_to(STATIC).as_posix())
def test_a_module_is_small_and_its_imports_resolve(module: Path) -> None:
    text = module.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{module.name} is over {MAX_MODULE_LINES} lines"
    for target in re.findall(r'^import .* from "([^"]+)";$', text, flags=re.M):
        assert target.startswith("."), f"{module.name} imports {target} (only our own modules)"
        assert (module.parent / target).resolve().is_file(), f"{module.name}: {target} does not exist"


def test_nothing_comes_from_another_origin_or_runs_inline() -> None:
    index = (STATIC / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", index), "inline script"
    assert not re.search(r"\son[a-z]+=", index), "inline event handler"
    assert " style=" not in index and "<style" not in index, "inline style"
    for path in [STATIC / "index.html", STATIC / "app.css", *MODULES]:
        urls = [u for u in re.findall(r"https?://[^\s\"')]+", path.read_text()) if u != SVG_NS]
        assert not urls, f"{path.name} refers to another origin: {urls}"


def test_every_static_file_is_package_data() -> None:
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["api"]
    shipped = {p for pattern in globs for p in (ROOT / "api").glob(pattern)}
    files = {p for p in STATIC.rglob("*") if p.is_file()}
    assert files <= shipped, sorted(str(p.relative_to(ROOT)) for p in files - shipped)
