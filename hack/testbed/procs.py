"""Start the test bed's daemons detached, record their pids, and stop them for sure."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

# Every process the test bed starts carries this variable, so `down` can find and stop even
# processes whose parent died without cleaning up (pods of a killed node agent, say).
MARKER = "CONVEYOR_TESTBED_STATE"


def _pidfile(pids: Path, name: str) -> Path:
    return pids / f"{name}.pid"


def running_pid(pids: Path, name: str) -> int | None:
    """The pid of the named daemon if it is alive and still the process we started."""
    try:
        pid = int(_pidfile(pids, name).read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    return pid if alive(pid) else None


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not: it is dead, only not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def start(
    name: str,
    argv: Sequence[str],
    *,
    pids: Path,
    logs: Path,
    state: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start `argv` in its own session with output to logs/<name>.log; idempotent."""
    pid = running_pid(pids, name)
    if pid is not None:
        return pid
    full_env = dict(os.environ if env is None else env)
    full_env[MARKER] = str(state)
    with open(logs / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
    _pidfile(pids, name).write_text(f"{proc.pid}\n")
    return proc.pid


def stop(pids: Path, name: str, grace: float = 10.0) -> None:
    pid = running_pid(pids, name)
    if pid is not None:
        terminate([pid], grace)
    _pidfile(pids, name).unlink(missing_ok=True)


def terminate(pids: Sequence[int], grace: float) -> None:
    """SIGTERM each process group, then SIGKILL what is left after `grace` seconds."""
    for pid in pids:
        signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            signal_group(pid, signal.SIGKILL)


def signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def group_members(pgid: int) -> list[int]:
    """Pids of the live processes in process group `pgid` (a daemon and the helpers it
    forked: RabbitMQ's shell script, beam, erl_child_setup)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(entry.name))
    return found


def marked_processes(state: Path, also: str | None = None) -> list[int]:
    """Pids of every live process started by the test bed of `state` (and carrying the
    variable `also`, when given)."""
    needle = f"\0{MARKER}={state}\0".encode()
    extra = f"\0{also}=".encode() if also else b""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        framed = b"\0" + environ + b"\0"
        if needle in framed and extra in framed and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def wait_until(check, timeout: float, what: str, interval: float = 0.2):  # type: ignore[no-untyped-def]
    """Poll `check()` until it returns a truthy value; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception as error:
            last_error = error
        else:
            if result:
                return result
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s (last error: {last_error})")
