"""Prompt templates: Jinja2, sandboxed, with mecha's Go-template variables accepted as written.

A rule's ``prompt`` (and its ``concurrency_key``) is compiled once when the rule book is built and rendered once
per matching event. mecha writes ``{{.title}}`` and ``{{.pull_request.title}}``; inside ``{{ }}`` a leading dot
before a name is dropped, so those become Jinja's ``{{title}}`` and ``{{pull_request.title}}``, and plain Jinja
(filters, ``{% if %}``, ``{% for %}``) works too. Go's actions (``{{if}}``, ``{{range}}``, ``{{end}}``) do not.

Why a sandbox and strict undefined: templates come from the config, but the values come from webhook payloads
that strangers write. The immutable sandbox keeps a template from reaching Python internals or mutating the
event it renders; strict undefined turns a typo (``{{.numbr}}``) into a failed event with the variable named,
instead of a prompt with a silent hole. Payload text is data: a PR title of ``{{ 7*7 }}`` renders as written,
because rendering never evaluates its output again.

Values print as a prompt reader expects: ``None`` as an empty string (a PR with no body), booleans as
``true``/``false`` (as mecha's Go templates print them), a list of scalars as ``a, b, c``, other lists and
mappings as compact JSON. Filters see the real values, so ``{{ labels | join(" / ") }}`` still works.
"""

from __future__ import annotations

import functools
import json
import operator
import re
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, TemplateError, TemplateRuntimeError, UndefinedError
from jinja2.runtime import missing
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import object_type_repr

from config import defaults
from engine.errors import TemplateFailed, TemplateInvalid

__all__ = ["PromptTemplate", "compile_template", "translate_go_syntax"]

MAX_REPEAT_ITEMS = defaults.MAX_PROMPT_BYTES  # characters or items, largest result of ``*`` on a string or list
MAX_POWER_BITS = 65_536  # bits, largest integer ``**`` may build (a guard against ``9 ** 9 ** 9 ** 9``)

# ``{% raw %}...{% endraw %}`` and ``{# ... #}`` are left alone; only ``{{ ... }}`` is translated (an unclosed
# ``{{`` too, so its syntax error is about the missing ``}}``, not the dot).
_REGIONS = re.compile(
    r"(?P<raw>\{%-?\s*raw\s*-?%\}.*?\{%-?\s*endraw\s*-?%\})|(?P<comment>\{#.*?#\})|\{\{(?P<expr>.*?)(?P<end>\}\}|\Z)",
    re.DOTALL,
)
# In an expression: a string literal (kept as is) or a dot that starts a name. A dot after a name, a closing bracket,
# a digit, a dot or a closing quote is left alone, so ``a.b``, ``x[0].y``, ``1.5``, ``..`` and ``''.x`` keep it.
_GO_TOKEN = re.compile(r"""(?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|(?<![\w)\]}.'"])\.(?=[A-Za-z_])""",
                       re.DOTALL)
_GO_ACTION = re.compile(r"\{\{-?\s*(if|else|end|range|with|define|block|template)\b")


def translate_go_syntax(text: str) -> str:
    """mecha's ``{{.a.b}}`` as Jinja's ``{{a.b}}``; text outside ``{{ }}`` and string literals are kept as is."""
    if "{{" not in text:
        return text

    def expr(match: re.Match[str]) -> str:
        if match.group("expr") is None:
            return match.group(0)
        inner = _GO_TOKEN.sub(lambda token: token.group("string") or "", match.group("expr"))
        return "{{" + inner + match.group("end")

    return _REGIONS.sub(expr, text)


class _MissingKey(UndefinedError):
    """A name looked up on a value (``pull_request.nope``) that is not there; ``name`` is the last part."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


class _Undefined(StrictUndefined):
    """Strict undefined whose message names the variable the way a config author wrote it."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        if self._undefined_obj is missing:
            return f"template variable {self._undefined_name!r} is undefined"
        return f"template variable {self._undefined_name!r} is undefined in {object_type_repr(self._undefined_obj)}"

    def __init__(self, hint: str | None = None, obj: Any = missing, name: str | None = None,
                 exc: type[TemplateRuntimeError] = UndefinedError) -> None:
        super().__init__(hint, obj, name, exc)
        if hint is None and obj is not missing and exc is UndefinedError:
            # A missing key: remember its name so the message can show the whole path (``pull_request.nope``).
            self._undefined_exception = functools.partial(_MissingKey, name=str(name))  # type: ignore[assignment]


