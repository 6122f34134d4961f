"""Keyset cursors: where the last page ended (sort, last value, last id), signed, so a page deep
in a million runs is read from an index instead of skipped over with OFFSET.

A cursor is `base64url(json).base64url(hmac)`; the key is the app's secret. One that was changed,
or that belongs to another sort, is a 400.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.domain.errors import BadRequest

TIME_FIELDS = frozenset({"created_at", "started_at", "finished_at"})


@dataclass(frozen=True)
class Position:
    """The last row of a page in its sort: its sort value (None: among the rows that have none)
    and its id."""

    sort: str
    value: Any
    id: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, payload: str) -> str:
    digest = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return _b64(digest[:16])


def encode(secret: str, position: Position) -> str:
    """The cursor of the page after `position`."""
    value = position.value
    if isinstance(value, datetime):
        value = value.isoformat()
    payload = _b64(json.dumps([position.sort, value, position.id], separators=(",", ":")).encode())
    return f"{payload}.{_signature(secret, payload)}"


def decode(secret: str, cursor: str, sort: str) -> Position:
    """The position a cursor holds; 400 when it was not made here or belongs to another sort."""
    refused = BadRequest("invalid cursor", {"cursor": "not a cursor this server gave out"})
    payload, _, signature = cursor.partition(".")
    if not hmac.compare_digest(signature, _signature(secret, payload)):
        raise refused
    try:
        cursor_sort, value, last_id = json.loads(_unb64(payload))
    except ValueError:
        raise refused from None
    if cursor_sort != sort:
        raise BadRequest(
            "the cursor belongs to another sort",
            {"cursor": f"made for sort={cursor_sort}, not sort={sort}"},
        )
    if value is not None and sort.lstrip("-") in TIME_FIELDS:
        value = datetime.fromisoformat(value)
    return Position(sort, value, int(last_id))
