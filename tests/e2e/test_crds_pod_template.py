"""A task type's podTemplate on the real API server: the CRD refuses each broken template
with the message `conveyor lint` gives (tests/unit/test_pod_template.py), takes one of every
field, and the worker Deployment the operator builds from that one is a valid apps/v1
Deployment; `kubectl explain` documents the fields."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from conveyor import names
from conveyor.children import Owner, worker_deployment
from conveyor.models import WorkflowSpec
from support.pod_templates import FULL, REJECTED, workflow_spec

pytestmark = pytest.mark.e2e


def _dry_run(cluster, namespace: str, manifest: dict[str, Any]) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(["kubectl", "-n", namespace, "apply", "--dry-run=server", "-f", "-"],
                          input=json.dumps(manifest), env=cluster.env(), capture_output=True,
                          text=True, check=False, timeout=60)


def _workflow(pod_template: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": names.API_VERSION, "kind": names.WORKFLOW_KIND,
            "metadata": {"name": "templated"}, "spec": workflow_spec(pod_template)}


@pytest.mark.parametrize(("case", "pod_template", "message"), REJECTED,
                         ids=[c[0] for c in REJECTED])
def test_the_api_server_refuses_a_broken_pod_template_naming_the_field(
        cluster, crds, namespace, case, pod_template, message) -> None:  # type: ignore[no-untyped-def]
    result = _dry_run(cluster, namespace, _workflow(pod_template))
    assert result.returncode != 0, f"{case} was admitted"
    assert message in result.stderr, result.stderr


def test_a_template_of_every_field_is_admitted_and_makes_a_valid_deployment(
        cluster, crds, namespace) -> None:  # type: ignore[no-untyped-def]
    result = _dry_run(cluster, namespace, _workflow(FULL))
    assert result.returncode == 0, result.stderr
    spec = WorkflowSpec.model_validate(workflow_spec(FULL))
    deployment = worker_deployment(Owner(namespace, "templated", "0b7c5c44-0000-4000-8000-"
                                         "000000000001"), spec, spec.task_types[0], 0,
                                   amqp_ca=True)
    result = _dry_run(cluster, namespace, deployment)
    assert result.returncode == 0, result.stderr


def test_kubectl_explain_documents_the_pod_template(cluster, crds) -> None:  # type: ignore[no-untyped-def]
    def explain(field: str) -> str:
        out = subprocess.run(["kubectl", "explain", f"cwf.spec.taskTypes.podTemplate.{field}"],
                             env=cluster.env(), capture_output=True, text=True,
                             check=True).stdout
        return " ".join(out.split())  # explain wraps the descriptions

    assert "ServiceAccount the workers run as" in explain("serviceAccountName")
    volumes = explain("volumes")
    assert "secret" in volumes and "persistentVolumeClaim" in volumes
    assert "merged over the operator's defaults" in explain("containerSecurityContext")
