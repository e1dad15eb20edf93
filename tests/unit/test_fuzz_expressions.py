"""Fuzzed CEL through `conveyor.expr`: the metering that bounds an evaluation changes no
result, and no expression, however hostile, costs more than a bound or fails without naming
its field.

- Random expressions (macros nested in macros, strings and comments that look like code,
  ternaries, concatenation) evaluate to the same value, or fail alike, with and without the
  rewriting that counts their steps.
- Costly expressions (nested comprehensions, the library's quadratic map and filter,
  concatenation of large strings, many references to large inputs, nesting past the parser's
  limit) end in an ExpressionError that names the field, within a CPU bound.
"""

from __future__ import annotations

import time
from typing import Any

import cel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor import metering
from conveyor.errors import ExpressionError
from conveyor.expr import compile_template
from unit.fuzzing import MiB, costly_expressions, nested

# One key in `m`: the library iterates a map in a random order, which the metered form fixes
# (test_a_comprehension_over_a_map_has_one_order); with one key the orders agree.
VARIABLES = {"xs": [3, 1, 2], "m": {"a": 1}, "s": "ab", "n": 2}
BOUND = 2.5  # seconds of CPU: MAX_CPU_SECONDS and what a last step may add

NAMES = ("a", "b", "c")
STRINGS = st.sampled_from(['"x.map(a, b)"', "'(,'", "r'\\\\d+'", '"""[{"""', "b'\\x00'",
                           "'//'", '"\\""'])


def cel_expressions(bound: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    """Expressions over VARIABLES and the comprehension variables in scope (`bound`)."""
    leaves = st.one_of(st.integers(-3, 9).map(str), st.sampled_from(["xs", "n", "true"]),
                       *([st.sampled_from(bound)] if bound else []))

    def grow(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(inner, st.sampled_from(["+", "-", "*", "==", "<", "&&"]), inner)
            .map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
            st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})"),
            inner.map(lambda e: f"size([{e}])"),
            st.tuples(inner, STRINGS).map(lambda t: f"[{t[0]}, {t[1]}][0] // ), [ {t[1]}\n"),
            macros(bound),
        )
    return st.recursive(leaves, grow, max_leaves=6)


@st.composite
def macro_call(draw: st.DrawFn, bound: tuple[str, ...]) -> str:
    name = draw(st.sampled_from([n for n in NAMES if n not in bound] or ["z"]))
    inner = (*bound, name)
    source = draw(st.sampled_from(["xs", "[1, 2]", "[]", "m", "xs.map(q, q * 2)"]))
    macro = draw(st.sampled_from(["map", "filter", "all", "exists", "exists_one", "map3"]))
    body = draw(cel_expressions(inner)) if len(inner) < 3 else name
    if macro == "map3":
        return f"{source}.map({name}, {name} != 1, {body})"
    if macro == "map":
        return f"{source} . map ( {name} ,\n {body} )"
    predicate = f"{body} == {body}" if draw(st.booleans()) else f"({body}) != 0"
    return f"{source}.{macro}({name}, {predicate})"


def macros(bound: tuple[str, ...]) -> st.SearchStrategy[str]:
    return macro_call(bound)


