"""`${{ CEL }}` expressions inside JSON values: compile once, render many times.

A string that is exactly one expression (`"${{ inputs.order }}"`) takes the expression's value
and type; expressions embedded in text (`"order ${{ inputs.order.id }}"`) render as text. JSON
values without expressions compile to themselves, so rendering them costs nothing.

Evaluation passes CEL only the variables an expression names: converting a Python value to CEL
costs time in proportion to its size, and `tasks` can be large. References of the form
`tasks.<name>` / `tasks["<name>"]` narrow `tasks` further to the tasks named.

Every rendering runs under a `metering.Meter`, so no expression can burn more than a bounded
amount of CPU or memory (the CEL library has no limit of its own); going over a limit is an
`ExpressionError` like any other, naming the field. Compiling is bounded too: an expression is
at most `MAX_SOURCE` characters, and a template nests at most `metering.MAX_DEPTH` levels.
"""

import base64
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

import cel

from conveyor import metering
from conveyor.errors import ExpressionError
from conveyor.metering import LimitExceeded, Meter, Metered
from conveyor.stored import is_items_ref, is_ref, with_path

OPEN, CLOSE = "${{", "}}"
MAX_SOURCE = 4096  # characters of one expression (as spec.tasks[].when allows)
# `}}` tried in turn to close one expression (CEL map literals hold some): each failed try
# costs a compile, so a string of many `}}` must not cost one compile per `}}`.
MAX_CLOSE_TRIES = 8
SHOWN = 200  # characters of an expression quoted in a message
MAX_EXPRESSIONS = 5000  # in one Workflow (workflow.py passes what is left): ~0.3 s of compiling
_PLAIN_KEY = re.compile(r"[^.\[\]\"\s]{1,64}")

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
_PARSER_MESSAGE = re.compile(r'msg: "([^"]*)"')

Variables = Mapping[str, Any]
# A variable of the engine's own (its prefix is reserved): the ids of the values it read from
# the object store for this rendering, whose selections the byte budget does not charge.
LOADED = "__cv_loaded"


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
    # The source rewritten to count its steps (metering.py), compiled; None when it has no
    # comprehension to count.
    metered: Metered | None = None
    metered_program: Any = None

    def evaluate(self, variables: Variables, meter: Meter | None = None) -> Any:
        """The expression's value as JSON-compatible Python; ExpressionError on failure,
        including going over a limit of `meter` (a fresh one when not given)."""
        meter = meter or Meter()
        try:
            if self.selection is not None:
                value, stored = self._select(variables)
                if not stored:  # a value read from the store is bounded by the store's limit
                    meter.charge(value)
                return value
            return self._execute(variables, meter)
        except LimitExceeded as error:
            raise ExpressionError(self.path, _shown(self.source), error.reason) from None

    def _execute(self, variables: Variables, meter: Meter) -> Any:
        context: dict[str, Any] = {}
        for name in self.variables:
            if name in variables:
                value = variables[name]
                if name == "tasks" and self.task_refs is not None:
                    value = {t: value[t] for t in self.task_refs if t in value}
                context[name] = value
        program = self.program
        if self.metered is not None:
            meter.precheck(self.metered, context)
            if self.metered_program is not None:
                program = self.metered_program
                context.update(meter.callbacks(self.metered))
        before = meter.bytes
        try:
            result = program.execute(context)
        except Exception as error:  # the library raises builtin types for evaluation errors
            if meter.exceeded:  # raised by a callback, wrapped by the library
                raise LimitExceeded(meter.exceeded) from None
            raise ExpressionError(self.path, _shown(self.source), _reason(error)) from error
        if meter.exceeded:  # an error the expression absorbed (`error || true`) still counts
            raise LimitExceeded(meter.exceeded)
        meter.charge(result, meter.bytes - before)
        meter.check_cpu()
        return to_json(result)

    def _select(self, variables: Variables) -> tuple[Any, bool]:
        """The selected value, and whether it lies within a value read from the store."""
        names = self.selection
        assert names is not None
        if names[0] not in variables:
            raise ExpressionError(self.path, self.source, f"undeclared reference {names[0]!r}")
        loaded: frozenset[int] = variables.get(LOADED, frozenset())
        value = variables[names[0]]
        stored = False
        for depth, name in enumerate(names[1:], 1):
            if is_ref(value) and not is_items_ref(value):
                # A field of a stored document: passed on by reference, never read here.
                return with_path(value, names[depth:]), True
            stored = stored or id(value) in loaded
            if not isinstance(value, dict):
                raise ExpressionError(self.path, self.source,
                                      f"no field {name!r} on a value of type "
                                      f"{type(value).__name__}")
            if name not in value:
                raise ExpressionError(self.path, self.source, f"no such key: {name!r}")
            value = value[name]
        return value, stored or id(value) in loaded


