"""The chart grants the operator exactly what its code uses: no verb less, no verb more.

The rules are derived from the source, not copied from the chart:
- `conveyor.kube.client.Kube` is the only place the operator calls the API server itself. Each
  of its methods calls a generated client method, `<verb>_[namespaced_|cluster_]<resource>`, on an
  API attribute (`apps`, `core`, `coordination`, `custom`); custom-object calls name their
  plural (a `names` constant, or a `plural` parameter that its callers pass as a literal). A
  server-side apply (`_content_type=APPLY`) also needs `create`: it creates what is missing.
- Only the `Kube` methods that the operator's modules call count (through `kube.<method>`,
  directly, through the async facade `conveyor.kube.facade`, or via `asyncio.to_thread`).
- kopf watches (list, watch) every resource its handlers name (`handlers.py`); it patches
  (finalizers, progress and diff-base annotations) only those with changing handlers (create,
  update, delete, resume) or timers: for a resource that has only `on.event` handlers it
  writes nothing (kopf/_core/reactor/processing.py). It discovers resources by listing and
  watching CRDs, and namespaces when it watches a list of namespaces
  (kopf/_core/reactor/observation.py).
- Secrets are written, never read: no get, list, watch, or patch (a PATCH answers with the
  whole object, so it reads as well as writes). The one exception is the workers' object
  store Secret (store.workerSecret): `get` on that name alone, in the operator's namespace.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

from conveyor import names
from support.helm import template

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "conveyor"

Rule = tuple[str, str, str]  # (apiGroup, resource, verb)

API_GROUPS = {"apps": "apps", "core": "", "coordination": "coordination.k8s.io",
              "custom": names.GROUP}
VERBS = {"read": "get", "get": "get", "list": "list", "watch": "watch", "create": "create",
         "replace": "update", "patch": "patch", "delete": "delete"}
RESOURCES = {"deployment": "deployments", "deployment_scale": "deployments/scale",
             "secret": "secrets", "config_map": "configmaps", "pod": "pods",
             "lease": "leases", "event": "events", "namespace": "namespaces"}
CLIENT_METHOD = re.compile(r"^(read|get|list|watch|create|replace|patch|delete)_"
                           r"(?:namespaced_|cluster_)?([a-z_]+?)$")


def _constant(node: ast.expr) -> str | None:
    """A string literal, or a `names.X` constant."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == "names"):
        value = getattr(names, node.attr)
        assert isinstance(value, str)
        return value
    return None


def kube_methods() -> dict[str, tuple[list[str], list[tuple[str, str, str | None]]]]:
    """Kube method -> (its parameters, [(apiGroup, resource or '{plural}', verb)])."""
    tree = ast.parse((PACKAGE / "kube" / "client.py").read_text())
    [kube] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Kube"]
    methods = {}
    for fn in kube.body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        params = [a.arg for a in fn.args.args]
        calls: list[tuple[str, str, str | None]] = []
        for node in ast.walk(fn):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr == "stream" and node.args:  # watch.Watch().stream(list_x, ...)
                listing = node.args[0]
                assert isinstance(listing, ast.Attribute), ast.unparse(listing)
                match = CLIENT_METHOD.match(listing.attr)
                assert match and match[1] == "list", ast.unparse(listing)
                group = listing.value
                assert isinstance(group, ast.Attribute) and group.attr in API_GROUPS
                calls.append((API_GROUPS[group.attr], RESOURCES[match[2]], "watch"))
                continue
            api = node.func.value
            if not (isinstance(api, ast.Attribute) and isinstance(api.value, ast.Name)
                    and api.value.id == "self" and api.attr in API_GROUPS):
                continue
            match = CLIENT_METHOD.match(node.func.attr)
            assert match, f"Kube.{fn.name}: unknown client method {node.func.attr}"
            verb, kind = VERBS[match[1]], match[2]
            if kind.startswith("custom_object"):
                # (group, version, [namespace,] plural, ...)
                index = 2 if "_cluster_" in node.func.attr else 3
                arg = node.args[index]
                plural = _constant(arg)
                if plural is None:
                    assert isinstance(arg, ast.Name) and arg.id in params, ast.unparse(arg)
                    plural = "{" + arg.id + "}"
                resource = plural + ("/status" if kind.endswith("_status") else "")
                calls.append((API_GROUPS[api.attr], resource, verb))
            else:
                assert kind in RESOURCES, f"Kube.{fn.name}: unmapped resource {kind}"
                calls.append((API_GROUPS[api.attr], RESOURCES[kind], verb))
                # A server-side apply creates the object when it is missing: RBAC checks
                # `create` then, besides `patch`.
                if any(k.arg == "_content_type" and isinstance(k.value, ast.Name)
                       and k.value.id == "APPLY" for k in node.keywords):
                    calls.append((API_GROUPS[api.attr], RESOURCES[kind], "create"))
        methods[fn.name] = (params, calls)
    return methods


