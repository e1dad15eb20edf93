"""Env resolution of the test bed's node agent: pure logic, no cluster."""

from __future__ import annotations

import pytest

from testbed import podenv

POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "a"}},
       "spec": {"nodeName": "n", "containers": [{"name": "c"}]},
       "status": {"podIP": "127.1.0.2"}}


def lookup(kind: str, name: str):  # type: ignore[no-untyped-def]
    return {("Secret", "s"): {"k": "v"}, ("ConfigMap", "m"): {"a": "1", "b": "2"}}.get(
        (kind, name))


@pytest.mark.parametrize(("value", "expected"), [
    ("$(A)-x", "1-x"), ("$$(A)", "$(A)"), ("$(MISSING)", "$(MISSING)"), ("plain", "plain"),
])
def test_expand_follows_kubernetes_rules(value: str, expected: str):
    assert podenv.expand(value, {"A": "1"}) == expected


def test_env_from_then_env_with_later_values_winning():
    container = {"envFrom": [{"configMapRef": {"name": "m"}, "prefix": "M_"}],
                 "env": [{"name": "M_a", "value": "override"},
                         {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                         {"name": "L", "valueFrom": {"fieldRef": {
                             "fieldPath": "metadata.labels['app']"}}}]}
    assert podenv.resolve(POD, container, lookup) == {"M_a": "override", "M_b": "2", "S": "v",
                                                      "L": "a"}


def test_missing_required_sources_raise_and_optional_ones_are_skipped():
    missing = {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope",
                                                                     "key": "k"}}}]}
    with pytest.raises(podenv.ConfigError, match='secret "nope" not found'):
        podenv.resolve(POD, missing, lookup)
    missing["env"][0]["valueFrom"]["secretKeyRef"]["optional"] = True
    assert podenv.resolve(POD, missing, lookup) == {}
    bad_key = {"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "m",
                                                                        "key": "zz"}}}]}
    with pytest.raises(podenv.ConfigError, match="couldn't find key zz"):
        podenv.resolve(POD, bad_key, lookup)
