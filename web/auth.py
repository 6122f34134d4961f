"""Bearer-token protection for API writes, when TRAINYARD_API_TOKEN is set."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import current_app, request

from shared.errors import Unauthorized


def require_token(view: Callable[..., Any]) -> Callable[..., Any]:
    """Reject the request with 401 unless it carries the configured bearer token."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = current_app.config["TRAINYARD"].api_token
        if token:
            given = request.headers.get("Authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip(), token):
                raise Unauthorized(
                    "this write needs Authorization: Bearer <token>",
                    {"Authorization": "missing or wrong bearer token"},
                )
        return view(*args, **kwargs)

    return wrapper
