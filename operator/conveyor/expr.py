"""`${{ CEL }}` expressions inside JSON values: compile once, render many times.

A string that is exactly one expression (`"${{ inputs.order }}"`) takes the expression's value
and type; expressions embedded in text (`"order ${{ inputs.order.id }}"`) render as text. JSON
values without expressions compile to themselves, so rendering them costs nothing.

Evaluation passes CEL only the variables an expression names: converting a Python value to CEL
costs time in proportion to its size, and `tasks` can be large. References of the form
`tasks.<name>` / `tasks["<name>"]` narrow `tasks` further to the tasks named.
"""

import base64
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import cel

from conveyor.errors import ExpressionError

OPEN, CLOSE = "${{", "}}"

# `tasks.name` or `tasks["name"]` / `tasks['name']`; any other use of `tasks` needs all of it.
_TASK_REF = re.compile(
    r"""\btasks\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)\b(?!\s*\()|\[\s*(['"])([^'"]+)\2\s*\])"""
)
_TASKS_WORD = re.compile(r"\btasks\b")
_POSITION = re.compile(r"<input>:(\d+):(\d+): (.*)")
# `item.sku`, `tasks.validate.outputs`: plain field selection, by far the most common form,
# is walked in Python; handing such an expression to CEL costs more in converting the
# variables than in evaluating. The answer is the same either way.
_SELECTION = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_]*(?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*)*\s*")
_LITERALS = frozenset(("true", "false", "null"))

Variables = Mapping[str, Any]


@dataclass(frozen=True)
class Expression:
    """One compiled `${{ }}` expression and what it reads."""

    source: str
    path: str
    program: Any  # cel.Program; the library ships no type information
    variables: frozenset[str]
    # Names of the tasks it reads, or None when it reads `tasks` as a whole.
    task_refs: frozenset[str] | None
    # For a plain field selection, its names (`item.sku` -> ("item", "sku")).
    selection: tuple[str, ...] | None = None

    def evaluate(self, variables: Variables) -> Any:
        """The expression's value as JSON-compatible Python; ExpressionError on failure."""
        if self.selection is not None:
            return self._select(variables)
        context = {}
        for name in self.variables:
            if name in variables:
                value = variables[name]
                if name == "tasks" and self.task_refs is not None:
                    value = {t: value[t] for t in self.task_refs if t in value}
                context[name] = value
        try:
            result = self.program.execute(context)
        except Exception as error:  # the library raises builtin types for evaluation errors
            raise ExpressionError(self.path, self.source, _reason(error)) from error
        return to_json(result)


    def _select(self, variables: Variables) -> Any:
        names = self.selection
        assert names is not None
        if names[0] not in variables:
            raise ExpressionError(self.path, self.source, f"undeclared reference {names[0]!r}")
        value = variables[names[0]]
        for name in names[1:]:
            if not isinstance(value, dict):
                raise ExpressionError(self.path, self.source,
                                      f"no field {name!r} on a value of type "
                                      f"{type(value).__name__}")
            if name not in value:
                raise ExpressionError(self.path, self.source, f"no such key: {name!r}")
            value = value[name]
        return value


def _reason(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    if isinstance(error, KeyError):
        text = f"no such key: {text}"
    return text.splitlines()[0]


def to_json(value: Any) -> Any:
    """CEL results as JSON values: timestamps and durations as text, bytes as base64."""
    kind = type(value)
    if kind is str or kind is int or value is None or kind is bool or kind is float:
        return value
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g}s"
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


def compile_expression(source: str, path: str, offset: int = 0) -> Expression:
    """Compile one CEL source; `offset` is where it starts in the string at `path`."""
    try:
        program = cel.compile(source)
    except Exception as error:
        reason = _syntax_reason(error, source, offset)
        raise ExpressionError(path, source.strip(), reason) from error
    variables = frozenset(program.variables())
    selection = None
    if _SELECTION.fullmatch(source):
        names = tuple(name.strip() for name in source.split("."))
        selection = None if names[0] in _LITERALS else names
    return Expression(source.strip(), path, program, variables, _task_refs(source, variables),
                      selection)


