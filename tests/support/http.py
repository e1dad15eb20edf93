"""A plain GET for the operator's health endpoints in e2e tests."""

from __future__ import annotations

import urllib.error
import urllib.request


def answer(url: str) -> tuple[int, str]:
    """(status, body) of a GET; (0, why) when nothing answered (not listening yet, or a
    standby's server going away), so callers can poll it."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, str(error)