def _paths_ending_in(ast: nodes.Template, name: str) -> list[str]:
    """Dotted paths in the template (``pull_request.head.ref``) whose last part is ``name``, for error messages."""
    found: list[str] = []
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        parts: list[str] = []
        current: nodes.Node = node
        while True:
            if isinstance(current, nodes.Getattr):
                parts.append(current.attr)
                current = current.node
            elif isinstance(current, nodes.Getitem) and isinstance(current.arg, nodes.Const):
                parts.append(str(current.arg.value))
                current = current.node
            else:
                break
        if isinstance(current, nodes.Name) and parts and parts[0] == name:
            path = ".".join([current.name, *reversed(parts)])
            if path not in found:
                found.append(path)
    return found


def _finalize(value: Any) -> Any:
    """How a ``{{ }}`` value prints (module docstring); runs on output only, never on filter input."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (list, tuple)):
        if all(isinstance(item, (str, int, float)) and not isinstance(item, bool) for item in value):
            return ", ".join(str(item) for item in value)
        return json.dumps(value, default=str, separators=(",", ":"))
    if isinstance(value, Mapping):
        return json.dumps(dict(value), default=str, separators=(",", ":"))
    return value


class _Environment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with ``*`` and ``**`` bounded so a template cannot build a giant value."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(count, int) \
                        and len(seq) * count > MAX_REPEAT_ITEMS:
                    raise SecurityError(f"repeating a value {count} times would pass {MAX_REPEAT_ITEMS} items")
            return operator.mul(left, right)
        if isinstance(left, int) and isinstance(right, int) and right > 0 \
                and abs(left).bit_length() * right > MAX_POWER_BITS:
            raise SecurityError(f"the power would be larger than {MAX_POWER_BITS} bits")
        return operator.pow(left, right)


_ENV = _Environment(
    autoescape=False,
    undefined=_Undefined,
    finalize=_finalize,
    keep_trailing_newline=True,
)
_GLOBALS = frozenset(_ENV.globals)


class PromptTemplate:
    """A compiled template. ``variables`` are the top-level names it reads, so a caller can compute costly
    values (a diff, a file list) only for the templates that use them."""

    __slots__ = ("source", "variables", "_template")

    def __init__(self, source: str) -> None:
        translated = translate_go_syntax(source)
        try:
            ast = _ENV.parse(translated)
            self._template = _ENV.from_string(ast)
        except TemplateSyntaxError as exc:
            hint = ""
            if _GO_ACTION.search(source):
                hint = " (Go template actions such as {{if}} and {{range}} are not supported: use Jinja's " \
                       "{% if %} and {% for %})"
            raise TemplateInvalid(f"template syntax error on line {exc.lineno}: {exc.message}{hint}") from exc
        self.source = source
        self.variables: frozenset[str] = frozenset(meta.find_undeclared_variables(ast)) - _GLOBALS

    def render(self, context: Mapping[str, Any]) -> str:
        """The text for one event. Only the names in ``variables`` are read from ``context``.

        Raises TemplateFailed naming the undefined variable, the unsafe access, or the size cap passed.
        """
        values = {name: context[name] for name in self.variables if name in context}
        limit = defaults.MAX_PROMPT_BYTES
        size = 0
        parts: list[str] = []
        try:
            for chunk in self._template.generate(values):
                size += len(chunk) if chunk.isascii() else len(chunk.encode("utf-8"))
                if size > limit:
                    raise TemplateFailed(f"rendered template is larger than {limit} bytes")
                parts.append(chunk)
        except _MissingKey as exc:
            paths = _paths_ending_in(_ENV.parse(translate_go_syntax(self.source)), exc.name)
            if paths:
                raise TemplateFailed(f"template variable {' or '.join(map(repr, paths))} is undefined") from exc
            raise TemplateFailed(exc.message or "template variable is undefined") from exc
        except UndefinedError as exc:
            raise TemplateFailed(exc.message or "template variable is undefined") from exc
        except SecurityError as exc:
            raise TemplateFailed(f"template blocked by the sandbox: {exc.message}") from exc
        except TemplateError as exc:
            raise TemplateFailed(f"template failed: {exc.message}") from exc
        except TemplateFailed:
            raise
        except Exception as exc:  # anything else a template can raise (TypeError, ZeroDivisionError, recursion)
            raise TemplateFailed(f"template failed: {type(exc).__name__}: {exc}") from exc
        return "".join(parts)

    def __repr__(self) -> str:
        return f"PromptTemplate({self.source!r})"


def compile_template(text: str) -> PromptTemplate:
    """Compile ``text`` once (at config load); raises TemplateInvalid with the line and the syntax problem."""
    if not isinstance(text, str):
        raise TemplateInvalid(f"a template must be text, not {type(text).__name__}")
    return PromptTemplate(text)
