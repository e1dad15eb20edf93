"""Secret and ConfigMap volumes of the test bed's node agent: the files written, the mounts
planned, the command wrapped (the mounting itself: tests/e2e/test_nodeagent.py)."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from testbed import podenv, volumes

DATA = {("Secret", "amqp"): {"url": "amqps://u:p@h/", "ca.crt": "PEM\n"},
        ("ConfigMap", "m"): {"a": "1", "b": "2"}}


def lookup(kind: str, name: str) -> dict[str, str] | None:
    return DATA.get((kind, name))


def _pod(volumes_: list[dict[str, Any]]) -> dict[str, Any]:
    return {"spec": {"volumes": volumes_}}


def test_items_pick_keys_and_paths_with_modes_and_read_only_is_kept(tmp_path: Path) -> None:
    pod = _pod([{"name": "ca", "secret": {"secretName": "amqp", "defaultMode": 0o400,
                                          "items": [{"key": "ca.crt", "path": "certs/ca.pem"}]}},
                {"name": "m", "configMap": {"name": "m"}},
                {"name": "tmp", "emptyDir": {}}])
    container = {"volumeMounts": [{"name": "ca", "mountPath": "/etc/x", "readOnly": True},
                                  {"name": "m", "mountPath": "/etc/m"},
                                  {"name": "tmp", "mountPath": "/tmp"}]}
    mounts = volumes.prepare(pod, container, lookup, tmp_path)
    assert mounts == [volumes.Mount(str(tmp_path / "ca"), "/etc/x", True),
                      volumes.Mount(str(tmp_path / "m"), "/etc/m", False)], \
        "emptyDir is not mounted, as before"
    pem = tmp_path / "ca" / "certs" / "ca.pem"
    assert pem.read_text() == "PEM\n" and stat.S_IMODE(pem.stat().st_mode) == 0o400
    assert sorted(p.name for p in (tmp_path / "ca").rglob("*") if p.is_file()) == ["ca.pem"]
    assert {p.name: p.read_text() for p in (tmp_path / "m").iterdir()} == {"a": "1", "b": "2"}


def test_files_are_written_afresh_for_every_start(tmp_path: Path) -> None:
    pod = _pod([{"name": "m", "configMap": {"name": "m"}}])
    container = {"volumeMounts": [{"name": "m", "mountPath": "/etc/m"}]}
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "stale").write_text("old")
    volumes.prepare(pod, container, lookup, tmp_path)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["a", "b"]


@pytest.mark.parametrize(("volume", "mount", "message"), [
    ({"name": "v", "secret": {"secretName": "gone"}}, {}, 'secret "gone" not found'),
    ({"name": "v", "secret": {"secretName": "amqp", "items": [{"key": "nope", "path": "x"}]}},
     {}, "couldn't find key nope in Secret amqp"),
    ({"name": "v", "configMap": {"name": "m"}}, {"subPath": "a"}, "cannot mount a subPath"),
    ({"name": "v", "configMap": {"name": "m", "items": [{"key": "a", "path": "../out"}]}},
     {}, "leaves it"),
    ({"name": "other", "configMap": {"name": "m"}}, {}, "names no volume"),
])
def test_what_a_kubelet_would_refuse_is_a_config_error(
        tmp_path: Path, volume: dict[str, Any], mount: dict[str, Any], message: str) -> None:
    container = {"volumeMounts": [{"name": "v", "mountPath": "/etc/v", **mount}]}
    with pytest.raises(podenv.ConfigError, match=message):
        volumes.prepare(_pod([volume]), container, lookup, tmp_path)


def test_an_optional_source_that_is_missing_mounts_empty(tmp_path: Path) -> None:
    pod = _pod([{"name": "v", "secret": {"secretName": "gone", "optional": True}}])
    container = {"volumeMounts": [{"name": "v", "mountPath": "/etc/v"}]}
    [mount] = volumes.prepare(pod, container, lookup, tmp_path)
    assert list(Path(mount.source).iterdir()) == []


def test_a_command_without_mounts_runs_as_is_and_with_mounts_through_the_helper(
        tmp_path: Path) -> None:
    assert volumes.wrap(["worker", "--x"], [], tmp_path) == ["worker", "--x"]
    mount = volumes.Mount("/src", "/etc/v", True)
    argv = volumes.wrap(["worker", "--x"], [mount], tmp_path)
    assert argv[0] == "unshare" and "--mount" in argv
    helper = argv.index(str(volumes.MOUNTING))
    assert argv[helper + 2:] == ["--", "worker", "--x"]
    assert json.loads(argv[helper + 1]) == {
        "work": str(tmp_path), "mounts": [{"source": "/src", "target": "/etc/v",
                                           "read_only": True}]}
