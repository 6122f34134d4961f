"""A small HTTP client for trainyard's JSON API (standard library only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any


class ApiError(Exception):
    """The server answered with an error (or could not be reached)."""

    def __init__(self, status: int, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields or {}

    def __str__(self) -> str:
        detail = "".join(f"\n  {field}: {reason}" for field, reason in self.fields.items())
        prefix = f"HTTP {self.status}: " if self.status else ""
        return f"{prefix}{self.message}{detail}"


@dataclass
class Client:
    """Calls a trainyard server at `url`, with a bearer token for writes when given."""

    url: str
    token: str | None = None
    timeout: float = 30.0

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        raw: bool = False,
    ) -> Any:
        """Send one request; return the decoded JSON (or text when `raw`), raise ApiError."""
        url = self.url.rstrip("/") + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None
        all_headers = {"Accept": "application/json", **(headers or {})}
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(url, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            try:
                error = json.loads(text)["error"]
                raise ApiError(exc.code, error["message"], error.get("fields")) from None
            except (ValueError, KeyError, TypeError):
                raise ApiError(exc.code, text or exc.reason) from None
        except urllib.error.URLError as exc:
            raise ApiError(0, f"cannot reach {self.url}: {exc.reason}") from None
        return text if raw else json.loads(text)

    def submit(
        self, params: dict[str, Any], name: str | None = None, key: str | None = None
    ) -> dict[str, Any]:
        """Queue a run; return it."""
        headers = {"Idempotency-Key": key} if key else None
        return self.request("POST", "/api/runs", {"name": name, "params": params}, headers=headers)

    def run(self, run_id: int) -> dict[str, Any]:
        """Return one run."""
        return self.request("GET", f"/api/runs/{run_id}")

    def metrics(self, run_id: int) -> dict[str, Any]:
        """Return a run's per-epoch series."""
        return self.request("GET", f"/api/runs/{run_id}/metrics")