def _shown(source: str) -> str:
    """An expression as quoted in a message: a long one is cut."""
    return source if len(source) <= SHOWN else source[:SHOWN] + "…"


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
    if len(source) > MAX_SOURCE:
        raise ExpressionError(path, _shown(source.strip()),
                              f"longer than {MAX_SOURCE} characters")
    try:
        program = cel.compile(source)
    except Exception as error:
        reason = _syntax_reason(error, source, offset)
        raise ExpressionError(path, _shown(source.strip()), reason) from error
    variables = frozenset(program.variables())
    reserved = sorted(v for v in (*variables, *program.functions())
                      if v.startswith(metering.RESERVED))
    if reserved:
        raise ExpressionError(path, _shown(source.strip()),
                              f"{reserved[0]!r}: names starting with {metering.RESERVED!r} "
                              "are reserved")
    selection = None
    if _SELECTION.fullmatch(source):
        names = tuple(name.strip() for name in source.split("."))
        selection = None if names[0] in _LITERALS else names
    metered, metered_program = _meter(source, path)
    return Expression(source.strip(), path, program, variables, _task_refs(source, variables),
                      selection, metered, metered_program)


def _meter(source: str, path: str) -> tuple[Metered | None, Any]:
    """The counting form of an expression that needs one (see metering.py)."""
    metered = metering.meter_source(source)
    if not metered.parents:
        needs_precheck = metered.additions > 0 or len(metered.references) > 1
        return (metered if needs_precheck else None), None
    try:
        return metered, cel.compile(metered.source)
    except Exception as error:  # a form the rewriting got wrong: refuse, never run unmetered
        raise ExpressionError(path, _shown(source.strip()),
                              f"cannot be metered ({_reason(error)}); please report this"
                              ) from error


def _syntax_reason(error: Exception, source: str, offset: int) -> str:
    """`syntax error at column N: ...`, the column counted in the whole string (from 1)."""
    match = _POSITION.search(str(error))
    if not match:
        return f"does not compile: {str(error).splitlines()[0]}"
    line, column, detail = int(match[1]), int(match[2]), match[3]
    lines = source.split("\n")
    within = sum(len(text) + 1 for text in lines[: line - 1]) + column - 1
    detail = detail.removeprefix("Syntax error: ")
    inner = _PARSER_MESSAGE.search(detail)  # `OtherError(ParseError { ... msg: "..." ... })`
    if inner:
        detail = inner[1]
    return f"syntax error at column {offset + within + 1}: {detail}"


def _task_refs(source: str, variables: frozenset[str]) -> frozenset[str] | None:
    if "tasks" not in variables:
        return frozenset()
    refs = [m[1] or m[3] for m in _TASK_REF.finditer(source)]
    # Every occurrence of the word must be one of the narrow forms, else read all tasks.
    if len(refs) != len(_TASKS_WORD.findall(source)):
        return None
    return frozenset(refs)


Render = Callable[[Variables, Meter], Any]


