"""The operator's pod in the chart: probes on /livez and /readyz (liveness generous, so a
broker outage never restarts it), extra volumes and mounts (a CA bundle, as the docs say),
and a PodDisruptionBudget that suits one leader and its standbys."""

from __future__ import annotations

from typing import Any

import pytest

from support.helm import CHART, helm, set_args, template

URL = {"amqp.url": "amqp://conveyor:secret@broker:5672/"}
CA_VOLUME = {"name": "ca-bundle", "configMap": {"name": "corporate-ca"}}
CA_MOUNT = {"name": "ca-bundle", "mountPath": "/etc/conveyor/ca-bundle", "readOnly": True}
CA_ENV = {"name": "CONVEYOR_AMQP_CA_FILE", "value": "/etc/conveyor/ca-bundle/ca.crt"}


def _kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def _pod(values: dict[str, Any]) -> dict[str, Any]:
    [deployment] = _kind(template(values), "Deployment")
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def _fails(values: dict[str, Any], *says: str) -> None:
    result = helm("template", "x", str(CHART), *set_args(values), check=False)
    assert result.returncode != 0, "rendered, but should not have"
    for text in says:
        assert text in result.stderr, result.stderr


def test_probes_ask_livez_and_readyz_with_a_generous_liveness() -> None:
    [container] = _pod(URL)["containers"]
    live, ready, startup = (container[p] for p in ("livenessProbe", "readinessProbe",
                                                   "startupProbe"))
    assert live == {"httpGet": {"path": "/livez", "port": "http"}, "periodSeconds": 20,
                    "timeoutSeconds": 5, "failureThreshold": 6}
    assert ready == {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 10,
                     "timeoutSeconds": 3, "failureThreshold": 3}
    assert startup["httpGet"] == {"path": "/livez", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
    # Longer than the broker's and the API server's grace: the operator is given minutes.
    assert live["periodSeconds"] * live["failureThreshold"] >= 120


def test_probe_timings_can_be_tuned_and_bad_ones_are_refused() -> None:
    [container] = _pod({**URL, "health.livenessProbe": {
        "periodSeconds": 30, "timeoutSeconds": 5, "failureThreshold": 10}})["containers"]
    assert container["livenessProbe"] == {"httpGet": {"path": "/livez", "port": "http"},
                                          "periodSeconds": 30, "timeoutSeconds": 5,
                                          "failureThreshold": 10}
    _fails({**URL, "health.livenessProbe.failureThreshold": 0}, "failureThreshold")
    _fails({**URL, "health.livenessProbe.successThreshold": 2}, "successThreshold")
    _fails({**URL, "health.readinessProbe.path": "/x"}, "path")


def test_a_ca_bundle_from_a_configmap_mounts_where_the_docs_say() -> None:
    pod = _pod({**URL, "operator.extraVolumes": [CA_VOLUME],
                "operator.extraVolumeMounts": [CA_MOUNT], "operator.extraEnv": [CA_ENV]})
    [container] = pod["containers"]
    assert CA_VOLUME in pod["volumes"] and {"name": "tmp", "emptyDir": {}} in pod["volumes"]
    assert container["volumeMounts"][-1] == CA_MOUNT
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert CA_ENV in container["env"]


def test_secret_csi_and_projected_volumes_render_as_given() -> None:
    volumes = [{"name": "s", "secret": {"secretName": "ca", "items": [
                   {"key": "ca.crt", "path": "ca.crt"}]}},
               {"name": "c", "csi": {"driver": "secrets-store.csi.k8s.io", "readOnly": True}},
               {"name": "p", "projected": {"sources": [{"configMap": {"name": "x"}}]}}]
    mounts = [{"name": n, "mountPath": f"/mnt/{n}", "readOnly": True} for n in "scp"]
    pod = _pod({**URL, "operator.extraVolumes": volumes, "operator.extraVolumeMounts": mounts})
    assert pod["volumes"][-3:] == volumes
    assert pod["containers"][0]["volumeMounts"][-3:] == mounts


@pytest.mark.parametrize(("values", "says"), [
    ({"operator.extraVolumes": [{"name": "x", "secrets": {"secretName": "a"}}]}, "secrets"),
    ({"operator.extraVolumes": [{"name": "x"}]}, "minProperties"),
    ({"operator.extraVolumes": [{"name": "x", "secret": {"secretName": "a"},
                                 "configMap": {"name": "b"}}]}, "maxProperties"),
    ({"operator.extraVolumes": [{"name": "Bad_Name", "emptyDir": {}}]}, "Bad_Name"),
    ({"operator.extraVolumeMounts": [{"name": "x", "mountPath": "relative"}]}, "relative"),
    ({"operator.extraVolumeMounts": [{"name": "x"}]}, "mountPath"),
    ({"operator.extraVolumeMounts": [{"name": "x", "mountPath": "/x", "readonly": True}]},
     "readonly"),
])
def test_the_schema_refuses_volumes_kubernetes_would(values: dict[str, Any],
                                                      says: str) -> None:
    _fails({**URL, **values}, says)


def test_a_mount_of_no_volume_and_a_taken_name_are_refused_naming_them() -> None:
    _fails({**URL, "operator.extraVolumeMounts": [CA_MOUNT]},
           '"ca-bundle" mounts no volume: add it to operator.extraVolumes')
    _fails({**URL, "operator.extraVolumes": [{"name": "tmp", "emptyDir": {}}]},
           'the volume name "tmp" is taken')
    _fails({**URL, "operator.extraVolumes": [CA_VOLUME, CA_VOLUME]}, '"ca-bundle" is taken')
    # The chart's own volumes may be mounted again elsewhere.
    pod = _pod({**URL, "operator.extraVolumeMounts": [{"name": "tmp", "mountPath": "/var/x"}]})
    assert {"name": "tmp", "mountPath": "/var/x"} in pod["containers"][0]["volumeMounts"]


def test_the_pod_disruption_budget_leaves_a_standby_and_never_blocks_on_unready_pods() -> None:
    objects = template({**URL, "replicaCount": 2})
    [pdb] = _kind(objects, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    [deployment] = _kind(objects, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    assert pdb["metadata"]["namespace"] == "conveyor-system"


def test_the_budget_takes_min_available_or_a_percentage_and_can_be_off() -> None:
    values = {**URL, "replicaCount": 3, "podDisruptionBudget.maxUnavailable": None,
              "podDisruptionBudget.minAvailable": 2}
    [pdb] = _kind(template(values), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 2 and "maxUnavailable" not in pdb["spec"]
    [pdb] = _kind(template({**URL, "podDisruptionBudget.maxUnavailable": "50%"}),
                  "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == "50%"
    assert not _kind(template({**URL, "podDisruptionBudget.enabled": False}),
                     "PodDisruptionBudget")


def test_a_budget_that_would_block_every_drain_or_says_both_is_refused() -> None:
    _fails({**URL, "podDisruptionBudget.maxUnavailable": None,
            "podDisruptionBudget.minAvailable": 1},
           "minAvailable 1 with replicaCount 1 would block every node drain")
    _fails({**URL, "podDisruptionBudget.minAvailable": 1, "replicaCount": 2},
           "set maxUnavailable or minAvailable, not both")
    _fails({**URL, "podDisruptionBudget.maxUnavailable": "half"}, "maxUnavailable")
