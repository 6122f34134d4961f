"""Reading the dashboard's HTML (elements, the runs table, the PNGs it draws) and filling in its
forms (the CSRF token, the New run form)."""

from __future__ import annotations

import struct
import zlib
from html.parser import HTMLParser
from typing import Any

from flask.testing import FlaskClient


class _Collector(HTMLParser):
    """Collect every element's tag, attributes and direct text, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[dict[str, Any]] = []
        self._open: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = {"tag": tag, "attrs": dict(attrs), "text": ""}
        self.elements.append(element)
        if tag not in ("input", "img", "br", "meta", "link"):
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()["tag"] == tag:
                break

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element["text"] += data


def find(html: str, tag: str, **attrs: str) -> list[dict[str, Any]]:
    """Return the elements with this tag whose attributes include `attrs` (`_` for `-`)."""
    collector = _Collector()
    collector.feed(html)
    wanted = {key.replace("_", "-"): value for key, value in attrs.items()}
    return [
        e
        for e in collector.elements
        if e["tag"] == tag and all(e["attrs"].get(k) == v for k, v in wanted.items())
    ]


def run_ids(html: str) -> list[int]:
    """The run ids listed in the runs table, in order."""
    return [int(e["attrs"]["data-run-id"]) for e in find(html, "tr") if "data-run-id" in e["attrs"]]


def page(client: FlaskClient, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    return response.get_data(as_text=True)


def decode_png(png: bytes) -> tuple[int, int, bytes]:
    """Read back an 8-bit grayscale, unfiltered PNG: width, height and the pixels."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat, size = 8, b"", (0, 0)
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind = png[offset + 4 : offset + 8]
        body = png[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", png[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        offset += 12 + length
    raw = zlib.decompress(idat)
    width, height = size
    rows = [raw[r * (width + 1) : (r + 1) * (width + 1)] for r in range(height)]
    assert all(row[0] == 0 for row in rows)
    return width, height, b"".join(row[1:] for row in rows)


def csrf_token(client: FlaskClient, path: str = "/runs/new") -> str:
    """The CSRF token of a form page (it also starts the session that token belongs to)."""
    fields = find(client.get(path).get_data(as_text=True), "input", name="csrf_token")
    assert fields, f"the form of {path} carries a CSRF token"
    return str(fields[0]["attrs"]["value"])


def form_data(token: str, **overrides: Any) -> dict[str, Any]:
    """A filled-in New run form: the quickstart's recipe, with `overrides`."""
    data: dict[str, Any] = {
        "csrf_token": token,
        "name": "from the form",
        "epochs": "5",
        "batch_size": "32",
        "learning_rate": "0.001",
        "optimizer": "adam",
        "hidden_units": "128",
        "dropout": "0.2",
        "normalize": "y",
        "validation_split": "0.0",
        "train_samples": "60000",
        "seed": "",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}