def _operator_modules() -> list[Path]:
    """The modules of the operator process: not the adapter itself, not the CLI."""
    return [p for p in PACKAGE.rglob("*.py")
            if not {"kube", "cli"} & set(p.relative_to(PACKAGE).parts)]


# Calls on objects of the operator's own namespace, each limited to one name in the Role beside
# the Lease's: its own Deployment (the watch that tells an uninstall from a restart), and the
# workers' object store Secret (with store.workerSecret only).
OWN_NAMESPACE_METHODS = {"deployment_present": "own-deployment",
                         "wait_deployment_gone": "own-deployment",
                         "get_secret_data": "worker-secret"}


def operator_rules(*, scope: str | None = None) -> set[Rule]:
    """What the operator's own calls need, from the Kube methods its modules call: those of
    one `scope` of OWN_NAMESPACE_METHODS, else (None) those in the watched namespaces."""
    methods = {name: found for name, found in kube_methods().items()
               if OWN_NAMESPACE_METHODS.get(name) == scope}
    needed: set[Rule] = set()
    for path in _operator_modules():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            candidates = [node.func, *node.args[:1]]  # kube.m(...) or to_thread(kube.m, ...)
            for position, target in enumerate(candidates):
                if not (isinstance(target, ast.Attribute) and target.attr in methods):
                    continue
                owner = target.value
                owner_name = owner.attr if isinstance(owner, ast.Attribute) else \
                    owner.id if isinstance(owner, ast.Name) else ""
                if owner_name.lstrip("_") not in ("kube", "sync"):  # kube.m, kube.sync.m
                    continue
                params, calls = methods[target.attr]
                args = node.args[1:] if position else node.args  # after to_thread's callee
                bound = dict(zip(params[1:], args, strict=False))
                for group, pattern, verb in calls:
                    resource = pattern
                    if pattern.startswith("{"):
                        param = pattern.strip("{}").split("}")[0]
                        plural = _constant(bound[param]) if param in bound else None
                        assert plural, f"{path.name}: {target.attr} with a non-literal {param}"
                        resource = pattern.replace("{" + param + "}", plural)
                    needed.add((group, resource, str(verb)))
    return needed


def kopf_rules() -> set[Rule]:
    """kopf watches the resources its handlers are registered for, and patches those whose
    handlers keep state on the object (changing handlers, timers)."""
    source = (PACKAGE / "operator" / "handlers.py").read_text()
    tree = ast.parse(source)
    tuples = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple):
            parts = [_constant(e) for e in node.value.elts]
            if len(parts) == 3 and all(parts):
                tuples[node.targets[0].id] = parts  # type: ignore[attr-defined]
    handlers = re.findall(r"@kopf\.(on\.\w+|timer|daemon)\(\*(\w+)", source)
    assert handlers, "no kopf handlers found in handlers.py"
    rules: set[Rule] = set()
    for kind, name in handlers:
        group, _version, plural = tuples[name]
        assert group is not None and plural is not None
        rules |= {(group, plural, verb) for verb in ("list", "watch")}
        if kind != "on.event":
            rules.add((group, plural, "patch"))
    return rules


# kopf's resource discovery (kopf/_core/reactor/observation.py): CRDs always; namespaces only
# when it watches a list of namespaces (not with clusterwide=True).
KOPF_CRDS = {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")}
KOPF_NAMESPACES = {("", "namespaces", v) for v in ("list", "watch")}


def _flatten(rules: list[dict[str, Any]]) -> set[Rule]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}


def _split() -> tuple[set[Rule], set[Rule]]:
    """(rules in the watched namespaces, rules in the operator's own namespace: its Lease and
    its Deployment)."""
    everything = operator_rules() | kopf_rules()
    lease = {r for r in everything if r[1] == "leases"}
    return everything - lease, lease | operator_rules(scope="own-deployment")


