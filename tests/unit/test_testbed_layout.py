"""The test bed's ports: chosen once per state directory, and a port added later is chosen for
an old directory without touching the ports it had."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from testbed import layout


def test_ports_are_chosen_once_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_TESTBED_DIR", str(tmp_path))
    first = layout.ports()
    assert len(set(asdict(first).values())) == len(asdict(first)), "all distinct"
    assert layout.ports() == first


def test_an_older_state_directory_keeps_its_ports_and_gets_the_new_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_TESTBED_DIR", str(tmp_path))
    old = {"etcd_client": 40001, "etcd_peer": 40002, "apiserver": 40003, "amqp": 40004,
           "erlang_dist": 40005, "epmd": 40006}  # from before the TLS listener
    (tmp_path / "ports.json").write_text(json.dumps(old))
    ports = layout.ports()
    assert {k: v for k, v in asdict(ports).items() if k in old} == old
    assert ports.amqps not in old.values()
    assert json.loads((tmp_path / "ports.json").read_text())["amqps"] == ports.amqps
    assert layout.ports() == ports
