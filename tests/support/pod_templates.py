"""podTemplates of a task type for the tests of admission (the real API server's, in
tests/e2e, and `conveyor lint`'s offline one, in tests/unit): one that takes every field, and
broken ones with the message each must be refused with."""

from __future__ import annotations

from typing import Any

from conveyor import names

FULL: dict[str, Any] = {
    "serviceAccountName": "shop-workers",
    "automountServiceAccountToken": True,
    "imagePullSecrets": [{"name": "registry"}],
    "imagePullPolicy": "IfNotPresent",
    "volumes": [
        {"name": "config", "secret": {"secretName": "shop-config", "defaultMode": 0o400,
                                      "items": [{"key": "token", "path": "token.txt"}]}},
        {"name": "settings", "configMap": {"name": "shop-settings", "optional": True}},
        {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "shop-data",
                                                   "readOnly": True}},
        {"name": "bundle", "projected": {"sources": [
            {"secret": {"name": "shop-tls"}},
            {"configMap": {"name": "shop-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"serviceAccountToken": {"path": "vault-token", "audience": "vault",
                                     "expirationSeconds": 3600}},
            {"downwardAPI": {"items": [{"path": "labels",
                                        "fieldRef": {"fieldPath": "metadata.labels"}}]}},
        ]}},
        {"name": "podinfo", "downwardAPI": {"items": [
            {"path": "cpu", "resourceFieldRef": {"resource": "limits.cpu",
                                                 "containerName": "worker"}}]}},
        {"name": "vault", "csi": {"driver": "secrets-store.csi.k8s.io", "readOnly": True,
                                  "volumeAttributes": {"secretProviderClass": "shop"}}},
    ],
    "volumeMounts": [
        {"name": "config", "mountPath": "/etc/shop", "readOnly": True},
        {"name": "scratch", "mountPath": "/tmp"},
        {"name": "data", "mountPath": "/data", "subPath": "orders"},
        {"name": "bundle", "mountPath": "/var/run/bundle", "readOnly": True},
    ],
    "envFrom": [{"configMapRef": {"name": "shop-env"}},
                {"secretRef": {"name": "shop-secrets", "optional": True}, "prefix": "SHOP_"}],
    "nodeSelector": {"kubernetes.io/os": "linux", "pool": "workers"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "workers", "effect": "NoSchedule"},
        {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
    ],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In",
                                       "values": ["a", "b"]}]}]},
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [
                    {"key": "gpu", "operator": "DoesNotExist"}]}}],
        },
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": {
                "topologyKey": "kubernetes.io/hostname",
                "labelSelector": {"matchLabels": {names.LABEL_TASK_TYPE: "inventory"}}}}]},
    },
    "priorityClassName": "batch-low",
    "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 2000,
                        "fsGroupChangePolicy": "OnRootMismatch",
                        "supplementalGroups": [3000],
                        "sysctls": [{"name": "net.ipv4.tcp_keepalive_time", "value": "60"}]},
    "containerSecurityContext": {"readOnlyRootFilesystem": True,
                                 "capabilities": {"add": ["NET_BIND_SERVICE"]}},
    "terminationGracePeriodSeconds": 300,
    "labels": {"team": "shop", "example.com/tier": "backend"},
    "annotations": {"prometheus.io/scrape": "true", "example.com/owner": "shop team"},
}


def workflow_spec(pod_template: dict[str, Any]) -> dict[str, Any]:
    """A Workflow's spec of one task type (`work`) with `pod_template`, one task."""
    return {"taskTypes": [{"name": "work", "image": "shop:1", "podTemplate": pod_template}],
            "tasks": [{"name": "a", "type": "work"}]}


_AT = "spec.taskTypes[0].podTemplate"
_SECRET = {"secretName": "s"}
_MOUNTED = {"volumes": [{"name": "a", "emptyDir": {}}]}

