"""A very small Kubernetes REST client over urllib3: the node agent needs raw JSON, watches
and a handful of verbs, not a generated client."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlencode

import urllib3


class ApiError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


class Rest:
    def __init__(self, server: str, ca: str, cert: str, key: str) -> None:
        self.server = server.rstrip("/")
        self.http = urllib3.PoolManager(
            num_pools=4, maxsize=16, cert_reqs="CERT_REQUIRED", ca_certs=ca,
            cert_file=cert, key_file=key,
        )

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: float = 30,
    ) -> dict[str, Any]:
        url = self.server + path + (f"?{urlencode(params)}" if params else "")
        data = None if body is None else json.dumps(body).encode()
        response = self.http.request(
            method, url, body=data, headers={"Content-Type": content_type,
                                             "Accept": "application/json"},
            timeout=urllib3.Timeout(connect=5, read=timeout), retries=False,
        )
        text = response.data.decode()
        if response.status >= 400:
            raise ApiError(response.status, text)
        return json.loads(text) if text else {}

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return self.request("GET", path, params=params or None)

    def merge_patch(self, path: str, body: Any) -> dict[str, Any]:
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")

    def watch(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Yield watch events until the server ends the watch (timeoutSeconds)."""
        params = {**params, "watch": "true", "allowWatchBookmarks": "true"}
        timeout = float(params.get("timeoutSeconds", 300)) + 15
        response = self.http.request(
            "GET", f"{self.server}{path}?{urlencode(params)}", preload_content=False,
            timeout=urllib3.Timeout(connect=5, read=timeout), retries=False,
        )
        try:
            if response.status >= 400:
                raise ApiError(response.status, response.read().decode())
            buffer = b""
            for chunk in response.stream(64 * 1024, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        finally:
            response.release_conn()