def _syntax_reason(error: Exception, source: str, offset: int) -> str:
    """`syntax error at column N: ...`, the column counted in the whole string (from 1)."""
    match = _POSITION.search(str(error))
    if not match:
        return f"does not compile: {str(error).splitlines()[0]}"
    line, column, detail = int(match[1]), int(match[2]), match[3]
    lines = source.split("\n")
    within = sum(len(text) + 1 for text in lines[: line - 1]) + column - 1
    detail = detail.removeprefix("Syntax error: ")
    return f"syntax error at column {offset + within + 1}: {detail}"


def _task_refs(source: str, variables: frozenset[str]) -> frozenset[str] | None:
    if "tasks" not in variables:
        return frozenset()
    refs = [m[1] or m[3] for m in _TASK_REF.finditer(source)]
    # Every occurrence of the word must be one of the narrow forms, else read all tasks.
    if len(refs) != len(_TASKS_WORD.findall(source)):
        return None
    return frozenset(refs)


Render = Callable[[Variables], Any]


@dataclass(frozen=True)
class Template:
    """A JSON value whose strings may hold `${{ }}` expressions, compiled."""

    render: Render
    expressions: tuple[Expression, ...]

    @property
    def static(self) -> bool:
        """True when the value holds no expression and renders to itself."""
        return not self.expressions

    @property
    def task_refs(self) -> frozenset[str] | None:
        """Tasks the template reads; None when some expression reads all of them."""
        names: set[str] = set()
        for expression in self.expressions:
            if expression.task_refs is None:
                return None
            names |= expression.task_refs
        return frozenset(names)


def compile_template(value: Any, path: str) -> Template:
    """Compile every `${{ }}` in a JSON value; raise ExpressionError for the first bad one."""
    found: list[Expression] = []
    render = _compile(value, path, found)
    return Template(render, tuple(found))


def _constant(value: Any) -> Render:
    return lambda _variables: value


def _compile(value: Any, path: str, found: list[Expression]) -> Render:
    if isinstance(value, str):
        return _compile_string(value, path, found)
    if isinstance(value, dict):
        parts = {k: _compile(v, f"{path}.{k}", found) for k, v in value.items()}
        if all(getattr(p, "static", False) for p in parts.values()):
            return _mark_static(_constant(value))
        return lambda variables: {k: p(variables) for k, p in parts.items()}
    if isinstance(value, list):
        items = [_compile(v, f"{path}[{i}]", found) for i, v in enumerate(value)]
        if all(getattr(p, "static", False) for p in items):
            return _mark_static(_constant(value))
        return lambda variables: [p(variables) for p in items]
    return _mark_static(_constant(value))


def _mark_static(render: Render) -> Render:
    render.static = True  # type: ignore[attr-defined]
    return render


def _compile_string(text: str, path: str, found: list[Expression]) -> Render:
    pieces: list[str | Expression] = []
    position = 0
    while (start := text.find(OPEN, position)) >= 0:
        if start > position:
            pieces.append(text[position:start])
        expression, position = _compile_one(text, start, path)
        pieces.append(expression)
        found.append(expression)
    if not pieces or (len(pieces) == 1 and isinstance(pieces[0], str)):
        return _mark_static(_constant(text))
    if position < len(text):
        pieces.append(text[position:])
    if len(pieces) == 1:
        only = pieces[0]
        assert isinstance(only, Expression)
        return only.evaluate  # exactly one expression: keep its type
    return lambda variables: "".join(
        p if isinstance(p, str) else _as_text(p.evaluate(variables)) for p in pieces
    )


def _compile_one(text: str, start: int, path: str) -> tuple[Expression, int]:
    """The expression opening at `start`, and where the text after it begins.

    CEL itself may contain `}}` (nested map literals), so each `}}` is tried in turn and the
    first that closes a compilable expression wins; if none does, the error reported is the
    one for the nearest `}}`, the most likely intended end.
    """
    body = start + len(OPEN)
    end = text.find(CLOSE, body)
    if end < 0:
        raise ExpressionError(path, text[start:], f"unterminated {OPEN} at column {start + 1}")
    first_error: ExpressionError | None = None
    while end >= 0:
        try:
            return compile_expression(text[body:end], path, body), end + len(CLOSE)
        except ExpressionError as error:
            first_error = first_error or error
        end = text.find(CLOSE, end + 1)
    assert first_error is not None
    raise first_error


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=False)
