"""The pinned helm (hack/build-helm.sh) and the chart, for the chart's tests."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "conveyor"


def helm_binary() -> Path:
    """The cached helm; fails (never skips) when it has not been built."""
    script = REPO / "hack" / "build-helm.sh"
    if subprocess.run([str(script), "--is-cached"], check=False).returncode != 0:
        pytest.fail("helm is not built: run `make testbed-build` (hack/build-helm.sh)")
    out = subprocess.run([str(script)], check=True, capture_output=True, text=True).stdout
    return Path(out.strip().splitlines()[-1]) / "helm"


def helm(*args: str, env: Mapping[str, str] | None = None, check: bool = True,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(helm_binary()), *args], capture_output=True, text=True,
                            env=None if env is None else dict(env), timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def set_args(values: Mapping[str, Any]) -> list[str]:
    """`--set-json key=value` for each value (dotted keys), so strings stay strings."""
    out: list[str] = []
    for key, value in values.items():
        out += ["--set-json", f"{key}={json.dumps(value)}"]
    return out


def template(values: Mapping[str, Any], *, release: str = "conveyor",
             namespace: str = "conveyor-system", extra: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The objects `helm template` renders for these values."""
    out = helm("template", release, str(CHART), "--namespace", namespace, *set_args(values),
               *extra).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@contextlib.contextmanager
def release(name: str, namespace: str, values: Mapping[str, Any], env: Mapping[str, str],
            values_file: Path) -> Iterator[str]:
    """`helm install` of the chart with `values` (kept in a 0600 file: they may hold the broker
    URL); `helm uninstall` afterwards, whatever happened. Yields the release's full name."""
    values_file.write_text(yaml.safe_dump(dict(values)))
    values_file.chmod(0o600)
    helm("install", name, str(CHART), "--namespace", namespace, "-f", str(values_file),
         env=env)
    try:
        yield f"{name}-conveyor"
    finally:
        helm("uninstall", name, "--namespace", namespace, "--wait", "--timeout", "2m",
             env=env, check=False)