@dataclass(frozen=True)
class Template:
    """A JSON value whose strings may hold `${{ }}` expressions, compiled."""

    renderer: Render
    expressions: tuple[Expression, ...]

    def render(self, variables: Variables) -> Any:
        """The value with every expression evaluated, under one Meter for all of them;
        ExpressionError for the first that fails or takes the rendering over a limit."""
        return self.renderer(variables, Meter())

    @property
    def static(self) -> bool:
        """True when the value holds no expression and renders to itself."""
        return not self.expressions

    @cached_property
    def selections_only(self) -> bool:
        """Every expression is a plain field selection (`tasks.gen.outputs.rows`): one that
        can pass a stored value on by reference without reading it."""
        return all(e.selection is not None for e in self.expressions)

    @cached_property
    def task_refs(self) -> frozenset[str] | None:
        """Tasks the template reads; None when some expression reads all of them."""
        names: set[str] = set()
        for expression in self.expressions:
            if expression.task_refs is None:
                return None
            names |= expression.task_refs
        return frozenset(names)


def compile_template(value: Any, path: str, most: int = MAX_EXPRESSIONS) -> Template:
    """Compile every `${{ }}` in a JSON value; raise ExpressionError for the first bad one.

    A value nested deeper than `metering.MAX_DEPTH`, or holding more than `most`
    expressions (each costs a compile), is refused; the error's expression is then "".
    """
    found = _Found(most)
    render = _compile(value, path, found, 0)
    return Template(render, tuple(found))


class _Found(list[Expression]):
    """The expressions compiled so far, refusing more than `most`."""

    def __init__(self, most: int) -> None:
        super().__init__()
        self.most = most

    def make_room(self, path: str) -> None:
        """Refuse the next expression before compiling it, if it would be one too many."""
        if len(self) >= self.most:
            raise ExpressionError(path, "", f"more than {self.most} expressions")


def key_path(path: str, key: object) -> str:
    """`path.key`, or `path["key"]` for a key that would not read back as one segment."""
    text = str(key)
    if _PLAIN_KEY.fullmatch(text):
        return f"{path}.{text}"
    shown = text if len(text) <= 64 else text[:64] + "…"
    return f"{path}[{json.dumps(shown, ensure_ascii=False)}]"


def _constant(value: Any) -> Render:
    return lambda _variables, _meter: value


def _compile(value: Any, path: str, found: _Found, depth: int) -> Render:
    if depth > metering.MAX_DEPTH:
        raise ExpressionError(path, "", f"nested deeper than {metering.MAX_DEPTH} levels")
    if isinstance(value, str):
        return _compile_string(value, path, found)
    if isinstance(value, dict):
        parts = {k: _compile(v, key_path(path, k), found, depth + 1) for k, v in value.items()}
        if all(getattr(p, "static", False) for p in parts.values()):
            return _mark_static(_constant(value))
        return lambda variables, meter: {k: p(variables, meter) for k, p in parts.items()}
    if isinstance(value, list):
        items = [_compile(v, f"{path}[{i}]", found, depth + 1) for i, v in enumerate(value)]
        if all(getattr(p, "static", False) for p in items):
            return _mark_static(_constant(value))
        return lambda variables, meter: [p(variables, meter) for p in items]
    return _mark_static(_constant(value))


def _mark_static(render: Render) -> Render:
    render.static = True  # type: ignore[attr-defined]
    return render


def _compile_string(text: str, path: str, found: _Found) -> Render:
    pieces: list[str | Expression] = []
    position = 0
    while (start := text.find(OPEN, position)) >= 0:
        if start > position:
            pieces.append(text[position:start])
        found.make_room(path)
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
    return lambda variables, meter: "".join(
        p if isinstance(p, str) else _as_text(p.evaluate(variables, meter)) for p in pieces
    )


def _compile_one(text: str, start: int, path: str) -> tuple[Expression, int]:
    """The expression opening at `start`, and where the text after it begins.

    CEL itself may contain `}}` (nested map literals), so each `}}` is tried in turn (at most
    MAX_CLOSE_TRIES, within MAX_SOURCE characters) and the first that closes a compilable
    expression wins; if none does, the error reported is the one for the nearest `}}`, the
    most likely intended end.
    """
    body = start + len(OPEN)
    end = text.find(CLOSE, body)
    if end < 0:
        raise ExpressionError(path, _shown(text[start:]),
                              f"unterminated {OPEN} at column {start + 1}")
    first_error: ExpressionError | None = None
    tries = 0
    while end >= 0 and tries < MAX_CLOSE_TRIES and (tries == 0 or end - body <= MAX_SOURCE):
        tries += 1
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