def test_the_derivation_finds_what_the_operator_is_known_to_do() -> None:
    needed = operator_rules() | kopf_rules()
    # A few anchors, so a broken parser cannot pass by finding nothing.
    assert ("apps", "deployments", "patch") in needed
    assert ("", "secrets", "create") in needed  # created, or replaced when it exists
    assert ("", "secrets", "update") in needed
    assert (names.GROUP, "workflows", "patch") in needed  # kopf's finalizer
    assert (names.GROUP, "workflowruns", "patch") not in needed  # only watched
    assert ("apps", "deployments/scale", "patch") in needed
    assert (names.GROUP, "workflowruns/status", "patch") in needed
    assert ("coordination.k8s.io", "leases", "update") in needed
    assert operator_rules(scope="own-deployment") == {
        ("apps", "deployments", verb) for verb in ("get", "list", "watch")}
    assert operator_rules(scope="worker-secret") == {("", "secrets", "get")}
    assert ("", "secrets", "get") not in needed
    assert (names.GROUP, "workflowruns", "watch") in needed
    assert not any("{" in r[1] for r in needed)


def _objects(values: dict[str, Any]) -> dict[tuple[str, str, str | None], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")): o
            for o in template({"amqp.url": "amqp://u:p@broker/", **values},
                              release="conveyor", namespace="conveyor-system")}


def _subjects_ok(binding: dict[str, Any], kind: str, name: str) -> None:
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": kind,
                                  "name": name}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "conveyor",
                                    "namespace": "conveyor-system"}]


def test_watching_every_namespace_grants_exactly_what_the_code_uses() -> None:
    objects = _objects({})
    in_namespaces, lease = _split()
    cluster = _flatten(objects[("ClusterRole", "conveyor", None)]["rules"])
    assert cluster == in_namespaces | KOPF_CRDS, (
        f"missing: {sorted((in_namespaces | KOPF_CRDS) - cluster)}; "
        f"extra: {sorted(cluster - in_namespaces - KOPF_CRDS)}")
    _subjects_ok(objects[("ClusterRoleBinding", "conveyor", None)], "ClusterRole", "conveyor")
    leader = objects[("Role", "conveyor-leader", "conveyor-system")]
    assert _flatten(leader["rules"]) == lease
    # Its own Deployment only, not every Deployment of its namespace.
    assert [rule.get("resourceNames") for rule in leader["rules"]
            if rule["resources"] == ["deployments"]] == [["conveyor"]]
    _subjects_ok(objects[("RoleBinding", "conveyor-leader", "conveyor-system")], "Role",
                 "conveyor-leader")
    assert not [k for k in objects if k[0] == "Role" and k[1] == "conveyor"]


def test_watching_a_list_of_namespaces_grants_a_role_in_each() -> None:
    objects = _objects({"operator.namespaces": ["shop", "billing"]})
    in_namespaces, lease = _split()
    for ns in ("shop", "billing"):
        granted = _flatten(objects[("Role", "conveyor", ns)]["rules"])
        assert granted == in_namespaces, (f"missing: {sorted(in_namespaces - granted)}; "
                                          f"extra: {sorted(granted - in_namespaces)}")
        _subjects_ok(objects[("RoleBinding", "conveyor", ns)], "Role", "conveyor")
    # At cluster scope only what kopf's discovery needs.
    cluster = _flatten(objects[("ClusterRole", "conveyor", None)]["rules"])
    assert cluster == KOPF_CRDS | KOPF_NAMESPACES
    assert _flatten(objects[("Role", "conveyor-leader", "conveyor-system")]["rules"]) == lease
    deployment = objects[("Deployment", "conveyor", "conveyor-system")]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["--namespace", "shop", "--namespace", "billing"]


# Verbs whose answer carries the object: granting any of them on Secrets lets the operator read
# Secrets it does not manage (an empty PATCH returns the data). Create and update answer with
# what was sent.
READS = {"get", "list", "watch", "patch", "*"}


@pytest.mark.parametrize("values", [{}, {"operator.namespaces": ["shop", "billing"]}],
                         ids=["every-namespace", "a-list"])
def test_no_rule_lets_the_operator_read_a_secret(values: dict[str, Any]) -> None:
    objects = _objects(values)
    roles = [o for (kind, _, _), o in objects.items() if kind in ("Role", "ClusterRole")
             and o["metadata"]["name"] in ("conveyor", "conveyor-leader")]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            if "" in rule["apiGroups"] and {"secrets", "*"} & set(rule["resources"]):
                assert not READS & set(rule["verbs"]), (role["kind"], rule)
                assert set(rule["verbs"]) == {"create", "update"}, rule


