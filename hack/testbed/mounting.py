"""Run in a fresh mount namespace (see volumes.py): make the mounts of a plan, then exec.

    mounting.py PLAN -- COMMAND [ARGS...]

PLAN is JSON: {"work": dir, "mounts": [{"source", "target", "read_only"}]}. A script of its
own (only the standard library, `python -I`), because it runs with the container's
environment, where the test bed's package is not importable. Its pid becomes the
container's: signals and the exit status are the command's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def _make_target(target: Path, work: Path, overlaid: list[Path]) -> None:
    """Make `target` exist in this namespace only: its new folders go into an overlay over
    its deepest existing folder (one per such folder, kept in `overlaid`), never onto the
    host's filesystem."""
    if target.is_dir():
        return
    if not any(base == target or base in target.parents for base in overlaid):
        base = target.parent
        while not base.is_dir():
            base = base.parent
        layer = work / f"overlay-{len(overlaid)}"
        (layer / "upper").mkdir(parents=True, exist_ok=True)
        (layer / "work").mkdir(parents=True, exist_ok=True)
        _mount("-t", "overlay", "overlay", "-o",
               f"lowerdir={base},upperdir={layer / 'upper'},workdir={layer / 'work'}", str(base))
        overlaid.append(base)
    target.mkdir(parents=True, exist_ok=True)


def main(argv: list[str]) -> None:
    plan_text, separator, *command = argv
    if separator != "--" or not command:
        sys.exit("usage: mounting.py PLAN -- COMMAND [ARGS...]")
    plan = json.loads(plan_text)
    work = Path(plan["work"])
    overlaid: list[Path] = []
    # Every target first: an overlay made after a bind mount below it would hide that mount.
    for mount in plan["mounts"]:
        _make_target(Path(mount["target"]), work, overlaid)
    for mount in plan["mounts"]:
        _mount("--bind", mount["source"], mount["target"])
        if mount["read_only"]:
            _mount("-o", "remount,bind,ro", mount["target"])
    try:
        os.execvp(command[0], command)
    except OSError as error:
        # What a kubelet reports as StartError; 127 as a shell does for a missing command.
        print(f"mounting.py: cannot run {command[0]}: {error}", file=sys.stderr)
        sys.exit(127)


if __name__ == "__main__":
    main(sys.argv[1:])