def outcome(source: str, variables: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "value", cel.compile(source).execute(dict(variables))
    except Exception:
        return "error", None


@settings(max_examples=500)
@given(source=cel_expressions())
def test_metering_changes_no_result(source: str) -> None:
    try:
        cel.compile(source)
    except Exception:
        return  # the grammar drew something CEL refuses: nothing to compare
    template = compile_template("${{ " + source + " }}", "spec.tasks[0].when")
    [expression] = template.expressions
    if expression.metered_program is not None:
        rewritten = outcome(expression.metered.source,  # type: ignore[union-attr]
                            {**VARIABLES, **metering.Meter().callbacks(expression.metered)})  # type: ignore[arg-type]
        assert rewritten == outcome(source, VARIABLES), expression.metered
    try:
        rendered = ("value", template.render(VARIABLES))
    except ExpressionError as error:
        assert str(error).startswith("spec.tasks[0].when: expression ")
        rendered = ("error", None)
    kind, value = outcome(source, VARIABLES)
    assert rendered[0] == kind
    if kind == "value" and not isinstance(value, bytes):
        assert rendered[1] == value


@settings(max_examples=1500)
@given(text=st.text(alphabet="xs.map(a, b)[]{}'\"\\r `/\n+", max_size=60))
def test_the_rewriting_takes_any_text_and_breaks_nothing_that_compiles(text: str) -> None:
    metered = metering.meter_source(text)  # never raises, whatever the text
    try:
        cel.compile(text)
    except Exception:
        return
    cel.compile(metered.source)  # what compiled still compiles


def test_a_comprehension_over_a_map_has_one_order() -> None:
    """The library's order changes between evaluations (a forEach over a map would give its
    items other indexes after a restart); the metered form iterates the keys sorted."""
    keys = [f"k{i}" for i in range(12)]
    source = "${{ inputs.m.map(k, k) }}"
    variables = {"inputs": {"m": dict.fromkeys(reversed(keys), 1)}}
    raw = cel.compile("inputs.m.map(k, k)")
    assert len({tuple(raw.execute(variables)) for _ in range(30)}) > 1  # why this is needed
    template = compile_template(source, "spec.tasks[0].forEach")
    assert {tuple(template.render(variables)) for _ in range(30)} == {tuple(sorted(keys))}


INPUTS = {"s": "x" * MiB, "items": list(range(4000)), "deep": nested(150)}
COSTLY = [*costly_expressions(),
          "inputs.items.map(i, i)",  # quadratic in the library: 8 million copies
          "inputs.items.all(i, inputs.items.all(j, true))",
          "inputs.items.exists(i, inputs.s.contains('y') || inputs.s.matches('z$'))",
          "[inputs.deep]",
          "inputs.s + inputs.s + inputs.s + inputs.s + inputs.s"]


# Costly but within the limits: they must end in time, with a value or a clear error.
AFFORDABLE = {"[" * 90 + "1" + "]" * 90,
              "inputs.items.exists(i, inputs.s.contains('y') || inputs.s.matches('z$'))"}


@pytest.mark.parametrize("source", COSTLY, ids=range(len(COSTLY)))
def test_a_costly_expression_fails_naming_its_field_within_the_bound(source: str) -> None:
    began = time.thread_time()
    try:
        template = compile_template("${{ " + source + " }}", "spec.tasks[3].forEach")
        template.render({"inputs": INPUTS})
    except ExpressionError as error:
        message = str(error)
        assert message.startswith("spec.tasks[3].forEach: expression "), message
        assert len(message) < 1000
    else:
        assert source in AFFORDABLE, "rendered without meeting a limit"
    spent = time.thread_time() - began
    assert spent < BOUND, f"{spent:.2f} s of CPU"


def test_what_fits_the_limits_still_renders() -> None:
    """The limits are not in the way of ordinary large work: 1,000-item maps and filters,
    a 1 MiB string passed through, 2,000 items from the inputs."""
    template = compile_template({"doubled": "${{ inputs.items.map(i, i * 2) }}",
                                 "kept": "${{ inputs.items.filter(i, i % 2 == 0) }}",
                                 "blob": "${{ inputs.s }}",
                                 "all": "${{ inputs.all }}"}, "spec.tasks[0].inputs")
    items = list(range(1000))
    value = template.render({"inputs": {"items": items, "s": "x" * MiB,
                                        "all": list(range(2000))}})
    assert value["doubled"] == [i * 2 for i in items]
    assert value["kept"] == items[::2]
    assert len(value["blob"]) == MiB


def test_the_budget_is_one_per_rendering_of_a_field() -> None:
    """Many expressions of one field share one budget: 2,000 copies of a 4 KiB string are
    more than a field may build, though each one alone is fine."""
    template = compile_template({f"k{i}": "${{ inputs.s }}" for i in range(2000)},
                                "spec.tasks[0].inputs")
    with pytest.raises(ExpressionError, match="builds more than"):
        template.render({"inputs": {"s": "x" * 4096}})
    assert compile_template("${{ inputs.s }}", "p").render({"inputs": {"s": "x" * 4096}})
