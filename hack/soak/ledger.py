"""The ledger: one line per execution of a task, written by the worker before it reports.

Each worker process appends to a file of its own (`<dir>/<pod>-<pid>.log`), so there is no
interleaving to worry about, with one `write` per line on an `O_APPEND` descriptor followed
by `fdatasync`. The write alone already survives a SIGKILL of the worker (the bytes are the
kernel's once `write` returns); the sync makes the line outlast the machine too, which is
what "recorded before reported" means for a real ledger. A line is complete or absent: a
torn last line (a kill during `write`) is impossible for a single write under a page, and
`read` would skip one anyway.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ENV_DIR = "SOAK_LEDGER_DIR"
"""The worker's environment variable naming the ledger's folder."""
ENV_SYNC = "SOAK_LEDGER_SYNC"
"""`0` leaves out the fdatasync (faster, still safe against a killed process)."""


@dataclass(frozen=True)
class Execution:
    """One execution of one attempt, as a worker recorded it."""

    attempt: str
    run_uid: str
    index: int
    worker: str


class Writer:
    """A worker process's appender; thread-safe without a lock (each line is one `write`)."""

    def __init__(self, folder: Path, sync: bool = True) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.worker = f"{socket.gethostname()}-{os.getpid()}"
        path = folder / f"{self.worker}.log"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._sync = sync

    def record(self, attempt: str, run_uid: str, index: int) -> None:
        line = f"{attempt}\t{run_uid}\t{index}\t{self.worker}\n".encode()
        written = os.write(self._fd, line)
        if written != len(line):  # a full disk: say so rather than report an unrecorded run
            raise OSError(f"ledger write was short: {written} of {len(line)} bytes")
        if self._sync:
            os.fdatasync(self._fd)


def read(folder: Path) -> Iterator[Execution]:
    """Every execution recorded in the ledger's folder, file by file."""
    for path in sorted(folder.glob("*.log")):
        for line in path.read_text().splitlines():
            fields = line.split("\t")
            if len(fields) != 4 or not fields[2].isdigit():
                continue  # cannot happen for a whole line (see the module); never guess
            yield Execution(fields[0], fields[1], int(fields[2]), fields[3])


@functools.cache
def writer() -> Writer:
    """The process's writer, opened on first use from the environment (worker side). Two
    threads racing here open the same file twice, which appending makes harmless."""
    return Writer(Path(os.environ[ENV_DIR]), os.environ.get(ENV_SYNC, "1") != "0")
