from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from config import defaults
from engine.errors import TemplateFailed, TemplateInvalid
from engine.templates import compile_template, translate_go_syntax

PR = {
    "number": 12,
    "title": "Fix the parser",
    "labels": ["bug", "ui"],
    "draft": False,
    "body": None,
    "pull_request": {"title": "Fix the parser", "head": {"ref": "feature/x"}},
}


def render(text: str, context: Mapping[str, Any] = PR) -> str:
    return compile_template(text).render(context)


@pytest.mark.parametrize("text", [
    "PR #{{.number}}: {{.title}}",
    "PR #{{ .number }}: {{ .title }}",
    "PR #{{number}}: {{ title }}",
    "PR #{{- .number -}}: {{.pull_request.title}}",
])
def test_mecha_go_syntax_and_jinja_render_the_same(text: str) -> None:
    assert render(text) == "PR #12: Fix the parser"


def test_go_dots_are_translated_only_inside_expressions_and_outside_strings() -> None:
    assert translate_go_syntax("See .title {{ .title | replace('.x', \".y\") }}") == \
        "See .title {{ title | replace('.x', \".y\") }}"
    assert translate_go_syntax("{% raw %}{{.a}}{% endraw %}{# {{.b}} #}{{ x[0].y }} {{ 1.5 }}") == \
        "{% raw %}{{.a}}{% endraw %}{# {{.b}} #}{{ x[0].y }} {{ 1.5 }}"
    assert translate_go_syntax("{{ ''.upper }}") == "{{ ''.upper }}"


def test_a_missing_variable_fails_naming_it() -> None:
    with pytest.raises(TemplateFailed, match=r"^template variable 'numbr' is undefined$"):
        render("PR #{{.numbr}}")


def test_a_missing_nested_key_fails_naming_the_whole_path() -> None:
    with pytest.raises(TemplateFailed, match=r"^template variable 'pull_request.head.sha' is undefined$"):
        render("{{ .pull_request.head.sha }}")


def test_optional_values_can_be_guarded() -> None:
    assert render("{{ .missing | default('none') }}/{% if x is defined %}x{% endif %}") == "none/"


def test_payload_text_is_data_never_template_code() -> None:
    context = {"title": "{{ 7*7 }} {% for i in range(3) %}x{% endfor %} {{ ''.__class__ }}"}
    assert render("Title: {{.title}}", context) == f"Title: {context['title']}"


@pytest.mark.parametrize("text", [
    "{{ ''.__class__.__mro__ }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ '{0.__class__}'.format(1) }}",
    "{{ labels.append('pwned') }}",
])
def test_the_sandbox_blocks_python_internals_and_mutation(text: str) -> None:
    with pytest.raises(TemplateFailed, match="blocked by the sandbox"):
        render(text)
    assert PR["labels"] == ["bug", "ui"]


@pytest.mark.parametrize("text", ["{{ 'x' * 10 ** 8 }}", "{{ 9 ** 99999 }}"])
def test_templates_cannot_build_giant_values(text: str) -> None:
    with pytest.raises(TemplateFailed, match="blocked by the sandbox"):
        render(text)


def test_other_runtime_errors_become_template_failed() -> None:
    with pytest.raises(TemplateFailed, match="TypeError"):
        render("{{ number + 'a' }}")
    with pytest.raises(TemplateFailed, match="ZeroDivisionError"):
        render("{{ number / 0 }}")


def test_values_print_as_a_prompt_reader_expects() -> None:
    assert render("{{.labels}}|{{.draft}}|{{ true }}|[{{.body}}]|{{ .pull_request.head }}|{{ 1.5 }}") == \
        'bug, ui|false|true|[]|{"ref":"feature/x"}|1.5'


def test_filters_see_the_real_list() -> None:
    assert render("{{ labels | join(' / ') }} {{ labels | length }} {% for l in labels %}<{{ l }}>{% endfor %}") \
        == "bug / ui 2 <bug><ui>"


def test_variables_are_the_top_level_names_read() -> None:
    template = compile_template(
        "{{.number}} {{ title | upper }} {% for f in file_list %}{{ f }}{% endfor %} {{ pull_request.head.ref }}"
        " {{ range(2) | list }}")
    assert template.variables == frozenset({"number", "title", "file_list", "pull_request"})
    assert compile_template("static text").variables == frozenset()


def test_render_reads_only_the_variables_it_uses() -> None:
    class Lazy(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            if key == "diff":
                raise AssertionError("diff was computed")
            return {"number": 3}[key]

        def __iter__(self) -> Iterator[str]:
            return iter(["number", "diff"])

        def __len__(self) -> int:
            return 2

    assert render("#{{.number}}", Lazy()) == "#3"


def test_output_is_capped_at_the_prompt_size_limit() -> None:
    assert len(render("{{ x }}", {"x": "a" * defaults.MAX_PROMPT_BYTES})) == defaults.MAX_PROMPT_BYTES
    with pytest.raises(TemplateFailed, match="larger than 1048576 bytes"):
        render("{{ x }}!", {"x": "a" * defaults.MAX_PROMPT_BYTES})
    with pytest.raises(TemplateFailed, match="larger than"):
        render("{% for i in range(20) %}{{ x }}{% endfor %}", {"x": "é" * 30_000})


def test_trailing_newlines_are_kept() -> None:
    assert render("line {{.number}}\n") == "line 12\n"


@pytest.mark.parametrize(("text", "expected"), [
    ("a\n{{ .x ", "line 2: unexpected end of template"),
    ("{% for %}", "line 1: Expected an expression"),
    ("{{if .draft}}x{{end}}", "Go template actions such as {{if}}"),
])
def test_syntax_errors_are_template_invalid_with_the_line(text: str, expected: str) -> None:
    with pytest.raises(TemplateInvalid, match="^template syntax error") as info:
        compile_template(text)
    assert expected in info.value.message


def test_a_compiled_template_renders_many_times() -> None:
    template = compile_template("#{{.number}}")
    assert [template.render({"number": n}) for n in (1, 2)] == ["#1", "#2"]