STORE = {"store.enabled": True, "store.bucket": "runs", "store.existingSecret": "operator-s3"}


@pytest.mark.parametrize("values", [{}, {"operator.namespaces": ["shop", "billing"]}],
                         ids=["every-namespace", "a-list"])
def test_the_worker_store_secret_is_the_one_secret_read_by_name_in_the_own_namespace(
        values: dict[str, Any]) -> None:
    objects = _objects({**values, **STORE, "store.workerSecret": "workers-s3"})
    _, lease = _split()
    leader = objects[("Role", "conveyor-leader", "conveyor-system")]
    assert _flatten(leader["rules"]) == lease | operator_rules(scope="worker-secret")
    [read] = [rule for rule in leader["rules"] if rule["resources"] == ["secrets"]]
    assert read == {"apiGroups": [""], "resources": ["secrets"],
                    "resourceNames": ["workers-s3"], "verbs": ["get"]}
    for (kind, name, _), role in objects.items():
        if kind in ("Role", "ClusterRole") and name == "conveyor":
            for rule in role["rules"]:
                if {"secrets", "*"} & set(rule["resources"]):
                    assert set(rule["verbs"]) == {"create", "update"}, rule
    # Without a worker Secret nothing is read, store or no store.
    plain = _objects({**values, **STORE})[("Role", "conveyor-leader", "conveyor-system")]
    assert _flatten(plain["rules"]) == lease


def test_the_leader_role_reads_and_writes_only_its_own_lease() -> None:
    rules = [r for r in _objects({"operator.leaderLease": "mine"})[
        ("Role", "conveyor-leader", "conveyor-system")]["rules"] if r["resources"] == ["leases"]]
    named = [r for r in rules if r.get("resourceNames")]
    unnamed = [r for r in rules if not r.get("resourceNames")]
    assert [(r["resourceNames"], sorted(r["verbs"])) for r in named] == [(["mine"],
                                                                          ["get", "update"])]
    # A create is authorized before the object has a name: it cannot be limited by one.
    assert [r["verbs"] for r in unnamed] == [["create"]]


def test_rbac_create_false_creates_no_operator_roles() -> None:
    objects = _objects({"rbac.create": False, "rbac.userRoles": False})
    kinds = {k[0] for k in objects}
    assert not kinds & {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


@pytest.mark.parametrize(("role", "aggregate", "verbs"), [
    ("admin", "admin", {"*"}),
    ("editor", "edit", {"create", "delete", "get", "list", "patch", "update", "watch"}),
    ("viewer", "view", {"get", "list", "watch"}),
])
def test_user_roles_are_aggregated(role: str, aggregate: str, verbs: set[str]) -> None:
    cluster_role = _objects({})[("ClusterRole", f"conveyor-{role}", None)]
    labels = cluster_role["metadata"]["labels"]
    assert labels[f"rbac.authorization.k8s.io/aggregate-to-{aggregate}"] == "true"
    granted = _flatten(cluster_role["rules"])
    for plural in (names.WORKFLOW_PLURAL, names.RUN_PLURAL):
        assert {v for g, r, v in granted if r == plural and g == names.GROUP} == verbs
        assert (names.GROUP, f"{plural}/status", "get") in granted


def test_the_admission_policy_is_off_by_default_and_binds_the_operators_account() -> None:
    kinds = {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    assert not [o for o in _objects({}).values() if o["kind"] in kinds]
    objects = _objects({"admissionPolicy.enabled": True})
    [policy] = [o for o in objects.values() if o["kind"] == "ValidatingAdmissionPolicy"]
    [binding] = [o for o in objects.values() if o["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert binding["spec"] == {"policyName": policy["metadata"]["name"],
                               "validationActions": ["Deny"]}
    [condition] = policy["spec"]["matchConditions"]
    assert condition["expression"] == (
        "request.userInfo.username == 'system:serviceaccount:conveyor-system:conveyor'")
    # Every kind the operator's code writes, but its own resources, its Lease, Events and
    # the scale subresource (whose admission object, a Scale, carries no labels to check).
    resources = {(g, r) for rule in policy["spec"]["matchConstraints"]["resourceRules"]
                 for g in rule["apiGroups"] for r in rule["resources"]}
    written = {(g, r) for g, r, v in operator_rules() if v in ("create", "update", "patch")
               and g != names.GROUP and r not in ("events", "leases") and "/" not in r}
    assert resources == written
