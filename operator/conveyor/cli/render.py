"""Output: aligned tables for people, JSON and YAML for programs, and short durations."""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Sequence
from typing import Any

import yaml

FORMATS = ("table", "json", "yaml")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell, as `kubectl get` prints them."""
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def plain(value: Any) -> Any:
    """JSON-safe copy: broker headers hold bytes and datetimes."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return base64.b64encode(value).decode()
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return value


def dump(value: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(plain(value), indent=2)
    return yaml.safe_dump(plain(value), sort_keys=False, default_flow_style=False).rstrip()


def parse_time(text: str | None) -> float | None:
    """Epoch seconds of an RFC 3339 time, None for none."""
    if not text:
        return None
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def duration(seconds: float | None) -> str:
    """`0.8s`, `42s`, `3m12s`, `2h05m`, `3d4h`: precise when short, brief when long."""
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600}h"


def age(created: str | None, now: float) -> str:
    """Time since `created`, whole seconds as kubectl shows ages."""
    start = parse_time(created)
    if start is None:
        return ""
    return f"{int(max(0.0, now - start))}s" if now - start < 60 else duration(now - start)
