"""How the commands meet a person and a server: --url and --token, API errors as clean messages,
KEY=VALUE options, and tables a terminal shows safely."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from typing import Any

import click

from cli.client import ApiError, Client
from shared.config import get_settings
from shared.domain.text import UNPRINTABLE_CHARS


def client_options(function: Any) -> Any:
    """Add --url and --token, defaulting to TRAINYARD_URL and TRAINYARD_API_TOKEN."""
    function = click.option("--token", default=None, help="Bearer token (TRAINYARD_API_TOKEN).")(
        function
    )
    return click.option("--url", default=None, help="Server URL (TRAINYARD_URL).")(function)


def make_client(url: str | None, token: str | None) -> Client:
    """A client for the server named by --url/--token or the settings."""
    settings = get_settings()
    return Client(url or settings.url, token or settings.api_token)


def api_call(function: Callable[..., Any]) -> Callable[..., Any]:
    """Turn an API error into a clean message and exit status 1."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except ApiError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def printable(text: str) -> str:
    """Text safe for a terminal: control and text-direction characters shown as escapes, so a
    name stored before they were refused cannot move the cursor or clear the screen."""
    return UNPRINTABLE_CHARS.sub(
        lambda match: match.group().encode("unicode_escape").decode(), text
    )


def cell(value: Any) -> str:
    """Format one value for a table."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    return printable(str(value))


def table(headers: list[str], rows: Iterable[list[Any]]) -> str:
    """Lay rows out as aligned columns."""
    cells = [headers, *([cell(v) for v in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def parse_param(pairs: tuple[str, ...]) -> dict[str, Any]:
    """Turn `k=v` pairs into a dict, reading each value as JSON when it parses."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="--param")
        try:
            params[key.strip()] = json.loads(value)
        except ValueError:
            params[key.strip()] = value
    return params
