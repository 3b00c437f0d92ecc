"""Generators for the nasty-file corpus: every case is made here, nothing is committed."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

RED = (200, 30, 60)


def encode(fmt: str, size=(40, 56), mode="RGB", color=None, **save) -> bytes:
    """A solid image of ``size`` = (width, height)."""
    img = Image.new(mode, size, color=_colour(mode) if color is None else color)
    return save_bytes(img, fmt, **save)


def save_bytes(img: Image.Image, fmt: str, **save) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def two_halves(size=(60, 40), left=(255, 0, 0), right=(0, 0, 255)) -> Image.Image:
    """Left half one colour, right half another: shows rotations and crops."""
    w, h = size
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    arr[:, : w // 2] = left
    arr[:, w // 2 :] = right
    return Image.fromarray(arr)


def with_exif_orientation(img: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save_bytes(img, "JPEG", exif=exif.tobytes(), quality=95)


def transparent_png(size=(40, 56)) -> bytes:
    """Fully transparent left half, opaque red right half."""
    w, h = size
    arr = np.zeros((h, w, 4), dtype=np.uint8)
    arr[:, w // 2 :] = (*RED, 255)
    return save_bytes(Image.fromarray(arr, "RGBA"), "PNG")


def png16(size=(40, 56), value=40000) -> bytes:
    arr = np.full((size[1], size[0]), value, dtype=np.uint16)
    return save_bytes(Image.fromarray(arr), "PNG")  # uint16 -> mode I;16


def animated_gif(size=(40, 56)) -> bytes:
    frames = [Image.new("RGB", size, c) for c in ((0, 200, 0), (0, 0, 200))]
    return save_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims huge dimensions: the header a decompression bomb starts with."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def every_kind() -> dict[str, bytes]:
    """One file of each kind decoding must turn into 8-bit RGB, by a short name."""
    return {
        "jpeg": encode("JPEG"),
        "progressive": encode("JPEG", progressive=True, quality=90),
        "cmyk": encode("JPEG", mode="CMYK"),
        "grey": encode("JPEG", mode="L"),
        "palette": encode("PNG", mode="P"),
        "rgba": encode("PNG", mode="RGBA"),
        "webp": encode("WEBP"),
        "bmp": encode("BMP"),
        "gif": encode("GIF", mode="P"),
        "png16": png16(),
    }


def _colour(mode: str):
    colours = {"RGB": RED, "RGBA": (*RED, 128), "L": 128, "P": 3, "CMYK": (0, 200, 100, 0)}
    return colours.get(mode, 1)
