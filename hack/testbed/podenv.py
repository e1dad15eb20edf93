"""A container's environment, resolved the way the kubelet does it (env, envFrom, valueFrom)."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from typing import Any

Lookup = Callable[[str, str], Mapping[str, str] | None]  # (kind, name) -> data or None


class ConfigError(Exception):
    """The kubelet's CreateContainerConfigError: a referenced object or key is missing."""


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known names expand, `$$` escapes, unknown stay as is."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return _REF.sub(repl, value)


def _field(pod: Mapping[str, Any], path: str) -> str:
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
    }
    if path in simple:
        return str(simple[path] or "")
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")


def _source(lookup: Lookup, kind: str, name: str, optional: bool) -> Mapping[str, str] | None:
    data = lookup(kind, name)
    if data is None and not optional:
        raise ConfigError(f'{kind.lower()} "{name}" not found')
    return data


def _value_from(pod: Mapping[str, Any], source: Mapping[str, Any], lookup: Lookup) -> str | None:
    for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
        ref = source.get(key)
        if ref:
            optional = bool(ref.get("optional"))
            data = _source(lookup, kind, ref["name"], optional)
            if data is None:
                return None
            if ref["key"] not in data:
                if optional:
                    return None
                raise ConfigError(f'couldn\'t find key {ref["key"]} in {kind} '
                                  f'{pod["metadata"]["namespace"]}/{ref["name"]}')
            return data[ref["key"]]
    if source.get("fieldRef"):
        return _field(pod, source["fieldRef"]["fieldPath"])
    if source.get("resourceFieldRef"):
        # Limits are not enforced here; report what the spec says, or nothing.
        ref = source["resourceFieldRef"]
        container = next(
            c for c in pod["spec"]["containers"] if c["name"] == ref.get("containerName")
        ) if ref.get("containerName") else None
        resources = (container or {}).get("resources") or {}
        kind, _, name = ref["resource"].partition(".")
        return str((resources.get(kind) or {}).get(name, ""))
    raise ConfigError(f"unsupported valueFrom {sorted(source)}")


def resolve(pod: Mapping[str, Any], container: Mapping[str, Any], lookup: Lookup) -> dict[str, str]:
    """The variables `container` declares, in the kubelet's order: envFrom, then env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        for key, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
            ref = source.get(key)
            if ref:
                data = _source(lookup, kind, ref["name"], bool(ref.get("optional")))
                for k, v in (data or {}).items():
                    env[prefix + k] = v
    for var in container.get("env") or []:
        if var.get("valueFrom"):
            value = _value_from(pod, var["valueFrom"], lookup)
            if value is not None:
                env[var["name"]] = value
        else:
            env[var["name"]] = expand(var.get("value") or "", env)
    return env


def decode_secret(data: Mapping[str, str] | None) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (data or {}).items()}
