"""Secret and ConfigMap volumes for the node agent's processes, mounted where the pod says.

A process on the host has no filesystem of its own, so the agent gives it a private mount
namespace (`unshare --mount`), in which `mounting.py` bind-mounts each volume's files over its
`mountPath` (read-only when the mount says so) and then execs the container's command: the
process sees the files where a kubelet would put them, and the host sees nothing. A mountPath
that does not exist on the host (`/etc/conveyor/amqp`) is made in an overlay of its deepest
existing folder, in that namespace only.

What it does not do: other volume kinds (emptyDir, projected, PVCs: not mounted, as before),
`subPath` (refused, as a config error), updating files while the container runs (a restart
writes them again), binary Secret values (written as the UTF-8 text the agent decodes).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .podenv import ConfigError, Lookup

MOUNTING = Path(__file__).with_name("mounting.py")
DEFAULT_MODE = 0o644  # the API server's default for defaultMode


@dataclass(frozen=True)
class Mount:
    """One volume's files (already written under `source`) to show at `target`."""

    source: str
    target: str
    read_only: bool


def _files(volume: Mapping[str, Any], lookup: Lookup) -> dict[str, tuple[str, int]] | None:
    """path in the volume -> (content, mode) for a secret or configMap volume; None for any
    other kind of volume."""
    if "secret" in volume:
        source, kind, name = volume["secret"], "Secret", volume["secret"].get("secretName", "")
    elif "configMap" in volume:
        source, kind, name = volume["configMap"], "ConfigMap", volume["configMap"].get("name", "")
    else:
        return None
    optional = bool(source.get("optional"))
    data = lookup(kind, name)
    if data is None:
        if optional:
            return {}
        raise ConfigError(f'{kind.lower()} "{name}" not found (volume {volume["name"]})')
    mode = int(source.get("defaultMode", DEFAULT_MODE))
    items = source.get("items")
    if not items:
        return {key: (value, mode) for key, value in data.items()}
    files = {}
    for item in items:
        if item["key"] not in data:
            if optional:
                continue
            raise ConfigError(f'couldn\'t find key {item["key"]} in {kind} {name} '
                              f'(volume {volume["name"]})')
        files[item["path"]] = (data[item["key"]], int(item.get("mode", mode)))
    return files


def prepare(pod: Mapping[str, Any], container: Mapping[str, Any], lookup: Lookup,
            root: Path) -> list[Mount]:
    """Write the files of every secret and configMap volume `container` mounts under `root`
    (afresh: a restart sees the objects as they are now); the mounts to make. ConfigError
    (the kubelet's CreateContainerConfigError) for a missing object, key or volume."""
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    mounts = []
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"])
        if volume is None:
            raise ConfigError(f"volumeMount {mount['name']} names no volume of the pod")
        files = _files(volume, lookup)
        if files is None:
            continue
        if mount.get("subPath") or mount.get("subPathExpr"):
            raise ConfigError(f"volumeMount {mount['name']}: the test bed cannot mount a "
                              f"subPath")
        source = root / volume["name"]
        if source.exists():
            shutil.rmtree(source)
        source.mkdir(parents=True)
        for relative, (content, mode) in files.items():
            path = source / relative
            if source not in path.resolve().parents:
                raise ConfigError(f"volume {volume['name']}: path {relative!r} leaves it")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            path.chmod(mode)
        mounts.append(Mount(str(source), mount["mountPath"], bool(mount.get("readOnly"))))
    return mounts


def wrap(argv: Sequence[str], mounts: Sequence[Mount], work: Path) -> list[str]:
    """`argv` run in a mount namespace of its own with `mounts` made first; as is without
    mounts. `work` holds the overlays' upper and work folders."""
    if not mounts:
        return list(argv)
    # A user namespace as well when not root, where unprivileged ones are allowed.
    unshare = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        unshare[1:1] = ["--user", "--map-root-user"]
    plan = json.dumps({"work": str(work), "mounts": [asdict(m) for m in mounts]})
    return [*unshare, sys.executable, "-I", str(MOUNTING), plan, "--", *argv]
