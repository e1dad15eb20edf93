"""`@task` and finding the handler of the task type a worker serves."""

from __future__ import annotations

import types

import pytest

from conveyor.worker import WorkerConfigError, task
from conveyor.worker.registry import discover, select


def module_with(**members: object) -> types.ModuleType:
    module = types.ModuleType("shop.tasks")
    for name, value in members.items():
        setattr(module, name, value)
    return module


@task("inventory")
def reserve(inputs: dict, ctx: object) -> dict:
    return {}


@task("payments")
def charge(inputs: dict, ctx: object) -> dict:
    return {}


def test_the_decorator_keeps_the_function_callable():
    assert reserve({}, None) == {}


def test_discover_and_select_by_type():
    module = module_with(reserve=reserve, charge=charge, helper=len)
    assert set(discover(module)) == {"inventory", "payments"}
    assert select(module, "payments").function is charge


def test_the_only_task_type_needs_no_name():
    assert select(module_with(reserve=reserve), None).task_type == "inventory"


def test_a_missing_task_type_names_what_the_module_has():
    with pytest.raises(WorkerConfigError, match=r"no task of type 'billing'.*inventory, payments"):
        select(module_with(reserve=reserve, charge=charge), "billing")
    with pytest.raises(WorkerConfigError, match="CONVEYOR_TASK_TYPE is not set"):
        select(module_with(reserve=reserve, charge=charge), None)


def test_two_functions_of_one_type_are_an_error():
    @task("inventory")
    def other(inputs: dict, ctx: object) -> dict:
        return {}

    with pytest.raises(WorkerConfigError, match="twice"):
        discover(module_with(reserve=reserve, other=other))


def test_a_task_type_must_be_a_dns_label():
    with pytest.raises(ValueError, match="DNS-1123"):
        task("Not_A_Label")
