"""Image validation. Decoding for models is added beside it; both reject the same things."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from core.errors import InvalidImage

# Pillow format name -> the extension a stored file gets.
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


def inspect_image(data: bytes, max_pixels: int) -> ImageInfo:
    """Check that ``data`` is a whole image of a known format and sane size, or raise.

    The size check happens on the header, before any pixel is decoded, so a
    decompression bomb costs nothing. Decoding fully afterwards catches truncation,
    which ``Image.verify`` misses for some formats.
    """
    if not data:
        raise InvalidImage("empty", "zero bytes")
    head = data[:64].lstrip().lower()
    if head.startswith((b"<!doctype", b"<html", b"<?xml", b"{")):
        raise InvalidImage("not-an-image", "looks like HTML/XML/JSON text")
    with warnings.catch_warnings():
        # Pillow only *warns* between MAX_IMAGE_PIXELS and twice that; we refuse both.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as img:
                fmt, (width, height) = img.format, img.size
                if fmt not in EXTENSIONS:
                    raise InvalidImage("unsupported-format", str(fmt))
                if width <= 0 or height <= 0:
                    raise InvalidImage("bad-size", f"{width}x{height}")
                if width * height > max_pixels:
                    raise InvalidImage("too-large", f"{width}x{height} exceeds {max_pixels} pixels")
                img.load()
        except InvalidImage:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InvalidImage("decompression-bomb", str(exc)) from None
        except UnidentifiedImageError:
            raise InvalidImage("not-an-image", "unrecognised image data") from None
        except (OSError, SyntaxError, ValueError) as exc:
            # Pillow reports truncated and corrupt data as OSError (or SyntaxError for some
            # plugins); both mean the bytes are unusable.
            raise InvalidImage("corrupt", str(exc)) from None
    return ImageInfo(fmt, width, height)
