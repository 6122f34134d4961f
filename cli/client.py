"""A small HTTP client for trainyard's JSON API (standard library only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

MAX_PAGE = 200  # the server's largest page


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
        content: tuple[str, bytes] | None = None,
    ) -> Any:
        """Send one request; return the decoded JSON, raise ApiError. `content`: a body that is
        not JSON, as (media type, bytes)."""
        url = self.url.rstrip("/") + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None
        all_headers = {"Accept": "application/json", **(headers or {})}
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        elif content is not None:
            all_headers["Content-Type"], data = content
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(url, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            with exc:  # an error answer holds its connection until closed
                text = exc.read().decode(errors="replace")
            try:
                body = json.loads(text)
            except ValueError:
                raise ApiError(exc.code, text or exc.reason) from None
            error = body.get("error") if isinstance(body, dict) else None
            if not isinstance(error, dict):
                raise ApiError(exc.code, str(exc.reason)) from None
            raise ApiError(exc.code, str(error.get("message")), error.get("fields")) from None
        except urllib.error.URLError as exc:
            raise ApiError(0, f"cannot reach {self.url}: {exc.reason}") from None
        return json.loads(text)

    def submit(
        self, params: dict[str, Any], name: str | None = None, key: str | None = None
    ) -> dict[str, Any]:
        """Queue a run; return it."""
        headers = {"Idempotency-Key": key} if key else None
        return self.request("POST", "/api/runs", {"name": name, "params": params}, headers=headers)

    def run(self, run_id: int) -> dict[str, Any]:
        """Return one run."""
        return self.request("GET", f"/api/runs/{run_id}")

    def list_runs(self, filters: dict[str, Any] | None = None) -> dict[str, Any]:
        """Return one page of runs matching `filters` (query keys of GET /api/runs)."""
        return self.request("GET", "/api/runs", query=filters)

    def iter_runs(self, filters: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Yield every run matching `filters`, following the answers' cursors page after page."""
        query = {**(filters or {}), "limit": MAX_PAGE}
        while True:
            answer = self.list_runs(query)
            yield from answer["runs"]
            if not answer.get("next_cursor"):
                return
            query = {**query, "cursor": answer["next_cursor"]}

    def compare(self, ids: list[int], baseline: int | None = None) -> dict[str, Any]:
        """Return the side-by-side comparison of runs."""
        query = {"ids": ",".join(map(str, ids)), "baseline": baseline}
        return self.request("GET", "/api/compare", query=query)

    def submit_study(self, body: dict[str, Any]) -> dict[str, Any]:
        """Queue a study; return its summary."""
        return self.request("POST", "/api/studies", body)

    def study(self, study_id: int, baseline: int | None = None) -> dict[str, Any]:
        """Return a study's summary, compared with configuration `baseline`."""
        return self.request("GET", f"/api/studies/{study_id}", query={"baseline": baseline})

    def studies(self) -> dict[str, Any]:
        """Return the newest studies."""
        return self.request("GET", "/api/studies")

    def cancel_study(self, study_id: int) -> dict[str, Any]:
        """Cancel a study's unfinished runs; return its summary."""
        return self.request("POST", f"/api/studies/{study_id}/cancel", {})

    def add_replicates(self, study_id: int, seeds: int) -> dict[str, Any]:
        """Queue more seeds of every configuration; return the study's summary."""
        return self.request("POST", f"/api/studies/{study_id}/replicates", {"seeds": seeds})

    def cancel(self, run_id: int) -> dict[str, Any]:
        """Cancel a run (or ask a running one to stop); return it."""
        return self.request("POST", f"/api/runs/{run_id}/cancel", {})

    def predict_png(self, run_id: int, png: bytes) -> dict[str, Any]:
        """Classify one PNG drawing with a succeeded run's model."""
        return self.request("POST", f"/api/runs/{run_id}/predict", content=("image/png", png))