# (case, podTemplate, the message admission refuses it with)
REJECTED: list[tuple[str, dict[str, Any], str]] = [
    ("a volume of no source", {"volumes": [{"name": "a"}]},
     f"{_AT}.volumes[0]: Invalid value: podTemplate.volumes: each volume takes exactly one "
     "source, of secret, configMap, emptyDir, persistentVolumeClaim, projected, downwardAPI, "
     "csi"),
    ("a volume of two sources", {"volumes": [{"name": "a", "emptyDir": {}, "secret": _SECRET}]},
     f"{_AT}.volumes[0]: Invalid value: podTemplate.volumes: each volume takes exactly one "
     "source"),
    ("a hostPath volume", {"volumes": [{"name": "a", "hostPath": {"path": "/"}}]},
     f'unknown field "{_AT}.volumes[0].hostPath"'),
    ("two volumes of one name", {"volumes": [{"name": "a", "emptyDir": {}},
                                             {"name": "a", "secret": _SECRET}]},
     f'{_AT}.volumes[1]: Duplicate value: {{"name":"a"}}'),
    ("a mount of no volume", {"volumeMounts": [{"name": "a", "mountPath": "/x"}]},
     f"{_AT}.volumeMounts: Invalid value: podTemplate.volumeMounts: every name must name an "
     "entry of podTemplate.volumes"),
    ("a mount of another volume", {**_MOUNTED,
                                   "volumeMounts": [{"name": "b", "mountPath": "/x"}]},
     f"{_AT}.volumeMounts: Invalid value: podTemplate.volumeMounts: every name must name an "
     "entry of podTemplate.volumes"),
    ("two mounts at one path", {**_MOUNTED, "volumeMounts": [{"name": "a", "mountPath": "/x"},
                                                             {"name": "a", "mountPath": "/x"}]},
     f'{_AT}.volumeMounts[1]: Duplicate value: {{"mountPath":"/x"}}'),
    ("a relative mountPath", {**_MOUNTED, "volumeMounts": [{"name": "a", "mountPath": "x"}]},
     f"{_AT}.volumeMounts[0].mountPath"),
    ("the operator's volume name", {"volumes": [{"name": "conveyor-amqp-ca", "emptyDir": {}}]},
     f"{_AT}.volumes[0].name: Invalid value: podTemplate.volumes: names beginning conveyor- "
     "are the operator's (it mounts its CAs under them)"),
    ("the operator's mount folder", {**_MOUNTED, "volumeMounts": [
        {"name": "a", "mountPath": "/etc/conveyor/amqp"}]},
     f"{_AT}.volumeMounts[0].mountPath: Invalid value: podTemplate.volumeMounts: "
     "/etc/conveyor is the operator's (its CAs are mounted there)"),
    ("a selector label", {"labels": {names.LABEL_TASK_TYPE: "other"}},
     f"{_AT}.labels: Invalid value: podTemplate.labels: conveyor.dev/ keys and "
     "app.kubernetes.io/name, app.kubernetes.io/part-of, app.kubernetes.io/managed-by are the "
     "operator's: it selects and counts the pool's pods by them"),
    ("the operator's managed-by label", {"labels": {names.LABEL_MANAGED_BY: "me"}},
     f"{_AT}.labels: Invalid value: podTemplate.labels: conveyor.dev/ keys"),
    ("the deletion cost annotation",
     {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "1"}},
     f"{_AT}.annotations: Invalid value: podTemplate.annotations: conveyor.dev/ keys and "
     "controller.kubernetes.io/pod-deletion-cost are the operator's"),
    ("an envFrom of no source", {"envFrom": [{"prefix": "X_"}]},
     f"{_AT}.envFrom[0]: Invalid value: podTemplate.envFrom: each entry takes exactly one of "
     "configMapRef and secretRef"),
    ("a toleration Exists with a value",
     {"tolerations": [{"key": "a", "operator": "Exists", "value": "v"}]},
     f"{_AT}.tolerations[0].value: Invalid value: podTemplate.tolerations: value must be empty "
     "when operator is Exists"),
    ("a toleration of no key", {"tolerations": [{"value": "v"}]},
     f"{_AT}.tolerations[0].operator: Invalid value: podTemplate.tolerations: an empty key "
     "needs operator Exists"),
    ("an unknown taint effect", {"tolerations": [{"operator": "Exists", "effect": "Never"}]},
     f"{_AT}.tolerations[0].effect"),
    ("node affinity In without values", {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In"}]}]}}}},
     f"{_AT}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
     ".nodeSelectorTerms[0].matchExpressions[0].values: Invalid value: podTemplate.affinity: "
     "values must not be empty for operators In and NotIn (matchExpressions)"),
    ("SYS_ADMIN without privilege escalation",
     {"containerSecurityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}},
     f"{_AT}.containerSecurityContext.capabilities: Invalid value: "
     "containerSecurityContext.capabilities: adding SYS_ADMIN needs allowPrivilegeEscalation: "
     "true (the operator's default is false)"),
    ("a privileged container", {"containerSecurityContext": {"privileged": True}},
     f'unknown field "{_AT}.containerSecurityContext.privileged"'),
    ("a Localhost seccomp profile without one",
     {"securityContext": {"seccompProfile": {"type": "Localhost"}}},
     f"{_AT}.securityContext.seccompProfile.localhostProfile: Invalid value: seccompProfile: "
     "localhostProfile is given exactly for type Localhost"),
    ("a grace period of 0", {"terminationGracePeriodSeconds": 0},
     f"{_AT}.terminationGracePeriodSeconds"),
    ("hostNetwork", {"hostNetwork": True}, f'unknown field "{_AT}.hostNetwork"'),
]
