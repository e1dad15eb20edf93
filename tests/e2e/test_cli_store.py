"""`conveyor outputs` and `conveyor get` against the test bed's API server and object store, run
as a user runs them: a WorkflowRun whose status (patched here, no operator) holds `$ref`s to
objects put under the run's prefix in the session's bucket."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from conveyor.store import ObjectStore, StoreSettings, Values
from conveyor.store import values as v
from support.store import store_env
from support.workflows import as_json, run, workflow

pytestmark = pytest.mark.e2e

CLI = Callable[..., subprocess.CompletedProcess[str]]
BIG = {"receipt": "r-42", "lines": [f"line {i}" for i in range(2000)]}
ITEMS = [{"sku": f"sku-{i}", "reserved": i} for i in range(5)]


@pytest.fixture
def cli(cluster, namespace: str) -> CLI:  # type: ignore[no-untyped-def]
    """`conveyor ARGS -n <test namespace>` with exactly the store variables given (none of the
    caller's own CONVEYOR_S3_*)."""
    base = {k: val for k, val in cluster.env().items() if not k.startswith("CONVEYOR_S3_")}

    def call(*args: str, store: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "conveyor.cli", *args, "-n", namespace],
                              env={**base, **store}, capture_output=True, text=True,
                              timeout=120, check=False)

    return call


@pytest.fixture
def stored_run(kubectl, namespace: str, crds: None,  # type: ignore[no-untyped-def]
               store_settings: StoreSettings) -> dict[str, Any]:
    """Run r1 of Workflow orders: `charge`'s outputs a stored document, `reserve` a forEach
    task whose item outputs are in chunks, `validate`'s inline."""
    wf = workflow("orders", [{"name": "validate", "type": "work"},
                             {"name": "reserve", "type": "work", "forEach": "${{ [1] }}"},
                             {"name": "charge", "type": "work"}])
    kubectl("apply", "-f", "-", stdin=as_json(wf, run("r1", "orders")))
    uid = json.loads(kubectl("get", "cwr", "r1", "-o", "json"))["metadata"]["uid"]
    prefix = v.run_prefix(namespace, "orders", uid)
    with ObjectStore(store_settings) as store:
        values = Values(store)
        charge = values.save(v.attempt_key(prefix, "charge", None, 1, "outputs"), BIG)
        chunks = [values.save_chunk(v.items_prefix(prefix, "reserve"), 0,
                                    [(i, ITEMS[i]) for i in (3, 0, 1)]),
                  values.save_chunk(v.items_prefix(prefix, "reserve"), 1,
                                    [(i, ITEMS[i]) for i in (4, 2)])]
    items = v.ItemsRef(store_settings.bucket,
                       store_settings.full_key(v.items_prefix(prefix, "reserve")),
                       sum(c.size for c in chunks), len(ITEMS), len(chunks)).to_json()
    status = {"phase": "Succeeded", "tasks": [
        {"name": "validate", "phase": "Succeeded", "outputs": {"ok": True}},
        {"name": "reserve", "phase": "Succeeded", "outputs": items,
         "items": {"total": 5, "succeeded": 5, "failed": 0, "running": 0}},
        {"name": "charge", "phase": "Succeeded", "outputs": charge}]}
    kubectl("patch", "cwr", "r1", "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}))
    return {"uid": uid, "prefix": prefix}


def test_outputs_reads_stored_values_and_get_lists_the_runs_objects(
        cli: CLI, stored_run: dict[str, Any], store_settings: StoreSettings, namespace: str):
    env = store_env(store_settings)
    charge = cli("outputs", "r1", "charge", store=env)
    assert charge.returncode == 0, charge.stderr
    assert json.loads(charge.stdout) == BIG
    item = cli("outputs", "r1", "reserve", "--item", "2", "-o", "yaml", store=env)
    assert item.returncode == 0, item.stderr
    assert yaml.safe_load(item.stdout) == ITEMS[2]
    every = cli("outputs", "r1", "reserve", store=env)
    assert json.loads(every.stdout) == ITEMS
    inline = cli("outputs", "r1", "validate", store={})
    assert inline.returncode == 0 and json.loads(inline.stdout) == {"ok": True}

    got = cli("get", "r1", store=env)
    assert got.returncode == 0, got.stderr
    place = f"s3://{store_settings.bucket}/{store_settings.full_key(stored_run['prefix'])}"
    assert f"stored objects under {place}" in got.stdout
    listed = {line.split()[0]: int(line.split()[1]) for line in
              got.stdout.split(place, 1)[1].splitlines()[2:] if line.strip()}
    assert set(listed) == {"charge/-/1/outputs.json", "reserve/items/000000.json",
                           "reserve/items/000001.json"}
    assert listed["charge/-/1/outputs.json"] == len(v.encode(BIG))
    assert store_settings.secret_key not in got.stdout + got.stderr


def test_without_a_store_outputs_says_which_variables_and_get_notes_it(
        cli: CLI, stored_run: dict[str, Any]):
    result = cli("outputs", "r1", "charge", store={})
    assert result.returncode == 6, (result.stdout, result.stderr)
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "CONVEYOR_S3_ACCESS_KEY" in line
    assert "Traceback" not in result.stderr
    got = cli("get", "r1", store={})
    assert got.returncode == 0, got.stderr
    [note] = got.stderr.strip().splitlines()
    assert note.startswith("stored objects not listed:") and "2 stored value(s)" in note
    assert "[+] charge" in got.stdout


def test_a_store_that_does_not_answer_is_one_line_and_get_still_shows_the_run(
        cli: CLI, stored_run: dict[str, Any], store_settings: StoreSettings):
    # A closed port on loopback: refused at once, as a store that is down.
    env = {**store_env(store_settings), "CONVEYOR_S3_ENDPOINT": "http://127.0.0.1:1"}
    result = cli("outputs", "r1", "charge", store=env)
    assert result.returncode == 6, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "no answer from the store" in line
    got = cli("get", "r1", store=env)
    assert got.returncode == 0 and "r1  workflow orders  Succeeded" in got.stdout
    [note] = got.stderr.strip().splitlines()
    assert note.startswith("stored objects not listed:") and "no answer" in note
    assert store_settings.secret_key not in result.stderr + got.stdout + got.stderr
