"""`${{ CEL }}` templates: typing, text rendering, errors with their place."""

import dataclasses

import pytest

from conveyor.errors import ExpressionError
from conveyor.expr import compile_expression, compile_template

VARS = {"inputs": {"order": {"id": 42, "items": [{"sku": "a"}], "total": 19.9}}, "index": 3}


def render(value: object, variables: dict[str, object] | None = None) -> object:
    return compile_template(value, "spec.tasks[0].inputs").render(variables or VARS)


def test_a_whole_string_expression_keeps_its_type() -> None:
    assert render("${{ inputs.order }}") == VARS["inputs"]["order"]  # type: ignore[index]
    assert render("${{ inputs.order.total > 0 }}") is True
    assert render("${{index}}") == 3
    assert render("${{ [1, 2].map(x, x * 2) }}") == [2, 4]


def test_embedded_expressions_render_as_text() -> None:
    assert render("order ${{ inputs.order.id }} of ${{ index }}") == "order 42 of 3"
    assert render("items: ${{ inputs.order.items }}") == 'items: [{"sku":"a"}]'
    assert render(" ${{ true }}") == " true"


def test_json_structure_is_rendered_recursively_and_static_parts_are_kept() -> None:
    template = compile_template({"a": ["${{ index }}", 1, None], "b": {"c": "plain"}}, "p")
    assert template.render(VARS) == {"a": [3, 1, None], "b": {"c": "plain"}}
    assert compile_template({"b": {"c": "plain"}}, "p").static


def test_cel_may_contain_closing_braces() -> None:
    assert render("${{ {'a': {'b': 1}} }}") == {"a": {"b": 1}}


def test_timestamps_become_text() -> None:
    assert render("${{ timestamp('2024-01-01T00:00:00Z') }}") == "2024-01-01T00:00:00Z"


def test_syntax_error_names_place_expression_and_column() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_template({"x": "total: ${{ inputs.order.total + }}"}, "spec.tasks[2].inputs")
    message = str(caught.value)
    assert message.startswith(
        "spec.tasks[2].inputs.x: expression 'inputs.order.total +': syntax error at column 33"
    )


def test_unterminated_expression() -> None:
    with pytest.raises(ExpressionError, match=r"unterminated \$\{\{ at column 3"):
        compile_template("a ${{ b", "spec.tasks[0].when")


def test_evaluation_error_names_expression_and_error() -> None:
    template = compile_template("${{ inputs.order.missing }}", "spec.tasks[1].inputs.x")
    with pytest.raises(ExpressionError) as caught:
        template.render(VARS)
    assert str(caught.value) == (
        "spec.tasks[1].inputs.x: expression 'inputs.order.missing': no such key: 'missing'"
    )


def test_only_named_tasks_are_passed_to_cel() -> None:
    template = compile_template("${{ tasks['a-b'].outputs.n + tasks.c.outputs.n }}", "p")
    assert template.task_refs == {"a-b", "c"}
    tasks = {"a-b": {"outputs": {"n": 1}}, "c": {"outputs": {"n": 2}}, "huge": object()}
    assert template.render({"tasks": tasks}) == 3
    assert compile_template("${{ tasks.all(t, true) }}", "p").task_refs is None


@pytest.mark.parametrize("source", ["item.sku", "inputs.order.items", "index", "inputs . order",
                                    "item.missing", "inputs.order.id.deeper", "nothing.here"])
def test_field_selection_walked_in_python_agrees_with_cel(source: str) -> None:
    fast = compile_expression(source, "p")
    assert fast.selection is not None
    slow = dataclasses.replace(fast, selection=None)
    variables = {**VARS, "item": {"sku": "a"}}
    try:
        expected = slow.evaluate(variables)
    except ExpressionError:
        with pytest.raises(ExpressionError):
            fast.evaluate(variables)
    else:
        assert fast.evaluate(variables) == expected


def test_literals_are_not_selections() -> None:
    assert compile_expression("true", "p").selection is None
    assert compile_expression("a.b()", "p").selection is None
