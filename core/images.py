"""Image validation and decoding into model input. Training and inference both call
``decode_image``, so they cannot disagree about what a poster looks like."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from anigenre.core.errors import InvalidImage
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

# Pillow format name -> the extension a stored file gets.
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}
RESIZE_POLICIES = ("stretch", "pad", "center-crop")
MIN_SIDE = 16  # smaller than a thumbnail: nothing a poster could be
MAX_ASPECT = 8.0  # a 1x5000 strip is not a poster either
PAD_VALUE = 128  # mid-grey maps to ~0 after [-1, 1] scaling: letterbox bars carry no signal
# Pillow's own decompression-bomb limit (about 89.5 MP): what Pillow opens without a
# warning, we accept; a 41 MP print-resolution poster is a poster, not a bomb.
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


def inspect_image(data: bytes, max_pixels: int) -> ImageInfo:
    """Check that ``data`` is a whole image of a known format and sane size, or raise."""
    with _opened(data, max_pixels) as img:
        return ImageInfo(img.format, *img.size)


def decode_image(
    data: bytes,
    size: tuple[int, int],
    policy: str = "stretch",
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Bytes -> (height, width, 3) uint8 RGB at ``size`` = (height, width).

    EXIF orientation is applied, transparency is composited on white, palette, CMYK,
    greyscale and 16-bit images become 8-bit RGB, and animations give their first frame.
    A big JPEG is decoded at a reduced scale (see :func:`draft_box`).
    """
    if policy not in RESIZE_POLICIES:
        raise ValueError(f"resize policy must be one of {RESIZE_POLICIES}, not {policy!r}")
    with _opened(data, max_pixels, draft_box(size)) as img:
        img.seek(0)
        # Inside the ``with``: an RGB poster at the right size is ``img`` itself up to here.
        return np.asarray(_resize(_to_rgb(_upright(img)), size, policy), dtype=np.uint8)


def draft_box(size: tuple[int, int]) -> tuple[int, int]:
    """The least size a JPEG may be decoded at for a model input of ``size``.

    libjpeg can decode at 1/2, 1/4 or 1/8 scale for almost nothing, so a 5400x7600 poster
    costs 2 MB of pixels instead of 123 MB. Pillow keeps both sides at or above the box;
    a square of twice the larger side leaves the resize the same 2x headroom that
    ``reducing_gap`` gives other formats, whatever the EXIF rotation or resize policy.
    """
    side = 2 * max(size)
    return side, side


@contextlib.contextmanager
def _opened(
    data: bytes, max_pixels: int, draft: tuple[int, int] | None = None
) -> Iterator[Image.Image]:
    """Open and fully decode ``data``, turning every way it can be bad into InvalidImage.

    The size check happens on the header, before any pixel is decoded, so a bomb costs
    nothing; the full decode afterwards catches truncation, which ``verify`` can miss.
    With ``draft``, a JPEG is decoded at the smallest scale that still covers it.
    """
    if not data:
        raise InvalidImage("empty", "zero bytes")
    head = data[:64].lstrip().lower()
    if head.startswith((b"<!doctype", b"<html", b"<?xml", b"{", b"<svg")):
        raise InvalidImage("not-an-image", "looks like HTML/XML/JSON text")
    with warnings.catch_warnings():
        # Pillow only *warns* between MAX_IMAGE_PIXELS and twice that; we refuse both.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
            _check_header(img, max_pixels)
            if draft is not None and img.format == "JPEG":
                img.draft(None, draft)
            img.load()
        except InvalidImage:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InvalidImage("decompression-bomb", str(exc)) from None
        except UnidentifiedImageError:
            raise InvalidImage("not-an-image", "unrecognised image data") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            # Pillow reports truncated and corrupt data as OSError (SyntaxError or
            # EOFError for some plugins); all mean the bytes are unusable.
            raise InvalidImage("corrupt", str(exc) or type(exc).__name__) from None
    try:
        yield img
    finally:
        img.close()


def _check_header(img: Image.Image, max_pixels: int) -> None:
    width, height = img.size
    if img.format not in EXTENSIONS:
        raise InvalidImage("unsupported-format", str(img.format))
    if width * height > max_pixels:
        raise InvalidImage("too-large", f"{width}x{height} exceeds {max_pixels} pixels")
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_ASPECT * min(width, height):
        raise InvalidImage("absurd-size", f"{width}x{height}")


def _upright(img: Image.Image) -> Image.Image:
    """``img`` turned as its EXIF orientation says. What ``ImageOps.exif_transpose`` does,
    without the copy it makes of an image that needs no turning (almost every poster):
    a third of a small JPEG's decoding time went to copies of pixels left as they were."""
    if img.getexif().get(ExifTags.Base.Orientation, 1) in _TURNED:
        return ImageOps.exif_transpose(img)
    return img


_TURNED = range(2, 9)  # EXIF orientations other than upright (1) that exif_transpose turns


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits rather than let Pillow clip at 255.
        arr = np.asarray(img, dtype=np.float32)
        # Mode "I" may hold 8- or 16-bit data; the I;16 modes are 16-bit by definition.
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray((arr * (255.0 / top)).clip(0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "RGB" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")  # Pillow would copy an RGB one


def _resize(img: Image.Image, size: tuple[int, int], policy: str) -> Image.Image:
    height, width = size
    if policy == "stretch":
        if img.size == (width, height):  # Pillow would return a copy
            return img
        return img.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    if policy == "center-crop":
        return ImageOps.fit(img, (width, height), Image.Resampling.BILINEAR)
    fitted = ImageOps.contain(img, (width, height), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (width, height), (PAD_VALUE,) * 3)
    canvas.paste(fitted, ((width - fitted.width) // 2, (height - fitted.height) // 2))
    return canvas
