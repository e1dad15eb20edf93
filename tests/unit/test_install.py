"""`pip install conveyor` is the worker SDK only: the wheel built from this checkout, installed
without extras into a fresh venv, runs `conveyor-worker` and has neither kopf nor the
Kubernetes client; the operator and the CLI, without their extras, name the extra to install.

Offline: the wheel builds without build isolation (the dev extra has setuptools), and its
dependencies come from a wheel folder made of this environment's installed distributions, so
pip resolves the base requirements for real, with no index.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import conveyor

REPO = Path(__file__).resolve().parents[2]
EXTRAS_ONLY = {"kopf", "kubernetes", "aiohttp", "confluent-kafka"}

pytestmark = pytest.mark.timeout(120)


def build_wheel(out: Path) -> Path:
    """conveyor's wheel from a copy of the sources (the build writes into its source tree)."""
    src = out / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "operator", src / "operator",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--wheel-dir", str(out / "dist"),
                    str(src)], check=True, timeout=90)
    (wheel,) = (out / "dist").glob("conveyor-*.whl")
    return wheel


def requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        text = archive.read(name).decode()
    return [Requirement(line.split(":", 1)[1].strip())
            for line in text.splitlines() if line.startswith("Requires-Dist:")]


def applies(requirement: Requirement, extra: str = "") -> bool:
    return requirement.marker is None or requirement.marker.evaluate(
        {**default_environment(), "extra": extra})


def closure(roots: list[Requirement]) -> dict[str, metadata.Distribution]:
    """The installed distributions these requirements need, transitively (with their
    extras)."""
    found: dict[str, metadata.Distribution] = {}
    todo = [(r, "") for r in roots]
    while todo:
        requirement, extra = todo.pop()
        if not applies(requirement, extra):
            continue
        name = canonicalize_name(requirement.name)
        dist = metadata.distribution(name)
        wanted = ["", *sorted(requirement.extras)]
        if name not in found:
            found[name] = dist
        for line in dist.requires or []:
            todo.extend((Requirement(line), e) for e in wanted)
    return found


def repack(dist: metadata.Distribution, out: Path) -> None:
    """An installed distribution back into a wheel (the files its RECORD lists in
    site-packages, without byte code)."""
    tags = [line.split(":", 1)[1].strip() for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")]
    # py2-none-any and py3-none-any as py2.py3-none-any, the compressed form.
    tag = "-".join(".".join(dict.fromkeys(parts)) for parts in zip(*(t.split("-") for t in tags),
                                                                   strict=True))
    name = canonicalize_name(dist.metadata["Name"]).replace("-", "_")
    record: list[str] = []
    with zipfile.ZipFile(out / f"{name}-{dist.version}-{tag}.whl", "w") as archive:
        for file in dist.files or []:
            path = str(file)
            if path.startswith("..") or "__pycache__" in path or path.endswith(
                    (".dist-info/RECORD", ".dist-info/INSTALLER", ".dist-info/REQUESTED",
                     ".dist-info/direct_url.json")):
                continue
            data = Path(str(dist.locate_file(file))).read_bytes()
            archive.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{path},sha256={digest.decode()},{len(data)}")
        info = next(str(f).split("/")[0] for f in dist.files or [] if ".dist-info/" in str(f))
        record.append(f"{info}/RECORD,,")
        archive.writestr(f"{info}/RECORD", "\n".join(record) + "\n")


@pytest.fixture(scope="module")
def lean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Requirement]]:
    """A fresh venv with conveyor installed without extras, offline."""
    out = tmp_path_factory.mktemp("install")
    wheel = build_wheel(out)
    required = requirements(wheel)
    wheels = out / "wheels"
    wheels.mkdir()
    for dist in closure([r for r in required if applies(r)]).values():
        repack(dist, wheels)
    venv = out / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                    "install", "--quiet", "--no-index", "--no-compile", "--find-links",
                    str(wheels), str(wheel)], check=True, timeout=90)
    return venv, required


def test_the_base_requirements_hold_no_operator_or_cli_library(
        lean: tuple[Path, list[Requirement]]) -> None:
    _, required = lean
    base = {canonicalize_name(r.name) for r in required if applies(r)}
    assert not base & EXTRAS_ONLY
    for extra in ("operator", "cli"):
        assert "kubernetes" in {canonicalize_name(r.name) for r in required
                                if r.marker is not None and applies(r, extra)}


def test_the_worker_runs_without_the_extras(lean: tuple[Path, list[Requirement]]) -> None:
    venv, _ = lean
    worker = subprocess.run([str(venv / "bin" / "conveyor-worker"), "--help"],
                            check=False, capture_output=True, text=True, timeout=30)
    assert worker.returncode == 0, worker.stderr
    assert "--module" in worker.stdout
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import importlib.util, conveyor.worker, conveyor.store\n"
         "print(sorted(m for m in ('kopf', 'kubernetes', 'aiohttp', 'confluent_kafka')"
         " if importlib.util.find_spec(m)))"],
        check=False, capture_output=True, text=True, timeout=30)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[]"


@pytest.mark.parametrize(("command", "args", "extra"), [
    ("conveyor-operator", ["--help"], "operator"),
    ("conveyor", ["list"], "cli"),
])
def test_a_command_without_its_extra_names_it(
        lean: tuple[Path, list[Requirement]], command: str, args: list[str], extra: str) -> None:
    venv, _ = lean
    result = subprocess.run([str(venv / "bin" / command), *args],
                            check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr.strip().endswith(f"pip install 'conveyor[{extra}]'"), result.stderr
    assert "Traceback" not in result.stderr


def test_the_version_is_pyprojects_everywhere() -> None:
    """The images' tags (hack/build-images.sh reads pyproject.toml) are the chart's appVersion,
    its default image tag, and the package's `__version__`."""
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((REPO / "charts" / "conveyor" / "Chart.yaml").read_text())
    assert chart["appVersion"] == version == conveyor.__version__
