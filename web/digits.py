"""Tiny PNG encoding for the misclassified test digits, so the page needs no imaging library."""

from __future__ import annotations

import base64
import struct
import zlib

SIDE = 28


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def png_from_pixels(pixels: bytes, width: int = SIDE, height: int = SIDE) -> bytes:
    """Encode 8-bit grayscale pixels (row-major) as a PNG file."""
    if len(pixels) != width * height:
        raise ValueError(f"expected {width * height} pixels, got {len(pixels)}")
    # Each scanline starts with filter type 0 (none); the images are too small to care.
    raw = b"".join(b"\x00" + pixels[row * width : (row + 1) * width] for row in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def digit_data_uri(image_b64: str) -> str:
    """Turn a stored digit (base64 of 784 pixels) into a `data:` URI the page can show inline."""
    png = png_from_pixels(base64.b64decode(image_b64))
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
