"""Generators for the nasty-file corpus: every case is made here, nothing is committed."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def encode(fmt: str, size=(40, 56), mode="RGB", **save) -> bytes:
    img = Image.new(mode, size, color=_colour(mode))
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims huge dimensions: the header a decompression bomb starts with."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _colour(mode: str):
    return {
        "RGB": (200, 30, 60),
        "RGBA": (200, 30, 60, 128),
        "L": 128,
        "P": 3,
        "CMYK": (0, 200, 100, 0),
    }.get(mode, 1)
